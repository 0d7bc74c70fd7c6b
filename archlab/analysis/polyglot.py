"""The recommendation engine in Python and in Rust, side by side: the runs' tags and measures.

`archlab reproduce` runs the process family (`PLACEMENT`) twice per scenario of `SCENARIOS`,
once per engine of `ENGINES`, back to back (python, rust, python, rust, ...), so the two runs
of a pair share the machine's state as closely as a shared machine allows. Only the
recommendations group's engine differs (the `engine_recommendations` knob); figure and
notebook 08 read the pairs (`archlab.figures.polyglot`). The model rebuild times come from
`archlab bench engine` (`engine.json` in the run set), which builds each engine's model from
the same store at each size.

Definitions (every table, the figure and the reading use them):

- a run's *engine* is its `engine_recommendations` knob as meta.json recorded it; a run whose
  knob disagrees with its tag is not used;
- a *related call*: each `GET /products/{id}/recommendations` makes exactly one
  `recommendations.related` call once the product exists (`variants/edge/app.py`,
  `_Recommendations.on_get`: `catalog.get` first, a 404 before the engine is asked, then one
  `related`), so the engine's calls are counted from the recommendation requests. A degraded
  answer is a 200 too, and requests.csv does not record the flag (the shopper never reads the
  body); so the *answered* calls are the recommendation requests without error minus those
  that took at least the engine's call timeout (the run's recorded `call_timeouts_ms`, the only
  way a degraded answer is slow). Fast degraded answers (a refused connection while the engine
  restarts) cannot be told apart: the lifecycle log's engine deaths are reported beside them;
- *engine CPU* is the `recommendations` role's CPU-seconds between two instants
  (`summary.summarize_processes`, cumulative counters interpolated between 1 s samples); it
  includes every model rebuild in the stretch (the rebuild timer is the run's `shop_config`);
- *engine PSS* is the role's PSS summed per sampling tick; median and peak over the ticks of
  the measured window;
- *GC*: the role's collections in `summary.json`'s window; an engine with no collector (its
  role in `gc.no_collector`, or `collector` `none` in roles.csv) reads NO_COLLECTOR, never 0;
- *inside a fault*: a request in flight at some moment of the engine's fault window
  (faults.csv: sent before its end, answered after its start, as in `blast`); *outside*: every
  other request after the warm-up. p99 is nearest-rank (`migration.nearest_rank`, blast's rule);
  the ramp's step percentiles are the summary's HDR ones (`ramp.endpoint_steps`);
- *noise*: each scenario is one run per engine. The endpoints that never call the engine, the
  roles other than the engine and their memory are measured in both runs of a pair too, and
  the engine is not on their path; per measure the *noise band* is the median
  |ln(python / rust)| over those units (endpoints x ramp steps, roles x steps, roles), as in
  `migration.noise_bands`. Conservative: where the engine does reach them (shared CPUs) their
  gap counts as noise too. Two engines' numbers within the band are not told apart.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from archlab.analysis.migration import band_percent, inside_noise, log_gap, nearest_rank
from archlab.analysis.ramp import endpoint_steps, knee, ramp_steps
from archlab.analysis.runset import ENDPOINT_COMPONENTS, ENDPOINT_ORDER, Run, RunSet
from archlab.analysis.summary import ALL, ProcSample, read_process_samples, summarize_processes
from archlab.measure.gcdata import roles_without_collector
from archlab.rundir import FAULTS, PROCESSES, ROLES, open_stored, warmup_of

KIND = "polyglot"  # the manifest kind of every run of the comparison
PLACEMENT = "multiprocess"
ENGINES = ("python", "rust")
KNOB = "engine_recommendations"
ENGINE_ROLE = "recommendations"
RAMP = "ramp"
PROFILE = "profile"  # an open-loop run at the scale's profile rate, sampled by py-spy
GC_PRESSURE = "gc-pressure"
CPU_HOG = "cpu-hog"
SCENARIOS = (RAMP, GC_PRESSURE, CPU_HOG, PROFILE)
FAULT_SCENARIOS = (GC_PRESSURE, CPU_HOG)
STEADY_SCENARIOS = (RAMP, PROFILE)  # no fault: what one related call costs

RECS = next(e for e in ENDPOINT_ORDER if ENGINE_ROLE in ENDPOINT_COMPONENTS[e])
OTHERS = tuple(e for e in ENDPOINT_ORDER if ENGINE_ROLE not in ENDPOINT_COMPONENTS[e])
OTHERS_LABEL = "other endpoints"  # pooled: every request of OTHERS together
NO_COLLECTOR = "no collector"
NOISE_MEASURES = ("p50_ms", "p99_ms", "cpu_ms_per_request", "pss_mib")
FULL_GENERATION = "2"
MIN_UNIT_REQUESTS = 20  # a noise unit (endpoint x step) with fewer requests on a side is skipped
MIB = 2**20


def tag(scenario: str, engine: str) -> str:
    """The run's tag (and folder) in a run set: `polyglot-<scenario>-<engine>`."""
    return f"{KIND}-{scenario}-{engine}"


