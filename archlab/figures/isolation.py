"""Notebook 03: does a fault in one component stay in it? The blast radius of each variant.

Reads the `fault` runs of the run set: one fault scenario per run (a crash, a CPU hog, a leak,
GC pressure, a slow sink) in one component, under the same load for every variant. The
numbers are `archlab.analysis.blast` (baseline, during, recovery and tolerance are defined there):

- `blast_heatmap`: per variant, fault scenario x endpoint, the error rate during the fault and
  the p99 during / baseline.
- `recovery_timelines`: per fault scenario, each variant's error rate and p99 (from the
  intended start) in 1 s buckets aligned on the fault's start, an open loop's requests by their
  intended start; a bucket without a request is a gap, not a line drawn across it (a closed
  loop's users stalled with the server send nothing); the latest endpoint recovery marked.
- `invariants_table`: did the shop stay correct (every run, not just fault runs)?

An endpoint is **targeted** when the faulty component is one of the contexts it calls
(`archlab.analysis.faults`); the others are the ones isolation should protect.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from archlab.analysis import faults
from archlab.analysis.faults import TOLERANCE
from archlab.analysis.rounds import Spread
from archlab.analysis.runset import ENDPOINT_ORDER, Run, RunSet
from archlab.figures.style import caption, color, new_figure
from archlab.rundir import INVARIANTS, read_json

# endpoints a component answers itself; a fault there may fail them by design
BEFORE_S = 10.0  # timelines start this long before the fault


def _order(values: Any, order: tuple[str, ...]) -> list[str]:
    seen = list(dict.fromkeys(values))
    return [v for v in order if v in seen] + sorted(set(seen) - set(order))


def fig_blast_heatmap(rs: RunSet) -> Figure | None:
    df = faults.table(rs)
    if df.empty:
        return None
    variants = _order(df["variant"], tuple(rs.variants()))
    scenarios = sorted(df["scenario"].unique())
    endpoints = _order(df["endpoint"], ENDPOINT_ORDER)
    short = [e.replace("/products", "/p").replace("recommendations", "recs") for e in endpoints]
    fig, axes = new_figure(
        len(variants), 2, width=3.6, height=0.5 * len(scenarios) + 1.6, squeeze=False
    )
    # one cell per scenario x endpoint: the worst over a run's faults, the median over the
    # scenario's repetitions
    keys = ["variant", "scenario", "endpoint"]
    per_run = df.groupby([*keys, "run_id"]).agg(
        err=("during_error_rate", "max"), ratio=("p99_ratio", "max"), targeted=("targeted", "any")
    )
    agg = per_run.groupby(keys).agg(
        err=("err", "median"), ratio=("ratio", "median"), targeted=("targeted", "any")
    )
    ratio_max = max(2.0, float(np.nanmax(agg["ratio"].to_numpy(dtype=float), initial=2.0)))
    for col, variant in enumerate(variants):
        grid = agg.loc[variant] if variant in agg.index.get_level_values(0) else agg.iloc[:0]
        err = np.full((len(scenarios), len(endpoints)), np.nan)
        ratio = np.full_like(err, np.nan)
        targeted = np.zeros_like(err, dtype=bool)
        for (scenario, endpoint), row in grid.iterrows():
            i, j = scenarios.index(scenario), endpoints.index(endpoint)
            err[i, j], ratio[i, j], targeted[i, j] = row["err"], row["ratio"], row["targeted"]
        for r, (values, title, kw, fmt) in enumerate(
            (
                (100 * err, "error % during", {"cmap": "Reds", "vmin": 0, "vmax": 100}, "{:.0f}"),
                (
                    ratio,
                    "p99 during / baseline",
                    {"cmap": "Oranges", "norm": LogNorm(1.0, ratio_max)},
                    "{:.1f}",
                ),
            )
        ):
            ax = axes[r, col]
            shown = np.clip(values, 1.0, None) if r == 1 else values
            im = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", **kw)
            for i in range(len(scenarios)):
                for j in range(len(endpoints)):
                    v = values[i, j]
                    text = "-" if math.isnan(v) else fmt.format(v)
                    if targeted[i, j]:
                        text += "*"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(endpoints)), short if r == 1 else [], rotation=40, ha="right")
            ax.set_yticks(range(len(scenarios)), scenarios if col == 0 else [])
            ax.set_title(f"{variant}: {title}", fontsize=9, color=color(variant))
            if col == len(variants) - 1:
                bar = fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.8)
                bar.set_label(
                    "error % of the endpoint's requests during the fault"
                    if r == 0
                    else "p99 during / p99 baseline (log)",
                    fontsize=8,
                )
    fig.suptitle("Blast radius: what each fault did to every endpoint (* = the faulty component's)")
    return caption(
        fig,
        rs,
        "the median over repetitions of the worst over a run's faults; during = the fault's "
        "window; "
        "baseline = the same run before its fault (gc-pressure's already includes the every-second "
        "model rebuilds); - = no request of that endpoint fell in the window (a crash's window "
        "is its downtime, which can be shorter than one request)",
    )


def timeline(run: Run, fault_start: float) -> pd.DataFrame:
    """Error rate and p99 (corrected) per bucket of `TOLERANCE.bucket_s`, indexed by the bucket's
    start in s after the fault's start, from `BEFORE_S` before it to the last request.

    A request belongs to the bucket of its intended start when it has one (the open loop's
    schedule, which no outage can empty), else of its start. A bucket that holds no request is
    a row of NaN: nothing was measured there, which a line must not bridge.
    """
    req = run.requests
    if req.empty:
        return pd.DataFrame(columns=["error_rate", "p99_ms"], dtype=float)
    sent = req["start_time"]
    if "intended_time" in req:
        sent = req["intended_time"].fillna(sent)
    width = TOLERANCE.bucket_s
    k = np.floor((sent - fault_start) / width).astype(int)
    g = pd.DataFrame({"k": k, "err": req["is_error"], "ms": req["corrected_ms"]}).groupby("k")
    out = pd.DataFrame({"error_rate": g["err"].mean(), "p99_ms": g["ms"].quantile(0.99)})
    first = max(int(k.min()), -math.ceil(BEFORE_S / width))
    out = out.reindex(range(first, int(k.max()) + 1)).astype(float)
    out.index = out.index * width
    return out


def fig_recovery_timelines(rs: RunSet) -> Figure | None:
    runs = [r for r in rs.of("fault") if not r.faults.empty]
    if not runs:
        return None
    table = faults.table(rs)
    scenarios = sorted({r.scenario for r in runs})
    fig, axes = new_figure(2, len(scenarios), width=5.5, height=2.4, squeeze=False)
    for i, scenario in enumerate(scenarios):
        ax_e, ax_p = axes[i, 0], axes[i, 1]
        for run in (r for r in runs if r.scenario == scenario):
            fault = run.faults.sort_values("start").iloc[0]
            tl = timeline(run, float(fault["start"]))
            if tl.empty:
                continue
            c = color(run.variant)
            # every repetition drawn, so their spread shows; one legend entry per variant
            label = run.variant if run.round == 1 else "_nolegend_"
            line = {"color": c, "label": label, "lw": 1.2, "marker": ".", "ms": 3}
            ax_e.plot(tl.index, 100 * tl["error_rate"], **line)  # NaN: a gap
            ax_p.plot(tl.index, tl["p99_ms"], **line)
            end = fault.get("end")
            if end is not None and not pd.isna(end):
                for ax in (ax_e, ax_p):
                    ax.axvspan(0, float(end) - float(fault["start"]), color=c, alpha=0.06)
            rows = table[table["run_id"] == run.meta.get("run_id", run.path.name)]
            rows = rows[rows["fault_start_s"] == rows["fault_start_s"].min()]
            rec = rows["recovery_s"]
            if not rows.empty and rec.notna().all():
                for ax in (ax_e, ax_p):
                    ax.axvline(float(rec.max()), color=c, ls="--", lw=0.9)
        for ax in (ax_e, ax_p):
            ax.axvline(0, color="black", lw=1)
            ax.grid(alpha=0.3)
        ax_e.set_ylabel(f"{scenario}\nerror %", fontsize=9)
        ax_p.set_ylabel("p99 ms (corrected)", fontsize=9)
        ax_p.set_yscale("log")
        ax_e.set_ylim(-2, max(10.0, ax_e.get_ylim()[1]))
        if i == 0:
            ax_e.legend(fontsize=8)
            ax_e.set_title(f"error rate per {TOLERANCE.bucket_s:g} s bucket")
            ax_p.set_title(f"p99 per {TOLERANCE.bucket_s:g} s bucket")
        if i == len(scenarios) - 1:
            ax_e.set_xlabel("s after the fault's start")
            ax_p.set_xlabel("s after the fault's start")
    fig.suptitle("Recovery: fault at 0 (black), recovered (dashed: last endpoint back)")
    return caption(
        fig,
        rs,
        "one line per repetition; shaded: the fault's duration (none for a crash); all "
        "endpoints; open-loop requests "
        "bucketed by intended start, p99 from it; a gap: no request in that bucket (the load "
        "itself fell silent, e.g. a closed loop's users waiting on a restarting server)",
    )


FIGURES = {
    "blast_heatmap": fig_blast_heatmap,
    "recovery_timelines": fig_recovery_timelines,
}


def _invariants(run: Run) -> dict[str, Any] | None:
    return read_json(run.path / INVARIANTS) or run.summary.get("invariants") or None


def invariants_table(rs: RunSet) -> pd.DataFrame:
    """Per finished run: did every invariant hold, and the counts behind it."""
    rows = []
    for run in sorted(rs.runs.values(), key=lambda r: (r.scenario, r.tag)):
        inv = _invariants(run) if run.finished else None
        if inv is None:
            continue
        counts = inv.get("counts", {})
        rows.append(
            {
                "run": run.tag,
                "variant": run.variant,
                "scenario": run.scenario,
                "ok": bool(inv.get("ok")),
                "acknowledged": counts.get("acknowledged"),
                "stored": counts.get("stored_orders"),
                "notifications_sent": counts.get("notifications_sent"),
                "outbox_pending": counts.get("outbox_pending"),
                "failed_checks": ", ".join(k for k, v in inv.get("checks", {}).items() if not v),
            }
        )
    return pd.DataFrame(rows)


def _variant_reading(v: pd.DataFrame, per_run: pd.DataFrame, others: pd.DataFrame) -> str:
    """One variant under one scenario: each measure's median over the repetitions, with its
    interval and N."""

    def over(values: pd.Series, fmt: str, unit: str) -> str:
        spread = Spread.of(values)
        return "n/a" if spread is None else spread.text(fmt, unit)

    if not per_run["error_rate"].any():
        errors = "no errors"
    else:
        worst = v.loc[v["during_error_rate"].fillna(0).idxmax(), "endpoint"]
        errors = f"worst endpoint's error {over(100 * per_run['error_rate'], '{:.1f}', '%')}"
        errors += f" (highest on {worst})"
    recovery = (
        "not every endpoint back within the records"
        if per_run["recovery_s"].isna().any()
        else f"every endpoint back after {over(per_run['recovery_s'], '{:.0f}', 's')}"
    )
    return (
        f"{errors}, other endpoints' p99 at "
        f"{over(per_run['others_p99_ratio'], '{:.1f}', 'x baseline')}, "
        f"{others['within'].sum()}/{len(others)} other endpoints within tolerance, {recovery}"
    )


def reading(rs: RunSet) -> str:
    """Per fault scenario: who kept the other endpoints within tolerance in every repetition;
    per variant the median over its repetitions (`faults.per_run`, as `readings.json`) of the
    worst endpoint's error rate, the others' p99 ratio and the recovery; then the invariants."""
    df = faults.table(rs)
    runs = faults.per_run(df)
    lines: list[str] = []
    if df.empty:
        lines.append("No fault runs in this run set.")
    for scenario, sdf in df.groupby("scenario") if not df.empty else []:
        kinds = ", ".join(sorted(set(sdf["fault"] + ":" + sdf["component"])))
        kept, parts = [], []
        for variant in _order(sdf["variant"], tuple(rs.variants())):
            v = sdf[sdf["variant"] == variant]
            others = v[~v["targeted"]]
            if len(others) and others["within"].all():
                kept.append(variant)
            per_run = runs[(runs["scenario"] == scenario) & (runs["variant"] == variant)]
            parts.append(f"{variant}: {_variant_reading(v, per_run, others)}")
        who = ", ".join(kept) if kept else "no variant"
        lines.append(
            f"**{scenario}** ({kinds}): {who} kept every other endpoint within tolerance. "
            + "; ".join(parts)
            + "."
        )
    inv = invariants_table(rs)
    if inv.empty:
        lines.append("No invariants were checked in this run set.")
    else:
        held = int(inv["ok"].sum())
        text = f"Invariants held in {held} of {len(inv)} runs"
        bad = inv[~inv["ok"]]
        if not bad.empty:
            text += ": failed in " + "; ".join(
                f"{r.run} ({r.failed_checks})" for r in bad.itertuples()
            )
        pending = inv["outbox_pending"].fillna(0).sum()
        lines.append(text + f". Outbox events left pending after the drain: {pending:.0f}.")
    tol = TOLERANCE
    lines.append(
        f"Tolerance: error rate <= baseline + {100 * tol.error_pp:.0f} pp and p99 <= "
        f"max({tol.p99_factor:g}x baseline, baseline + {tol.p99_slack_ms:.0f} ms); recovery = "
        f"{tol.consecutive} consecutive {tol.bucket_s:g} s buckets within it "
        "(archlab.analysis.blast)."
    )
    return "\n\n".join(lines)
