"""`archlab reproduce`: the scenario matrix behind every figure (resumable), then the figures.

A *scale* (`test`, `quick`, `scaling`, `full`) decides the dataset size, how long each run lasts
and how much of the matrix runs. The *headline* steps, per variant (the three compared
deployments): a latency ramp (open-loop staircase of arrival rates, all CPUs), the same ramp
with the server pinned to 1, 2, 4 ... CPUs (the scaling study, `scaling_cpus`; the monolith as
replicas, the family with as many backends), the fault scenarios (open loop; `gc-pressure` is
also the GC-stall run). They run `reps` times, round by round (A B C A B C ...). Then a
profiled run per variant; the HTTP server study (`archlab.analysis.servers`: each variant under
each server of the `server` knob at one open-loop rate, in interleaved rounds); the
copy-on-write study (`archlab.analysis.cow`: each prefork design at N children under each
`fork_gc` setting); the isolation remedies (`archlab.analysis.remedies`: each design with a
boundary under each remedy, in interleaved rounds); the migration path (each placement of
`variants.placement.PATH` at one open-loop rate, steady and under faults); the recommendation
engine in Python and in Rust in the same family (`archlab.analysis.polyglot`; skipped, saying
why, where the Rust engine is not built); and once the per-hop and the engine
micro-benchmarks and the generator's floor (`archlab.run.floor`). Smaller scales run slices
of the studies; `scaling` runs the headline ramps alone.

Everything goes into one *run set* folder (default `results/repro/<scale>/`):

    manifest.json     the scale, the machine, every step with its status and run folder
    runs/<tag>/       one run per step (results/README.md), named by the step's tag
    hop.json          `archlab bench hop` output
    floor.json        `archlab bench floor`: the generator against the bare endpoint
    readings.json     every headline number: median over repetitions, 95 % interval, n

A step whose run folder already holds a finished run of the same plan is skipped, so an
interrupted reproduction resumes where it stopped; a half-written run is moved to
`runs/.partial/` and done again. Figures go to `results/figures/`, executed notebooks to
`results/notebooks/` (both rendered from the run set).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archlab.analysis import cow, migration, polyglot, readings, remedies, servers
from archlab.analysis.runset import VARIANT_ORDER, load_runset, round_tag, split_round
from archlab.bench import engine as engine_bench
from archlab.bench import hop
from archlab.host.machine import machine_info, usable_cpus
from archlab.measure.profiler import ProfilePlan
from archlab.run import floor
from archlab.run.plan import RunPlan
from archlab.run.runner import execute
from archlab.rundir import (
    COMPLETED_STATUSES,
    ENGINE_BENCH,
    FLOOR,
    HOP,
    KEPT_STATUS,
    MANIFEST,
    PARTIAL_DIR,
    RUNS_DIR,
    SUMMARY,
    USABLE_STEP_STATUSES,
    iso,
    read_json,
    read_meta,
    results_root,
    utc_now,
    write_json,
)
from variants import native
from variants.placement import PATH
from workloads.scenarios import get_scenario

Echo = Callable[[str], None]
FLOOR_DIR = "floor"  # in a run set: the floor's raw runs
KILLING = ("crash", "leak")  # fault kinds that end in a dead process and a restart
HOP_S_PER_CALL = 0.009  # the hop micro-benchmark (every hop, floor, placement and round): estimate
MEMORY_STUDY_S = 1.0
"""The sampler's memory interval in the studies where memory over time is a measure (the
copy-on-write study's children, the polyglot engine's PSS): every tick, not every 5 s."""
RAMP_RATE_PER_STREAM = get_scenario("ramp").rate_per_user
PATH_RATE = 50.0
"""The migration path's offered load (requests/s, open loop), the same for every step and
scenario: well below every variant's knee in the reference latency ramps (`ramp.knee`, the
highest step that held the SLO: 300-600 req/s), where the distributed variant's p99 was 17 ms
and it used 28 % of a CPU, which leaves room on 2 CPUs for what the faults add (the model
rebuilt every second under gc-pressure, reloaded after a crash), so the path's runs measure the
placements, not a saturated machine."""


@dataclass(frozen=True)
class Scale:
    """How big and how long. The matrix itself does not change between scales."""

    name: str
    description: str
    size: str
    ramp_steps: tuple[int, ...]  # arrival streams per step, RAMP_RATE_PER_STREAM req/s each
    ramp_step_s: float
    fault_scenarios: tuple[str, ...]
    fault_s: int
    gc_s: int  # the gc-pressure run: also the GC-stall figures' data, so a little longer
    profile_s: int
    profile_rate: float  # open loop, requests/s, for the profiled run
    path_s: int  # each run of the migration path: steady and under each fault scenario
    reps: int = 1  # repetitions of every headline step (latency, scaling, faults), interleaved
    crash_s: int = 0  # at least this long when the fault kills a process: the restart shows
    scaling: bool = True  # ramps with the server on 1, 2, 4 ... CPUs (`scaling_cpus`)
    separate_profile_run: bool = True  # False: py-spy rides on the latency ramp (test only)
    hop_calls: int = 2000
    hop_rounds: int = 5  # `archlab bench hop`: every hop once per round
    expected_overhead_s: float = 12.0  # per run: start-up, model load, drain, summary
    path_rate: float = PATH_RATE
    path_steps: tuple[str, ...] = PATH  # the placements run (the test scale: a slice)
    path_scenarios: tuple[str, ...] = migration.FAULT_SCENARIOS
    polyglot_scenarios: tuple[str, ...] = polyglot.SCENARIOS
    engine_sizes: tuple[str, ...] = ("small", "full")  # `archlab bench engine`
    engine_rounds: int = 5
    # the copy-on-write study: every design of cow_designs with each N of cow_counts children
    # under every setting of cow_settings, open loop at cow_rate for cow_s in cow.SCENARIO
    cow_designs: tuple[str, ...] = cow.DESIGNS
    cow_settings: tuple[str, ...] = cow.SETTINGS
    cow_counts: tuple[int, ...] = cow.COUNTS
    cow_s: int = 30  # the model is rebuilt every 10 s: each run sees two rebuilds
    cow_rate: float = cow.RATE
    # the HTTP server study: every variant of server_variants under every server, open loop at
    # server_rate for profile_s (the cost figure's per-request run length), round by round
    server_rounds: int = 3
    server_s: int | None = None  # each server-study run (None: profile_s)
    server_variants: tuple[str, ...] = servers.VARIANTS
    server_rate: float = servers.RATE
    # the isolation remedies (archlab.analysis.remedies): per round, every scenario of
    # remedy_scenarios, the baseline, then every design under every remedy, for remedy_s
    remedy_rounds: int = 3
    remedy_s: int = 20
    remedy_scenarios: tuple[str, ...] = remedies.SCENARIOS
    remedy_designs: tuple[str, ...] = remedies.DESIGNS
    remedy_names: tuple[str, ...] = tuple(remedies.REMEDIES)
    only_headline: bool = False  # True: the headline steps alone, no study, no benchmark
    floor_s: float = 5.0  # `archlab bench floor` at each ramp rate, `reps` rounds
    floor_rates: tuple[float, ...] = ()  # () = the ramp's rates

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCALES: dict[str, Scale] = {
    s.name: s
    for s in (
        Scale(
            name="test",
            description="seconds-long runs on the tiny dataset: proves the pipeline, not a result",
            size="tiny",
            ramp_steps=(1, 2),
            ramp_step_s=2.0,
            fault_scenarios=("gc-pressure",),
            fault_s=6,
            gc_s=6,
            profile_s=4,
            profile_rate=50.0,
            path_s=6,
            separate_profile_run=False,
            hop_calls=200,
            hop_rounds=2,
            floor_s=2.0,
            floor_rates=(RAMP_RATE_PER_STREAM,),  # the pipeline, not a floor
            expected_overhead_s=5.0,
            path_steps=(PATH[0], PATH[-1]),  # both ends of the path
            path_scenarios=(migration.REPLICATE_SCENARIO,),
            polyglot_scenarios=(),  # the engines' runs are tested on their own (suite time)
            engine_sizes=("tiny",),
            engine_rounds=2,
            cow_designs=("monolith-preload",),  # the one that preloads: every knob exercised
            cow_settings=("as-is", "freeze"),
            cow_counts=(2,),
            cow_s=6,
            server_rounds=1,
            server_variants=(PATH[0], PATH[-1]),  # the path's ends: a gap to share
            remedy_rounds=1,
            remedy_s=6,
            remedy_scenarios=("gc-pressure",),
            remedy_designs=("multiprocess",),
            remedy_names=(remedies.NONE, "both"),
        ),
        Scale(
            name="quick",
            description="three interleaved repetitions of the latency ramps, gc-pressure and "
            "crash-orders on the small dataset, then one short round of every study: every "
            "figure (the pinned scaling ramps aside: --scale scaling) in ~20 min on 2 CPUs",
            size="small",
            reps=3,
            ramp_steps=(1, 2, 4, 8),
            ramp_step_s=2.5,
            fault_scenarios=("gc-pressure", "crash-orders"),
            fault_s=10,
            gc_s=10,
            profile_s=8,
            profile_rate=100.0,
            path_s=6,
            scaling=False,
            hop_calls=1000,
            hop_rounds=3,
            floor_s=3.0,
            path_scenarios=(migration.CRASH,),
            polyglot_scenarios=(polyglot.RAMP,),
            engine_sizes=("small",),
            engine_rounds=2,
            cow_designs=("monolith", "multiprocess"),
            cow_counts=(1, 4),  # the line's two ends
            cow_settings=("as-is",),
            cow_s=8,
            server_rounds=1,
            server_s=6,
            remedy_rounds=1,
            remedy_s=6,
            remedy_scenarios=("gc-pressure",),
            remedy_names=(remedies.NONE, "bulkhead"),  # the full scale's finding
        ),
        Scale(
            name="scaling",
            description="only the scaling study: latency ramps with the server on 1, 2, 4 ... "
            "CPUs (as many as leave the generator a quarter as many) and on all of them, five "
            "interleaved repetitions; on a 2-CPU machine the 1-CPU and the all-CPU points",
            size="small",
            reps=5,
            ramp_steps=(1, 2, 4, 6, 8, 10, 12, 16),
            ramp_step_s=5.0,
            fault_scenarios=(),
            fault_s=0,
            gc_s=0,
            profile_s=0,
            profile_rate=0.0,
            path_s=0,
            separate_profile_run=False,
            only_headline=True,
        ),
        Scale(
            name="full",
            description="the publication run: five interleaved repetitions of the latency and "
            "scaling ramps, the gc, crash and leak faults, the HTTP servers and the isolation "
            "remedies; the migration path, Python vs Rust engine, copy-on-write at 1-8 "
            "children: ~2 h on 2 CPUs",
            size="small",
            reps=5,
            ramp_steps=(1, 2, 4, 6, 8, 10, 12, 16),
            ramp_step_s=4.0,
            # the 2 h budget: cpu-hog runs in the remedies study (five rounds, every remedy) and
            # the polyglot pair; slow-notifications only in the catalogue (`archlab run`)
            fault_scenarios=(
                "gc-pressure",
                "crash-recommendations",
                "crash-orders",
                "leak-recommendations",
            ),
            fault_s=14,
            # the monolith restarts ~9-12 s after the kill under load on the small dataset;
            # a kill at 40 % of 24 s leaves it 14 s to come back within the records
            crash_s=24,
            gc_s=20,
            profile_s=20,
            profile_rate=100.0,
            path_s=16,
            hop_calls=5000,
            server_rounds=5,
            server_s=10,
            remedy_rounds=5,
            remedy_s=8,
            remedy_scenarios=remedies.DISTURBED,
            # cpu isolation alone is "both" without the bulkhead: the pair shows what it adds
            remedy_names=(remedies.NONE, "bulkhead", "both"),
            cow_settings=("as-is", "freeze"),  # what the prefork servers do, and the remedy
            cow_counts=(1, 4, 8),
            cow_s=20,
            floor_rates=tuple(n * RAMP_RATE_PER_STREAM for n in (1, 2, 4, 8, 16)),
        ),
    )
}


@dataclass(frozen=True)
class Step:
    """One run of the matrix. `kinds` say which figures read it."""

    tag: str
    kinds: tuple[str, ...]
    plan: RunPlan
    expected_s: float
    cpus: int | None = None  # scaling: CPUs the server was pinned to (None = all, unpinned)
    step: str = ""  # the step this run repeats (its tag without `-r<round>`)
    round: int = 1  # which repetition

    def fingerprint(self) -> dict[str, Any]:
        """What makes two plans the same run (a resumed step must match it)."""
        p = self.plan
        return {
            "variant": p.variant,
            "scenario": p.scenario,
            "size": p.size,
            "seed": p.seed,
            "duration_s": p.duration_s,
            "steps": list(p.steps) if p.steps else None,
            "step_s": p.step_s,
            "rate": p.rate,
            "sut_cpus": p.sut_cpus,
            "pin": p.pin,
            "profile": p.profile.to_dict() if p.profile else None,
            **({"knobs": dict(p.knobs)} if p.knobs else {}),  # absent before knobs were planned
            **({"users": p.users} if p.users is not None else {}),  # likewise arrival streams
            **_load_shape(p.scenario),  # absent for a scenario whose loop never changed
        }


GENERATOR_SHARE = 0.25  # a pinned ramp leaves the generator this share of the server's CPUs
SCALING_KNOB = {"monolith": "workers", "multiprocess": "backends"}
"""How each design uses more cores: the monolith as replicas of the whole process, the family
with as many backends (its default is one per CPU it may use); the distributed variant as
deployed (its knob `replicas` scales a service, not the design)."""


def scaling_cpus(n_usable: int) -> tuple[list[int], list[int]]:
    """The scaling study's pinned server CPU counts, 1, 2, 4 ..., each leaving the generator
    at least one CPU and GENERATOR_SHARE of the server's; and the counts this machine cannot
    pin so. All `n_usable` CPUs are measured too, unpinned (the latency ramp's placement)."""
    run, skipped = [], []
    n = 1
    while n <= n_usable:
        generator = max(1, math.ceil(n * GENERATOR_SHARE))
        (run if n + generator <= n_usable else skipped).append(n)
        n *= 2
    return run, skipped


def scaling_knobs(variant: str, n: int) -> dict[str, int]:
    knob = SCALING_KNOB.get(variant)
    return {knob: n} if knob else {}


def _load_shape(scenario: str) -> dict[str, Any]:
    """A fault scenario's loop and client timeout: run sets made before the fault scenarios
    became open loops hold closed-loop runs under the same names, which must not be resumed."""
    s = get_scenario(scenario)
    return {"loop": s.loop, "timeout_s": s.timeout_s} if s.timeout_s is not None else {}


def plan_steps(
    scale: Scale, cpus: Sequence[int] | None = None, *, native_engines: bool = True
) -> list[Step]:
    """The matrix of `scale` on a machine with `cpus` usable CPUs, in the order it runs
    (without the Python-vs-Rust comparison when `native_engines` is False).

    The headline steps (latency ramps, scaling ramps, fault scenarios) run `scale.reps`
    times, round by round: every headline step once, then the next round, so drift on a
    shared machine spreads over all variants instead of landing on one."""
    cpus = list(cpus if cpus is not None else usable_cpus())
    ramp_s = len(scale.ramp_steps) * scale.ramp_step_s
    steps: list[Step] = []

    def add(
        tag: str, kinds: tuple[str, ...], seconds: float, n: int | None = None, **plan: Any
    ) -> None:
        run = RunPlan(size=scale.size, run_id=tag, **plan)
        step, round_no = split_round(tag)
        steps.append(Step(tag, kinds, run, seconds + scale.expected_overhead_s, n, step, round_no))

    ramp = {"scenario": "ramp", "steps": scale.ramp_steps, "step_s": scale.ramp_step_s}
    along = not (scale.separate_profile_run or scale.only_headline)  # py-spy on the ramp
    pinned, _ = scaling_cpus(len(cpus)) if scale.scaling else ([], [])
    for r in range(1, scale.reps + 1):
        for variant in VARIANT_ORDER:
            # the all-CPU point of the scaling study, where the design's default is what it does
            # with every CPU (the family's backends); the monolith's replicas run on their own
            scales = scale.scaling and variant not in ("monolith",)
            kinds = ("latency", "scaling") if scales else ("latency",)
            kinds += ("profile",) if along else ()
            prof = ProfilePlan() if along else None
            add(
                round_tag(f"latency-{variant}", r), kinds, ramp_s,
                variant=variant, pin=False, profile=prof, **ramp,
            )  # fmt: skip
        if scale.scaling:
            for n in pinned:
                for variant in VARIANT_ORDER:
                    add(
                        round_tag(f"scaling-{variant}-{n}cpu", r), ("scaling",), ramp_s, n,
                        variant=variant, sut_cpus=cpus[:n], gen_cpus=cpus[n:],
                        knobs=scaling_knobs(variant, n), **ramp,
                    )  # fmt: skip
            n_all = len(cpus)
            add(
                round_tag(f"scaling-monolith-{n_all}cpu", r), ("scaling",), ramp_s,
                variant="monolith", pin=False, knobs=scaling_knobs("monolith", n_all), **ramp,
            )  # fmt: skip
        for scenario in scale.fault_scenarios:
            gc = scenario == "gc-pressure"
            seconds = scale.gc_s if gc else scale.fault_s
            if any(f.kind in KILLING for f in get_scenario(scenario).faults):
                seconds = max(seconds, scale.crash_s)
            for variant in VARIANT_ORDER:
                add(
                    round_tag(f"{scenario}-{variant}", r), ("fault", "gc") if gc else ("fault",),
                    seconds, variant=variant, scenario=scenario, duration_s=seconds, pin=False,
                )  # fmt: skip
    if scale.only_headline:
        return steps
    if scale.separate_profile_run:
        for variant in VARIANT_ORDER:
            add(
                f"profile-{variant}", ("profile",), scale.profile_s,
                variant=variant, scenario="open", duration_s=scale.profile_s,
                rate=scale.profile_rate, pin=False, profile=ProfilePlan(),
            )  # fmt: skip
    server_s = scale.server_s or scale.profile_s
    for round_no in range(1, scale.server_rounds + 1):  # a round: every variant, every server
        for variant in scale.server_variants:
            for server in servers.server_order(round_no):
                add(
                    servers.tag(variant, server, round_no), (servers.KIND,), server_s,
                    variant=variant, scenario="open", duration_s=server_s,
                    rate=scale.server_rate, pin=False, knobs={servers.KNOB: server},
                )  # fmt: skip
    for design in scale.cow_designs:  # one design's N and settings back to back
        for n in scale.cow_counts:
            for setting in scale.cow_settings:
                add(
                    cow.tag(design, setting, n), (cow.KIND,), scale.cow_s,
                    variant=cow.DESIGN_PLACEMENT[design], scenario=cow.SCENARIO,
                    duration_s=scale.cow_s, rate=scale.cow_rate, users=cow.STREAMS, pin=False,
                    knobs=cow.knobs(design, setting, n), memory_interval_s=MEMORY_STUDY_S,
                )  # fmt: skip
    for round_no in range(1, scale.remedy_rounds + 1):  # a round: every design, every remedy
        for scenario, design, remedy in remedies.runs_of_round(
            round_no, scale.remedy_scenarios, scale.remedy_designs, scale.remedy_names
        ):
            add(
                remedies.tag(scenario, design, remedy, round_no), (remedies.KIND,),
                scale.remedy_s, variant=design, scenario=scenario, duration_s=scale.remedy_s,
                rate=remedies.RATE, pin=False,
                knobs=remedies.knobs(remedy) if design != remedies.BASELINE else {},
            )  # fmt: skip
    path_scenarios = (migration.STEADY, *scale.path_scenarios)
    for scenario in path_scenarios:  # one scenario's steps back to back
        for placement in scale.path_steps:
            add(
                migration.tag(placement, scenario), (migration.KIND,), scale.path_s,
                variant=placement, scenario=scenario, duration_s=scale.path_s,
                rate=scale.path_rate, pin=False,
            )  # fmt: skip
    for scenario in scale.polyglot_scenarios if native_engines else ():
        for engine in polyglot.ENGINES:  # each pair back to back
            run: dict[str, Any] = {
                "variant": polyglot.PLACEMENT, "pin": False, "memory_interval_s": MEMORY_STUDY_S
            }  # fmt: skip
            run["knobs"] = {polyglot.KNOB: engine}
            if scenario == polyglot.RAMP:
                seconds, run = ramp_s, {**run, **ramp}
            elif scenario == polyglot.PROFILE:
                seconds = scale.profile_s
                run.update(scenario="open", duration_s=seconds, rate=scale.profile_rate)
                run["profile"] = ProfilePlan()
            else:
                seconds = scale.gc_s if scenario == "gc-pressure" else scale.fault_s
                run.update(scenario=scenario, duration_s=seconds)
            add(polyglot.tag(scenario, engine), (polyglot.KIND,), seconds, **run)
    return steps


def floor_rates(scale: Scale) -> list[float]:
    """The offered rates the floor is measured at: the latency ramp's, unless the scale says."""
    return list(scale.floor_rates) or [n * RAMP_RATE_PER_STREAM for n in scale.ramp_steps]


def repetitions(steps: Sequence[Step]) -> dict[str, int]:
    """How many times the matrix runs each step (a study's rounds count as repetitions)."""
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.step] = counts.get(step.step, 0) + 1
    return counts


