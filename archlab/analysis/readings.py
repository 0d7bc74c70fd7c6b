"""The headline numbers of a run set, each a median over repetitions with its 95 % interval.

`readings.json` (written by `archlab reproduce` into the run set) is one list of readings:
`name`, `median`, `ci_low`, `ci_high`, `n`, `unit`. The interval is `rounds.Spread`'s (a
percentile bootstrap over the repetitions); `n` is how many repetitions it is taken over. The
figures' captions, the notebooks' readings and the README gallery quote these numbers, so a
figure and its text cannot disagree, and a reader can see where N is too small to rank.

Each source below reads one part of the matrix over all its rounds; a name says what was
measured, where, under which load: `<study>.<variant>.<measure>[@<where>]`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from archlab.analysis import faults, ramp
from archlab.analysis import remedies as rm
from archlab.analysis import servers as sv
from archlab.analysis.rounds import NOT_DISTINGUISHABLE, Spread, interval_text, intervals_apart
from archlab.analysis.runset import Run, RunSet
from archlab.rundir import READINGS, read_json, write_json


@dataclass(frozen=True)
class Reading:
    """One headline number: a median over `n` repetitions and its 95 % interval."""

    name: str
    median: float
    ci_low: float
    ci_high: float
    n: int
    unit: str

    @classmethod
    def of(cls, name: str, values: Iterable[float | None], unit: str) -> Reading | None:
        s = Spread.of(values)
        if s is None:
            return None
        return cls(name, s.median, s.ci_low, s.ci_high, s.rounds, unit)

    def text(self, fmt: str = "{:.1f}") -> str:
        """'12.3 ms [11.0, 14.2], n=5', as captions quote it."""
        unit = "" if self.unit == "ratio" else self.unit
        return interval_text(self.median, self.ci_low, self.ci_high, self.n, fmt, unit)

    def apart(self, other: Reading) -> bool | None:
        """True when the two intervals do not overlap; None when a side has one repetition."""
        return intervals_apart(
            (self.ci_low, self.ci_high, self.n), (other.ci_low, other.ci_high, other.n)
        )


def compare(a: Reading, b: Reading) -> str:
    """'a is lower than b' only when the intervals are apart; else says N is too small."""
    apart = a.apart(b)
    if apart is None:
        return "one repetition: not ranked"
    if not apart:
        return NOT_DISTINGUISHABLE
    return "lower" if a.median < b.median else "higher"


Source = Callable[[RunSet], list[Reading]]


def _keep(found: Iterable[Reading | None]) -> list[Reading]:
    return [r for r in found if r is not None]


def latency(rs: RunSet) -> list[Reading]:
    """Per variant and ramp step: p50 and p99 (corrected, all endpoints) and achieved rate."""
    found: list[Reading | None] = []
    for runs in rs.repeated("latency").values():
        tables = [ramp.ramp_steps(r) for r in runs]
        tables = [t for t in tables if not t.empty]
        if not tables:
            continue
        variant = runs[0].variant
        for offered in tables[0]["offered_rps"]:
            rows = [t[t["offered_rps"] == offered] for t in tables]
            rows = [r.iloc[0] for r in rows if not r.empty]
            at = f"@{offered:g}rps"
            found += [
                Reading.of(f"latency.{variant}.p50_ms{at}", (r["p50_ms"] for r in rows), "ms"),
                Reading.of(f"latency.{variant}.p99_ms{at}", (r["p99_ms"] for r in rows), "ms"),
                Reading.of(
                    f"latency.{variant}.achieved_rps{at}",
                    (r["achieved_rps"] for r in rows),
                    "req/s",
                ),
            ]
    return _keep(found)


def _knee_readings(prefix: str, runs: list[Run], at: str = "") -> list[Reading | None]:
    k = ramp.knee(runs)
    if not k or k["offered_rps"] is None:
        return []
    n = int(k["n"])
    return [
        Reading(f"{prefix}.achieved_rps{at}", k["achieved_rps"], k["achieved_ci_low"],
                k["achieved_ci_high"], n, "req/s"),
        Reading(f"{prefix}.p99_ms{at}", k["p99_ms"], k["p99_ci_low"], k["p99_ci_high"], n, "ms"),
    ]  # fmt: skip


def knees(rs: RunSet) -> list[Reading]:
    """Per variant, at its knee (`ramp.knee`, the highest ramp step that held the SLO over
    the repetitions): the achieved rate (throughput at the SLO) and p99 there; the same for
    every configuration of the scaling study (`@<cpus>cpu`, unpinned: all of them)."""
    found: list[Reading | None] = []
    for runs in rs.repeated("latency").values():
        found += _knee_readings(f"knee.{runs[0].variant}", runs)
    for key, runs in ramp.repetitions(rs.of("scaling")).items():
        cpus = key.cpus if key.cpus is not None else rs.cpus
        found += _knee_readings(f"scaling.{key.variant}", runs, f"@{cpus}cpu")
    return _keep(found)


def gc_stalls(rs: RunSet) -> list[Reading]:
    """Per variant under gc-pressure: the other endpoints' p99 inside the engine's full
    collections and outside them (`remedies.measures`: the same definition as the remedies)."""
    found: list[Reading | None] = []
    for runs in rs.repeated("gc").values():
        variant = runs[0].variant
        measured = [rm.measures(r, "gc-pressure") for r in runs]
        for key, unit in (
            ("others_p99_inside_ms", "ms"),
            ("others_p99_outside_ms", "ms"),
            ("others_ratio", "ratio"),
        ):
            found.append(Reading.of(f"gc.{variant}.{key}", (m.get(key) for m in measured), unit))
    return _keep(found)


def fault_runs(rs: RunSet) -> list[Reading]:
    """Per fault scenario and variant, over its repetitions (`faults.per_run`): the worst
    endpoint's error %, the other endpoints' worst error % and p99 ratio, and the seconds until
    the last endpoint was back within tolerance (only when it was back in every repetition: a
    median over the runs that recovered would hide the ones that did not)."""
    df = faults.per_run(faults.table(rs))
    found: list[Reading | None] = []
    if df.empty:
        return []
    for (scenario, variant), sel in df.groupby(["scenario", "variant"], sort=False):
        at = f"@{scenario}"
        found += [
            Reading.of(f"fault.{variant}.error_pct{at}", 100 * sel["error_rate"], "%"),
            Reading.of(
                f"fault.{variant}.others_error_pct{at}", 100 * sel["others_error_rate"], "%"
            ),
            Reading.of(f"fault.{variant}.others_p99_ratio{at}", sel["others_p99_ratio"], "ratio"),
        ]
        if not sel["recovery_s"].isna().any():  # a run still out at its end has no number
            found.append(Reading.of(f"fault.{variant}.recovery_s{at}", sel["recovery_s"], "s"))
    return _keep(found)


def server_study(rs: RunSet) -> list[Reading]:
    """Per variant and HTTP server: CPU ms per request, p50, p99 (over the study's rounds)."""
    df = sv.runs_table(rs)
    found: list[Reading | None] = []
    units = {"cpu_ms_per_request": "ms", "p50_ms": "ms", "p99_ms": "ms", "achieved_rps": "req/s"}
    for (variant, server), sel in df.groupby(["variant", "server"], sort=False) if len(df) else ():
        for measure in sv.MEASURES:
            found.append(
                Reading.of(f"server.{variant}.{measure}@{server}", sel[measure], units[measure])
            )
    return _keep(found)


def remedy_study(rs: RunSet) -> list[Reading]:
    """Per scenario, design and remedy: the others' p99 inside the disturbance, and the ratio."""
    df = rm.runs_table(rs)
    found: list[Reading | None] = []
    if df.empty:
        return []
    for (scenario, design, remedy), sel in df.groupby(["scenario", "design", "remedy"], sort=False):
        at = f"@{scenario}"
        found += [
            Reading.of(
                f"remedy.{design}.{remedy}.others_p99_inside_ms{at}",
                sel["others_p99_inside_ms"],
                "ms",
            ),
            Reading.of(f"remedy.{design}.{remedy}.others_ratio{at}", sel["others_ratio"], "ratio"),
        ]
    return _keep(found)


def hop(rs: RunSet) -> list[Reading]:
    """`archlab bench hop`: each call's p50 per transport, over its rounds."""
    report = rs.hop or {}
    found: list[Reading | None] = []
    for call, transports in (report.get("results") or {}).items():
        for transport, stats in transports.items():
            rounds = stats.get("p50_us_rounds") if isinstance(stats, dict) else None
            if rounds:
                found.append(Reading.of(f"hop.{call}.p50_us@{transport}", rounds, "us"))
    return _keep(found)


SOURCES: tuple[Source, ...] = (
    latency, knees, gc_stalls, fault_runs, server_study, remedy_study, hop
)  # fmt: skip


def collect(rs: RunSet) -> list[Reading]:
    return [reading for source in SOURCES for reading in source(rs)]


def write(rs: RunSet, path: Path | None = None) -> Path:
    """readings.json of the run set (default: in its folder)."""
    path = path or rs.path / READINGS
    write_json(path, {"readings": [asdict(r) for r in collect(rs)]})
    return path


def load(rs: RunSet) -> dict[str, Reading]:
    """The run set's readings by name: from readings.json, else computed now."""
    data: Any = read_json(rs.path / READINGS)
    if data is None:
        return {r.name: r for r in collect(rs)}
    return {r["name"]: Reading(**r) for r in data.get("readings", [])}
