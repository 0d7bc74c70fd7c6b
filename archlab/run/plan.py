"""What one run is: the plan a caller writes (`RunPlan`) and what it resolves to (`Setup`).

The CLI and `reproduce` write plans; `resolve` turns one into everything the run needs to know
before it starts anything (the placement's knobs, the CPU split, the load, the durations), and
rejects a plan that cannot run with a one-line ValueError, so a mistake costs no server start.

A plan names a placement (`variant`: a named placement or a placement file) that the harness
starts, or a `target` URL: a deployment someone else started, which the harness only drives
and checks through its API (archlab/run/target.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archlab.deployers import VariantSpec, get_variant
from archlab.host.cpus import CpuPlan, plan_cpus
from archlab.host.machine import usable_cpus
from archlab.measure import integrity
from archlab.measure.profiler import ProfilePlan
from archlab.measure.sampler import MEMORY_INTERVAL_S
from archlab.run import target as targets
from variants.placement import Placement
from workloads.scenarios import LoadSpec, Scenario, get_scenario, resolve_load

DEFAULT_DURATION_S = 30
TARGET_NAME = "target"  # meta.json's `variant` of a --target run that names no placement


@dataclass(frozen=True)
class RunPlan:
    """What to run. None means: the scenario's default (or, for CPUs, the machine's)."""

    variant: str | None = None  # a named placement or a placement file (None: only a target)
    target: str | None = None  # drive this URL instead of starting `variant` (it only labels)
    scenario: str = "steady"
    duration_s: int | None = None  # None: a ramp's own length, else DEFAULT_DURATION_S
    size: str = "tiny"
    seed: int = 1
    users: int | None = None
    spawn_rate: float | None = None
    knobs: Mapping[str, int | str | None] = field(default_factory=dict)
    warmup_s: float | None = None  # None: the spawn ramp, ceil(users / spawn_rate); 0 for ramps
    run_id: str | None = None
    ready_timeout_s: float = 300.0
    keep_state: bool = True
    # load shape overrides
    rate: float | None = None  # open loop at this many requests/s
    max_in_flight: int | None = None
    steps: tuple[int, ...] | None = None
    step_s: float | None = None
    # generator hygiene
    processes: int | None = None
    sut_cpus: list[int] | None = None
    gen_cpus: list[int] | None = None
    pin: bool = True
    # instruments
    sample_interval_s: float = 1.0
    memory_interval_s: float = MEMORY_INTERVAL_S  # smaps_rollup (USS, PSS, swap) this often
    window_s: float | None = None
    gc_telemetry: bool = True
    process_sampler: bool = True  # False: no processes.csv (to measure the sampler's own cost)
    cpu_bracket: bool = False  # read the variant's CPU once at each end of the measured window
    profile: ProfilePlan | None = None
    # invariants: how long to wait for the notifications to drain the outbox after the load
    drain_timeout_s: float = integrity.DRAIN_TIMEOUT_S


@dataclass(frozen=True)
class Setup:
    """A plan resolved against the placement, the scenario and this machine's CPUs."""

    spec: VariantSpec | None  # None: a --target run that names no placement
    scenario: Scenario
    knobs: dict[str, int | str]
    cpus: CpuPlan
    load: LoadSpec
    duration_s: int
    warmup_s: float
    target: str | None = None  # the normalised --target URL

    @property
    def name(self) -> str:
        """The placement's name (meta.json's `variant`), or TARGET_NAME."""
        return self.spec.name if self.spec is not None else TARGET_NAME

    @property
    def placement(self) -> Placement | None:
        """The placement as it runs (its engines as the knobs chose them)."""
        if self.spec is None:
            return None
        return self.spec.placement_with(self.knobs, self.cpus.sut or usable_cpus())

    def describe_generator(self) -> str:
        """The load generator in one line, for meta.json and the terminal."""
        load = self.load
        if load.loop == "open":
            shape = f"open loop, {load.users} arrival stream(s) of {load.rate_per_user:g} req/s"
        else:
            shape = "closed loop"
        if load.steps:
            shape += f", step ramp {list(load.steps)} users x {load.step_s:g} s"
        n = self.cpus.processes
        procs_text = "1 process" if n == 1 else f"master + {n} workers"
        return f"locust FastHttpUser, {shape}, headless, {procs_text}"

    def telemetry(self, plan: RunPlan) -> dict[str, Any]:
        return {
            "gc": plan.gc_telemetry if self.target is None else None,  # None: not recorded
            "process_sampler": plan.process_sampler if self.target is None else None,
            "cpu_bracket": plan.cpu_bracket if self.target is None else None,
            "sample_interval_s": plan.sample_interval_s,
            "memory_interval_s": plan.memory_interval_s if plan.process_sampler else None,
            "window_s": plan.window_s,
        }


