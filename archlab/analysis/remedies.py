"""Isolation remedies: does a separate process isolate the engine's stalls once the front is
guarded (bulkheads) and the engine has a CPU of its own (CPU isolation)?

Under `gc-pressure` the reference found the *other* endpoints (those that never call the
recommendation engine) slower inside the engine's full collections in the process family and
the distributed design, not only in the monolith. Two causes are entangled: head-of-line
blocking at the front (recommendation calls hold the request threads while the engine is
paused) and CPU contention (the engine's collections and rebuilds take the CPUs the front
needs). Each remedy removes one: the `bulkhead` knob bounds the calls in flight to each
downstream context, the `cpu_isolation` knob puts the engine alone on one CPU. `archlab
reproduce` runs every design of `DESIGNS` under every remedy of `REMEDIES` (the monolith, which
has no boundary to guard, once per round as the reference) in `SCENARIOS` at one open-loop
rate, `RATE`, round by round, the remedies' order rotating between rounds.

Definitions (the table, figure `02-gc_isolation_bulkheads` and notebook 02's reading use them):

- the *disturbance*: under `gc-pressure`, the engine's full collections (`gcwindows`); under
  `cpu-hog`, the hog's window from faults.csv. A request is *inside* when its interval overlaps
  the disturbance, else *outside*;
- *others*: the endpoints that never call the engine (`gcwindows.OTHERS`), pooled; their p99
  inside and outside, their *ratio* (inside / outside), and their errors;
- a healthy run (`open`, no fault) gives each remedy's *cost*: p99 over all endpoints and CPU ms
  per request (summary.json's, every process of the design);
- per (scenario, design, remedy): the median over rounds and the min-max range
  (`rounds.Spread`); two are *distinguishable* only when their ranges do not overlap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from archlab.analysis import gcwindows
from archlab.analysis.ramp import latency
from archlab.analysis.rounds import Spread
from archlab.analysis.runset import Run, RunSet
from archlab.analysis.summary import ALL

KIND = "remedy"
BASELINE = "monolith"
"""Run once per round under no remedy: one process has no boundary to guard or split."""
DESIGNS = ("multiprocess", "distributed")
"""The designs with a boundary between the front and the engine."""
BULKHEAD = 4
"""Calls in flight per downstream context per calling process: half of its 8 request threads,
so a stalled engine leaves the other half to the requests that never call it. A tighter limit
(2, tried at 120 req/s) also refused healthy calls to inventory and orders when the CPUs were
busy (503s on `/products/{id}` and `POST /orders`)."""
ISOLATED = "recommendations"
REMEDIES: dict[str, dict[str, int | str]] = {
    "none": {"bulkhead": 0, "cpu_isolation": "off"},
    "bulkhead": {"bulkhead": BULKHEAD, "cpu_isolation": "off"},
    "cpu": {"bulkhead": 0, "cpu_isolation": ISOLATED},
    "both": {"bulkhead": BULKHEAD, "cpu_isolation": ISOLATED},
}
NONE = "none"
HEALTHY = "open"
SCENARIOS = ("gc-pressure", "cpu-hog", HEALTHY)
DISTURBED = SCENARIOS[:2]
RATE = 100.0
"""Open loop, requests/s. At the migration path's 50 req/s about 10 recommendation calls a
second arrive, fewer than the front's threads can hold through a 1 s stall, so the front never
runs out of threads and a bulkhead has nothing to do; at 100 req/s (every design below its knee
when healthy) they outnumber a process's threads within a stall, as under the closed-loop load
where the reference first saw the other endpoints slowed. Measured here (single runs, small
dataset, gc-pressure): the family's others' p99 inside the engine's collections 589 ms without a
bulkhead, 8 ms with one (outside: 83 and 9 ms)."""
_TAG = re.compile(
    rf"^{KIND}-(?P<scenario>{'|'.join(map(re.escape, SCENARIOS))})-(?P<design>[a-z-]+?)-"
    rf"(?P<remedy>{'|'.join(REMEDIES)})-r(?P<round>\d+)$"
)
MEASURES = ("others_p99_inside_ms", "others_p99_outside_ms", "others_ratio", "others_errors",
            "p99_ms", "cpu_ms_per_request", "error_rate")  # fmt: skip


def tag(scenario: str, design: str, remedy: str, round_no: int) -> str:
    return f"{KIND}-{scenario}-{design}-{remedy}-r{round_no}"


def parse_tag(name: str) -> tuple[str, str, str, int] | None:
    m = _TAG.match(name)
    if m is None:
        return None
    return m["scenario"], m["design"], m["remedy"], int(m["round"])


def remedy_order(round_no: int, names: Sequence[str] = tuple(REMEDIES)) -> tuple[str, ...]:
    """The remedies in round `round_no`'s order: rotated by one each round, so no remedy
    always runs first (or right after the same one)."""
    names = tuple(names)
    k = (round_no - 1) % len(names)
    return names[k:] + names[:k]


def runs_of_round(
    round_no: int,
    scenarios: Sequence[str] = SCENARIOS,
    designs: Sequence[str] = DESIGNS,
    names: Sequence[str] = tuple(REMEDIES),
) -> list[tuple[str, str, str]]:
    """(scenario, design, remedy) of one round, in the order they run: per scenario the
    baseline, then each remedy (in the round's order) for every design."""
    steps = []
    for scenario in scenarios:
        steps.append((scenario, BASELINE, NONE))
        for remedy in remedy_order(round_no, names):
            steps += [(scenario, design, remedy) for design in designs]
    return steps


def knobs(remedy: str) -> dict[str, int | str]:
    return dict(REMEDIES[remedy])


# ---------------------------------------------------------------- one run


def disturbance(run: Run, scenario: str) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends), epoch seconds, of the run's disturbance (see the definitions)."""
    if scenario == "gc-pressure":
        engine, _ = gcwindows.engine_pauses(run)
        full = engine[engine["generation"] == gcwindows.FULL_GENERATION]
        return full["start"].to_numpy(dtype=float), full["end"].to_numpy(dtype=float)
    faults = run.faults
    if scenario == "cpu-hog" and not faults.empty:
        hog = faults[faults["kind"] == "hog"]
        ends = hog["end"].fillna(hog["start"]).to_numpy(dtype=float)
        return hog["start"].to_numpy(dtype=float), ends
    return np.array([]), np.array([])


