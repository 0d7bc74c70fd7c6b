"""One group of a placement served over HTTP, as its own gunicorn (gthread) process tree.

`python -m variants.distributed.service GROUP --placement P --port N --peer GROUP=URL ...`
serves either the group's one context (built by `workloads.shop.wiring`, behind
`POST /rpc/<method>`) or, for a launcher placement's edge group (the gateway), the public API
(`variants.edge`) over a `Shop` of proxies. The same command runs under the local launcher,
in a container (`deploy/Dockerfile`) and in a Kubernetes pod; only the peers' URLs differ.
The process family's postmaster runs an `http` group the same way without a command line:
it calls `serve(Options(...), ready)` in a child it forked, with `Endpoints.socket_dir` for
the peers it reaches over IPC.

Each context owns one database file, `<state-dir>/<context>.db`, copied from the dataset
when absent, so a restarted (or rescheduled) service carries on with its data. The app is
built inside each gunicorn worker after fork, as in the monolith, so each worker's heap,
connection pools and background jobs are its own.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from variants import cli, faults, peers, telemetry
from variants import placement as placements
from variants.distributed.http import WsgiApp, healthy, service_app
from variants.distributed.topology import DEFAULT_PLACEMENT
from variants.edge import servers
from variants.edge.app import create_app
from variants.lifecycle import die_with_parent
from variants.lifecycle import record as record_lifecycle
from variants.peers import Endpoints
from variants.placement import Placement, PlacementError
from workloads.shop import dataset, wiring
from workloads.shop.config import ShopConfig

log = logging.getLogger("archlab.distributed")

READY_POLL_S = 0.1
_MASTER_SIGNALS = frozenset(
    {signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGCHLD}
    | {signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH}
)


class ServiceError(ValueError):
    """This process cannot serve the group as asked; the message is one line."""


@dataclass(frozen=True)
class Options:
    """Everything one service process needs, from its command line or from its supervisor."""

    placement: Placement
    group: str
    port: int
    state_dir: Path
    config: ShopConfig = field(default_factory=ShopConfig)
    endpoints: Endpoints = field(default_factory=Endpoints)
    """Where the peers listen: `urls` by http group, `socket_dir` for ipc groups."""
    host: str = "127.0.0.1"
    threads: int = 8
    workers: int = 1
    lifecycle: Path | None = None
    parent_pid: int | None = None
    """Stop (SIGTERM) when this process dies."""
    title: str = "distributed"
    """The process titles: `archlab: <title> <group>` (the family says "service")."""
    size: str | None = None
    """The dataset to copy a missing database from; None: the caller prepared the state."""
    seed: int = 1
    local_peers: Mapping[str, Any] = field(default_factory=dict)
    """Peers the caller already holds, by context (the family's shared-memory catalog)."""

    def __post_init__(self) -> None:
        p, group = self.placement, self.group
        if group not in p.groups:
            raise ServiceError(
                f"placement {p.name} has no group {group!r} (groups: {', '.join(p.groups)})"
            )
        edge_service = p.groups[group].edge and p.supervisor == "launcher"
        if p.transport(group) != "http" and not edge_service:
            raise ServiceError(
                f"group {group} of placement {p.name} is reached over {p.transport(group)}; "
                "a service is an http group or a launcher placement's edge"
            )
        called = p.peers(group)
        missing_urls = sorted(
            {h for c, h in called.items() if p.reach(c) == "http" and h not in self.endpoints.urls}
        )
        if missing_urls:
            raise ServiceError(
                f"{group} needs the URL of {', '.join(missing_urls)} (--peer GROUP=URL)"
            )
        if self.endpoints.socket_dir is None and any(p.reach(c) == "ipc" for c in called):
            raise ServiceError(
                f"{group} calls a group over ipc, so it needs a socket folder (--socket-dir)"
            )
        unheld = [
            c for c in p.needs_contexts(group) if c not in called and c not in self.local_peers
        ]
        if unheld:
            raise ServiceError(
                f"{group} needs {', '.join(unheld)} from shared memory: pass it in local_peers"
            )


class Hosted:
    """What one worker serves: the group's contexts over their peers, and the WSGI app."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        group = opts.placement.groups[opts.group]
        self.peers = peers.connect(opts.placement, opts.group, opts.endpoints, opts.threads)
        self._pool: ThreadPoolExecutor | None = None
        try:
            wrap = faults.arm(opts.group, group.contexts) if group.contexts else wiring.unwrapped
            self.hosted = wiring.build(
                group.contexts,
                opts.state_dir,
                {**self.peers.proxies, **opts.local_peers},
                opts.config,
                wrap=wrap,
            )
        except BaseException:
            self.peers.close()
            raise
        self.hosted.start_jobs()
        self.app = self._app(group.edge)

    def _app(self, edge: bool) -> WsgiApp:
        if not edge:
            (context,) = self.opts.placement.groups[self.opts.group].contexts
            return service_app(context, self.hosted.served[context], self.hosted.health)
        transports = self.peers.http
        pool = ThreadPoolExecutor(max(1, len(transports)), thread_name_prefix="health")
        self._pool = pool

        def health() -> dict[str, str]:
            states = pool.map(lambda t: t.health(), transports.values())
            return {**dict(zip(transports, states, strict=True)), **self.hosted.health()}

        return create_app(self.hosted.shop(), self.opts.placement.name, health)

    def close(self) -> None:
        self.hosted.close()
        self.peers.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def prepare_database(opts: Options) -> None:
    """Copy the group's databases (only its own) from the dataset if they are not there yet."""
    contexts = opts.placement.groups[opts.group].contexts
    paths = dataset.state_paths(opts.state_dir)
    if all(paths[c].exists() for c in contexts):
        return
    if opts.size is None:
        missing = next(paths[c] for c in contexts if not paths[c].exists())
        raise ServiceError(f"{missing} is missing and no dataset was named to copy it from")
    dataset.prepare_state(dataset.ensure(opts.size, opts.seed), opts.state_dir, contexts)


_HOSTED: dict[int, Hosted] = {}


class _Master(Arbiter):
    """gunicorn's arbiter, with SIGUSR2 a graceful stop (as for a family auxiliary) instead of
    a re-exec of the command line, which in a child of the postmaster is the postmaster's."""

    handle_usr2 = Arbiter.handle_term


class ServiceServer(BaseApplication):
    """gunicorn's arbiter serving one group with the group's server (`variants.edge.servers`);
    the app is built in each worker after fork."""

    def __init__(self, opts: Options, ready: Callable[[], None] | None = None) -> None:
        self.opts = opts
        self.ready = ready
        self.options: dict[str, Any] = {
            "bind": f"{opts.host}:{opts.port}",
            "workers": opts.workers,
            **servers.settings(opts.placement.groups[opts.group].server),
            "threads": opts.threads,
            "timeout": 300,
            "graceful_timeout": 10,
            "keepalive": 75,  # outlives the callers' idle pooled connections
            "backlog": 2048,
            "proc_name": telemetry.process_title(f"{opts.title} {opts.group}"),
            "accesslog": None,
            "loglevel": "warning",
            "when_ready": self._when_ready,
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
        telemetry.install(self.opts.group)
        hosted = Hosted(self.opts)
        _HOSTED[os.getpid()] = hosted
        log.info("%s worker %d ready", self.opts.group, os.getpid())
        return hosted.app

    def run(self) -> None:
        try:
            _Master(self).run()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)

    def _when_ready(self, server: Any) -> None:
        """In the master, once it listens: tell `ready` when its own /healthz first says 200."""
        ready = self.ready
        if ready is None:
            return
        host = self.opts.host if self.opts.host not in ("", "0.0.0.0") else "127.0.0.1"
        url = f"http://{host}:{self.opts.port}"

        def announce() -> None:
            while not healthy(url):
                time.sleep(READY_POLL_S)
            ready()

        threading.Thread(target=announce, name="ready", daemon=True).start()

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
                role=self.opts.group,
                pid=worker.pid,
                process="worker",
                exit_code=None,
                signal=None,
                expected=False,
            )