# ---------------------------------------------------------------- runs


def engine_of(run: Run) -> str:
    """The engine a run served recommendations with, as its meta.json recorded the knob."""
    knobs = run.meta.get("knobs") or {}
    if knobs.get(KNOB):
        return str(knobs[KNOB])
    group = ((run.meta.get("placement") or {}).get("groups") or {}).get(ENGINE_ROLE) or {}
    return str(group.get("engine") or "python")


def pair_run(rs: RunSet, scenario: str, engine: str) -> Run | None:
    """The finished run of one engine under one scenario, if the run set has it (and its
    recorded knob names that engine)."""
    run = rs.runs.get(tag(scenario, engine))
    if run is None or not run.finished or KIND not in run.kinds:
        return None
    return run if engine_of(run) == engine else None


def pair(rs: RunSet, scenario: str) -> dict[str, Run]:
    """engine -> run for the engines measured under `scenario` (both, one, or none)."""
    found = {e: pair_run(rs, scenario, e) for e in ENGINES}
    return {e: r for e, r in found.items() if r is not None}


def complete_pairs(rs: RunSet) -> list[str]:
    """The scenarios measured with both engines."""
    return [s for s in SCENARIOS if len(pair(rs, s)) == len(ENGINES)]


def cpu_count(rs: RunSet) -> int | None:
    """Usable CPUs of the machine the run set was made on (manifest.machine)."""
    m = rs.machine
    return len(m.get("usable_cpus") or []) or m.get("cpu_count_logical") or None


def measured_window(run: Run) -> tuple[float, float]:
    """summary.json's window (epoch s): after the warm-up to the last answer."""
    w = run.summary.get("window") or {}
    start = w.get("start")
    end = w.get("end")
    if start is None or end is None:
        req = run.requests
        first = float(req["start_time"].min()) if not req.empty else 0.0
        return first + warmup_of(run.meta), float(req["end_time"].max()) if not req.empty else 0.0
    return float(start), float(end)


def measured_requests(run: Run) -> pd.DataFrame:
    """The run's requests sent inside its measured window (summary.json's rule)."""
    req = run.requests
    if req.empty:
        return req
    start, end = measured_window(run)
    return req[(req["start_time"] >= start) & (req["start_time"] < end)]


def engine_timeout_ms(run: Run) -> float | None:
    """The callers' read timeout into the engine, as the supervisor logged its config."""
    for event in run.lifecycle:
        timeouts = (event.get("config") or {}).get("call_timeouts_ms") or {}
        if ENGINE_ROLE in timeouts:
            return float(timeouts[ENGINE_ROLE])
    return None


def engine_deaths(run: Run) -> list[dict[str, Any]]:
    """The engine role's unexpected exits in the lifecycle log (time, exit code, signal)."""
    return [
        e
        for e in run.lifecycle
        if e.get("event") == "exit" and e.get("role") == ENGINE_ROLE and not e.get("expected")
    ]


@dataclass(frozen=True)
class Calls:
    """The recommendation requests of a stretch, and the related calls answered among them."""

    requests: int  # recommendation requests sent in the stretch
    errors: int
    at_timeout: int  # answered without error but no sooner than the engine's call timeout
    timeout_ms: float | None

    @property
    def answered(self) -> int:
        """Related calls answered (not an error, not degraded by a timeout)."""
        return self.requests - self.errors - self.at_timeout


def calls(requests: pd.DataFrame, timeout_ms: float | None) -> Calls:
    """Count the recommendation requests of `requests` (a frame of run.requests)."""
    recs = requests[requests["endpoint"] == RECS]
    failed = recs["is_error"].to_numpy(dtype=bool)
    slow = (
        (recs["latency_ms"].to_numpy(dtype=float) >= timeout_ms) & ~failed
        if timeout_ms is not None
        else np.zeros(len(recs), dtype=bool)
    )
    return Calls(len(recs), int(failed.sum()), int(slow.sum()), timeout_ms)


@lru_cache(maxsize=64)
def _samples(path: str, mtime_ns: int, size: int) -> tuple[ProcSample, ...]:
    return tuple(read_process_samples(Path(path)))


