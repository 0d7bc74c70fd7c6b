"""One service of the distributed shop, as its own gunicorn (gthread) process tree.

`python -m variants.distributed.service NAME --port P --state-dir D --peer CTX=URL ...`
serves either one bounded context (its real class from `workloads.shop`, behind
`POST /rpc/<method>`) or, for the gateway, the shared public API (`variants.edge`) over a
`Shop` of HTTP proxies. The same command runs under the local launcher, in a container
(`deploy/Dockerfile`) and in a Kubernetes pod; only the peers' URLs differ.

Each context service owns one database file, `<state-dir>/<context>.db`, copied from the
dataset when absent, so a restarted (or rescheduled) service carries on with its data. The
app is built inside each gunicorn worker after fork, as in the monolith, so each worker's
heap, connection pools and background jobs are its own.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from variants import cli, faults, telemetry
from variants.distributed.http import (
    IDEMPOTENT,
    CallPolicy,
    CircuitBreaker,
    HttpTransport,
    WsgiApp,
    proxy,
    service_app,
)
from variants.distributed.topology import NEEDS, TOPOLOGY_FILE, Topology, load
from variants.edge.app import create_app
from variants.edge.worker import SERVER_SETTINGS
from variants.lifecycle import die_with_parent
from variants.lifecycle import record as record_lifecycle
from workloads.shop import dataset
from workloads.shop.catalog_snapshot import open_catalog
from workloads.shop.config import ShopConfig
from workloads.shop.interfaces import Shop
from workloads.shop.inventory import Inventory
from workloads.shop.jobs import Periodic, model_rebuilder, notification_drainer
from workloads.shop.notifications import Notifications
from workloads.shop.orders import Orders
from workloads.shop.recommendations import Recommendations

log = logging.getLogger("archlab.distributed")


def policy_for(topology: Topology, service: str) -> CallPolicy:
    svc = topology.services[service]
    return CallPolicy(
        timeout_s=svc.timeout_s,
        connect_timeout_s=svc.connect_timeout_s,
        attempts=svc.attempts,
        backoff_s=svc.backoff_s,
        idempotent=IDEMPOTENT.get(svc.context, frozenset()),
    )


@dataclass
class Options:
    """Everything one service process needs; parsed from the command line."""

    name: str
    host: str
    port: int
    state_dir: Path
    size: str
    seed: int
    threads: int
    workers: int
    peers: dict[str, str]
    topology_file: Path
    config: ShopConfig
    lifecycle: Path | None = None
    parent_pid: int | None = None
    topology: Topology = field(init=False)

    def __post_init__(self) -> None:
        self.topology = load(self.topology_file)
        if self.name not in self.topology.services:
            raise SystemExit(
                f"unknown service {self.name!r}; topology has {list(self.topology.services)}"
            )
        missing = set(self.topology.services[self.name].depends_on) - set(self.peers)
        if missing:
            raise SystemExit(f"{self.name} needs --peer for {sorted(missing)}")


class Hosted:
    """What one worker hosts: the WSGI app, its background jobs and what to close at exit."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.jobs: list[Periodic] = []
        self.transports: list[HttpTransport] = []
        self.closers: list[Any] = []
        self.app = self._build()

    def _proxies(self, services: tuple[str, ...]) -> dict[str, Any]:
        """A proxy per needed context, keyed by context; one breaker per downstream service."""
        topo = self.opts.topology
        proxies: dict[str, Any] = {}
        for name in services:
            svc = topo.services[name]
            breaker = CircuitBreaker(name, svc.breaker_failures, svc.breaker_reset_s)
            p, transport = proxy(
                svc.context,
                self.opts.peers[name],
                policy_for(topo, name),
                breaker,
                pool_size=self.opts.threads,
            )
            proxies[svc.context] = p
            self.transports.append(transport)
        return proxies

    def _build(self) -> WsgiApp:
        opts = self.opts
        svc = opts.topology.services[opts.name]
        context_of = {s.context: s.name for s in opts.topology.services.values()}
        peers = self._proxies(tuple(context_of[c] for c in NEEDS[svc.context]))
        if svc.is_gateway:
            shop = Shop(**peers)
            pool = ThreadPoolExecutor(len(self.transports), thread_name_prefix="health")
            self.closers.append(pool)
            by_context = {t.service: t for t in self.transports}

            def health() -> dict[str, str]:
                states = pool.map(lambda t: t.health(), by_context.values())
                return dict(zip(by_context, states, strict=True))

            return create_app(shop, "distributed", health)
        impl, jobs = build_context(
            svc.context,
            opts.state_dir,
            peers,
            opts.config,
            lambda impl: faults.install(opts.name, {svc.context: impl})[svc.context],
        )
        self.closers.append(impl)
        self.jobs = jobs
        for job in jobs:
            job.start()

        def health() -> dict[str, str]:
            alive = all(j.is_alive() for j in self.jobs)
            return {svc.context: "ok" if alive else "down"}

        return service_app(svc.context, impl, health)

    def close(self) -> None:
        for job in self.jobs:
            job.stop()
        for closer in self.closers:
            if isinstance(closer, ThreadPoolExecutor):
                closer.shutdown(wait=False)
            else:
                closer.close()
        for transport in self.transports:
            transport.close()


