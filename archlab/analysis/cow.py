"""Copy-on-write in the prefork designs: the `fork_gc` study's runs, their tags and measures.

A child forked without exec shares its parent's pages until one of them writes to a page; in
CPython, reading an object writes its reference count and a collection writes the GC header
of every object it visits, so "shared" memory turns private as a child works. `archlab
reproduce` runs each design of `DESIGNS` with `N` children for each `N` of its counts, under
each setting of the `fork_gc` knob (`variants.forkgc`: nothing, `gc.freeze()` before the fork,
freeze plus raised thresholds), one open-loop run each at `RATE` over `STREAMS` arrival
streams (so every child gets connections: one stream's keep-alive connections would all land
on one worker). Figure `04-copy_on_write` and notebook 04's reading draw on this module
(`archlab.figures.cow`); the cost model prices the measured totals (`memory_for`).

Definitions (the tables, the figure and the reading use them):

- a *design* is a placement with the knobs that make its prefork shape (`DESIGN_PLACEMENT`,
  `knobs`): the monolith's `--workers N` replicas with the app built after the fork
  (`monolith`) or its read-only state preloaded in the master (`monolith-preload`), and the
  process family's `--backends N` (`multiprocess`: every child forked from the postmaster,
  the backends and one auxiliary per other group);
- a *child* is a process of the edge role (the placement's `edge`: the monolith's workers, the
  family's backends), the processes there are N of; a run whose variant or knobs disagree
  with its tag is not used;
- *private* is a process's USS (smaps_rollup Private_Clean + Private_Dirty: what its death
  would free), *shared* its Shared_Clean + Shared_Dirty; a child's value *at the end* is its
  last sample inside summary.json's measured window, and the run's *private per child* is the
  mean over its children at the end, with their min-max;
- the *total* is summary.json's `server.total.pss_peak_bytes`: the per-tick sum of PSS over
  every process of the variant (shared pages split between those that map them, so each page
  counts once), at its peak in the window — what a host must hold;
- the *per-child cost* of a design and setting is the slope of a least-squares line through
  its totals against N (`costmodel.linear_fit`), its *base* the intercept;
- a child's *life* is from its start to its last sample; a run whose children all lived less
  than the model's rebuild interval (the run's shop config) measured them *before their first
  rebuild*, when a monolith worker still holds one model (a rebuild builds a second beside it
  and frees the first, whose pages the allocator keeps).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from archlab.analysis import costmodel as cm
from archlab.analysis.polyglot import rebuild_interval_s
from archlab.analysis.runset import Run, RunSet, in_order
from archlab.deployers import VARIANTS
from variants import forkgc

KIND = "cow"  # the manifest kind of every run of the study
KNOB = "fork_gc"
SETTINGS = forkgc.SETTINGS
DESIGNS = ("monolith", "monolith-preload", "multiprocess")
DESIGN_PLACEMENT = {"monolith": "monolith", "monolith-preload": "monolith",
                    "multiprocess": "multiprocess"}  # fmt: skip
CHILDREN_KNOB = {"monolith": "workers", "multiprocess": "backends"}  # placement -> its N
COUNTS = (1, 2, 4, 8)
SCENARIO = "rebuilding"
"""Open loop with the model rebuilt every 10 s (not 60): a rebuild turns most of what a child
inherited private (measured at 90 s, 2 workers: a preloaded monolith worker's private memory
~100 -> ~260 MiB at its first rebuild), so a run must see rebuilds to measure the steady state,
and 60 s rebuilds would need 80 s runs."""
RATE = 50.0
"""The offered load (requests/s, open loop): the migration path's (`reproduce.PATH_RATE`), well
below every design's knee, so what grows is what the requests touch, not a queue."""
STREAMS = 16
"""Arrival streams the rate is spread over: each opens its own keep-alive connections, so the
children share the requests (with one stream, one worker of two served almost none here)."""
MIB = 2**20
RUN_COLUMNS = ("design", "setting", "n", "tag", "children", "private_mib", "private_min_mib",
               "private_max_mib", "private_dirty_mib", "shared_mib", "total_mib",
               "total_mean_mib", "life_s", "rebuild_interval_s")  # fmt: skip
_TAG = re.compile(
    rf"^{KIND}-(?P<design>.+)-(?P<setting>{'|'.join(map(re.escape, SETTINGS))})-n(?P<n>\d+)$"
)