def samples(run: Run) -> tuple[ProcSample, ...]:
    """processes.csv of a run, read once per version of the file."""
    path = run.file(PROCESSES)
    if path is None:
        return ()
    st = path.stat()
    return _samples(str(path), st.st_mtime_ns, st.st_size)


def role_cpu(run: Run, start: float, end: float) -> dict[str, float]:
    """CPU-seconds of every role between two instants (summary.summarize_processes)."""
    found = samples(run)
    if not found:
        return {}
    roles = summarize_processes(list(found), start=start, end=end, requests=0)["roles"]
    return {role: float(r["cpu_s"]) for role, r in roles.items()}


def cpu_resolution_s(run: Run) -> float | None:
    """The smallest step of the engine's CPU counter in processes.csv: the CPU figures of a
    short stretch are no finer than this."""
    steps = []
    for s in samples(run):
        if s.role == ENGINE_ROLE:
            steps.append(round(s.cpu_user_s + s.cpu_system_s, 6))
    diffs = np.diff(sorted(set(steps)))
    diffs = diffs[diffs > 0]
    return float(diffs.min()) if len(diffs) else None


def engine_pss(run: Run, start: float | None = None, end: float | None = None) -> dict[str, Any]:
    """The engine role's PSS (MiB), summed per tick: median and peak over the window."""
    if start is None or end is None:
        start, end = measured_window(run)
    ticks: dict[float, float] = {}
    for s in samples(run):
        if s.role == ENGINE_ROLE and start <= s.time <= end and s.pss is not None:
            ticks[s.time] = ticks.get(s.time, 0.0) + s.pss
    values = np.array(list(ticks.values()), dtype=float) / MIB
    return {
        "ticks": len(values),
        "pss_median_mib": float(np.median(values)) if len(values) else None,
        "pss_peak_mib": float(values.max()) if len(values) else None,
    }


# ---------------------------------------------------------------- the ramp


def ramp_table(run: Run) -> pd.DataFrame:
    """One row per full step of an engine's ramp: offered and achieved rate, p50/p99 of the
    recommendations endpoint and of all endpoints (summary's HDR percentiles, corrected), server
    CPU ms per request, the engine's CPU per related call and per request."""
    steps = ramp_steps(run)
    if steps.empty:
        return pd.DataFrame()
    per_endpoint = endpoint_steps(run)
    recs = per_endpoint[per_endpoint["endpoint"] == RECS].set_index("step")
    windows = {w["index"]: w for w in run.summary.get("windows", {}).get("rows", [])}
    timeout = engine_timeout_ms(run)
    req = run.requests
    rows = []
    for s in steps.itertuples():
        w = windows[s.step]
        start, end = float(w["start"]), float(w["start"]) + float(w["seconds"])
        cpu = role_cpu(run, start, end)
        total_cpu = sum(cpu.values())
        engine_cpu = cpu.get(ENGINE_ROLE)
        n = int(s.count)
        c = calls(req[(req["start_time"] >= start) & (req["start_time"] < end)], timeout)
        rec = recs.loc[s.step] if s.step in recs.index else None
        rows.append(
            {
                "engine": engine_of(run),
                "step": int(s.step),
                "start_s": start - run.origin,
                "seconds": float(s.seconds),
                "offered_rps": float(s.offered_rps),
                "achieved_rps": float(s.achieved_rps),
                "keeping_up": bool(s.keeping_up),
                "meets_slo": bool(s.meets_slo),
                "requests": n,
                "recs_requests": c.requests,
                "related_calls": c.answered,
                "recs_p50_ms": None if rec is None else rec["p50_ms"],
                "recs_p99_ms": None if rec is None else rec["p99_ms"],
                "all_p50_ms": s.p50_ms,
                "all_p99_ms": s.p99_ms,
                "server_cpu_ms_per_request": 1000 * total_cpu / n if n else None,
                "engine_cpu_s": engine_cpu,
                "engine_cpu_ms_per_call": (
                    1000 * engine_cpu / c.answered
                    if engine_cpu is not None and c.answered
                    else None
                ),
                "engine_cpu_ms_per_request": (
                    1000 * engine_cpu / n if engine_cpu is not None and n else None
                ),
            }
        )
    return pd.DataFrame(rows)


