"""An auxiliary process: one `ipc` group of the placement, its contexts served over Unix sockets.

In the multiprocess placement each auxiliary hosts one context: inventory and orders are the
single writers of their databases; recommendations keeps the big model heap (and its GC
pauses) to itself; notifications drains the outbox. A group may host several contexts (one
socket each, `<sockets>/<context>.sock`). It builds them with the shop's one wiring, calls the
contexts it does not host through `variants.peers` (orders reads the catalog from the shared
segment), runs their background jobs, and exchanges nothing but messages: it
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

from variants import faults
from variants.multiprocess.config import FamilyConfig
from variants.multiprocess.ipc import IpcServer
from variants.peers import Endpoints, connect, socket_path
from variants.placement import Placement
from variants.rpc import Codec, Dispatcher
from workloads.shop.catalog_snapshot import Buffer, SnapshotCatalog
from workloads.shop.config import ShopConfig
from workloads.shop.wiring import build

log = logging.getLogger("archlab.multiprocess.auxiliary")

HANDLED = frozenset({signal.SIGUSR2, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
STOP_GRACE_S = 10.0
EXIT_QUICKDIE = 2


def run(
    *,
    role: str,
    postmaster_pid: int,
    state_dir: Path,
    catalog: Buffer | None,
    placement: Placement,
    endpoints: Endpoints,
    config: FamilyConfig,
    shop: ShopConfig,
    ready: Callable[[], None],
) -> int:
    """Serve the contexts of group `role` until the postmaster stops it; the exit code."""
    # Blocked in every thread (process.fork blocks them before the first thread starts),
    # so they wait for sigtimedwait() below instead of hitting any thread's default action.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    contexts = placement.groups[role].contexts
    peers = connect(placement, role, endpoints, pool_size=config.threads)
    reads_catalog = catalog is not None and "catalog" not in contexts
    # The shared catalog has no process of its own: its callee's side is this reader.
    wrap = faults.arm(role, (*contexts, *(("catalog",) if reads_catalog else ())))
    proxies = dict(peers.proxies)
    if reads_catalog:
        assert catalog is not None
        proxies["catalog"] = wrap("catalog", SnapshotCatalog(catalog))
    hosted = build(contexts, state_dir, proxies, shop, wrap)
    socket_dir = endpoints.socket_dir or state_dir
    servers = [
        IpcServer(
            socket_path(socket_dir, c), Dispatcher(c, hosted.served[c], Codec("msgpack")).handle
        )
        for c in contexts
    ]
    for server in servers:
        server.start()
    hosted.start_jobs()
    log.info("%s ready on %s", role, ", ".join(str(s.path) for s in servers))
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
    log.info("%s stopping: %d call(s) in flight", role, sum(s.inflight for s in servers))
    for server in servers:
        if not server.stop(STOP_GRACE_S):
            log.warning("%s: calls still running after %.0f s", role, STOP_GRACE_S)
    hosted.close()
    peers.close()
    return 0
