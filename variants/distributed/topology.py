"""The services of a launcher placement: what the local launcher and the deploy generator run.

A placement (`variants/placement.py`) says which contexts share a process and how callers
reach each group; the distributed deployer runs the placements whose every group but the
edge is `http` and whose edge hosts no context (`Placement.supervisor == "launcher"`).
`from_placement` turns one into a `Topology`: a `Service` per group, the edge group being the
gateway, so the launcher, compose and Kubernetes read the same file and cannot disagree. The
placement validates the shape; this module only refuses what a service cannot run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from variants import placement as placements
from variants.placement import Deployment, Placement, PlacementError

DEFAULT_PLACEMENT = "distributed"

_POSITIVE = (
    "cpu_m",
    "memory_mib",
    "cpu_limit_m",
    "memory_limit_mib",
    "timeout_s",
    "connect_timeout_s",
    "attempts",
    "breaker_failures",
    "breaker_reset_s",
)


class TopologyError(ValueError):
    """The placement cannot run as services; the message is one line naming the field."""


@dataclass(frozen=True)
class Service:
    """One group of the placement as a service, with the group's defaults filled in."""

    name: str
    context: str
    """The context it hosts; "" for the gateway, which serves the edge API."""
    depends_on: tuple[str, ...]
    replicas: int
    scalable: bool
    stateful: bool
    public: bool
    cpu_m: int
    memory_mib: int
    cpu_limit_m: int
    memory_limit_mib: int
    timeout_s: float
    connect_timeout_s: float
    attempts: int
    backoff_s: float
    breaker_failures: int
    breaker_reset_s: float

    @property
    def is_gateway(self) -> bool:
        return self.context == ""


@dataclass(frozen=True)
class Topology:
    """The placement's services, in start order (the gateway last)."""

    placement: Placement
    deployment: Deployment
    services: dict[str, Service]

    @property
    def gateway(self) -> Service:
        return next(s for s in self.services.values() if s.is_gateway)

    def levels(self) -> list[list[str]]:
        """Services grouped so that each group depends only on earlier groups (start order)."""
        done: set[str] = set()
        levels: list[list[str]] = []
        while len(done) < len(self.services):
            level = sorted(
                name
                for name, svc in self.services.items()
                if name not in done and set(svc.depends_on) <= done
            )
            if not level:
                raise TopologyError(f"dependency cycle among {sorted(set(self.services) - done)}")
            levels.append(level)
            done.update(level)
        return levels


def from_placement(p: Placement) -> Topology:
    """A service per group of `p`; TopologyError unless the launcher supervises `p`."""
    if p.supervisor != "launcher":
        raise TopologyError(
            f"placement {p.name} is run by the {p.supervisor} deployer, not the distributed "
            "launcher (which needs every group but the edge to be http, and an edge that "
            "hosts no context)"
        )
    services: dict[str, Service] = {}
    for name in (*p.start_order, p.edge):
        g = p.groups[name]
        where = f"groups.{name}"
        if not isinstance(g.replicas, int):
            raise TopologyError(f'{where}.replicas: "cpus" is for the process family; say a number')
        for key in _POSITIVE:
            if getattr(g, key) <= 0:
                raise TopologyError(f"{where}.{key} must be positive, got {getattr(g, key)!r}")
        if g.backoff_s < 0:
            raise TopologyError(f"{where}.backoff_s must not be negative, got {g.backoff_s!r}")
        services[name] = Service(
            name=name,
            context="" if g.edge else g.contexts[0],
            depends_on=p.depends_on(name),
            replicas=g.replicas,
            scalable=g.scalable,
            stateful=g.stateful,
            public=g.edge,
            cpu_m=g.cpu_m,
            memory_mib=g.memory_mib,
            cpu_limit_m=g.cpu_limit_m,
            memory_limit_mib=g.memory_limit_mib,
            timeout_s=g.timeout_s,
            connect_timeout_s=g.connect_timeout_s,
            attempts=g.attempts,
            backoff_s=g.backoff_s,
            breaker_failures=g.breaker_failures,
            breaker_reset_s=g.breaker_reset_s,
        )
    return Topology(p, p.deployment, services)


def load(name_or_path: str | Path = DEFAULT_PLACEMENT) -> Topology:
    """The topology of a named placement or a placement file; TopologyError if it is bad."""
    try:
        p = placements.load(name_or_path)
    except PlacementError as exc:
        raise TopologyError(str(exc)) from None
    try:
        return from_placement(p)
    except TopologyError as exc:
        raise TopologyError(f"{p.path}: {exc}") from None