def ramps(rs: RunSet) -> pd.DataFrame:
    """Both engines' ramp tables, one frame."""
    frames = [ramp_table(r) for r in pair(rs, RAMP).values()]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def ramp_comparison(rs: RunSet) -> pd.DataFrame:
    """Per offered rate both ramps ran: each engine's recommendations p50/p99, python / rust,
    and whether the gap exceeds the pair's noise band (`beyond_noise_*`; None: not judged)."""
    table = ramps(rs)
    if table.empty or set(table["engine"]) != set(ENGINES):
        return pd.DataFrame()
    bands = noise(rs, RAMP).bands
    py = table[table["engine"] == "python"].set_index("offered_rps")
    rust = table[table["engine"] == "rust"].set_index("offered_rps")
    rows = []
    for rate in sorted(set(py.index) & set(rust.index)):
        row: dict[str, Any] = {"offered_rps": rate}
        for q in ("p50", "p99"):
            a, b = as_float(py.loc[rate, f"recs_{q}_ms"]), as_float(rust.loc[rate, f"recs_{q}_ms"])
            within = inside_noise(a, b, bands.get(f"{q}_ms"))
            row |= {
                f"python_{q}_ms": a,
                f"rust_{q}_ms": b,
                f"{q}_python_over_rust": a / b if a and b else None,
                f"beyond_noise_{q}": None if within is None else not within,
            }
        row["both_keeping_up"] = bool(py.loc[rate, "keeping_up"] and rust.loc[rate, "keeping_up"])
        rows.append(row)
    return pd.DataFrame(rows)


def knees(rs: RunSet) -> dict[str, dict[str, Any] | None]:
    """engine -> where its ramp (all endpoints) bent (`ramp.knee`)."""
    return {e: knee(r) for e, r in pair(rs, RAMP).items()}


# ---------------------------------------------------------------- CPU per call and per request


def cpu_row(run: Run, scenario: str) -> dict[str, Any]:
    """A whole run's CPU: the engine role's CPU-s over the measured window per answered
    related call and per request, and the whole server's CPU per request (summary.json)."""
    start, end = measured_window(run)
    req = measured_requests(run)
    c = calls(req, engine_timeout_ms(run))
    server = run.summary.get("server") or {}
    engine = (server.get("roles") or {}).get(ENGINE_ROLE) or {}
    engine_cpu = engine.get("cpu_s")
    n = int(((run.summary.get("endpoints") or {}).get(ALL) or {}).get("count", len(req)))
    return {
        "scenario": scenario,
        "engine": engine_of(run),
        "seconds": end - start,
        "requests": n,
        "recs_requests": c.requests,
        "recs_errors": c.errors,
        "recs_at_timeout": c.at_timeout,
        "related_calls": c.answered,
        "engine_cpu_s": engine_cpu,
        "engine_cpu_ms_per_call": (
            1000 * engine_cpu / c.answered if engine_cpu is not None and c.answered else None
        ),
        "engine_cpu_ms_per_request": 1000 * engine_cpu / n
        if engine_cpu is not None and n
        else None,
        "server_cpu_ms_per_request": (server.get("total") or {}).get("cpu_ms_per_request"),
        "cpu_resolution_ms": _ms(cpu_resolution_s(run)),
    }


def cpu_table(rs: RunSet) -> pd.DataFrame:
    """Per steady scenario (ramp, profile) and engine: the whole run's CPU (`cpu_row`); for the
    ramp also the median over its steps of the engine's CPU per related call, which one step
    holding a model rebuild cannot move (`engine_cpu_ms_per_call_median_step`)."""
    rows = []
    for scenario in STEADY_SCENARIOS:
        for run in pair(rs, scenario).values():
            row = cpu_row(run, scenario)
            if scenario == RAMP:
                steps = ramp_table(run)
                per_call = steps["engine_cpu_ms_per_call"].dropna() if len(steps) else []
                row["engine_cpu_ms_per_call_median_step"] = (
                    float(np.median(per_call)) if len(per_call) else None
                )
                if len(steps) and steps["engine_cpu_s"].notna().any():
                    top = steps.loc[steps["engine_cpu_s"].idxmax()]
                    row |= {
                        "busiest_step_offered_rps": float(top["offered_rps"]),
                        "busiest_step_engine_cpu_s": float(top["engine_cpu_s"]),
                        "median_step_engine_cpu_s": float(steps["engine_cpu_s"].median()),
                    }
            rows.append(row)
    return pd.DataFrame(rows)


def rebuild_interval_s(run: Run) -> float | None:
    """The model's rebuild timer in the run (its recorded shop config)."""
    shop = run.meta.get("shop_config") or (run.meta.get("scenario") or {}).get("shop") or {}
    value = shop.get("rebuild_interval_s")
    return None if value is None else float(value)


# ---------------------------------------------------------------- memory and GC


