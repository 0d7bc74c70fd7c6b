"""The scenario catalogue: how many shoppers, how they pace themselves, what they do.

A scenario is data, read by `workloads/locustfile.py` (task weights, think time, load shape) and
by the harness (default users and spawn rate, recorded in meta.json). Few users with think time
measure service time; many users without it measure queueing (see DESIGN.md, "Measurement
pitfalls").

Load shapes (`loop` and `steps`):

- closed loop (`loop="closed"`): `users` shoppers, each waits for its answer, thinks
  (`wait_time`), then sends the next request. Offered load falls when the server slows down.
- open loop (`loop="open"`): each user is an arrival stream of `rate_per_user` requests per
  second at fixed intervals, sent whether or not earlier ones were answered (at most
  `max_in_flight` outstanding per stream). Each request records its *intended* start, so latency
  can be reported with and without coordinated-omission correction.
- step ramp (`steps`): a locust LoadTestShape holds `steps[i]` users for `step_s` seconds each;
  with the open loop that is a staircase of arrival rates, to find the knee of the latency curve.

A scenario may set a client timeout (`timeout_s`, locust's 60 s otherwise). The fault scenarios
are open loops at `FAULT_RATE` with `FAULT_TIMEOUT_S`: during an outage every intended request is
sent on time and ends as an error or a late answer, none waits unseen in a closed loop's stalled
users (coordinated omission: the seconds after a kill would hold no request at all). Their
closed-loop forms stay available as `<name>-closed` (`closed_twin`), for comparison.

The harness resolves a scenario plus command-line overrides into a `LoadSpec` and hands it to
the locustfile as JSON in `ARCHLAB_LOAD`. A scenario's `shop` is the domain's configuration the
variant is started with (`ShopConfig`, passed by `variants/cli.py` as command-line flags).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import msgspec

from workloads.shop.config import ShopConfig

# The shopper's tasks, as named in the locustfile.
TASKS = ("search", "view", "recommend", "order", "read_order")
LOOPS = ("closed", "open")
STEADY_MIX = {"search": 3, "view": 5, "recommend": 2, "order": 1, "read_order": 1}
FAULT_KINDS = ("crash", "leak", "hog", "gc", "slow")  # injected by variants/faults.py

# The locustfile's environment (set by the harness; a person running locust by hand needs none).
ENV_LOAD = "ARCHLAB_LOAD"  # the resolved LoadSpec as JSON
ENV_SCENARIO = "ARCHLAB_SCENARIO"  # else: a scenario name, with its defaults
ENV_SEED = "ARCHLAB_SEED"  # seeds each user's random choices (the traffic mix, not the timing)
# What a shopper adds to a request's locust `context`, for whoever listens to request events.
CONTEXT_INTENDED = "intended_time"  # open loop: when the schedule wanted it sent (epoch s)
CONTEXT_ACKNOWLEDGED = "acknowledged"  # an order answered 201: (idempotency key, order id)
LOCUST_TIMEOUT_S = 60.0  # FastHttpUser's network and connection timeouts, unless a load sets one
# a load with its own timeout gets a pool of at least margin x rate x timeout per stream: every
# request of an outage times out before the pool could fill, so the schedule never waits on it
IN_FLIGHT_MARGIN = 2.0


@dataclass(frozen=True)
class FaultSpec:
    """One fault of a scenario's plan, injected by the harness (archlab/run/fault_schedule.py).

    `at` and `duration` are fractions of the load's duration, so a plan fits a 10 s test run
    and a 10 min measurement alike; a crash has no duration. `params` override the kind's
    defaults (variants/faults.py DEFAULT_PARAMS).
    """

    kind: str
    component: str
    at: float
    duration: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if not 0 <= self.at < 1:
            raise ValueError(f"fault start {self.at} must be a fraction of the run in [0, 1)")
        if self.kind == "crash" and self.duration is not None:
            raise ValueError("a crash has no duration")
        if self.kind != "crash" and (self.duration is None or not 0 < self.duration <= 1):
            raise ValueError(f"a {self.kind} fault needs a duration in (0, 1]")


@dataclass(frozen=True)
class Scenario:
    """One load shape. `wait_time` is the think time range in seconds between a user's tasks.

    `timeout_s`: the client's timeout per request (connect, and each read), so that an outage
    turns into errors within it; None keeps locust's `LOCUST_TIMEOUT_S`, and an open loop's
    `max_in_flight` as given (the schedule waits when the pool is full).
    """

    name: str
    description: str
    weights: Mapping[str, int]
    users: int
    spawn_rate: float
    wait_time: tuple[float, float]
    loop: str = "closed"
    rate_per_user: float = 0.0  # open loop: arrivals per second of each user
    steps: tuple[int, ...] = ()  # step ramp: users during each step; () = constant `users`
    step_s: float = 10.0
    max_in_flight: int = 100  # open loop: outstanding requests per user, then it waits
    timeout_s: float | None = None
    faults: tuple[FaultSpec, ...] = ()  # the fault plan (archlab/run/fault_schedule.py)
    shop: ShopConfig = field(default_factory=ShopConfig)  # the domain's knobs for the variant

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(TASKS)
        if unknown:
            raise ValueError(f"scenario {self.name}: unknown tasks {sorted(unknown)}")
        if not any(w > 0 for w in self.weights.values()):
            raise ValueError(f"scenario {self.name}: no task has a positive weight")
        lo, hi = self.wait_time
        if not 0 <= lo <= hi:
            raise ValueError(f"scenario {self.name}: bad wait_time {self.wait_time}")
        if self.loop not in LOOPS:
            raise ValueError(f"scenario {self.name}: loop must be one of {LOOPS}")
        if self.loop == "open" and self.rate_per_user <= 0:
            raise ValueError(f"scenario {self.name}: an open loop needs rate_per_user > 0")
        if any(s < 1 for s in self.steps) or self.step_s <= 0 or self.max_in_flight < 1:
            raise ValueError(f"scenario {self.name}: bad steps/step_s/max_in_flight")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"scenario {self.name}: timeout_s must be positive")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters, for meta.json."""
        data = asdict(self)
        data["weights"] = dict(self.weights)
        data["wait_time"] = list(self.wait_time)
        data["steps"] = list(self.steps)
        data["faults"] = [{**asdict(f), "params": dict(f.params)} for f in self.faults]
        data["shop"] = msgspec.to_builtins(self.shop)
        return data


