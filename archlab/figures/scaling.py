"""Notebook 06: how much throughput at the SLO each variant gains per CPU it is given.

The scaling ramps pin the server to 1 .. n-1 CPUs (the generator gets the rest); the latency
ramp is the n-CPU point, unpinned, so there the generator competes with the server for the same
CPUs and the point understates what n CPUs alone would give. A design reaches more cores its
own way: the monolith with replicas (`--workers N`, knob `workers`), the process family with
more backends (knob `backends`), the distributed variant with its services' threads; each
point records the knob it ran with. Throughput at the SLO is the knee of `ramp` (the highest
step that holds over the repetitions), drawn with its interval when the ramp was repeated; a
ramp whose top step still held says only "at least this much": drawn hollow, quoted with "≥".

Only measured points are drawn as measured. Beyond the cores the machine has, the figure
extends each variant with a MODEL (dashed, hatched region, "model: ..." in legend and caption):
the per-core capacity of its largest pinned measurement times the cores, linear.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from archlab.analysis import ramp
from archlab.analysis.runset import RunSet
from archlab.figures.style import caption, color, new_figure

SCALE_KNOBS = {"monolith": "workers", "multiprocess": "backends"}
"""The knob by which a design uses more cores: a GIL-bound monolith only as replicas, the
family as more request backends."""
MODEL_CPUS = (4, 8)  # where the figure extends the model to, when the machine has fewer CPUs
MODEL = "model: capacity per core at the largest pinned CPU count x cores, linear"


def _knob(variant: str, knobs: tuple[tuple[str, Any], ...]) -> tuple[str | None, Any]:
    name = SCALE_KNOBS.get(variant)
    return name, dict(knobs).get(name) if name else None


def scaling_table(rs: RunSet) -> pd.DataFrame:
    """One row per variant and CPU count, measured: throughput at the SLO (the knee over the
    repetitions, `n` of them, with the interval of its achieved rate), whether it is only a
    lower bound (the top step held), the scaling knob it ran with, and the speed-up over the
    1-CPU point. Where one CPU count has several configurations, the one whose knob equals the
    CPUs (one replica or backend per core) is kept."""
    n_all = rs.cpus
    rows = []
    for key, runs in ramp.repetitions(rs.of("scaling")).items():
        k = ramp.knee(runs)
        if k is None:
            continue
        knob, value = _knob(key.variant, key.knobs)
        cpus = key.cpus if key.cpus is not None else n_all
        tp = k["achieved_rps"] or 0.0
        rows.append(
            {
                "variant": key.variant,
                "cpus": cpus,
                "pinned": key.cpus is not None,
                "tag": runs[0].tag,
                "tags": ", ".join(r.tag for r in runs),
                "n": len(runs),
                "knob": knob,
                "knob_value": value,
                "throughput_at_slo_rps": tp,
                "throughput_ci_low": k["achieved_ci_low"] if tp else 0.0,
                "throughput_ci_high": k["achieved_ci_high"] if tp else 0.0,
                "lower_bound": not k["bent"],
                "top_offered_rps": k["top_offered_rps"],
                "knee_bent": bool(k["bent"]),
                "knee_offered_rps": k["offered_rps"],
                "knee_p99_ms": k["p99_ms"],
                "knee_p99_ci_high": k["p99_ci_high"],
                "_per_core": value is not None and value == cpus,
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for column in ("knob", "knob_value"):
        df[column] = pd.Series([r[column] for r in rows], dtype=object)
    df = df.sort_values(
        ["variant", "cpus", "_per_core", "pinned", "n"], key=_variant_key, kind="stable"
    )
    df = df.drop_duplicates(["variant", "cpus"], keep="last").drop(columns="_per_core")
    df = df.reset_index(drop=True)
    one = df[df["cpus"] == 1].set_index("variant")["throughput_at_slo_rps"]
    base = df["variant"].map(one)
    df["speedup_vs_1cpu"] = (df["throughput_at_slo_rps"] / base.where(base > 0)).astype(float)
    return df


def _variant_key(col: pd.Series) -> pd.Series:
    if col.name != "variant":
        return col
    order = {v: i for i, v in enumerate(("monolith", "multiprocess", "distributed"))}
    return col.map(lambda v: order.get(v, len(order)))


def model_cpus(rs: RunSet) -> list[int]:
    """The CPU counts beyond this machine's that the figure models (none on a big machine)."""
    return [n for n in MODEL_CPUS if n > rs.cpus]