def memory_table(rs: RunSet) -> pd.DataFrame:
    """Per run of the comparison: the engine role's PSS median and peak (MiB)."""
    rows = []
    for scenario in SCENARIOS:
        for engine, run in pair(rs, scenario).items():
            rows.append({"scenario": scenario, "engine": engine, **engine_pss(run)})
    return pd.DataFrame(rows, columns=["scenario", "engine", "ticks", "pss_median_mib",
                                       "pss_peak_mib"])  # fmt: skip


def has_collector(run: Run) -> bool | None:
    """False: the engine declared it has no garbage collector (summary's `gc.no_collector`, else
    roles.csv's `collector`); True: it runs CPython's; None: the run recorded neither."""
    gc = run.summary.get("gc") or {}
    if ENGINE_ROLE in (gc.get("no_collector") or []):
        return False
    roles_file = run.file(ROLES)
    if roles_file is not None and ENGINE_ROLE in roles_without_collector(roles_file):
        return False
    if ENGINE_ROLE in (gc.get("roles") or {}):
        return True
    return None


def gc_row(run: Run, scenario: str) -> dict[str, Any]:
    """The engine role's GC in a run's measured window; NO_COLLECTOR rather than zeros."""
    collector = has_collector(run)
    row: dict[str, Any] = {"scenario": scenario, "engine": engine_of(run)}
    if collector is False:
        return row | {"gc": NO_COLLECTOR}
    stats = ((run.summary.get("gc") or {}).get("roles") or {}).get(ENGINE_ROLE)
    if collector is None or stats is None:
        return row | {"gc": "not recorded"}
    full = (stats.get("by_generation") or {}).get(FULL_GENERATION) or {}
    return row | {
        "gc": "python",
        "collections": int(stats.get("collections", 0)),
        "full_collections": int(full.get("count", 0)),
        "total_pause_ms": float(stats.get("total_pause_ms", 0.0)),
        "max_pause_ms": float(stats.get("max_pause_ms", 0.0)),
        "max_pause_ms_whole_run": stats.get("max_pause_ms_whole_run"),
    }


GC_COLUMNS = ("scenario", "engine", "gc", "collections", "full_collections", "total_pause_ms",
              "max_pause_ms", "max_pause_ms_whole_run")  # fmt: skip


def gc_table(rs: RunSet) -> pd.DataFrame:
    """Per run: the engine role's collections, total and largest pause, or NO_COLLECTOR."""
    rows = [gc_row(run, s) for s in SCENARIOS for run in pair(rs, s).values()]
    return pd.DataFrame(rows, columns=list(GC_COLUMNS))


# ---------------------------------------------------------------- faults


@dataclass(frozen=True)
class FaultWindow:
    """The engine's fault as faults.csv recorded it (epoch s) and whether it reached a process."""

    kind: str
    start: float
    end: float
    pids: tuple[int, ...]

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def reached(self) -> bool:
        return bool(self.pids)


def fault_window(run: Run) -> FaultWindow | None:
    """The run's first fault in the engine's component (None: the run has none). faults.csv is
    read as text: `pids` is a space-separated list, empty when the fault reached no process."""
    path = run.file(FAULTS)
    if path is None:
        return None
    with open_stored(path) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("component") == ENGINE_ROLE]
    rows = [r for r in rows if as_float(r.get("start")) is not None]
    if not rows:
        return None
    f = min(rows, key=lambda r: float(r["start"]))
    end = as_float(f.get("end"))
    return FaultWindow(
        str(f.get("kind", "")),
        float(f["start"]),
        end if end is not None else measured_window(run)[1],
        tuple(int(p) for p in re.findall(r"\d+", f.get("pids") or "")),
    )


def inside_mask(requests: pd.DataFrame, window: FaultWindow) -> np.ndarray:
    """Requests in flight at some moment of the window (sent before its end, answered after
    its start)."""
    return (
        (requests["start_time"].to_numpy(dtype=float) < window.end)
        & (requests["end_time"].to_numpy(dtype=float) > window.start)
    )  # fmt: skip


def _side(frame: pd.DataFrame) -> dict[str, Any]:
    ms = frame["corrected_ms"].to_numpy(dtype=float)
    return {"n": len(frame), "errors": int(frame["is_error"].sum()), "p99_ms": nearest_rank(ms, 99)}


FAULT_COLUMNS = ("scenario", "engine", "endpoint", "n_inside", "errors_inside", "p99_inside_ms",
                 "n_outside", "errors_outside", "p99_outside_ms", "at_timeout_inside",
                 "window_s", "reached")  # fmt: skip