def build_context(
    context: str,
    state_dir: Path,
    peers: dict[str, Any],
    config: ShopConfig,
    serve: Callable[[Any], Any] = lambda impl: impl,
) -> tuple[Any, list[Periodic]]:
    """The context's real class over its own database, wired to its peers; and its jobs.

    The same wiring as `workloads.shop.local.LocalShop`, one context at a time. `serve` wraps
    the object before anything uses it (the fault controller's wrapper), jobs included.
    """
    path = dataset.state_paths(state_dir)[context]
    if context == "catalog":
        return serve(open_catalog(path)), []
    if context == "inventory":
        return serve(Inventory(path)), []
    if context == "orders":
        return serve(Orders(path, peers["catalog"], peers["inventory"])), []
    if context == "recommendations":
        recs = serve(Recommendations(path, peers["orders"]))
        job = model_rebuilder(recs, config)
        return recs, [job] if job is not None else []
    if context == "notifications":
        notes = serve(
            Notifications(path, peers["orders"], sink_latency_s=config.sink_latency_ms / 1000)
        )
        return notes, [notification_drainer(notes, config)]
    raise ValueError(f"unknown context {context!r}")


def prepare_database(opts: Options) -> None:
    """Copy this service's database (only its own) from the dataset if it is not there yet."""
    context = opts.topology.services[opts.name].context
    if not context:
        return
    target = dataset.state_paths(opts.state_dir)[context]
    if target.exists():
        return
    source = dataset.ensure(opts.size, opts.seed)
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp-{os.getpid()}")
    shutil.copyfile(source / f"{context}.db", tmp)
    tmp.rename(target)


_HOSTED: dict[int, Hosted] = {}