def others_inside_outside(
    requests: pd.DataFrame, starts: np.ndarray, ends: np.ndarray
) -> dict[str, Any]:
    """The other endpoints' p99 inside and outside the windows, their ratio and errors."""
    others = requests[requests["endpoint"].isin(gcwindows.OTHERS)]
    if others.empty:
        return {"others_n_inside": 0, "others_p99_inside_ms": math.nan,
                "others_p99_outside_ms": math.nan, "others_ratio": math.nan,
                "others_errors": 0}  # fmt: skip
    inside = gcwindows.overlapping(others, starts, ends)
    lat = others["corrected_ms"].to_numpy(dtype=float)
    p_in, p_out = gcwindows.p99(lat[inside]), gcwindows.p99(lat[~inside])
    ratio = p_in / p_out if p_out and not math.isnan(p_out) and not math.isnan(p_in) else math.nan
    return {
        "others_n_inside": int(inside.sum()),
        "others_p99_inside_ms": p_in,
        "others_p99_outside_ms": p_out,
        "others_ratio": ratio,
        "others_errors": int(others["is_error"].sum()),
    }


def measures(run: Run, scenario: str) -> dict[str, Any]:
    """One run's measures (see the definitions)."""
    total = (run.summary.get("server") or {}).get("total") or {}
    stats = (run.summary.get("endpoints") or {}).get(ALL) or {}
    count = int(stats.get("count") or 0)
    row: dict[str, Any] = {
        "requests": count,
        "error_rate": int(stats.get("errors") or 0) / count if count else math.nan,
        "p99_ms": latency(stats).get("p99", math.nan),
        "cpu_ms_per_request": total.get("cpu_ms_per_request", math.nan),
    }
    if scenario in DISTURBED:
        starts, ends = disturbance(run, scenario)
        row["windows"] = len(starts)
        row.update(others_inside_outside(gcwindows.measured_requests(run), starts, ends))
    return row


def knobs_match(run: Run, remedy: str) -> bool:
    """The run's recorded knobs are the remedy's (the baseline has neither knob)."""
    recorded = run.meta.get("knobs") or {}
    return all(recorded.get(k, v) == v for k, v in REMEDIES[remedy].items())


# ---------------------------------------------------------------- the run set