def resolve(plan: RunPlan) -> Setup:
    """Everything the run needs before it starts; ValueError for a plan that cannot run."""
    scenario = get_scenario(plan.scenario)
    target = None
    if plan.target is not None:
        target = targets.target_url(plan.target)
        spec = get_variant(plan.variant) if plan.variant is not None else None
        _refuse_with_target(plan, scenario)
        knobs: dict[str, int | str] = {}
        cpus = targets.plan_generator_cpus(
            usable_cpus(), target, generator=plan.gen_cpus, processes=plan.processes, pin=plan.pin
        )
    else:
        if plan.variant is None:
            raise ValueError(
                "name a placement: --placement NAME|FILE (`archlab placements` lists them), "
                "or --target URL"
            )
        spec = get_variant(plan.variant)
        knobs = spec.resolve_knobs(plan.knobs)
        cpus = plan_cpus(
            usable_cpus(),
            sut=plan.sut_cpus,
            generator=plan.gen_cpus,
            processes=plan.processes,
            pin=plan.pin,
        )
    load = resolve_load(
        scenario,
        users=plan.users,
        spawn_rate=plan.spawn_rate,
        rate=plan.rate,
        max_in_flight=plan.max_in_flight,
        steps=plan.steps,
        step_s=plan.step_s,
        generator_processes=cpus.processes,
    )
    if load.ramp_s is not None:
        if plan.duration_s is not None and plan.duration_s != load.ramp_s:
            raise ValueError(
                f"a step ramp lasts len(steps) x step_s = {load.ramp_s} s; drop --duration "
                "or change --steps/--step-s"
            )
        duration_s = load.ramp_s
    else:
        duration_s = plan.duration_s if plan.duration_s is not None else DEFAULT_DURATION_S
    if plan.warmup_s is not None:
        warmup_s = plan.warmup_s
    else:
        warmup_s = 0 if load.steps else math.ceil(load.users / load.spawn_rate)
    if warmup_s >= duration_s:
        raise ValueError(f"warm-up ({warmup_s} s) must be shorter than the run ({duration_s} s)")
    if plan.sample_interval_s <= 0:
        raise ValueError("--sample-interval must be positive")
    if plan.memory_interval_s < plan.sample_interval_s:
        raise ValueError("--memory-interval must be at least --sample-interval")
    return Setup(spec, scenario, knobs, cpus, load, duration_s, warmup_s, target)


def _refuse_with_target(plan: RunPlan, scenario: Scenario) -> None:
    """What needs the deployment's processes cannot run against a deployment it did not start."""
    if scenario.faults:
        raise ValueError(
            f"--target: scenario {scenario.name} injects faults, which needs the deployment's "
            "processes; pick a scenario without faults"
        )
    if plan.profile is not None:
        raise ValueError("--target: --profile needs the deployment's processes; drop it")
    if not plan.process_sampler or plan.cpu_bracket:
        raise ValueError(
            "--target: the process sampler and the CPU bracket read the deployment's processes"
        )
    given = sorted(k for k, v in plan.knobs.items() if v is not None)
    if given:
        raise ValueError(
            f"--target: knobs ({', '.join(given)}) configure a deployment the harness starts; "
            "set them where the target is deployed"
        )
    if plan.sut_cpus is not None:
        raise ValueError("--target: --sut-cpus pins a deployment the harness starts; drop it")


def parse_duration(text: str) -> int:
    """Seconds from '90', '90s', '2m', '1m30s' or '1h' (locust's --run-time style)."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or not match:
        raise ValueError(f"bad duration {text!r}; use e.g. 30s, 2m, 1m30s")
    h, m, s = (int(g) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s
