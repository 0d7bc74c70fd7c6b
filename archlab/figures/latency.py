"""Notebook 01: latency against offered load, per variant and endpoint, and what one hop costs.

The latency ramps (kind "latency": open-loop staircases on all CPUs, generator unpinned beside
the server) are compared at equal offered rates, where the architectures differ only in what a
request costs; the hop micro-benchmark says how much of that difference one in-process call
turned into IPC or HTTP explains.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from archlab.analysis import ramp
from archlab.analysis.runset import ENDPOINT_ORDER, RunSet
from archlab.figures.style import caption, color, new_figure

HOP_ORDER = ("in-process", "+codec", "IPC", "HTTP")
HOP_COLORS = {"in-process": "#7f7f7f", "+codec": "#bcbd22", "IPC": "#1f77b4", "HTTP": "#2ca02c"}


def _hop_kind(name: str) -> str:
    """The benchmark's hop names are descriptive ('IPC (Unix socket, msgpack)'); group them."""
    if name.startswith("IPC"):
        return "IPC"
    if name.startswith("HTTP"):
        return "HTTP"
    if "codec" in name:
        return "+codec"
    return "in-process" if name.startswith("in-process") else name


def _shared_note(rs: RunSet) -> str:
    runs = rs.of("latency")
    if any((r.meta.get("cpu_pinning") or {}).get("shared") for r in runs):
        return "server and load generator share all CPUs (unpinned)"
    return ""


def ramp_table(rs: RunSet) -> pd.DataFrame:
    """Every latency ramp's steps (ALL endpoints), one row per variant and step."""
    frames = [ramp.ramp_steps(r) for r in rs.of("latency")]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def knees(rs: RunSet) -> pd.DataFrame:
    """Per variant where its latency ramp bent (ramp.knee), the top rate tried and the
    throughput at the SLO, so the reading never has to re-derive them."""
    rows = []
    for run in rs.of("latency"):
        k = ramp.knee(run)
        steps = ramp.ramp_steps(run)
        if k is None or steps.empty:
            continue
        rows.append(
            {
                "variant": run.variant,
                "tag": run.tag,
                "bent": k["bent"],
                "knee_offered_rps": k["offered_rps"],
                "knee_p99_ms": k["p99_ms"],
                "bent_at_rps": k["bent_at_rps"],
                "bent_p99_ms": k["bent_p99_ms"],
                "first_p99_ms": float(steps["p99_ms"].iloc[0]),
                "top_offered_rps": float(steps["offered_rps"].max()),
                "throughput_at_slo_rps": ramp.throughput_at_slo(run),
            }
        )
    return pd.DataFrame(rows)


