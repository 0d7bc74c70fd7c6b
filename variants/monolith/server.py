"""Host the shared edge API and all five contexts in one gunicorn worker with N threads.

One gunicorn worker with N threads is the single-process, many-threads design; `--workers
N` runs N such replicas on one listening socket (the replicated-monolith baseline), each
with its own copy of every context (the recommendation model included) over the same
database files. The app is built inside each worker after fork, so each replica's
background threads, connections and heap are its own.

`preload` builds the contexts' read-only state (`wiring.preload`: the catalog snapshot, the
recommendation model) once in the master, before the workers are forked, so they inherit it
copy-on-write; each worker still builds its contexts, opens its connections and starts its
jobs itself. `fork_gc` (`variants.forkgc`) is what the collector does around each fork: the
master's side in gunicorn's `pre_fork` hook, the worker's in `post_fork`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from variants import faults, forkgc, telemetry
from variants.edge import servers
from variants.edge.app import create_app
from variants.lifecycle import LIFECYCLE_FILE
from variants.lifecycle import record as record_lifecycle
from variants.placement import Placement
from workloads.shop.config import ShopConfig
from workloads.shop.dataset import CONTEXTS
from workloads.shop.wiring import Hosted, Preloaded, build, preload

log = logging.getLogger("archlab.monolith")


class MonolithServer(BaseApplication):
    def __init__(
        self,
        *,
        port: int,
        workers: int,
        threads: int,
        state_dir: Path,
        config: ShopConfig,
        placement: Placement,
        fork_gc: str = forkgc.AS_IS,
        preload: bool = False,
    ) -> None:
        self.placement = placement
        self.fork_gc = forkgc.check(fork_gc)
        self.preload = preload
        self.preloaded: Preloaded | None = None
        self.role = placement.edge
        self.options: dict[str, Any] = {
            "bind": f"127.0.0.1:{port}",
            "workers": workers,
            **servers.settings(placement.server),  # the worker class, the edge limits
            "threads": threads,
            "timeout": 300,
            "graceful_timeout": 15,
            "keepalive": 30,
            "backlog": 2048,
            "proc_name": telemetry.process_title(placement.edge),
            "accesslog": None,
            "loglevel": "info",
            "worker_exit": _close_shop,
            "on_starting": self._master_start,
            "pre_fork": self._pre_fork,
            "post_fork": self._post_fork,
            "child_exit": self._child_exit,
            "control_socket_disable": True,  # one per user by default: parallel servers collide
        }
        self.state_dir = state_dir
        self.config = config
        self.lifecycle = state_dir / LIFECYCLE_FILE
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # older gunicorns lack some settings
                self.cfg.set(key, value)

    def load(self) -> Any:
        started = time.monotonic()
        telemetry.install(self.role)
        wrap = faults.arm(self.role, CONTEXTS)
        hosted = build(CONTEXTS, self.state_dir, {}, self.config, wrap, preloaded=self.preloaded)
        hosted.start_jobs()
        _HOSTED[os.getpid()] = hosted
        shop = hosted.shop()
        log.info("worker %d ready: %s", os.getpid(), shop.recommendations.stats)
        record_lifecycle(
            self.lifecycle,
            event="ready",
            role=self.role,
            pid=os.getpid(),
            seconds=round(time.monotonic() - started, 3),
        )
        return create_app(shop, self.placement.name, hosted.health)

    def _master_start(self, server: Any) -> None:
        telemetry.install(f"{self.role}-master")
        if self.preload:
            started = time.monotonic()
            self.preloaded = preload(CONTEXTS, self.state_dir)
            log.info("preloaded in the master in %.2f s", time.monotonic() - started)

    def _pre_fork(self, server: Any, worker: Any) -> None:
        forkgc.before_fork(self.fork_gc)

    def _post_fork(self, server: Any, worker: Any) -> None:
        forkgc.in_child(self.fork_gc)

    def _child_exit(self, server: Any, worker: Any) -> None:
        """In the master, after reaping a worker: a death, unless gunicorn itself is stopping."""
        if server.LISTENERS:
            # gunicorn restarts the worker itself; its exit status is not passed to this hook.
            record_lifecycle(
                self.lifecycle, event="exit", role=self.role, pid=worker.pid, expected=False
            )


_HOSTED: dict[int, Hosted] = {}


def _close_shop(server: Any, worker: Any) -> None:
    hosted = _HOSTED.pop(os.getpid(), None)
    if hosted is not None:
        hosted.close()
