"""The scenario catalogue: how many shoppers, how they pace themselves, what they do.

A scenario is data, read by `workloads/locustfile.py` (task weights, think time) and by the
harness (default users and spawn rate, recorded in meta.json). Few users with think time measure
service time; many users without it measure queueing (see DESIGN.md, "Measurement pitfalls").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

# The shopper's tasks, as named in the locustfile.
TASKS = ("search", "view", "recommend", "order", "read_order")


@dataclass(frozen=True)
class Scenario:
    """One load shape. `wait_time` is the think time range in seconds between a user's tasks."""

    name: str
    description: str
    weights: Mapping[str, int]
    users: int
    spawn_rate: float
    wait_time: tuple[float, float]

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(TASKS)
        if unknown:
            raise ValueError(f"scenario {self.name}: unknown tasks {sorted(unknown)}")
        if not any(w > 0 for w in self.weights.values()):
            raise ValueError(f"scenario {self.name}: no task has a positive weight")
        lo, hi = self.wait_time
        if not 0 <= lo <= hi:
            raise ValueError(f"scenario {self.name}: bad wait_time {self.wait_time}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters, for meta.json."""
        data = asdict(self)
        data["weights"] = dict(self.weights)
        data["wait_time"] = list(self.wait_time)
        return data


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="steady",
            description=(
                "a few shoppers with think time, well below saturation: latency shows service "
                "time, not queueing"
            ),
            weights={"search": 3, "view": 5, "recommend": 2, "order": 1, "read_order": 1},
            users=20,
            spawn_rate=10.0,
            wait_time=(0.2, 1.0),
        ),
        Scenario(
            name="busy",
            description=(
                "closed loop without think time: latency is mostly queueing (p50 ~ users / "
                "throughput); shows where generator + system under test saturate together"
            ),
            weights={"search": 3, "view": 5, "recommend": 2, "order": 1, "read_order": 1},
            users=50,
            spawn_rate=25.0,
            wait_time=(0.0, 0.0),
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    """Look up a scenario by name, with the known names in the error."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
