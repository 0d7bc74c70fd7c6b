"""All five contexts in one process, wired by method calls.

The monolith is exactly this; other variants use the same classes one or a few at a
time inside their own processes and bind the rest to remote proxies.
"""

from __future__ import annotations

from pathlib import Path

from workloads.shop.catalog_snapshot import open_catalog
from workloads.shop.config import ShopConfig
from workloads.shop.dataset import state_paths
from workloads.shop.interfaces import Shop
from workloads.shop.inventory import Inventory
from workloads.shop.jobs import Periodic, model_rebuilder, notification_drainer
from workloads.shop.notifications import Notifications
from workloads.shop.orders import Orders
from workloads.shop.recommendations import Recommendations


class LocalShop:
    def __init__(self, state_dir: Path, config: ShopConfig | None = None) -> None:
        self.config = config or ShopConfig()
        paths = state_paths(Path(state_dir))
        catalog = open_catalog(paths["catalog"])
        inventory = Inventory(paths["inventory"])
        orders = Orders(paths["orders"], catalog, inventory)
        recommendations = Recommendations(paths["recommendations"], orders)
        notifications = Notifications(
            paths["notifications"], orders, sink_latency_s=self.config.sink_latency_ms / 1000
        )
        self.shop = Shop(catalog, inventory, orders, recommendations, notifications)
        self._contexts = (catalog, inventory, orders, recommendations, notifications)
        self._jobs: list[Periodic] = []

    def start_jobs(self) -> None:
        jobs = [
            notification_drainer(self.shop.notifications, self.config),
            model_rebuilder(self.shop.recommendations, self.config),
        ]
        self._jobs = [j for j in jobs if j is not None]
        for job in self._jobs:
            job.start()

    def health(self) -> dict[str, str]:
        state = {name: "ok" for name in ("catalog", "inventory", "orders", "recommendations")}
        alive = all(j.is_alive() for j in self._jobs)
        state["notifications"] = "ok" if alive else "down"
        return state

    def close(self) -> None:
        for job in self._jobs:
            job.stop()
        for context in self._contexts:
            context.close()