def fault_rows(run: Run, scenario: str) -> list[dict[str, Any]]:
    """Per endpoint, the other endpoints pooled (OTHERS_LABEL) and recommendations: requests,
    errors and p99 inside the engine's fault window against outside it."""
    window = fault_window(run)
    req = measured_requests(run)
    if window is None or req.empty:
        return []
    inside = inside_mask(req, window)
    timeout = engine_timeout_ms(run)
    groups = [(e, req["endpoint"] == e) for e in ENDPOINT_ORDER]
    groups.append((OTHERS_LABEL, req["endpoint"].isin(OTHERS)))
    rows = []
    for name, mask in groups:
        m = mask.to_numpy(dtype=bool)
        if not m.any():
            continue
        a, b = _side(req[m & inside]), _side(req[m & ~inside])
        row = {
            "scenario": scenario,
            "engine": engine_of(run),
            "endpoint": name,
            "n_inside": a["n"],
            "errors_inside": a["errors"],
            "p99_inside_ms": a["p99_ms"],
            "n_outside": b["n"],
            "errors_outside": b["errors"],
            "p99_outside_ms": b["p99_ms"],
            "at_timeout_inside": calls(req[m & inside], timeout).at_timeout
            if name == RECS
            else None,
            "window_s": window.seconds,
            "reached": window.reached,
        }
        rows.append(row)
    return rows


def fault_table(rs: RunSet, scenario: str | None = None) -> pd.DataFrame:
    """`fault_rows` of every fault run of the comparison (or of one scenario)."""
    rows = [
        row
        for s in (FAULT_SCENARIOS if scenario is None else (scenario,))
        for run in pair(rs, s).values()
        for row in fault_rows(run, s)
    ]
    return pd.DataFrame(rows, columns=list(FAULT_COLUMNS))


def fault_summary(run: Run, scenario: str) -> dict[str, Any] | None:
    """What a fault run recorded about the engine itself: the window, whether the fault reached
    a process, the engine's CPU (cores) and GC inside vs outside, its deaths."""
    window = fault_window(run)
    if window is None:
        return None
    start, end = measured_window(run)
    inside_cpu = role_cpu(run, window.start, window.end).get(ENGINE_ROLE)
    whole = role_cpu(run, start, end).get(ENGINE_ROLE)
    outside_s = (end - start) - window.seconds
    deaths = engine_deaths(run)
    row: dict[str, Any] = {
        "scenario": scenario,
        "engine": engine_of(run),
        "fault": window.kind,
        "window_s": window.seconds,
        "reached": window.reached,
        "pids": " ".join(map(str, window.pids)),
        "engine_cores_inside": inside_cpu / window.seconds if inside_cpu is not None else None,
        "engine_cores_outside": (
            (whole - inside_cpu) / outside_s
            if whole is not None and inside_cpu is not None and outside_s > 0
            else None
        ),
        "engine_deaths": len(deaths),
        "death_codes": ", ".join(str(d.get("exit_code") or d.get("signal")) for d in deaths),
        "deaths_after_fault_end_s": ", ".join(
            f"{float(d['time']) - window.end:+.1f}" for d in deaths if d.get("time") is not None
        ),
        "gc": None,
    }
    collector = has_collector(run)
    if collector is False:
        row["gc"] = NO_COLLECTOR
    elif not run.gc.empty:
        gc = run.gc[run.gc["role"] == ENGINE_ROLE]
        g_end = gc["start"] + gc["duration_ms"] / 1000
        hit = gc[(gc["start"] < window.end) & (g_end > window.start)]
        full = hit[hit["generation"] == int(FULL_GENERATION)]
        row |= {
            "gc": "python",
            "pauses_inside": len(hit),
            "full_inside": len(full),
            "pause_ms_inside": float(hit["duration_ms"].sum()),
            "max_pause_ms_inside": float(hit["duration_ms"].max()) if len(hit) else 0.0,
        }
    else:
        row["gc"] = "not recorded"
    return row


def fault_summaries(rs: RunSet) -> pd.DataFrame:
    rows = [
        fault_summary(run, s) for s in FAULT_SCENARIOS for run in pair(rs, s).values()
    ]  # fmt: skip
    return pd.DataFrame([r for r in rows if r is not None])


# ---------------------------------------------------------------- profile


def profile_info(run: Run) -> dict[str, Any]:
    """What the profiled run's meta.json says of py-spy: status, stacks, the roles sampled, and
    whether the engine is among them."""
    profile = run.meta.get("profile") or {}
    roles = list(profile.get("roles") or [])
    return {
        "engine": engine_of(run),
        "status": profile.get("status"),
        "rate_hz": profile.get("rate_hz"),
        "samples": profile.get("samples"),
        "py_spy_errors": profile.get("py_spy_errors"),
        "roles_sampled": roles,
        "engine_sampled": ENGINE_ROLE in roles,
        "engine_collector": has_collector(run),
        "error": profile.get("error"),
    }


