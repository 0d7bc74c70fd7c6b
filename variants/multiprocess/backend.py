"""A request backend: the shared edge API over the contexts of the placement's edge group.

Each backend accepts on the listening socket it inherited from the postmaster and serves
HTTP with the placement's server (`variants.edge.servers`: gunicorn's threaded worker or
granian) — the very server the monolith runs under the same knob, so a difference between the
two variants is one of topology, not of HTTP stacks. It builds the
edge group's contexts with the shop's one wiring (the catalog read in place from the shared
segment when the family has one); every other context is a proxy (`variants.peers`) whose
calls travel to its process over a Unix socket, on one pooled connection per request thread,
or over HTTP. A context of the edge group that another group calls (e.g. orders, for the
recommendation engine's rebuilds, when orders stays in the backends) is served over IPC by
every backend, on a Unix socket the postmaster bound and they all accept on.

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
from variants.edge import servers
from variants.edge.app import create_app
from variants.multiprocess.config import FamilyConfig
from variants.multiprocess.ipc import IpcServer
from variants.multiprocess.shmem import ControlSegment
from variants.peers import Endpoints, connect, socket_path
from variants.placement import Placement
from variants.rpc import Codec, Dispatcher
from workloads.shop.catalog_snapshot import Buffer, SnapshotCatalog
from workloads.shop.config import ShopConfig
from workloads.shop.wiring import build

log = logging.getLogger("archlab.multiprocess.backend")

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class _Application:
    """What gunicorn's worker asks of an application: the WSGI callable."""

    app: WSGI

    def wsgi(self) -> WSGI:
        return self.app


def backend_worker(server: str) -> type[Any]:
    """The edge's gunicorn worker class for `server`, run by our postmaster instead of
    gunicorn's arbiter: SIGINT, SIGHUP and SIGUSR2 are the postmaster's business."""
    base = servers.worker_class(server)

    class BackendWorker(base):  # type: ignore[misc, valid-type]
        def init_signals(self) -> None:
            super().init_signals()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)

    return BackendWorker


def gunicorn_config(config: FamilyConfig, server: str, on_ready: Callable[[Any], None]) -> Config:
    cfg = Config()
    settings = {
        **servers.settings(server),  # the monolith's server for this knob, the edge limits
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
    ipc_listeners: dict[str, socket.socket],
    catalog: Buffer | None,
    control: ControlSegment,
    placement: Placement,
    endpoints: Endpoints,
    state_dir: Path,
    config: FamilyConfig,
    shop: ShopConfig,
    ready: Callable[[], None],
) -> int:
    """Serve until told to stop; the exit code."""
    group = placement.edge
    contexts = placement.groups[group].contexts
    peers = connect(placement, group, endpoints, pool_size=config.threads)
    hosted = build(
        contexts,
        state_dir,
        peers.proxies,
        shop,
        faults.arm(group, contexts),
        catalog=SnapshotCatalog(catalog) if catalog is not None else None,
    )
    hosted.start_jobs()
    servers = [
        IpcServer(
            socket_path(endpoints.socket_dir or state_dir, context),
            Dispatcher(context, hosted.served[context], Codec("msgpack")).handle,
            listening=sock,
        )
        for context, sock in ipc_listeners.items()
    ]
    for server in servers:
        server.start()
    host = placement.peers(group)

    def health() -> dict[str, str]:
        groups = control.aux_states()
        return {**hosted.health(), **{c: groups[g] for c, g in host.items()}}

    app = create_app(hosted.shop(), placement.name, health)
    count = control.count_request

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return app(environ, start_response)
        finally:
            count(slot)

    cfg = gunicorn_config(config, placement.server, lambda worker: ready())
    worker = backend_worker(placement.server)(
        number, postmaster_pid, [listener], _Application(counted), 300, cfg, Logger(cfg)
    )
    try:
        worker.init_process()  # returns once the worker has stopped
    finally:
        for server in servers:
            server.stop(1.0)
        hosted.close()
        peers.close()
    log.debug("backend %d stopped", number)
    return 0