def repetition_lines(steps: Sequence[Step], skipped_cpus: Sequence[int]) -> list[str]:
    """'fault: 3 repetitions of each of 9 steps' per kind of run, for the run's output."""
    counts = repetitions(steps)
    kinds: dict[tuple[str, int], set[str]] = {}
    for step in steps:
        kinds.setdefault((step.kinds[0], counts[step.step]), set()).add(step.step)
    lines = [
        f"{kind}: {n} repetition{'s' if n > 1 else ''} of each of {len(names)} "
        f"step{'s' if len(names) > 1 else ''}"
        for (kind, n), names in kinds.items()
    ]
    if skipped_cpus:
        lines.append(
            "scaling: not run pinned to "
            + ", ".join(str(n) for n in skipped_cpus)
            + " CPUs (too few would be left for the generator); the all-CPU point is "
            "unpinned, the generator sharing the CPUs"
        )
    return lines


def default_out(scale: str) -> Path:
    return results_root() / "repro" / scale


@dataclass
class Progress:
    """Elapsed time and an estimate of what is left, corrected by how long steps really took."""

    started: float = field(default_factory=time.monotonic)
    done_expected: float = 0.0
    done_actual: float = 0.0

    def finish(self, expected_s: float, actual_s: float) -> None:
        self.done_expected += expected_s
        self.done_actual += actual_s

    def left_s(self, remaining: Sequence[float]) -> float:
        ratio = self.done_actual / self.done_expected if self.done_expected > 0 else 1.0
        return sum(remaining) * max(ratio, 0.5)

    def line(self, i: int, n: int, tag: str, remaining: Sequence[float]) -> str:
        elapsed = time.monotonic() - self.started
        return (
            f"=== [{i}/{n}] {tag}   elapsed {_mmss(elapsed)}, "
            f"about {_mmss(self.left_s(remaining))} left"
        )