@dataclass(frozen=True)
class LoadSpec:
    """The load the locustfile generates: a scenario resolved with the run's overrides."""

    scenario: str
    loop: str = "closed"
    users: int = 1
    spawn_rate: float = 1.0
    wait_time: tuple[float, float] = (0.0, 0.0)
    weights: Mapping[str, int] = field(default_factory=lambda: dict(STEADY_MIX))
    rate_per_user: float = 0.0
    steps: tuple[int, ...] = ()
    step_s: float = 10.0
    max_in_flight: int = 100
    # open loop: how the sender meets each intended start (workloads/locustfile.py, `on_time`).
    # gevent's timers wake up to ~1 ms late (libev's epoll timeout is in whole milliseconds, and
    # an idle vCPU takes a while to wake), so an arrival is spawned `lead_ms` early, sleeps
    # until `spin_ms` before its time and spins the rest, yielding to the hub between checks.
    lead_ms: float = 3.0
    spin_ms: float = 1.5
    timeout_s: float = LOCUST_TIMEOUT_S  # the client's connect and read timeout per request

    @property
    def offered_rps(self) -> float | None:
        """Open loop without a ramp: the total arrival rate; else None."""
        if self.loop != "open" or self.steps:
            return None
        return self.users * self.rate_per_user

    @property
    def ramp_s(self) -> int | None:
        """A ramp's length (every step once); None for a constant load."""
        return math.ceil(len(self.steps) * self.step_s) if self.steps else None

    def step_offered(self) -> list[dict[str, float]]:
        """Per ramp step: its start offset (s), users and (open loop) offered rate."""
        return [
            {
                "offset_s": i * self.step_s,
                "users": users,
                "offered_rps": users * self.rate_per_user if self.loop == "open" else 0.0,
            }
            for i, users in enumerate(self.steps)
        ]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["weights"] = dict(self.weights)
        data["wait_time"] = list(self.wait_time)
        data["steps"] = list(self.steps)
        data["offered_rps"] = self.offered_rps
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> LoadSpec:
        data = json.loads(text)
        data.pop("offered_rps", None)
        data["wait_time"] = tuple(data["wait_time"])
        data["steps"] = tuple(data["steps"])
        return cls(**data)


