"""The one wiring of the shop: which context needs which, and how a set of them is built.

Every deployer builds the contexts a process hosts with `build`, handing it the peers that
live elsewhere (IPC or HTTP proxies, or the catalog read from shared memory) and a `wrap`
that every hosted context passes through before anything uses it — the fault controller's
wrapper, so a fault sits on the callee's side of every call, in-process calls included.

`preload` builds the read-only state of some contexts (the catalog snapshot, the
recommendation model) apart from the contexts themselves, holding no connection, thread or
open file: a prefork parent builds it once and each child builds its contexts from it
(`build(..., preloaded=...)`), opening its own connections and starting its own jobs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workloads.shop.catalog_snapshot import SnapshotCatalog, open_catalog
from workloads.shop.config import ShopConfig
from workloads.shop.dataset import CONTEXTS, state_paths
from workloads.shop.interfaces import Shop
from workloads.shop.inventory import Inventory
from workloads.shop.jobs import Periodic, model_rebuilder, notification_drainer
from workloads.shop.notifications import Notifications
from workloads.shop.orders import Orders
from workloads.shop.recommendations import Recommendations, Trained, train

NEEDS: dict[str, tuple[str, ...]] = {
    "catalog": (),
    "inventory": (),
    "orders": ("catalog", "inventory"),
    "recommendations": ("orders",),
    "notifications": ("orders",),
}
"""What each context's class is constructed with: its peers, whatever their transport."""
assert tuple(NEEDS) == CONTEXTS

Wrap = Callable[[str, Any], Any]


def unwrapped(name: str, impl: Any) -> Any:
    return impl


def in_dependency_order(contexts: Iterable[str]) -> list[str]:
    """`contexts` sorted so that each comes after every context it needs."""
    wanted = set(contexts)
    unknown = wanted - set(CONTEXTS)
    if unknown:
        raise ValueError(
            f"unknown context(s) {sorted(unknown)}; contexts are {', '.join(CONTEXTS)}"
        )
    return [c for c in CONTEXTS if c in wanted]  # CONTEXTS is already in dependency order


PRELOADABLE = ("catalog", "recommendations")
"""The contexts with read-only state that `preload` can build before a fork."""


@dataclass(frozen=True)
class Preloaded:
    """Read-only state of some contexts, built by `preload` before any context exists."""

    catalog: SnapshotCatalog | None = None
    recommendations: Trained | None = None


def preload(contexts: Iterable[str], state_dir: Path) -> Preloaded:
    """The read-only state of those of `contexts` that have one (PRELOADABLE), built from
    their databases in `state_dir`; every connection it opened is closed again."""
    wanted = set(in_dependency_order(contexts))
    paths = state_paths(Path(state_dir))
    return Preloaded(
        catalog=open_catalog(paths["catalog"]) if "catalog" in wanted else None,
        recommendations=train(paths["recommendations"]) if "recommendations" in wanted else None,
    )


def _construct(
    name: str, path: Path, peers: Mapping[str, Any], config: ShopConfig, preloaded: Preloaded
) -> Any:
    if name == "catalog":
        return open_catalog(path)
    if name == "inventory":
        return Inventory(path)
    if name == "orders":
        return Orders(path, peers["catalog"], peers["inventory"])
    if name == "recommendations":
        return Recommendations(path, peers["orders"], preloaded.recommendations)
    return Notifications(path, peers["orders"], sink_latency_s=config.sink_latency_ms / 1000)


def _job(name: str, served: Any, config: ShopConfig) -> Periodic | None:
    if name == "recommendations":
        return model_rebuilder(served, config)
    if name == "notifications":
        return notification_drainer(served, config)
    return None


@dataclass
class Hosted:
    """The contexts one process hosts (as served, i.e. wrapped), their jobs, their peers."""

    served: dict[str, Any]
    peers: dict[str, Any]
    jobs: dict[str, Periodic] = field(default_factory=dict)
    _owned: list[Any] = field(default_factory=list)

    def start_jobs(self) -> None:
        for job in self.jobs.values():
            job.start()

    def shop(self) -> Shop:
        """All five contexts as the edge API sees them: hosted ones first, then peers."""
        return Shop(**{c: self.served.get(c, self.peers.get(c)) for c in CONTEXTS})

    def health(self) -> dict[str, str]:
        """Each hosted context: "ok", or "down" once its background job has died."""
        state = {}
        for name in self.served:
            job = self.jobs.get(name)
            state[name] = "down" if job is not None and job.ident and not job.is_alive() else "ok"
        return state

    def close(self) -> None:
        for job in self.jobs.values():
            job.stop()
        for impl in reversed(self._owned):
            with contextlib.suppress(Exception):
                impl.close()


def build(
    contexts: Iterable[str],
    state_dir: Path,
    peers: Mapping[str, Any],
    config: ShopConfig,
    wrap: Wrap = unwrapped,
    catalog: Any = None,
    preloaded: Preloaded | None = None,
) -> Hosted:
    """Build `contexts` over their databases in `state_dir`, each wired to the others.

    A needed context is the hosted one when this process hosts it, else `peers[name]`.
    `catalog`, when given, is the hosted catalog object itself (a snapshot mapped from
    shared memory) instead of one opened from catalog.db, and is not closed by `Hosted.close`;
    so is `preloaded.catalog`. The recommendations start from `preloaded.recommendations`
    instead of reading their store. Jobs are not started.
    """
    preloaded = preloaded or Preloaded()
    if catalog is None:
        catalog = preloaded.catalog
    paths = state_paths(Path(state_dir))
    hosted = Hosted(served={}, peers=dict(peers))
    for name in in_dependency_order(contexts):
        wired: dict[str, Any] = {}
        for need in NEEDS[name]:
            found = hosted.served.get(need, peers.get(need))
            if found is None:
                raise ValueError(f"{name} needs {need}, which is neither hosted nor a peer here")
            wired[need] = found
        if name == "catalog" and catalog is not None:
            impl = catalog
        else:
            impl = _construct(name, paths[name], wired, config, preloaded)
            hosted._owned.append(impl)
        hosted.served[name] = served = wrap(name, impl)
        job = _job(name, served, config)
        if job is not None:
            hosted.jobs[name] = job
    return hosted
