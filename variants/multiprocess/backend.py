"""A request backend: the shared edge API over the shared catalog and IPC proxies.

Each backend accepts on the listening socket it inherited from the postmaster and serves
HTTP with gunicorn's threaded worker (`gthread`) — the very server the monolith runs in, so
a difference between the two variants is one of topology, not of HTTP stacks. The catalog is
read in place from the shared segment; every other context is a proxy whose calls travel to
its auxiliary over a Unix socket, on one pooled connection per request thread.

Signals follow PostgreSQL's backends: SIGTERM finishes the requests in flight and exits,
SIGQUIT exits at once; SIGINT and SIGHUP are the postmaster's business and ignored here.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.config import Config
from gunicorn.glogging import Logger

from variants import faults
from variants.edge.app import create_app
from variants.edge.worker import SERVER_SETTINGS, EdgeWorker
from variants.multiprocess.config import AUXILIARIES, CONNECT_TIMEOUT_S, FamilyConfig
from variants.multiprocess.ipc import UdsTransport
from variants.multiprocess.shmem import ControlSegment
from variants.rpc import Codec, make_proxy
from workloads.shop.catalog_snapshot import Buffer, SnapshotCatalog
from workloads.shop.interfaces import Shop

log = logging.getLogger("archlab.multiprocess.backend")

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def socket_path(socket_dir: Path, role: str) -> Path:
    return socket_dir / f"{role}.sock"


def remote_contexts(socket_dir: Path, config: FamilyConfig, roles: Iterable[str]) -> dict[str, Any]:
    """A msgpack-over-UDS proxy for each auxiliary in `roles`."""
    codec = Codec("msgpack")
    return {
        role: make_proxy(
            role,
            UdsTransport(
                socket_path(socket_dir, role),
                name=role,
                connect_timeout_s=CONNECT_TIMEOUT_S,
                call_timeout_s=config.call_timeouts_ms[role] / 1000,
            ),
            codec,
        )
        for role in roles
    }


@dataclass
class _Application:
    """What gunicorn's worker asks of an application: the WSGI callable."""

    app: WSGI

    def wsgi(self) -> WSGI:
        return self.app


class BackendWorker(EdgeWorker):
    """The edge's gunicorn threaded worker, run by our postmaster instead of gunicorn's arbiter."""

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def gunicorn_config(config: FamilyConfig, on_ready: Callable[[Any], None]) -> Config:
    cfg = Config()
    settings = {
        **SERVER_SETTINGS,  # the monolith's server: drain, JSON errors, edge limits
        "threads": config.threads,
        "worker_connections": 1000,
        "keepalive": 30,
        "graceful_timeout": 15,
        "timeout": 300,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": config.log_level.lower(),
        "post_worker_init": on_ready,
    }
    for key, value in settings.items():
        if key in cfg.settings:  # older gunicorns lack some settings
            cfg.set(key, value)
    return cfg


def run(
    *,
    number: int,
    slot: int,
    postmaster_pid: int,
    listener: socket.socket,
    catalog: Buffer,
    control: ControlSegment,
    socket_dir: Path,
    config: FamilyConfig,
    ready: Callable[[], None],
) -> int:
    """Serve until told to stop; the exit code."""
    remote = remote_contexts(socket_dir, config, AUXILIARIES)
    served = faults.install("backend", {"catalog": SnapshotCatalog(catalog)})
    shop = Shop(
        catalog=served["catalog"],
        inventory=remote["inventory"],
        orders=remote["orders"],
        recommendations=remote["recommendations"],
        notifications=remote["notifications"],
    )

    def health() -> dict[str, str]:
        return {"catalog": "ok", **control.aux_states()}

    app = create_app(shop, "multiprocess", health)
    count = control.count_request

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return app(environ, start_response)
        finally:
            count(slot)

    cfg = gunicorn_config(config, lambda worker: ready())
    worker = BackendWorker(
        number, postmaster_pid, [listener], _Application(counted), 300, cfg, Logger(cfg)
    )
    worker.init_process()  # returns once the worker has stopped
    log.debug("backend %d stopped", number)
    return 0
