"""Notebook 06: how much throughput at the SLO each variant gains per CPU it is given.

The scaling ramps pin the server to 1 .. n-1 CPUs (the generator gets the rest); the latency
ramp is the n-CPU point, unpinned, so there the generator competes with the server for the same
CPUs and the point understates what n CPUs alone would give. A ramp whose top step still met
the SLO says only "at least this much": it is drawn hollow and quoted with "≥".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from archlab.analysis import ramp
from archlab.analysis.runset import RunSet
from archlab.figures.style import caption, color, new_figure


def all_cpus(rs: RunSet) -> int:
    """The machine's usable CPUs: the x of the unpinned latency ramp."""
    m = rs.machine
    return len(m.get("usable_cpus") or []) or int(m.get("cpu_count_logical") or 1)


def scaling_table(rs: RunSet) -> pd.DataFrame:
    """One row per variant and CPU count: throughput at the SLO, whether it is only a lower
    bound (the ramp's top step still met the SLO), and the speed-up over the 1-CPU run."""
    n_all = all_cpus(rs)
    rows = []
    for run in rs.of("scaling"):
        steps = ramp.ramp_steps(run)
        if steps.empty:
            continue
        k = ramp.knee(run) or {}
        rows.append(
            {
                "variant": run.variant,
                "cpus": run.cpus if run.cpus is not None else n_all,
                "pinned": run.cpus is not None,
                "tag": run.tag,
                "throughput_at_slo_rps": ramp.throughput_at_slo(run),
                "lower_bound": bool(steps["meets_slo"].iloc[-1]),
                "top_offered_rps": float(steps["offered_rps"].max()),
                "knee_bent": bool(k.get("bent", False)),
                "knee_offered_rps": k.get("offered_rps"),
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = df.sort_values(["variant", "cpus", "pinned"], key=_variant_key, kind="stable")
    df = df.drop_duplicates(["variant", "cpus"], keep="last").reset_index(drop=True)
    one = df[df["cpus"] == 1].set_index("variant")["throughput_at_slo_rps"]
    base = df["variant"].map(one)
    df["speedup_vs_1cpu"] = (df["throughput_at_slo_rps"] / base.where(base > 0)).astype(float)
    return df


def _variant_key(col: pd.Series) -> pd.Series:
    if col.name != "variant":
        return col
    order = {v: i for i, v in enumerate(("monolith", "multiprocess", "distributed"))}
    return col.map(lambda v: order.get(v, len(order)))


def throughput_at_slo(rs: RunSet) -> Figure | None:
    """Throughput at the SLO against CPUs given to the server, one line per variant."""
    df = scaling_table(rs)
    if df.empty or not df["pinned"].any():
        return None  # without pinned ramps there is nothing to scale (e.g. a 1-CPU machine)
    n_all = all_cpus(rs)
    fig, ax = new_figure(width=8.6, height=4.6)
    for variant, d in df.groupby("variant", sort=False):
        c = color(str(variant))
        ax.plot(d["cpus"], d["throughput_at_slo_rps"], "-", color=c, label=str(variant))
        exact, bound = d[~d["lower_bound"]], d[d["lower_bound"]]
        ax.plot(exact["cpus"], exact["throughput_at_slo_rps"], "o", color=c, ms=8)
        ax.plot(bound["cpus"], bound["throughput_at_slo_rps"], "o", mfc="white", mec=c, mew=2, ms=9)
    ax.plot([], [], "o", color="#555555", label="SLO missed within the ramp (capacity)")
    ax.plot(
        [],
        [],
        "o",
        mfc="white",
        mec="#555555",
        mew=2,
        label="top step met the SLO (≥, lower bound)",
    )
    ax.axvspan(n_all - 0.25, n_all + 0.25, color="#dddddd", alpha=0.6, lw=0)
    ax.annotate(
        f"n = all {n_all} CPUs:\nunpinned, generator\nshares the CPUs",
        (n_all, 0.02),
        xycoords=("data", "axes fraction"),
        ha="center",
        va="bottom",
        fontsize=7,
        color="#444444",
    )
    ax.text(
        0.01,
        0.98,
        rs.machine_label(),
        transform=ax.transAxes,
        va="top",
        fontsize=8,
        bbox={"boxstyle": "round", "fc": "white", "ec": "#bbbbbb"},
    )
    ax.set_xticks(sorted(set(df["cpus"])))
    ax.set_xlim(0.5, n_all + 0.5)
    top = float(df["throughput_at_slo_rps"].max()) * 1.2 or 1.0
    ax.set_ylim(bottom=0, top=top)
    _label_values(ax, df, points_per_unit=ax.bbox.height / top / fig.dpi * 72)
    ax.set_xlabel("CPUs given to the server")
    ax.set_ylabel(f"throughput at the SLO (req/s, p99 ≤ {ramp.SLO_P99_MS:g} ms)")
    ax.set_title("Throughput at the SLO vs CPUs")
    ax.grid(True, alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    return caption(fig, rs, "pinned ramps: server on n CPUs, generator on the others")


def _label_values(ax: Any, df: pd.DataFrame, points_per_unit: float) -> None:
    """Each point's value beside it; labels of close points at one CPU count stack upwards
    instead of overlapping (two variants can reach the same rate)."""
    line_pts = 11.0
    for _, at in df.groupby("cpus", sort=False):
        previous: tuple[float, float] | None = None  # (value, label offset in points)
        for row in at.sort_values(["throughput_at_slo_rps", "variant"]).itertuples():
            value = float(row.throughput_at_slo_rps)
            offset = 4.0
            if previous is not None:
                gap = (value - previous[0]) * points_per_unit
                offset = max(offset, previous[1] + line_pts - gap)
            previous = (value, offset)
            ax.annotate(
                f"{'≥' if row.lower_bound else ''}{value:.0f}",
                (row.cpus, value),
                xytext=(8, offset),
                textcoords="offset points",
                va="bottom",
                fontsize=8,
                color=color(str(row.variant)),
            )


FIGURES = {"throughput_at_slo": throughput_at_slo}


def _rate(value: float, bound: bool) -> str:
    return f"{'≥ ' if bound else ''}{value:.0f} req/s"


def _variant_line(variant: str, d: pd.DataFrame, n_all: int) -> str:
    points = []
    for row in d.itertuples():
        where = " (all, shared with the generator)" if row.cpus == n_all and not row.pinned else ""
        points.append(
            f"{row.cpus} CPU{'s' if row.cpus > 1 else ''}{where} "
            f"{_rate(row.throughput_at_slo_rps, row.lower_bound)}"
        )
    line = f"- **{variant}**: " + ", ".join(points)
    first, last = d.iloc[0], d.iloc[-1]
    if len(d) < 2 or int(first["cpus"]) != 1:
        return line + "; no 1-CPU run to measure a speed-up from."
    speedup = last["speedup_vs_1cpu"]
    span = f"from 1 to {int(last['cpus'])} CPUs"
    if not np.isfinite(speedup):
        return line + f"; it met the SLO at no step on 1 CPU, so no speed-up {span}."
    if first["lower_bound"]:
        line += (
            f"; speed-up {span} unknown: the 1-CPU ramp never missed the SLO "
            f"(ratio of what was measured: {speedup:.2f}x)."
        )
        if speedup < 1 and not last["lower_bound"]:
            line += (
                f" All {int(last['cpus'])} CPUs, shared with the generator, held the SLO to a "
                "lower rate than 1 pinned CPU did."
            )
        return line
    prefix = "≥ " if last["lower_bound"] else ""
    line += f"; speed-up {span}: {prefix}{speedup:.2f}x."
    if speedup < 1 and not last["lower_bound"]:
        line += " Fewer than on 1 CPU: sharing the CPUs with the generator cost more than the "
        line += "extra CPU gave."
    return line


def reading(rs: RunSet) -> str:
    """Per variant, throughput at the SLO per CPU count and the speed-up, all computed."""
    df = scaling_table(rs)
    if df.empty:
        return (
            "This run set has no finished ramps of kind 'scaling', so nothing is said about "
            "scaling."
        )
    n_all = all_cpus(rs)
    out = [
        f"Throughput at the SLO (p99 ≤ {ramp.SLO_P99_MS:g} ms, errors ≤ "
        f"{ramp.SLO_MAX_ERROR_RATE:.0%}, keeping up with the offered rate) on "
        f"{rs.machine_label()}:",
        "",
    ]
    for variant, d in df.groupby("variant", sort=False):
        out.append(_variant_line(str(variant), d, n_all))
    if not df["pinned"].any():
        out.append("\nNo pinned ramps: only the all-CPU point exists, so nothing scales here.")
    if df["lower_bound"].any():
        out.append(
            "\n'≥' marks a ramp whose top step still met the SLO: the ramp stopped before the "
            "server did, so the figure is a lower bound; a longer ramp would tell more."
        )
    out.append(
        f"\nAt {n_all} CPUs the server is unpinned and shares every CPU with the load "
        "generator, while the pinned points give the generator CPUs of its own: a flat or "
        "falling last step can be that competition rather than the variant."
    )
    return "\n".join(out)