def resolve_load(
    scenario: Scenario,
    *,
    users: int | None = None,
    spawn_rate: float | None = None,
    rate: float | None = None,
    max_in_flight: int | None = None,
    steps: tuple[int, ...] | None = None,
    step_s: float | None = None,
    generator_processes: int = 1,
) -> LoadSpec:
    """The scenario with the run's overrides.

    `rate` (requests/s) turns any scenario into an open loop at that total rate, spread over
    `users` arrival streams (default: one per generator process, so each locust worker gets
    one). An open-loop scenario without `rate` keeps its total rate (users x rate_per_user)
    spread over at least one stream per generator process. `steps` (users per step) and
    `step_s` replace the scenario's ramp: a closed-loop scenario ramps users, an open-loop one
    arrival streams of `rate_per_user` each. A scenario with a client timeout keeps it under
    every override, and an open loop's pool then holds at least IN_FLIGHT_MARGIN x a stream's
    rate x the timeout (unless `max_in_flight` is given).
    """
    steps = tuple(steps) if steps is not None else scenario.steps
    step_s = step_s if step_s is not None else scenario.step_s
    if any(n < 1 for n in steps) or step_s <= 0:
        raise ValueError("ramp steps must be positive user counts and step_s positive")
    loop = "open" if rate is not None else scenario.loop
    if rate is not None and rate <= 0:
        raise ValueError("--rate must be positive")
    if rate is not None and steps:
        raise ValueError("--rate sets a constant arrival rate; it cannot be combined with a ramp")
    if users is not None and users < 1:
        raise ValueError("--users must be at least 1")
    per_user = scenario.rate_per_user
    streams = users if users is not None else scenario.users
    if loop == "open" and not steps:
        total = rate if rate is not None else scenario.users * scenario.rate_per_user
        if users is None:
            streams = (
                generator_processes
                if rate is not None
                else max(scenario.users, generator_processes)
            )
        per_user = total / streams
    if steps:
        streams = steps[0]
    if max_in_flight is None:
        max_in_flight = scenario.max_in_flight
        if loop == "open" and scenario.timeout_s is not None:
            needed = math.ceil(IN_FLIGHT_MARGIN * per_user * scenario.timeout_s)
            max_in_flight = max(max_in_flight, needed)
    return LoadSpec(
        scenario=scenario.name,
        loop=loop,
        users=streams,
        spawn_rate=spawn_rate if spawn_rate is not None else scenario.spawn_rate,
        wait_time=scenario.wait_time,
        weights=dict(scenario.weights),
        rate_per_user=per_user,
        steps=steps,
        step_s=step_s,
        max_in_flight=max_in_flight,
        timeout_s=scenario.timeout_s if scenario.timeout_s is not None else LOCUST_TIMEOUT_S,
    )


_OPEN_LOOP = dict(
    weights=STEADY_MIX,
    users=1,
    spawn_rate=10.0,
    wait_time=(0.0, 0.0),
    loop="open",
    rate_per_user=100.0,
)  # one arrival stream at a fixed rate (`--rate` sets it)
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="steady",
            description=(
                "a few shoppers with think time, well below saturation: latency shows service "
                "time, not queueing"
            ),
            weights=STEADY_MIX,
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
            weights=STEADY_MIX,
            users=50,
            spawn_rate=25.0,
            wait_time=(0.0, 0.0),
        ),
        Scenario(
            name="open",
            description=(
                "open loop at a fixed arrival rate (100 requests/s unless --rate): latency is "
                "reported as observed and corrected for coordinated omission"
            ),
            **_OPEN_LOOP,  # type: ignore[arg-type]
        ),
        Scenario(
            name="rebuilding",
            description=(
                "open loop at a fixed arrival rate (100 requests/s unless --rate) with the "
                "recommendation model rebuilt every 10 s instead of every 60 s: a run of half a "
                "minute sees a process's memory before and after its rebuilds"
            ),
            **_OPEN_LOOP,  # type: ignore[arg-type]
            shop=ShopConfig(rebuild_interval_s=10.0),
        ),
        Scenario(
            name="ramp",
            description=(
                "open-loop step ramp, 50 requests/s per step up to 800/s (10 s per step): "
                "finds the knee of the latency curve"
            ),
            weights=STEADY_MIX,
            users=1,
            spawn_rate=100.0,
            wait_time=(0.0, 0.0),
            loop="open",
            rate_per_user=50.0,
            steps=(1, 2, 4, 6, 8, 10, 12, 16),
            step_s=10.0,
        ),
    )
}