def hop_table(rs: RunSet) -> pd.DataFrame:
    """rs.hop as rows (call, hop, p50/p99/mean µs) with each hop's p50 relative to the hop
    before it, the numbers the bar chart shows and the reading quotes."""
    if not rs.hop:
        return pd.DataFrame()
    rows = []
    for call, hops in rs.hop.get("results", {}).items():
        for name, stats in hops.items():
            rows.append(
                {
                    "call": call,
                    "hop": _hop_kind(name),
                    "hop_detail": name,
                    "p50_us": stats.get("p50_us"),
                    "p99_us": stats.get("p99_us"),
                    "mean_us": stats.get("mean_us"),
                }
            )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    order = {h: i for i, h in enumerate(HOP_ORDER)}
    df["_o"] = df["hop"].map(lambda h: order.get(h, len(order)))
    df = df.sort_values(["call", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    df["p50_x_in_process"] = df["p50_us"] / df.groupby("call")["p50_us"].transform("first")
    return df


def latency_vs_load(rs: RunSet) -> Figure | None:
    """p50/p99 of all endpoints and achieved rate against offered rate, one line per variant."""
    runs = [r for r in rs.of("latency") if not ramp.ramp_steps(r).empty]
    if not runs:
        return None
    fig, (ax, ax_tp) = new_figure(2, width=6.2, height=4.4)
    top = 0.0
    for run in runs:
        df = ramp.ramp_steps(run)
        c = color(run.variant)
        top = max(top, float(df["offered_rps"].max()))
        ax.plot(df["offered_rps"], df["p99_ms"], "-o", color=c, label=f"{run.variant} p99")
        ax.plot(
            df["offered_rps"], df["p50_ms"], "--", color=c, alpha=0.7, label=f"{run.variant} p50"
        )
        ax_tp.plot(df["offered_rps"], df["achieved_rps"], "-o", color=c, label=run.variant)
        behind = df[~df["keeping_up"]]
        ax_tp.plot(behind["offered_rps"], behind["achieved_rps"], "x", color="black", ms=9)
        k = ramp.knee(run)
        if k and k["offered_rps"] is not None:
            ax.plot(k["offered_rps"], k["p99_ms"], "D", ms=12, mfc="none", mec=c, mew=2)
            ax_tp.axvline(k["offered_rps"], color=c, ls=":", lw=1)
    ax.axhline(ramp.SLO_P99_MS, color="black", ls=":", lw=1)
    ax.annotate(
        f"SLO p99 {ramp.SLO_P99_MS:g} ms",
        (0.01, ramp.SLO_P99_MS),
        xycoords=("axes fraction", "data"),
        va="bottom",
        fontsize=8,
    )
    ax.plot([], [], "D", ms=10, mfc="none", mec="black", label="knee (last step before bend)")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (req/s)")
    ax.set_ylabel("latency from intended start (ms, log)")
    ax.set_title("Latency vs offered load, all endpoints")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    ax_tp.plot([0, top], [0, top], color="#999999", lw=1, label="achieved = offered")
    ax_tp.plot(
        [0, top],
        [0, ramp.KEEPING_UP * top],
        color="#999999",
        lw=1,
        ls="--",
        label=f"{ramp.KEEPING_UP:.0%} of offered (keeping up)",
    )
    ax_tp.plot([], [], "x", color="black", label="fell behind")
    ax_tp.plot([], [], ":", color="black", lw=1, label="knee")
    ax_tp.set_xlabel("offered load (req/s)")
    ax_tp.set_ylabel("achieved throughput (req/s)")
    ax_tp.set_title("Achieved vs offered throughput")
    ax_tp.grid(True, alpha=0.3)
    ax_tp.legend(fontsize=7)
    return caption(fig, rs, _shared_note(rs))


def latency_by_endpoint(rs: RunSet) -> Figure | None:
    """p99 per endpoint against offered rate: which request types the hops hurt most."""
    runs = [r for r in rs.of("latency") if not ramp.endpoint_steps(r).empty]
    if not runs:
        return None
    panels = [*ENDPOINT_ORDER, "ALL"]
    ncols = 3
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = new_figure(ncols, nrows, width=4.2, height=3.2, sharex=True, sharey=True)
    flat = list(np.ravel(axes))
    for run in runs:
        df = ramp.endpoint_steps(run)
        full = df["seconds"].max()
        df = df[df["seconds"] >= 0.8 * full]  # as ramp_steps: drop a cut-short last step
        for ax, endpoint in zip(flat, panels, strict=False):
            d = df[df["endpoint"] == endpoint]
            if not d.empty:
                ax.plot(
                    d["offered_rps"],
                    d["p99_ms"],
                    "-o",
                    ms=3,
                    color=color(run.variant),
                    label=run.variant,
                )
    for i, (ax, endpoint) in enumerate(zip(flat, panels, strict=False)):
        ax.set_title("all endpoints" if endpoint == "ALL" else endpoint, fontsize=9)
        ax.axhline(ramp.SLO_P99_MS, color="black", ls=":", lw=1)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if i % ncols == 0:
            ax.set_ylabel("p99 from intended start (ms)")
        if i >= len(panels) - ncols:
            ax.set_xlabel("offered load, all endpoints (req/s)")
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    flat[0].legend(fontsize=7)
    fig.suptitle(f"p99 latency per endpoint vs offered load (dotted: SLO {ramp.SLO_P99_MS:g} ms)")
    return caption(fig, rs, _shared_note(rs))


def hop_cost(rs: RunSet) -> Figure | None:
    """One contract call in-process, through the codec, over IPC and over HTTP (p50, p99)."""
    df = hop_table(rs)
    if df.empty:
        return None
    calls = list(dict.fromkeys(df["call"]))
    hops = [h for h in HOP_ORDER if h in set(df["hop"])] + sorted(set(df["hop"]) - set(HOP_ORDER))
    fig, ax = new_figure(width=7.5, height=4.4)
    width = 0.8 / len(hops)
    x = np.arange(len(calls))
    for j, hop in enumerate(hops):
        d = df[df["hop"] == hop].set_index("call").reindex(calls)
        pos = x - 0.4 + width * (j + 0.5)
        p50, p99 = d["p50_us"].to_numpy(float), d["p99_us"].to_numpy(float)
        label = d["hop_detail"].dropna().iloc[0] if d["hop_detail"].notna().any() else hop
        ax.bar(pos, p50, width, color=HOP_COLORS.get(hop, "#8c564b"), label=label)
        ax.errorbar(
            pos,
            p50,
            yerr=[np.zeros_like(p50), np.clip(p99 - p50, 0, None)],
            fmt="none",
            ecolor="black",
            capsize=3,
            lw=1,
        )
        for xp, v in zip(pos, p50, strict=True):
            if np.isfinite(v):
                ax.annotate(
                    f"{v:g}",
                    (xp, v),
                    ha="center",
                    va="top",
                    fontsize=7,
                    xytext=(0, -2),
                    textcoords="offset points",
                    color="white",
                )
    ax.set_yscale("log")
    ax.set_ylim(bottom=float(df["p50_us"].min()) / 3)  # log bars need a floor below the smallest
    ax.set_xticks(x, calls)
    ax.set_ylabel("time per call (µs, log): bar p50, whisker p99")
    ax.set_title("What one hop costs: the same call in-process, via IPC, via HTTP")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    hop = rs.hop or {}
    extra = f"{hop.get('calls', '?')} sequential calls after {hop.get('warmup', '?')} warm-up"
    return caption(fig, rs, f"{extra}, dataset {hop.get('size', '?')}")


FIGURES = {
    "latency_vs_load": latency_vs_load,
    "latency_by_endpoint": latency_by_endpoint,
    "hop_cost": hop_cost,
}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{text} {unit}".strip()


def _knee_lines(k: pd.DataFrame) -> list[str]:
    lines = []
    for row in k.itertuples():
        if not row.bent:
            lines.append(
                f"- **{row.variant}** did not bend up to {_fmt(row.top_offered_rps, 'req/s')} "
                f"(p99 {_fmt(row.knee_p99_ms, 'ms')} at the top step): its capacity lies above "
                "what the ramp offered."
            )
        elif row.knee_offered_rps is None or pd.isna(row.knee_offered_rps):
            lines.append(
                f"- **{row.variant}** bent already at the first step "
                f"({_fmt(row.bent_at_rps, 'req/s')}, p99 {_fmt(row.bent_p99_ms, 'ms')})."
            )
        else:
            if row.bent_p99_ms > ramp.SLO_P99_MS:
                why = "over the SLO"
            elif row.bent_p99_ms > ramp.KNEE_FACTOR * row.first_p99_ms:
                why = f"over {ramp.KNEE_FACTOR:g}x the first step's p99, within the SLO"
            else:
                why = "the server fell behind the offered rate or errored"
            lines.append(
                f"- **{row.variant}**: knee at {_fmt(row.knee_offered_rps, 'req/s')} offered "
                f"(p99 {_fmt(row.knee_p99_ms, 'ms')}); at {_fmt(row.bent_at_rps, 'req/s')} "
                f"p99 rose to {_fmt(row.bent_p99_ms, 'ms')} ({why}). Throughput at the SLO: "
                f"{_fmt(row.throughput_at_slo_rps, 'req/s')}."
            )
    return lines


def _common_step_lines(steps: pd.DataFrame) -> list[str]:
    by_variant = {v: d for v, d in steps.groupby("variant", sort=False)}
    if len(by_variant) < 2:
        return []
    common = set.intersection(*(set(d["offered_rps"]) for d in by_variant.values()))
    if not common:
        return ["The ramps share no offered rate, so p99 is not compared across variants."]
    rate = min(common)
    p99 = {
        v: float(d.loc[d["offered_rps"] == rate, "p99_ms"].iloc[0]) for v, d in by_variant.items()
    }
    ref = next(iter(p99))
    parts = [f"{ref} {_fmt(p99[ref], 'ms')}"]
    for v, value in list(p99.items())[1:]:
        ratio = value / p99[ref] if p99[ref] else float("nan")
        parts.append(f"{v} {_fmt(value, 'ms')} ({_fmt(ratio)}x {ref})")
    return [
        f"At {_fmt(rate, 'req/s')}, the lowest offered rate every ramp ran, p99 of all endpoints "
        f"was {', '.join(parts)}."
    ]


def _hop_lines(h: pd.DataFrame) -> list[str]:
    if h.empty:
        return ["No hop benchmark (hop.json) in this run set: hop costs are not quoted."]
    lines = []
    for call, d in h.groupby("call", sort=False):
        p50: dict[str, Any] = dict(zip(d["hop"], d["p50_us"], strict=True))
        parts = [f"{hop} {_fmt(p50[hop], 'µs')}" for hop in HOP_ORDER if hop in p50]
        ratios = []
        if p50.get("in-process") and "IPC" in p50:
            ratios.append(f"IPC / in-process {_fmt(p50['IPC'] / p50['in-process'])}x")
        if p50.get("IPC") and "HTTP" in p50:
            ratios.append(f"HTTP / IPC {_fmt(p50['HTTP'] / p50['IPC'])}x")
        lines.append(f"- `{call}` (p50): {', '.join(parts)}; {'; '.join(ratios) or 'no ratio'}.")
    return lines


def reading(rs: RunSet) -> str:
    """The notebook's conclusions, every number computed from this run set."""
    out = ["### Where each variant's latency bends"]
    k = knees(rs)
    if k.empty:
        out.append(
            "This run set has no finished latency ramps (kind 'latency'), so no knee, p99 or "
            "throughput is quoted."
        )
    else:
        out += _knee_lines(k)
        out.append("")
        out += _common_step_lines(ramp_table(rs))
        note = _shared_note(rs)
        if note:
            out.append(
                f"\nOn {rs.machine_label()} the {note}: compare variants at equal offered load; "
                "capacity itself is the scaling notebook's (06) question."
            )
    out += ["", "### What one hop costs"]
    out += _hop_lines(hop_table(rs))
    return "\n".join(out)