def profile_table(rs: RunSet) -> pd.DataFrame:
    """Per profiled engine and role: CPU ms per request (summary.json), py-spy's samples of the
    role and its largest self-time function (None where py-spy sampled none)."""
    rows = []
    for engine, run in pair(rs, PROFILE).items():
        server = (run.summary.get("server") or {}).get("roles") or {}
        frames = (run.summary.get("profile") or {}).get("top_frames") or {}
        for role in sorted(set(server) | set(frames)):
            top = (frames.get(role) or [None])[0]
            rows.append(
                {
                    "engine": engine,
                    "role": role,
                    "cpu_ms_per_request": (server.get(role) or {}).get("cpu_ms_per_request"),
                    "samples": top["role_samples"] if top else None,
                    "top_function": f"{top['function']} ({top['file']})" if top else None,
                    "top_self_share": top["self_share"] if top else None,
                }
            )
    return pd.DataFrame(rows, columns=["engine", "role", "cpu_ms_per_request", "samples",
                                       "top_function", "top_self_share"])  # fmt: skip


# ---------------------------------------------------------------- micro-benchmarks


def engine_bench_status(rs: RunSet) -> str | None:
    """None when engine.json holds measurements, else why not (the file's `skipped` reason)."""
    bench = rs.engine_bench
    if bench is None:
        return "the run set has no engine.json (`archlab bench engine` was not run)"
    if "skipped" in bench:
        return f"`archlab bench engine` skipped: {bench['skipped']}"
    return None if bench.get("sizes") else "engine.json holds no size"


def build_table(rs: RunSet) -> pd.DataFrame:
    """Per size and engine (engine.json): the model build's median/min/max seconds, the
    rebuild call's median wall time, the engine process's memory after the rounds."""
    if engine_bench_status(rs) is not None:
        return pd.DataFrame()
    bench = rs.engine_bench or {}
    rows = []
    for size, engines in bench["sizes"].items():
        for engine in ENGINES:
            r = engines.get(engine)
            if not r:
                continue
            b = r.get("build_seconds") or {}
            rows.append(
                {
                    "size": size,
                    "engine": engine,
                    "build_s_median": b.get("median"),
                    "build_s_min": b.get("min"),
                    "build_s_max": b.get("max"),
                    "rebuild_call_s_median": (r.get("rebuild_call_seconds") or {}).get("median"),
                    "pss_mib": r.get("pss_mib"),
                    "uss_mib": r.get("uss_mib"),
                    "rss_mib": r.get("rss_mib"),
                    "baskets": r.get("baskets"),
                    "pairs": r.get("pairs"),
                }
            )
    return pd.DataFrame(rows)


def build_ratios(rs: RunSet) -> pd.DataFrame:
    """Per size with both engines: python / rust of the median build time and of PSS, and
    whether the two engines' min-max ranges over the rounds are apart (`ranges_apart`)."""
    table = build_table(rs)
    rows = []
    for size, group in table.groupby("size", sort=False) if len(table) else []:
        by = group.set_index("engine")
        if not set(ENGINES) <= set(by.index):
            continue
        py, rust = by.loc["python"], by.loc["rust"]
        rows.append(
            {
                "size": size,
                "build_python_over_rust": ratio(py["build_s_median"], rust["build_s_median"]),
                "pss_python_over_rust": ratio(py["pss_mib"], rust["pss_mib"]),
                "ranges_apart": bool(
                    py["build_s_min"] > rust["build_s_max"]
                    or rust["build_s_min"] > py["build_s_max"]
                ),
            }
        )
    return pd.DataFrame(rows)


def hop_status(rs: RunSet) -> str | None:
    """None when hop.json times the related call per engine, else why not."""
    hop = rs.hop
    if hop is None:
        return "the run set has no hop.json"
    engines = hop.get("engines")
    if engines is None:
        return "hop.json has no `engines` key (its hop benchmark did not time the engines)"
    if "skipped" in engines:
        return f"the engines' hop benchmark skipped: {engines['skipped']}"
    return None if engines else "hop.json's `engines` is empty"


def hop_table(rs: RunSet) -> pd.DataFrame:
    """hop.json `engines`: per call and hop, p50/p99/mean µs."""
    if hop_status(rs) is not None:
        return pd.DataFrame()
    rows = [
        {"call": call, "hop": hop, **stats}
        for call, hops in (rs.hop or {})["engines"].items()
        for hop, stats in hops.items()
    ]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- noise