def serve(opts: Options, ready: Callable[[], None] | None = None) -> int:
    """Be the group's gunicorn master in this process until it stops; its exit status.

    The master's role is `<group>-master`, its workers' `<group>`. SIGTERM and SIGUSR2 stop
    it gracefully (workers finish their requests, up to 10 s), SIGQUIT and SIGINT at once,
    SIGHUP replaces its workers. `ready`, if given, is called once, from a thread of the
    master, when the group's /healthz first answers 200. Raises ServiceError when a database
    is missing and `opts.size` is None.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _MASTER_SIGNALS)  # a forking parent may block some
    if opts.parent_pid is not None:
        die_with_parent(opts.parent_pid, signal.SIGTERM)
    telemetry.install(f"{opts.group}-master")
    prepare_database(opts)
    try:
        ServiceServer(opts, ready).run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


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
        raise argparse.ArgumentTypeError(f"expected GROUP=http://host:port, got {text!r}")
    return name, url.rstrip("/")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m variants.distributed.service",
        description="One http group of a placement (a bounded context, or the gateway).",
    )
    p.add_argument("name", nargs="?", help="the group to serve, as named in the placement")
    p.add_argument(
        "--placement",
        default=DEFAULT_PLACEMENT,
        help=f"a named placement or a placement file (default {DEFAULT_PLACEMENT})",
    )
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
        metavar="GROUP=URL",
        help="where an http group this one calls listens (repeat per group)",
    )
    p.add_argument(
        "--server",
        choices=servers.SERVERS,
        help="the HTTP server under the group's app (default: the placement's)",
    )
    p.add_argument(
        "--bulkhead",
        type=int,
        help="at most this many calls in flight per process to each group this one calls "
        "(0: off; default: the placement's)",
    )
    p.add_argument("--socket-dir", type=Path, help="where the ipc groups this one calls listen")
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


def options(args: argparse.Namespace) -> Options:
    """The command line as Options; PlacementError or ServiceError (one line) if it is bad."""
    return Options(
        placement=cli.configured(
            placements.load(args.placement), engines={}, server=args.server, bulkhead=args.bulkhead
        ),
        group=args.name,
        port=args.port,
        state_dir=args.state_dir,
        config=cli.shop_config(args),
        endpoints=Endpoints(socket_dir=args.socket_dir, urls=dict(args.peer)),
        host=args.host,
        threads=args.threads,
        workers=args.workers,
        lifecycle=args.lifecycle,
        parent_pid=args.parent_pid,
        size=args.size,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.wait_for:
        if args.parent_pid is not None:
            die_with_parent(args.parent_pid, signal.SIGTERM)
        return wait_for(args.wait_for, args.wait_timeout)
    try:
        opts = options(args)
    except (PlacementError, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {args.name}[%(process)d] %(name)s %(message)s"
    )
    return serve(opts)


if __name__ == "__main__":
    sys.exit(main())
