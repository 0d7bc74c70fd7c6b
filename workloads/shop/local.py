"""All five contexts in one process, wired by method calls: the monolith's shop.

The wiring itself is `workloads.shop.wiring.build`, which every deployer uses; this is the
case where one process hosts everything and has no peers.
"""

from __future__ import annotations

from pathlib import Path

from workloads.shop.config import ShopConfig
from workloads.shop.dataset import CONTEXTS
from workloads.shop.wiring import Wrap, build, unwrapped


class LocalShop:
    def __init__(
        self, state_dir: Path, config: ShopConfig | None = None, wrap: Wrap = unwrapped
    ) -> None:
        self.config = config or ShopConfig()
        self.hosted = build(CONTEXTS, Path(state_dir), {}, self.config, wrap)
        self.shop = self.hosted.shop()

    def start_jobs(self) -> None:
        self.hosted.start_jobs()

    def health(self) -> dict[str, str]:
        return self.hosted.health()

    def close(self) -> None:
        self.hosted.close()