def model_table(rs: RunSet) -> pd.DataFrame:
    """The model, never a measurement: per variant its largest pinned measurement with a
    capacity (basis_cpus, basis_rps) scaled linearly to each CPU count of `model_cpus`; a lower
    bound when the basis was one."""
    df = scaling_table(rs)
    cpus = model_cpus(rs)
    if df.empty or not cpus:
        return pd.DataFrame()
    rows = []
    for variant, d in df.groupby("variant", sort=False):
        basis = d[d["pinned"] & (d["throughput_at_slo_rps"] > 0)]
        if basis.empty:
            continue
        b = basis.iloc[-1]
        per_core = float(b["throughput_at_slo_rps"]) / int(b["cpus"])
        for n in cpus:
            rows.append(
                {
                    "variant": variant,
                    "cpus": n,
                    "basis_cpus": int(b["cpus"]),
                    "basis_rps": float(b["throughput_at_slo_rps"]),
                    "modelled_rps": per_core * n,
                    "lower_bound": bool(b["lower_bound"]),
                }
            )
    return pd.DataFrame(rows)


def _skipped(rs: RunSet, df: pd.DataFrame) -> str:
    """What the study did not measure, as the caption says it: CPU counts beyond the machine,
    counts the plan skipped (the manifest's `scaling_skipped_cpus`: no room left for the
    generator), and counts one variant lacks that another has."""
    n_all = rs.cpus
    parts = []
    beyond = model_cpus(rs)
    if beyond:
        parts.append(f"{beyond[0]}+ CPUs: not measured on this {n_all}-CPU machine")
    planned_out = [int(n) for n in rs.manifest.get("scaling_skipped_cpus") or [] if n <= n_all]
    if planned_out:
        counts = ", ".join(map(str, planned_out))
        parts.append(f"pinned to {counts} CPUs: skipped (no CPUs left for the generator)")
    measured = set(df["cpus"])
    for variant, d in df.groupby("variant", sort=False):
        missing = sorted(measured - set(d["cpus"]))
        if missing:
            parts.append(f"{variant} at {', '.join(map(str, missing))} CPUs: not measured")
    return "; ".join(parts)


def _knobs_note(df: pd.DataFrame) -> str:
    notes = []
    for variant, d in df.groupby("variant", sort=False):
        knob = d["knob"].iloc[0]
        if knob:
            values = ", ".join(
                f"{v if v is not None else '?'} at {c}"
                for v, c in zip(d["knob_value"], d["cpus"], strict=True)
            )
            notes.append(f"{variant} {knob} {values}")
    return "scaling knob per point: " + "; ".join(notes) if notes else ""