# requests/s: what remedies and the migration path run these at (the closed twin offers ~150/s
# to a healthy shop on 2 CPUs; its rate falls with the server, this one does not)
FAULT_RATE = 100.0
FAULT_TIMEOUT_S = 2.0  # a request of an outage is an error within this, not a silent wait
CLOSED_SUFFIX = "-closed"
_FAULTY = dict(
    weights=STEADY_MIX,
    users=1,
    spawn_rate=10.0,
    wait_time=(0.0, 0.0),
    loop="open",
    rate_per_user=FAULT_RATE,
    timeout_s=FAULT_TIMEOUT_S,
)  # every endpoint has requests in every second, outage or not
_FAULTY_CLOSED = dict(
    users=20,
    spawn_rate=10.0,
    wait_time=(0.05, 0.2),
    loop="closed",
    rate_per_user=0.0,
    timeout_s=None,
)  # steady-like, a little busier: the fault scenarios before they were open loops


def closed_twin(scenario: Scenario) -> Scenario:
    """The scenario's faults and shop under the closed loop the fault scenarios used to have:
    its users stall with the server, so an outage shows fewer requests rather than errors."""
    return replace(
        scenario,
        name=scenario.name + CLOSED_SUFFIX,
        description=f"{scenario.description}; closed loop of 20 users (think 0.05-0.2 s)",
        **_FAULTY_CLOSED,  # type: ignore[arg-type]
    )


_FAULT_PLANS = (
    Scenario(
        name="gc-pressure",
        description=(
            "recommendation model rebuilt every second under load, plus a gc fault (churn + "
            "full collections) in recommendations for the middle 40% of the run"
        ),
        faults=(FaultSpec("gc", "recommendations", at=0.3, duration=0.4),),
        shop=ShopConfig(rebuild_interval_s=1.0),
        **_FAULTY,  # type: ignore[arg-type]
    ),
    Scenario(
        name="cpu-hog",
        description="a GIL/CPU hog (80% duty) in recommendations for the middle 40% of the run",
        faults=(FaultSpec("hog", "recommendations", at=0.3, duration=0.4),),
        **_FAULTY,  # type: ignore[arg-type]
    ),
    Scenario(
        name="crash-recommendations",
        description="SIGKILL of the process(es) hosting recommendations at 40% of the run",
        faults=(FaultSpec("crash", "recommendations", at=0.4),),
        **_FAULTY,  # type: ignore[arg-type]
    ),
    Scenario(
        name="crash-orders",
        description="SIGKILL of the process(es) hosting orders at 40% of the run",
        faults=(FaultSpec("crash", "orders", at=0.4),),
        **_FAULTY,  # type: ignore[arg-type]
    ),
    Scenario(
        name="leak-recommendations",
        description=(
            "recommendations leaks 50 MB/s from 30% of the run until it has kept 200 MB, "
            "then dies as an OOM kill would (SIGKILL)"
        ),
        faults=(
            FaultSpec(
                "leak",
                "recommendations",
                at=0.3,
                duration=0.7,
                params={"rate_mb_s": 50.0, "limit_mb": 200.0},
            ),
        ),
        **_FAULTY,  # type: ignore[arg-type]
    ),
    Scenario(
        name="slow-notifications",
        description="every call into notifications takes 200 ms more, middle 40% of the run",
        faults=(
            FaultSpec("slow", "notifications", at=0.3, duration=0.4, params={"delay_ms": 200}),
        ),
        **_FAULTY,  # type: ignore[arg-type]
    ),
)
FAULT_SCENARIOS = tuple(s.name for s in _FAULT_PLANS)  # open loop; each has a closed twin
for _plan in _FAULT_PLANS:
    SCENARIOS[_plan.name] = replace(
        _plan,
        description=(
            f"{_plan.description}; open loop at {FAULT_RATE:g} requests/s, "
            f"{FAULT_TIMEOUT_S:g} s client timeout"
        ),
    )
    SCENARIOS[_plan.name + CLOSED_SUFFIX] = closed_twin(_plan)


def get_scenario(name: str) -> Scenario:
    """Look up a scenario by name, with the known names in the error."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