def tag(design: str, setting: str, n: int) -> str:
    """The run's tag (and folder) in a run set: `cow-<design>-<setting>-n<N>`."""
    return f"{KIND}-{design}-{setting}-n{n}"


def parse_tag(name: str) -> tuple[str, str, int] | None:
    """(design, setting, N) of a study tag; None for any other tag."""
    m = _TAG.match(name)
    return (m["design"], m["setting"], int(m["n"])) if m else None


def knobs(design: str, setting: str, n: int) -> dict[str, int | str]:
    """The knobs that run `design` with `n` children under `setting`."""
    placement = DESIGN_PLACEMENT[design]
    out: dict[str, int | str] = {CHILDREN_KNOB[placement]: n, KNOB: setting}
    if placement == "monolith":
        out["preload"] = "on" if design == "monolith-preload" else "off"
    return out


def default_setting(placement: str) -> str:
    """The `fork_gc` a placement runs with when not told (and ran with before the knob)."""
    knob = VARIANTS[placement].knobs.get(KNOB) if placement in VARIANTS else None
    return str(knob.default) if knob is not None else forkgc.AS_IS


def default_design(variant: str) -> tuple[str, str] | None:
    """(design, setting) a variant runs as with its default knobs; None outside the study."""
    if variant not in CHILDREN_KNOB:
        return None
    return variant, default_setting(variant)


# ---------------------------------------------------------------- runs


def _agrees(run: Run, design: str, setting: str, n: int) -> bool:
    placement = DESIGN_PLACEMENT.get(design)
    if placement is None or run.variant != placement:
        return False
    recorded = dict(run.meta.get("knobs") or {})
    recorded.setdefault(KNOB, default_setting(placement))
    if placement == "monolith":
        recorded.setdefault("preload", "off")
    return all(recorded.get(k) == v for k, v in knobs(design, setting, n).items())


def study_runs(rs: RunSet) -> list[tuple[str, str, int, Run]]:
    """The finished runs of the study whose variant and knobs agree with their tag."""
    found = []
    for name, run in rs.runs.items():
        parsed = parse_tag(name)
        if parsed is None or KIND not in run.kinds or not run.finished:
            continue
        if _agrees(run, *parsed):
            found.append((*parsed, run))
    return found


def child_role(run: Run) -> str:
    """The role there are N of: the placement's edge group (older runs: by variant)."""
    edge = (run.meta.get("placement") or {}).get("edge")
    return str(edge or ("monolith" if run.variant == "monolith" else "backend"))


def child_samples(run: Run) -> pd.DataFrame:
    """The children's rows of processes.csv: pid, create_time, time, t (s after the first
    request), and private, private_dirty, shared and pss in bytes (private dirty and shared from
    RSS - USS for a file written before the smaps_rollup columns)."""
    df = run.processes
    cols = ["pid", "create_time", "time", "t", "private", "private_dirty", "shared", "pss"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df[df["role"] == child_role(run)]
    out = pd.DataFrame(
        {"pid": df["pid"], "create_time": df["create_time"], "time": df["time"], "t": df["t"]}
    )
    out["private"] = df["uss_bytes"].astype(float)
    out["pss"] = df["pss_bytes"].astype(float)
    if "shared_clean_bytes" in df:
        out["private_dirty"] = df["private_dirty_bytes"].astype(float)
        out["shared"] = df["shared_clean_bytes"].astype(float) + df["shared_dirty_bytes"]
    else:
        out["private_dirty"] = np.nan
        out["shared"] = df["rss_bytes"].astype(float) - out["private"]
    return out.dropna(subset=["private"]).sort_values(["time", "pid"]).reset_index(drop=True)


def _window(run: Run) -> tuple[float, float]:
    w = run.summary.get("window") or {}
    return float(w.get("start") or -np.inf), float(w.get("end") or np.inf)


def at_end(run: Run) -> pd.DataFrame:
    """Each child's last sample inside the measured window (its last one at all without any)."""
    s = child_samples(run)
    if s.empty:
        return s
    start, end = _window(run)
    inside = s[(s["time"] >= start) & (s["time"] <= end)]
    return (inside if len(inside) else s).groupby("pid").tail(1).reset_index(drop=True)


def measures(run: Run) -> dict[str, Any]:
    """One run: its children at the end (mean, min, max private; private dirty, shared), the
    variant's total PSS (peak and mean) in MiB, the longest child life and the rebuild timer."""
    end = at_end(run)
    samples = child_samples(run)
    total = (run.summary.get("server") or {}).get("total") or {}
    row: dict[str, Any] = {"children": len(end)}
    for name, col in (("private_mib", "private"), ("private_dirty_mib", "private_dirty"),
                      ("shared_mib", "shared")):  # fmt: skip
        row[name] = float(end[col].mean()) / MIB if len(end) else None
    row["private_min_mib"] = float(end["private"].min()) / MIB if len(end) else None
    row["private_max_mib"] = float(end["private"].max()) / MIB if len(end) else None
    peak, mean = total.get("pss_peak_bytes"), total.get("pss_mean_bytes")
    row["total_mib"] = float(peak) / MIB if peak is not None else None
    row["total_mean_mib"] = float(mean) / MIB if mean is not None else None
    lives = samples["time"] - samples["create_time"]
    row["life_s"] = float(lives.max()) if len(samples) else None
    row["rebuild_interval_s"] = rebuild_interval_s(run)
    return row


def before_first_rebuild(t: pd.DataFrame) -> bool | None:
    """True when no child of any run lived as long as its run's rebuild interval (so none
    had rebuilt its model), False when one did; None when unknown (no timer recorded, or 0)."""
    known = t.dropna(subset=["life_s", "rebuild_interval_s"]) if len(t) else t
    known = known[known["rebuild_interval_s"] > 0] if len(known) else known
    if known.empty:
        return None
    return bool((known["life_s"] < known["rebuild_interval_s"]).all())


def table(rs: RunSet) -> pd.DataFrame:
    """One row per usable run (RUN_COLUMNS), by design, setting and N."""
    rows = [
        {"design": d, "setting": s, "n": n, "tag": run.tag, **measures(run)}
        for d, s, n, run in study_runs(rs)
    ]
    df = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    if df.empty:
        return df
    return in_order(df, {"design": DESIGNS, "setting": SETTINGS, "n": None})


def has_runs(rs: RunSet) -> bool:
    return bool(study_runs(rs))


def timeline(rs: RunSet, design: str, setting: str, n: int) -> pd.DataFrame:
    """Private MiB per child over time in one run: per sampling tick, t and the children's
    mean, min and max (empty without that run)."""
    for d, s, count, run in study_runs(rs):
        if (d, s, count) == (design, setting, n):
            samples = child_samples(run)
            if samples.empty:
                break
            by = samples.groupby("time")
            out = pd.DataFrame({"t": by["t"].first(), "children": by["pid"].nunique()})
            for stat in ("mean", "min", "max"):
                out[stat] = by["private"].agg(stat) / MIB
            return out.reset_index(drop=True)
    return pd.DataFrame(columns=["t", "children", "mean", "min", "max"])


# The helpers below take `table(rs)`, computed once by their caller.


def counts(t: pd.DataFrame, design: str | None = None) -> list[int]:
    """The N measured (for one design)."""
    if t.empty:
        return []
    if design is not None:
        t = t[t["design"] == design]
    return sorted({int(n) for n in t["n"]})


def totals(t: pd.DataFrame, design: str, setting: str) -> dict[int, float]:
    """N -> total MiB of one design and setting."""
    if t.empty:
        return {}
    sel = t[(t["design"] == design) & (t["setting"] == setting)].dropna(subset=["total_mib"])
    return {int(r.n): float(r.total_mib) for r in sel.itertuples()}


def per_child_cost(t: pd.DataFrame, design: str, setting: str) -> tuple[float, float] | None:
    """(base MiB, MiB per added child) of one design and setting; None below two N."""
    points = totals(t, design, setting)
    return cm.linear_fit(points) if len(points) >= 2 else None


def memory_for(rs: RunSet, variant: str, children: int) -> tuple[float, str] | None:
    """Bytes `variant` with its default knobs holds with `children` children, from the study's
    totals (measured at that N, else on the line through them), with a note of where from;
    None when the study did not measure the variant's default design."""
    found = default_design(variant)
    if found is None:
        return None
    design, setting = found
    points = {n: mib * MIB for n, mib in totals(table(rs), design, setting).items()}
    if not points or (children not in points and len(points) < 2):
        return None
    if children in points:
        how = f"measured at N = {children}"
    else:
        how = f"N = {children} on the line through N = {', '.join(map(str, sorted(points)))}"
    return cm.memory_at(points, children), f"{design}, {setting}: {how}"


def present(values: pd.Series, order: tuple[str, ...]) -> list[str]:
    """The names in `values`, `order` first, any other after (sorted)."""
    seen = set(values)
    return [n for n in order if n in seen] + sorted(seen - set(order))
