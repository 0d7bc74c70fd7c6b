"""The shop's background jobs, run by whichever process hosts the context.

Notifications drain the outbox and recommendations rebuild their model on a timer.
A job that raises is logged and tried again at the next tick: a transient error in
a dependency must not stop the job for the rest of the run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from workloads.shop.config import ShopConfig
from workloads.shop.interfaces import NotificationsApi, RecommendationsApi

log = logging.getLogger(__name__)


class Periodic(threading.Thread):
    def __init__(self, name: str, interval_s: float, job: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.interval_s = interval_s
        self.job = job
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.job()
            except Exception:
                log.exception("background job %s failed; retrying next tick", self.name)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout)


def notification_drainer(notifications: NotificationsApi, config: ShopConfig) -> Periodic:
    return Periodic(
        "notifications-drain",
        config.drain_interval_s,
        lambda: notifications.drain(config.drain_batch),
    )


def model_rebuilder(recommendations: RecommendationsApi, config: ShopConfig) -> Periodic | None:
    if config.rebuild_interval_s <= 0:
        return None
    return Periodic("recommendations-rebuild", config.rebuild_interval_s, recommendations.rebuild)