def throughput_at_slo(rs: RunSet) -> Figure | None:
    """Throughput at the SLO against CPUs given to the server, one line per variant: the
    measured points solid (whiskers: the interval over repetitions), the model beyond the
    machine dashed over a hatched region. Log-log, so that linear scaling is a slope of one
    and the measured points stay readable beside the model's."""
    df = scaling_table(rs)
    if df.empty or not df["pinned"].any():
        return None  # without pinned ramps there is nothing to scale (e.g. a 1-CPU machine)
    n_all = rs.cpus
    model = model_table(rs)
    positive = df.loc[df["throughput_at_slo_rps"] > 0, "throughput_at_slo_rps"]
    floor = float(positive.min()) / 2 if len(positive) else 1.0
    fig, ax = new_figure(width=8.6, height=4.6)
    labelled: dict[int, list[float]] = {}
    for variant, d in df.groupby("variant", sort=False):
        c = color(str(variant))
        y = d["throughput_at_slo_rps"].clip(lower=floor)
        ax.plot(d["cpus"], y, "-", color=c, label=f"{variant} (measured)")
        rep = d[(d["n"] > 1) & (d["throughput_at_slo_rps"] > 0)]
        if not rep.empty:
            err = np.vstack(
                [
                    rep["throughput_at_slo_rps"] - rep["throughput_ci_low"],
                    rep["throughput_ci_high"] - rep["throughput_at_slo_rps"],
                ]
            ).clip(min=0)
            ax.errorbar(
                rep["cpus"],
                rep["throughput_at_slo_rps"],
                yerr=err,
                fmt="none",
                ecolor=c,
                capsize=4,
                lw=1.2,
            )
        exact, bound = d[~d["lower_bound"]], d[d["lower_bound"]]
        ax.plot(exact["cpus"], y[exact.index], "o", color=c, ms=8)
        ax.plot(bound["cpus"], y[bound.index], "o", mfc="white", mec=c, mew=2, ms=9)
        m = model[model["variant"] == variant] if not model.empty else model
        if not m.empty:
            xs = [int(m["basis_cpus"].iloc[0]), *m["cpus"]]
            ys = [float(m["basis_rps"].iloc[0]), *m["modelled_rps"]]
            ax.plot(xs, ys, "--", color=c, lw=1.2, alpha=0.8)
            ax.plot(m["cpus"], m["modelled_rps"], "s", mfc="white", mec=c, mew=1.2, ms=7)
            for row in m.itertuples():
                near = labelled.setdefault(int(row.cpus), [])
                if any(abs(row.modelled_rps - v) < 0.05 * v for v in near):
                    continue  # another variant's model reads the same there
                near.append(row.modelled_rps)
                ax.annotate(
                    f"{'≥' if row.lower_bound else ''}{row.modelled_rps:.0f}",
                    (row.cpus, row.modelled_rps),
                    xytext=(6, -10),
                    textcoords="offset points",
                    fontsize=7,
                    color=c,
                    style="italic",
                )
    ax.plot([], [], "o", color="#555555", label="measured: SLO missed within the ramp")
    ax.plot(
        [],
        [],
        "o",
        mfc="white",
        mec="#555555",
        mew=2,
        label="measured: top step held (≥, lower bound)",
    )
    if (df["n"] > 1).any():
        ax.errorbar(
            [],
            [],
            yerr=[],
            fmt="none",
            ecolor="#555555",
            capsize=4,
            label="measured: 95 % interval over repetitions",
        )
    x_max = max([n_all, *(model["cpus"] if not model.empty else [])])
    if not model.empty:
        ax.plot([], [], "s--", mfc="white", mec="#555555", color="#555555", label=MODEL)
        ax.axvspan(
            n_all * 1.25,
            x_max * 1.3,
            facecolor="none",
            edgecolor="#bbbbbb",
            hatch="//",
            lw=0,
            label=f"not measured: this machine has {n_all} CPUs",
        )
    ax.axvspan(n_all / 1.1, n_all * 1.1, color="#dddddd", alpha=0.6, lw=0)
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
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = sorted(set(df["cpus"]) | set(model["cpus"] if not model.empty else []))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(0.8, x_max * 1.3)
    highest = [float(df["throughput_ci_high"].max()), float(df["throughput_at_slo_rps"].max())]
    if not model.empty:
        highest.append(float(model["modelled_rps"].max()))
    bottom, top = floor / 1.5, max(highest) * 2.0
    ax.set_ylim(bottom=bottom, top=top)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:g}")
    decades = math.log10(top) - math.log10(bottom)
    _label_values(ax, df, points_per_decade=ax.bbox.height / decades / fig.dpi * 72, floor=floor)
    ax.set_xlabel("CPUs given to the server (log)")
    ax.set_ylabel(f"throughput at the SLO (req/s, log; p99 ≤ {ramp.SLO_P99_MS:g} ms)")
    ax.set_title("Throughput at the SLO vs CPUs")
    ax.grid(True, which="major", alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    notes = ["pinned ramps: server on n CPUs, generator on the others"]
    notes.append(f"repetitions per point: {', '.join(map(str, sorted(set(df['n']))))}")
    notes += [n for n in (_knobs_note(df), _skipped(rs, df)) if n]
    if not model.empty:
        notes.append(
            f"dashed, hatched: {MODEL} (replicas that share nothing; optimistic: no contention "
            "for memory bandwidth, caches or a shared database), not a measurement"
        )
    return caption(fig, rs, "; ".join(notes))


def _label_values(ax: Any, df: pd.DataFrame, points_per_decade: float, floor: float) -> None:
    """Each point's value beside it; labels of close points at one CPU count stack upwards
    instead of overlapping (two variants can reach the same rate)."""
    line_pts = 11.0
    for _, at in df.groupby("cpus", sort=False):
        previous: tuple[float, float] | None = None  # (log10 of the value, offset in points)
        for row in at.sort_values(["throughput_at_slo_rps", "variant"]).itertuples():
            value = float(row.throughput_at_slo_rps)
            where = math.log10(max(value, floor))
            offset = 4.0
            if previous is not None:
                gap = (where - previous[0]) * points_per_decade
                offset = max(offset, previous[1] + line_pts - gap)
            previous = (where, offset)
            ax.annotate(
                f"{'≥' if row.lower_bound else ''}{value:.0f}",
                (row.cpus, max(value, floor)),
                xytext=(8, offset),
                textcoords="offset points",
                va="bottom",
                fontsize=8,
                color=color(str(row.variant)),
            )


FIGURES = {"throughput_at_slo": throughput_at_slo}


def _rate(row: Any) -> str:
    bound = "≥ " if row.lower_bound else ""
    text = f"{bound}{row.throughput_at_slo_rps:.0f} req/s"
    if row.n > 1 and row.throughput_at_slo_rps:
        text += f" [{row.throughput_ci_low:.0f}, {row.throughput_ci_high:.0f}], n={row.n}"
    return text


def _variant_line(variant: str, d: pd.DataFrame, n_all: int) -> str:
    points = []
    for row in d.itertuples():
        where = " (all, shared with the generator)" if row.cpus == n_all and not row.pinned else ""
        knob = f" ({row.knob}={row.knob_value})" if row.knob and row.knob_value is not None else ""
        points.append(f"{row.cpus} CPU{'s' if row.cpus > 1 else ''}{where}{knob}: {_rate(row)}")
    line = f"- **{variant}**: " + ", ".join(points)
    first, last = d.iloc[0], d.iloc[-1]
    if len(d) < 2 or int(first["cpus"]) != 1:
        return line + "; no 1-CPU run to measure a speed-up from."
    speedup = last["speedup_vs_1cpu"]
    span = f"from 1 to {int(last['cpus'])} CPUs"
    if not np.isfinite(speedup):
        return line + f"; it held the SLO at no step on 1 CPU, so no speed-up {span}."
    if first["lower_bound"]:
        line += (
            f"; speed-up {span} unknown: the 1-CPU ramp's top step still held the SLO "
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
    """Per variant, throughput at the SLO per CPU count and the speed-up, all computed; what
    was not measured, and the model beyond the machine labelled as one."""
    df = scaling_table(rs)
    if df.empty:
        return (
            "This run set has no finished ramps of kind 'scaling', so nothing is said about "
            "scaling."
        )
    n_all = rs.cpus
    out = [
        f"Throughput at the SLO (the highest ramp step that held: p99 interval ≤ "
        f"{ramp.SLO_P99_MS:g} ms, errors ≤ {ramp.SLO_MAX_ERROR_RATE:.0%}, keeping up with the "
        f"offered rate) on {rs.machine_label()}:",
        "",
    ]
    for variant, d in df.groupby("variant", sort=False):
        out.append(_variant_line(str(variant), d, n_all))
    if not df["pinned"].any():
        out.append("\nNo pinned ramps: only the all-CPU point exists, so nothing scales here.")
    if df["lower_bound"].any():
        out.append(
            "\n'≥' marks a ramp whose top step still held the SLO: the ramp stopped before the "
            "server did, so the figure is a lower bound; a longer ramp would tell more."
        )
    skipped = _skipped(rs, df)
    if skipped:
        out.append(f"\n{skipped[0].upper()}{skipped[1:]}.")
    model = model_table(rs)
    if not model.empty:
        parts = [
            f"{v} {'≥ ' if m['lower_bound'].iloc[0] else ''}"
            + ", ".join(f"{r:.0f}" for r in m["modelled_rps"])
            + f" req/s at {', '.join(map(str, m['cpus']))} CPUs (from {m['basis_cpus'].iloc[0]})"
            for v, m in model.groupby("variant", sort=False)
        ]
        out.append(
            f"\n{MODEL} (dashed in the figure, not a measurement): " + "; ".join(parts) + "."
        )
    out.append(
        f"\nAt {n_all} CPUs the server is unpinned and shares every CPU with the load "
        "generator, while the pinned points give the generator CPUs of its own: a flat or "
        "falling last step can be that competition rather than the variant."
    )
    return "\n".join(out)
