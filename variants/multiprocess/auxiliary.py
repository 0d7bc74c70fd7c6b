"""An auxiliary process: one stateful context, its real domain class, served over a Unix socket.

Inventory and orders are the single writers of their databases; recommendations keeps the
big model heap (and its GC pauses) to itself; notifications drains the outbox. Each calls the
contexts it depends on through proxies (orders reads the catalog from the shared segment),
runs its background jobs from `workloads.shop.jobs`, and exchanges nothing but messages: it
unmaps the writable control segment right after the fork, which is why its crash policy
can be `restart-one`.

Signals follow PostgreSQL's auxiliary processes: the postmaster stops them with SIGUSR2 once
the backends are gone (calls in flight finish first); SIGQUIT exits at once; SIGTERM, SIGINT
and SIGHUP, which a terminal or a process-group kill sends to the whole family, are ignored so
that the postmaster decides the order of shutdown. The main thread only waits for signals and
checks that the postmaster is still its parent.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from variants import faults
from variants.multiprocess.backend import remote_contexts, socket_path
from variants.multiprocess.config import DEPENDS_ON, FamilyConfig
from variants.multiprocess.ipc import IpcServer
from variants.rpc import Codec, Dispatcher
from workloads.shop.catalog_snapshot import Buffer, SnapshotCatalog
from workloads.shop.config import ShopConfig
from workloads.shop.dataset import state_paths
from workloads.shop.inventory import Inventory
from workloads.shop.jobs import Periodic, model_rebuilder, notification_drainer
from workloads.shop.notifications import Notifications
from workloads.shop.orders import Orders
from workloads.shop.recommendations import Recommendations

log = logging.getLogger("archlab.multiprocess.auxiliary")

HANDLED = frozenset({signal.SIGUSR2, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
STOP_GRACE_S = 10.0
EXIT_QUICKDIE = 2


def build_context(
    role: str,
    state_dir: Path,
    catalog: Buffer | None,
    remote: dict[str, Any],
    shop: ShopConfig,
    serve: Callable[[Any], Any] = lambda impl: impl,
) -> tuple[Any, list[Periodic]]:
    """The domain object this role hosts, and the background jobs it runs.

    `serve` wraps the object before anything uses it (the fault controller's wrapper), so the
    background jobs go through it too.
    """
    paths = state_paths(state_dir)
    if role == "inventory":
        return serve(Inventory(paths["inventory"])), []
    if role == "orders":
        if catalog is None:
            raise ValueError("orders needs the catalog segment")
        return serve(Orders(paths["orders"], SnapshotCatalog(catalog), remote["inventory"])), []
    if role == "recommendations":
        recs = serve(Recommendations(paths["recommendations"], remote["orders"]))
        job = model_rebuilder(recs, shop)
        return recs, [job] if job is not None else []
    if role == "notifications":
        notes = serve(
            Notifications(
                paths["notifications"],
                remote["orders"],
                sink_latency_s=shop.sink_latency_ms / 1000,
            )
        )
        return notes, [notification_drainer(notes, shop)]
    raise ValueError(f"no auxiliary role {role!r}")


def run(
    *,
    role: str,
    postmaster_pid: int,
    state_dir: Path,
    socket_dir: Path,
    catalog: Buffer | None,
    config: FamilyConfig,
    shop: ShopConfig,
    ready: Callable[[], None],
) -> int:
    """Serve `role` until the postmaster stops it; the exit code."""
    # Blocked in every thread (process.fork blocks them before the first thread starts),
    # so they wait for sigtimedwait() below instead of hitting any thread's default action.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    remote = remote_contexts(socket_dir, config, DEPENDS_ON[role])

    def serve(impl: Any) -> Any:
        return faults.install(role, {role: impl})[role]

    context, jobs = build_context(role, state_dir, catalog, remote, shop, serve)
    server = IpcServer(
        socket_path(socket_dir, role), Dispatcher(role, context, Codec("msgpack")).handle
    )
    server.start()
    for job in jobs:
        job.start()
    log.info("%s ready on %s", role, server.path)
    ready()
    while True:
        info = signal.sigtimedwait(HANDLED, 1.0)
        if os.getppid() != postmaster_pid:
            log.error("the postmaster is gone; exiting")
            return 1
        if info is None:
            continue
        if info.si_signo == signal.SIGQUIT:
            os._exit(EXIT_QUICKDIE)
        if info.si_signo == signal.SIGUSR2:
            break
        log.debug("ignoring %s from pid %d", signal.Signals(info.si_signo).name, info.si_pid)
    log.info("%s stopping: %d call(s) in flight", role, server.inflight)
    if not server.stop(STOP_GRACE_S):
        log.warning("%s: calls still running after %.0f s", role, STOP_GRACE_S)
    for job in jobs:
        job.stop()
    context.close()
    return 0