def runs_table(rs: RunSet) -> pd.DataFrame:
    """One row per finished run of the study whose tag, variant and knobs agree."""
    rows = []
    for run in rs.of(KIND):
        parsed = parse_tag(run.tag)
        if parsed is None:
            continue
        scenario, design, remedy, round_no = parsed
        if run.variant != design or run.scenario != scenario or not knobs_match(run, remedy):
            continue
        rows.append(
            {
                "scenario": scenario,
                "design": design,
                "remedy": remedy,
                "round": round_no,
                "tag": run.tag,
                **measures(run, scenario),
            }  # fmt: skip
        )
    return pd.DataFrame(rows)


def has_runs(rs: RunSet) -> bool:
    return any(parse_tag(r.tag) for r in rs.of(KIND))


def spread(
    df: pd.DataFrame, scenario: str, design: str, remedy: str, measure: str
) -> Spread | None:
    if df.empty or measure not in df:
        return None
    sel = df[(df["scenario"] == scenario) & (df["design"] == design) & (df["remedy"] == remedy)]
    return Spread.of(sel[measure]) if len(sel) else None


def table(rs: RunSet) -> pd.DataFrame:
    """Per (scenario, design, remedy): rounds, and each measure's median, `_min` and `_max`."""
    df = runs_table(rs)
    if df.empty:
        return df
    rows = []
    for (scenario, design, remedy), _ in df.groupby(["scenario", "design", "remedy"], sort=False):
        row: dict[str, Any] = {"scenario": scenario, "design": design, "remedy": remedy}
        for measure in MEASURES:
            s = spread(df, scenario, design, remedy, measure)
            row["rounds"] = max(row.get("rounds", 0), s.rounds if s else 0)
            row[measure] = s.median if s else math.nan
            row[f"{measure}_min"] = s.low if s else math.nan
            row[f"{measure}_max"] = s.high if s else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Verdict:
    """What one design's remedies did to the other endpoints' tail inside a disturbance."""

    scenario: str
    design: str
    inside: dict[str, Spread]
    """remedy -> the others' p99 inside the disturbance."""
    ratio: dict[str, Spread]
    """remedy -> inside / outside."""
    baseline_ratio: Spread | None
    """The monolith's inside / outside in the same scenario."""
    baseline_inside: Spread | None = None
    """The monolith's others' p99 inside the disturbance (its absolute tail: where one process
    falls behind, outside is slow too and the ratio says little)."""

    def gain(self, remedy: str) -> float | None:
        """How many times lower the inside p99 is under `remedy` than under none."""
        none, got = self.inside.get(NONE), self.inside.get(remedy)
        if none is None or got is None or got.median <= 0:
            return None
        return none.median / got.median

    def helped(self, remedy: str) -> bool | None:
        """The remedy lowered the others' p99 inside with its rounds apart from none's (None:
        not measured, or fewer than two rounds on a side)."""
        none, got = self.inside.get(NONE), self.inside.get(remedy)
        if none is None or got is None:
            return None
        apart = got.apart(none)
        return None if apart is None else apart and got.median < none.median

    @property
    def dominant(self) -> str | None:
        """The single remedy that helped, or of two that helped the one that lowered the tail
        more with the two apart; None when neither helped or they are not distinguishable."""
        helped = [r for r in ("bulkhead", "cpu") if self.helped(r)]
        if len(helped) == 1:
            return helped[0]
        if len(helped) == 2:
            b, c = self.inside["bulkhead"], self.inside["cpu"]
            if b.apart(c):
                return "bulkhead" if b.median < c.median else "cpu"
        return None

    def isolated(self, remedy: str = "both", within: float = 2.0) -> bool | None:
        """Under `remedy`, the others' p99 inside is within `within` x their p99 outside in every
        round (None: not measured)."""
        r = self.ratio.get(remedy)
        return None if r is None else r.high <= within


def verdicts(rs: RunSet) -> list[Verdict]:
    df = runs_table(rs)
    found: list[Verdict] = []
    if df.empty:
        return found
    for scenario in DISTURBED:
        base = spread(df, scenario, BASELINE, NONE, "others_ratio")
        base_inside = spread(df, scenario, BASELINE, NONE, "others_p99_inside_ms")
        for design in DESIGNS:
            inside = {
                r: s
                for r in REMEDIES
                if (s := spread(df, scenario, design, r, "others_p99_inside_ms")) is not None
            }
            ratio = {
                r: s
                for r in REMEDIES
                if (s := spread(df, scenario, design, r, "others_ratio")) is not None
            }
            if inside:
                found.append(Verdict(scenario, design, inside, ratio, base, base_inside))
    return found