class ServiceServer(BaseApplication):
    """gunicorn (gthread) serving one service; the app is built in each worker after fork."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.options: dict[str, Any] = {
            "bind": f"{opts.host}:{opts.port}",
            "workers": opts.workers,
            **SERVER_SETTINGS,  # gthread worker, bounded drain, JSON errors, edge limits
            "threads": opts.threads,
            "timeout": 300,
            "graceful_timeout": 10,
            "keepalive": 75,  # outlives the callers' idle pooled connections
            "backlog": 2048,
            "proc_name": telemetry.process_title(f"distributed {opts.name}"),
            "accesslog": None,
            "loglevel": "warning",
            "post_fork": self._post_fork,
            "worker_exit": self._worker_exit,
            "child_exit": self._child_exit,
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> WsgiApp:
        telemetry.install(self.opts.name)
        hosted = Hosted(self.opts)
        _HOSTED[os.getpid()] = hosted
        log.info("%s worker %d ready", self.opts.name, os.getpid())
        return hosted.app

    @staticmethod
    def _post_fork(server: Any, worker: Any) -> None:
        # A worker must not outlive its master (SIGKILLed by a fault or by the OOM killer).
        die_with_parent(server.pid, signal.SIGKILL)

    def _stopped_marker(self, pid: int) -> Path | None:
        lifecycle = self.opts.lifecycle
        return None if lifecycle is None else lifecycle.parent / f".worker-{pid}.stopped"

    def _worker_exit(self, server: Any, worker: Any) -> None:
        """In the worker, on a Python-level exit (a SIGKILLed worker never gets here)."""
        if os.getpid() != worker.pid:
            return  # gunicorn also calls this in the master for a worker already gone
        hosted = _HOSTED.pop(os.getpid(), None)
        if hosted is not None:
            hosted.close()
        marker = self._stopped_marker(worker.pid)
        if marker is not None and not worker.alive:  # asked to stop (SIGTERM, SIGQUIT)
            with contextlib.suppress(OSError):
                marker.touch()

    def _child_exit(self, server: Any, worker: Any) -> None:
        """In the master, after reaping a worker: record a death, not a requested stop."""
        marker = self._stopped_marker(worker.pid)
        stopped = marker is not None and marker.exists()
        if marker is not None:
            marker.unlink(missing_ok=True)
        if server.LISTENERS and not stopped:  # no listeners: gunicorn itself is stopping
            # gunicorn restarts the worker itself; its exit status is not passed to this hook.
            record_lifecycle(
                self.opts.lifecycle,
                event="exit",
                role=self.opts.name,
                pid=worker.pid,
                process="worker",
                exit_code=None,
                signal=None,
                expected=False,
            )


def wait_for(urls: list[str], timeout_s: float) -> int:
    """Block until every URL answers 200 (a Kubernetes init container's dependency wait)."""
    deadline = time.monotonic() + timeout_s
    pending = list(urls)
    while pending:
        url = pending[0]
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                if resp.status == 200:
                    pending.pop(0)
                    continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            print(f"gave up waiting for {url}", file=sys.stderr)
            return 1
        time.sleep(1.0)
    return 0


def _peer(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not url.startswith("http://"):
        raise argparse.ArgumentTypeError(f"expected NAME=http://host:port, got {text!r}")
    return name, url.rstrip("/")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m variants.distributed.service",
        description="One service of the distributed shop (a bounded context or the gateway).",
    )
    p.add_argument("name", nargs="?", help="the service, as named in the topology")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--state-dir", type=Path, default=Path("state"))
    p.add_argument("--size", default="tiny", choices=sorted(dataset.SIZES))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=8, help="request threads per process")
    p.add_argument("--workers", type=int, default=1, help="processes (replicas on one port)")
    p.add_argument(
        "--peer",
        type=_peer,
        action="append",
        default=[],
        metavar="NAME=URL",
        help="where a service this one depends on listens (repeat per dependency)",
    )
    p.add_argument("--topology", type=Path, default=TOPOLOGY_FILE)
    p.add_argument("--lifecycle", type=Path, help="JSON-lines file for worker deaths")
    p.add_argument("--parent-pid", type=int, help="exit when this process (the launcher) dies")
    cli.add_shop_options(p)
    p.add_argument(
        "--wait-for",
        action="append",
        default=[],
        metavar="URL",
        help="only wait until each URL answers 200, then exit (an init container's job)",
    )
    p.add_argument("--wait-timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    if not args.wait_for and not args.name:
        p.error("NAME is required (or --wait-for)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid, signal.SIGTERM)
    if args.wait_for:
        return wait_for(args.wait_for, args.wait_timeout)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {args.name}[%(process)d] %(name)s %(message)s"
    )
    opts = Options(
        name=args.name,
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        size=args.size,
        seed=args.seed,
        threads=args.threads,
        workers=args.workers,
        peers=dict(args.peer),
        topology_file=args.topology,
        config=cli.shop_config(args),
        lifecycle=args.lifecycle,
        parent_pid=args.parent_pid,
    )
    telemetry.install(f"{args.name}-master")
    prepare_database(opts)
    ServiceServer(opts).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