def _mmss(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


def finished_run(run_dir: Path, step: Step, previous: dict[str, Any] | None) -> bool:
    """True when run_dir holds a finished run of exactly this step's plan."""
    if read_meta(run_dir).get("status") not in COMPLETED_STATUSES:
        return False
    if not (run_dir / SUMMARY).exists():
        return False
    return previous is None or previous.get("plan") == step.fingerprint()


def _set_aside(run_dir: Path) -> Path:
    """Move a half-written run out of the way (kept for a post-mortem, never plotted)."""
    partial = run_dir.parent / PARTIAL_DIR
    partial.mkdir(exist_ok=True)
    for n in range(1, 1000):
        target = partial / f"{run_dir.name}-{n}"
        if not target.exists():
            run_dir.rename(target)
            return target
    raise FileExistsError(f"too many partial runs of {run_dir.name}")


def reproduce(
    scale_name: str = "quick",
    out: Path | None = None,
    *,
    fresh: bool = False,
    figures_dir: Path | None = None,
    notebooks_dir: Path | None = None,
    render: bool = True,
    echo: Echo = print,
) -> dict[str, Any]:
    """Run the matrix (resuming), the hop benchmark, then render figures and notebooks."""
    try:
        scale = SCALES[scale_name]
    except KeyError:
        raise KeyError(f"unknown scale {scale_name!r}; known: {', '.join(SCALES)}") from None
    out = out or default_out(scale.name)
    figures_dir = figures_dir or results_root() / "figures"
    notebooks_dir = notebooks_dir or results_root() / "notebooks"
    if fresh and out.exists():
        aside = out.with_name(f"{out.name}-{utc_now():%Y%m%d-%H%M%S}")
        out.rename(aside)
        echo(f"previous run set moved to {aside}")
    runs_dir = out / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    no_native = native.unavailable_reason()
    if no_native:
        echo(f"the Python-vs-Rust engine runs are skipped: {no_native}")
    steps = plan_steps(scale, native_engines=no_native is None)
    old = read_json(out / MANIFEST) or {}
    old_steps = {s["tag"]: s for s in old.get("steps", [])}
    manifest: dict[str, Any] = {
        "scale": scale.to_dict(),
        "machine": machine_info(),
        "started_at": old.get("started_at") or iso(utc_now()),
        "resumed_at": iso(utc_now()) if old else None,
        "finished_at": None,
        "complete": False,
        "hop": None,
        "steps": [
            {
                "tag": s.tag,
                "kinds": list(s.kinds),
                "variant": s.plan.variant,
                "scenario": s.plan.scenario,
                "cpus": s.cpus,
                "step": s.step or s.tag,
                "round": s.round,
                "plan": s.fingerprint(),
                "run": f"{RUNS_DIR}/{s.tag}",
                "status": "pending",
                "seconds": None,
            }
            for s in steps
        ],
    }
    entries = {e["tag"]: e for e in manifest["steps"]}
    hop_path = out / HOP
    hop_done = hop_path.exists() or scale.only_headline
    hop_left = [] if hop_done else [HOP_S_PER_CALL * scale.hop_calls * scale.hop_rounds]
    if not (out / FLOOR).exists() and not scale.only_headline:  # a locust start per rate, round
        hop_left.append(len(floor_rates(scale)) * scale.reps * (scale.floor_s + 5.0) + 20.0)
    todo = []
    for s in steps:
        if finished_run(runs_dir / s.tag, s, old_steps.get(s.tag)):
            seconds = old_steps.get(s.tag, {}).get("seconds")
            entries[s.tag].update(status=KEPT_STATUS, seconds=seconds)
        else:
            todo.append(s)
    total_expected = [s.expected_s for s in todo] + hop_left
    manifest["repetitions"] = repetitions(steps)
    _, skipped = scaling_cpus(len(usable_cpus())) if scale.scaling else ([], [])
    manifest["scaling_skipped_cpus"] = skipped
    echo(
        f"reproduce --scale {scale.name}: {len(steps)} runs ({len(steps) - len(todo)} already "
        f"done) on {len(usable_cpus())} CPUs, size {scale.size}, about "
        f"{_mmss(sum(total_expected) + 60)} -> {out}"
    )
    for line in repetition_lines(steps, skipped):
        echo(f"  {line}")
    write_json(out / MANIFEST, manifest)
    progress = Progress()
    try:
        for i, step in enumerate(todo, start=1):
            remaining = [s.expected_s for s in todo[i - 1 :]] + hop_left
            echo(progress.line(i, len(todo), step.tag, remaining))
            run_dir = runs_dir / step.tag
            if run_dir.exists():
                echo(f"  an unfinished earlier attempt moved to {_set_aside(run_dir)}")
            entries[step.tag]["status"] = "running"
            write_json(out / MANIFEST, manifest)
            t0 = time.monotonic()
            try:
                result = execute(step.plan, runs_dir, echo=_indent(echo))
                status = result.status
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one failed run must not stop the matrix
                status = "failed"
                echo(f"  run failed: {type(exc).__name__}: {exc}")
            seconds = time.monotonic() - t0
            progress.finish(step.expected_s, seconds)
            entries[step.tag].update(status=status, seconds=round(seconds, 1))
            write_json(out / MANIFEST, manifest)
        if not hop_done:
            echo("=== per-hop micro-benchmark (archlab bench hop)")
            report = hop.measure(
                n=scale.hop_calls,
                warmup=min(500, scale.hop_calls // 4),
                size=scale.size,
                rounds=scale.hop_rounds,
            )
            write_json(hop_path, report)
            echo(hop.format_table(report))
        manifest["hop"] = HOP
        floor_path = out / FLOOR
        if not floor_path.exists() and not scale.only_headline:
            echo("=== the generator's floor: the bare endpoint (archlab bench floor)")
            floor.measure(
                rates=floor_rates(scale),
                seconds=scale.floor_s,
                rounds=scale.reps,
                size=scale.size,
                out_path=floor_path,
                echo=_indent(echo),
                work_dir=out / FLOOR_DIR,
            )
        engine_path = out / ENGINE_BENCH
        # without the Rust engine: `skipped`, with the reason
        if not engine_path.exists() and not scale.only_headline:
            echo("=== the recommendation engines' model rebuild (archlab bench engine)")
            engines = engine_bench.measure(scale.engine_sizes, scale.engine_rounds, echo=echo)
            write_json(engine_path, engines)
            echo(engine_bench.format_table(engines))
    except KeyboardInterrupt:
        manifest["interrupted_at"] = iso(utc_now())
        write_json(out / MANIFEST, manifest)
        echo(f"\ninterrupted: finished runs are kept; run the same command again to resume ({out})")
        raise
    failed = [e["tag"] for e in manifest["steps"] if e["status"] not in USABLE_STEP_STATUSES]
    manifest["complete"] = not failed
    manifest["failed"] = failed
    manifest["finished_at"] = iso(utc_now())
    write_json(out / MANIFEST, manifest)
    echo(f"=== headline readings -> {readings.write(load_runset(out))}")
    outputs: dict[str, Any] = {"run_set": str(out), "failed": failed}
    if render:
        outputs.update(render_outputs(out, figures_dir, notebooks_dir, echo=echo))
    echo(f"\nrun set:   {out}  ({len(steps) - len(failed)}/{len(steps)} runs usable)")
    if failed:
        echo(f"failed:    {', '.join(failed)} (rerun the same command to retry them)")
    echo(f"took {_mmss(time.monotonic() - progress.started)}")
    return outputs


def render_outputs(
    run_set: Path, figures_dir: Path, notebooks_dir: Path, *, echo: Echo = print
) -> dict[str, Any]:
    """Every figure (PNG + SVG) and every notebook, executed, from one run set.

    The notebooks run (in their own kernels) while this process draws the figures, the two
    being independent; what the notebooks report is held until the figures are done, so the
    output still reads as one section after the other."""
    from concurrent.futures import ThreadPoolExecutor

    import IPython  # noqa: F401 - whole before the kernels' thread imports it (matplotlib peeks)

    from archlab.figures import notebooks, render_all

    later = _Held(echo)
    stop = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="notebooks") as pool:
        executing = pool.submit(
            notebooks.execute_all, run_set, notebooks_dir, echo=_indent(later), stop=stop
        )
        try:
            echo(f"=== figures -> {figures_dir}")
            figures = render_all(load_runset(run_set), figures_dir, echo=_indent(echo))
            echo(f"=== notebooks -> {notebooks_dir}")
            later.release()
            executed = executing.result()
        except BaseException:
            stop.set()  # no further notebook starts; the running one ends with the pool
            raise
    echo(f"\nfigures:   {figures_dir}  ({len(figures)} figures, PNG and SVG)")
    echo(f"notebooks: {notebooks_dir}  ({len(executed)} executed)")
    return {"figures": [str(p) for p in figures], "notebooks": [str(p) for p in executed]}


class _Held:
    """An echo that holds what it is told until `release`, then passes it on as it comes."""

    def __init__(self, echo: Echo) -> None:
        self._echo = echo
        self._lock = threading.Lock()
        self._held: list[str] | None = []

    def __call__(self, text: str) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append(text)
                return
        self._echo(text)

    def release(self) -> None:
        with self._lock:  # in order: a line told meanwhile waits for the held ones
            held, self._held = self._held or [], None
            for text in held:
                self._echo(text)


def _indent(echo: Echo) -> Echo:
    return lambda text: echo("\n".join("  " + line for line in text.splitlines()))