@dataclass(frozen=True)
class Noise:
    """A pair's noise band per measure (|ln| gap), and how many units each comes from."""

    bands: dict[str, float]
    units: dict[str, int]

    def percent(self, measure: str) -> float | None:
        band = self.bands.get(measure)
        return None if band is None else band_percent(band)


def _units(run: Run, scenario: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's untouched units: latency per (window, other endpoint), CPU per request and PSS
    per (window, other role). Ramp: its full steps; a fault run: outside the fault window; a
    steady run: its measured window."""
    req = measured_requests(run)
    windows: list[tuple[str, float, float, pd.DataFrame]] = []
    if scenario == RAMP:
        steps = ramp_table(run)
        for s in steps.itertuples() if len(steps) else []:
            start = run.origin + s.start_s
            end = start + s.seconds
            if s.keeping_up:
                sub = req[(req["start_time"] >= start) & (req["start_time"] < end)]
                windows.append((f"{s.offered_rps:g}", start, end, sub))
    else:
        start, end = measured_window(run)
        window = fault_window(run)
        sub = req[~inside_mask(req, window)] if window is not None and not req.empty else req
        windows.append(("run", start, end, sub))
    lat, res = [], []
    for key, start, end, sub in windows:
        for endpoint in OTHERS:
            ms = sub.loc[sub["endpoint"] == endpoint, "corrected_ms"].to_numpy(dtype=float)
            if len(ms) >= MIN_UNIT_REQUESTS:
                lat.append({"unit": (key, endpoint), "p50_ms": nearest_rank(ms, 50),
                            "p99_ms": nearest_rank(ms, 99)})  # fmt: skip
        n = len(sub)
        for role, cpu in role_cpu(run, start, end).items():
            if role != ENGINE_ROLE and cpu > 0 and n:
                res.append({"unit": (key, role), "cpu_ms_per_request": 1000 * cpu / n})
    server = (run.summary.get("server") or {}).get("roles") or {}
    for role, stats in server.items():
        if role != ENGINE_ROLE and stats.get("pss_peak_bytes"):
            res.append({"unit": ("pss", role), "pss_mib": stats["pss_peak_bytes"] / MIB})
    return (pd.DataFrame(lat, columns=["unit", "p50_ms", "p99_ms"]),
            pd.DataFrame(res, columns=["unit", "cpu_ms_per_request", "pss_mib"]))  # fmt: skip


def noise(rs: RunSet, scenario: str) -> Noise:
    """The noise band of a scenario's pair from its untouched units (module docstring)."""
    runs = pair(rs, scenario)
    if len(runs) < len(ENGINES):
        return Noise({}, {})
    return pair_noise(runs["python"], runs["rust"], scenario)


def pair_noise(python: Run, rust: Run, scenario: str) -> Noise:
    """Median |ln(python / rust)| per measure over the units both runs measured."""
    (lat_a, res_a), (lat_b, res_b) = _units(python, scenario), _units(rust, scenario)
    gaps: dict[str, list[float]] = {}
    for a, b in ((lat_a, lat_b), (res_a, res_b)):
        joined = a.merge(b, on="unit", suffixes=("_a", "_b"))
        for measure in NOISE_MEASURES:
            if f"{measure}_a" not in joined:
                continue
            for x, y in zip(joined[f"{measure}_a"], joined[f"{measure}_b"], strict=True):
                gap = log_gap(as_float(x), as_float(y))
                if gap is not None:
                    gaps.setdefault(measure, []).append(gap)
    return Noise(
        {m: float(np.median(v)) for m, v in gaps.items()}, {m: len(v) for m, v in gaps.items()}
    )


def noise_table(rs: RunSet) -> pd.DataFrame:
    """Per complete pair and measure: the band (|ln| gap), as a percentage, and its units."""
    rows = []
    for scenario in complete_pairs(rs):
        n = noise(rs, scenario)
        for measure, band in n.bands.items():
            rows.append(
                {
                    "scenario": scenario,
                    "measure": measure,
                    "band": band,
                    "band_percent": band_percent(band),
                    "units": n.units.get(measure, 0),
                }
            )
    return pd.DataFrame(rows, columns=["scenario", "measure", "band", "band_percent", "units"])


# ---------------------------------------------------------------- helpers


def as_float(value: Any) -> float | None:
    """A number as a float; None for None, NaN or anything else."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def ratio(a: Any, b: Any) -> float | None:
    """a / b; None unless both are numbers and b is not 0."""
    a, b = as_float(a), as_float(b)
    return a / b if a is not None and b else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds
