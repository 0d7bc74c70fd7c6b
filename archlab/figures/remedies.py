"""Figure `02-gc_isolation_bulkheads` and its paragraph of notebook 02's reading.

Whether the engine's stalls stay behind its process boundary once the front is guarded and the
engine has a CPU of its own (`archlab.analysis.remedies` holds the runs, the definitions and
the verdicts). One column per design (the monolith as the reference), one row per scenario:
under `gc-pressure` and `cpu-hog`, per remedy, the other endpoints' p99 outside (grey) and
inside (the design's colour) the disturbance, median over rounds with min-max whiskers and the
ratio above; the last row is each remedy's cost on a healthy run: p99 over all endpoints, with
CPU ms per request written on each bar. Nothing is drawn without the study's runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from archlab.analysis import remedies as rm
from archlab.analysis.runset import RunSet
from archlab.figures.style import caption, color, nan_float, new_figure

NO_RUNS = "no isolation-remedy runs in this run set"
COLUMNS = (rm.BASELINE, *rm.DESIGNS)
ROWS = (*rm.DISTURBED, rm.HEALTHY)
CAUSES = {"bulkhead": "head-of-line blocking at the front", "cpu": "CPU contention"}
"""What each remedy removes: the cause named when that remedy alone helped most."""
Y_LABELS = {
    "gc-pressure": "others' p99 ms",
    "cpu-hog": "others' p99 ms",
    rm.HEALTHY: "p99 ms, all endpoints",
}


def _v(row: pd.Series, key: str) -> float:
    return nan_float(row.get(key))


def _whiskers(rows: list[pd.Series], key: str) -> np.ndarray:
    med = np.array([_v(r, key) for r in rows])
    lo = np.array([_v(r, f"{key}_min") for r in rows])
    hi = np.array([_v(r, f"{key}_max") for r in rows])
    return np.vstack([np.clip(med - lo, 0, None), np.clip(hi - med, 0, None)])


def _disturbed(ax: Any, rows: list[pd.Series], design: str) -> None:
    x = np.arange(len(rows))
    outside = [_v(r, "others_p99_outside_ms") for r in rows]
    inside = [_v(r, "others_p99_inside_ms") for r in rows]
    ax.bar(x - 0.2, outside, 0.4, color="#bbbbbb", label="outside",
           yerr=_whiskers(rows, "others_p99_outside_ms"), capsize=2)  # fmt: skip
    ax.bar(x + 0.2, inside, 0.4, color=color(design), label="inside",
           yerr=_whiskers(rows, "others_p99_inside_ms"), capsize=2)  # fmt: skip
    for xi, r in zip(x, rows, strict=True):
        ratio = _v(r, "others_ratio")
        top = np.nanmax([_v(r, "others_p99_inside_ms_max"), _v(r, "others_p99_outside_ms_max")])
        if not math.isnan(ratio) and not math.isnan(top):
            ax.text(xi, top * 1.15, f"x{ratio:.1f}", ha="center", fontsize=7)


def _healthy(ax: Any, rows: list[pd.Series], design: str) -> None:
    x = np.arange(len(rows))
    ax.bar(x, [_v(r, "p99_ms") for r in rows], 0.6, color=color(design),
           yerr=_whiskers(rows, "p99_ms"), capsize=2)  # fmt: skip
    for xi, r in zip(x, rows, strict=True):
        cpu, top = _v(r, "cpu_ms_per_request"), _v(r, "p99_ms_max")
        if not math.isnan(cpu) and not math.isnan(top):
            ax.text(xi, top * 1.04, f"{cpu:.2f} ms CPU", ha="center", fontsize=6)


def gc_isolation_bulkheads(rs: RunSet) -> Figure | None:
    t = rm.table(rs)
    if t.empty:
        return None
    rows_drawn = [sc for sc in ROWS if sc in set(t["scenario"])]
    fig, axes = new_figure(
        len(COLUMNS), len(rows_drawn), width=3.2, height=2.5, squeeze=False,
        gridspec_kw={"width_ratios": [0.45, 1, 1]},
    )  # fmt: skip
    for i, scenario in enumerate(rows_drawn):
        for j, design in enumerate(COLUMNS):
            ax = axes[i][j]
            sel = t[(t["scenario"] == scenario) & (t["design"] == design)]
            order = [r for r in rm.REMEDIES if r in set(sel["remedy"])]
            rows = [sel[sel["remedy"] == r].iloc[0] for r in order]
            if not rows:
                ax.set_axis_off()
                continue
            (_healthy if scenario == rm.HEALTHY else _disturbed)(ax, rows, design)
            ax.set_xticks(range(len(order)), order, fontsize=8)
            if scenario == rm.HEALTHY:
                ax.set_ylim(0, ax.get_ylim()[1] * 1.15)  # room for the CPU labels
            else:
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(ScalarFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
                low, high = ax.get_ylim()
                ax.set_ylim(low, high * 2.5)  # room for the ratios
            ax.tick_params(labelsize=7)
            label = "healthy" if scenario == rm.HEALTHY else scenario
            ax.set_title(f"{label}: {design} (n={int(rows[0]['rounds'])})", fontsize=8)
            if j == 0:
                ax.set_ylabel(Y_LABELS[scenario], fontsize=8)
    handles, labels = axes[0][1].get_legend_handles_labels()
    if handles:
        fig.legend(handles[:2], labels[:2], loc="outside lower right", fontsize=7, ncols=2)
    fig.suptitle(
        "Do the engine's stalls stay behind its boundary?\nbulkhead: "
        f"{rm.BULKHEAD} calls in flight per downstream per process; cpu: the engine alone on "
        "one CPU",
        fontsize=10,
    )
    return caption(
        fig,
        rs,
        f"open loop at {rm.RATE:g} req/s; others = endpoints that never call the engine; grey: "
        "outside the disturbance (gc-pressure: the engine's full collections; cpu-hog: the "
        "hog's window), coloured: inside, xN = inside/outside; healthy: p99 of all endpoints, "
        "CPU ms per request on the bar; median over rounds, whiskers min-max; the load "
        "generator shares the CPUs",
    )


def reading(rs: RunSet) -> str:
    """The paragraph notebook 02 ends with, computed from the study's runs."""
    found = rm.verdicts(rs)
    if not found:
        return NO_RUNS
    lines = ["", "**Isolation remedies (bulkheads, CPU isolation)**", ""]
    for v in found:
        parts = [f"{r} {s.median:.0f} ms" for r, s in v.inside.items()]
        gains = [f"{r} {g:.1f}" for r in ("bulkhead", "cpu", "both") if (g := v.gain(r))]
        dominant = v.dominant
        if dominant:
            cause = CAUSES[dominant] + " dominated"
        elif not any(v.helped(r) for r in ("bulkhead", "cpu")):
            cause = "neither remedy alone lowered it outside the rounds' noise"
        else:
            cause = "which cause dominated is not distinguishable at this N"
        held = [r for r in rm.REMEDIES if v.isolated(r)]
        ratios = ", ".join(f"{r} x{q.median:.1f}" for r, q in v.ratio.items())
        claim = f"inside/outside {ratios}: " + (
            f"isolated under {', '.join(held)} (within 2x in every round)"
            if held
            else "not isolated under any remedy"
        )
        if v.baseline_inside is not None:
            claim += f"; the monolith's others' p99 inside: {v.baseline_inside.median:.0f} ms"
        lines.append(
            f"- {v.scenario}, {v.design}: others' p99 inside: {', '.join(parts)} "
            f"(none / remedy: {', '.join(gains) or 'not measured'}); {cause}; {claim}."
        )
    lines += _costs(rs)
    return "\n".join(lines)


def _costs(rs: RunSet) -> list[str]:
    """Each remedy's cost on a healthy run against none: p99 and CPU ms per request."""
    df = rm.runs_table(rs)
    out = []
    for design in rm.DESIGNS:
        parts = []
        for measure, unit, fmt in (("p99_ms", "ms p99", "{:.1f}"), ("cpu_ms_per_request",
                                   "CPU ms/request", "{:.2f}")):  # fmt: skip
            none = rm.spread(df, rm.HEALTHY, design, rm.NONE, measure)
            if none is None:
                continue
            each = []
            for remedy in tuple(rm.REMEDIES)[1:]:
                got = rm.spread(df, rm.HEALTHY, design, remedy, measure)
                if got is None:
                    continue
                apart = got.apart(none)
                verdict = "" if apart else " (not distinguishable)" if apart is False else ""
                each.append(f"{remedy} {fmt.format(got.median)}{verdict}")
            parts.append(f"{unit}: none {fmt.format(none.median)}, " + ", ".join(each))
        if parts:
            out.append(f"- healthy, {design}, each remedy's cost: " + "; ".join(parts) + ".")
    return out


FIGURES = {"gc_isolation_bulkheads": gc_isolation_bulkheads}
