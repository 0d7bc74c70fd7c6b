"""Notebook 01: latency against offered load, per variant and endpoint, and what one hop costs.

The latency ramps (kind "latency": open-loop staircases on all CPUs, generator unpinned beside
the server) are compared at equal offered rates, where the architectures differ only in what a
request costs; the hop micro-benchmark says how much of that difference one in-process call
turned into IPC or HTTP explains. When the run set has the floor (`archlab bench floor`,
floor.json), the latency panel draws it: what the lab's own generator reads against the bare
HTTP stack, below which no variant can be measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from archlab.analysis import ramp, readings
from archlab.analysis.runset import ENDPOINT_ORDER, Run, RunSet
from archlab.figures.style import caption, color, new_figure
from archlab.rundir import FLOOR, read_json

HOP_ORDER = ("in-process", "+codec", "IPC", "HTTP")
HOP_COLORS = {"in-process": "#7f7f7f", "+codec": "#bcbd22", "IPC": "#1f77b4", "HTTP": "#2ca02c"}
FLOOR_LABEL = "floor: generator vs bare endpoint"
FLOOR_COLOR = "#9e9e9e"


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


def floor_report(rs: RunSet) -> dict[str, Any] | None:
    """The run set's floor.json (`archlab bench floor`), or None."""
    report = read_json(rs.path / FLOOR)
    return report if report and (report.get("summary") or {}).get("lab") else None


def floor_table(rs: RunSet) -> pd.DataFrame:
    """Per offered rate the floor's corrected p50 and p99 (medians over its rounds, with the
    95 % interval), the latency the panel shows, and its send lag."""
    report = floor_report(rs)
    if report is None:
        return pd.DataFrame()
    rows = []
    for row in report["summary"]["lab"]:
        out: dict[str, Any] = {"offered_rps": float(row["offered_rps"])}
        for key, name in (
            ("corrected_p50_ms", "p50"),
            ("corrected_p99_ms", "p99"),
            ("send_lag_p99_ms", "lag_p99"),
        ):
            spread = row.get(key) or {}
            out[f"{name}_ms"] = spread.get("median", np.nan)
            out[f"{name}_ci_low"] = spread.get("ci_low", np.nan)
            out[f"{name}_ci_high"] = spread.get("ci_high", np.nan)
        rows.append(out)
    return pd.DataFrame(rows).sort_values("offered_rps", ignore_index=True)


def _floor_check(report: dict[str, Any]) -> tuple[float, float, float, float | None] | None:
    """(rate, lab p50, independent client p50, difference %) of the cross-check, observed."""
    s = report["summary"]
    ind = s.get("independent") or {}
    rate = ind.get("offered_rps")
    lab = next((r for r in s["lab"] if r["offered_rps"] == rate), None)
    if lab is None or not lab.get("observed_p50_ms") or not ind.get("observed_p50_ms"):
        return None
    diff = (s.get("difference_pct") or {}).get("observed_p50") or {}
    return (
        float(rate),
        float(lab["observed_p50_ms"]["median"]),
        float(ind["observed_p50_ms"]["median"]),
        diff.get("median"),
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.0f} %"


def _floor_note(rs: RunSet) -> str:
    report = floor_report(rs)
    if report is None:
        return ""
    note = (
        f"grey: the {FLOOR_LABEL} ({report.get('server', '?')}, GET /products/{{id}} with a "
        f"fixed body), corrected p99 (band: 95 % interval) and p50 over "
        f"{report.get('rounds', '?')} rounds"
    )
    check = _floor_check(report)
    if check is not None:
        rate, lab, ind, diff = check
        note += (
            f"; at {rate:g} req/s the lab's generator read p50 {lab:.3g} ms, an independent "
            f"http.client {ind:.3g} ms ({_pct(diff)})"
        )
    return note


def _draw_floor(ax: Any, rs: RunSet) -> None:
    df = floor_table(rs)
    if df.empty:
        return
    x = df["offered_rps"]
    ax.fill_between(x, df["p99_ci_low"], df["p99_ci_high"], color=FLOOR_COLOR, alpha=0.3, lw=0)
    ax.plot(x, df["p99_ms"], "-", color=FLOOR_COLOR, lw=2, label=f"{FLOOR_LABEL} p99")
    ax.plot(x, df["p50_ms"], "--", color=FLOOR_COLOR, lw=1.5, label=f"{FLOOR_LABEL} p50")


def ramp_table(rs: RunSet) -> pd.DataFrame:
    """Every latency ramp's steps (ALL endpoints), one row per variant and step."""
    frames = [ramp.ramp_steps(r) for r in rs.of("latency")]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _ramps(rs: RunSet) -> list[list[Run]]:
    """Each variant's latency ramp, as the list of its repetitions (round order)."""
    groups = rs.repeated("latency")
    return [g for g in groups.values() if any(not ramp.ramp_steps(r).empty for r in g)]


def knees(rs: RunSet) -> pd.DataFrame:
    """Per variant where its latency ramp bent (ramp.knee over its repetitions), the top rate
    tried and the throughput at the SLO, so the reading never has to re-derive them."""
    rows = []
    for runs in _ramps(rs):
        k = ramp.knee(runs)
        steps = ramp.held_steps(runs)
        if k is None or steps.empty:
            continue
        rows.append(
            {
                "variant": runs[0].variant,
                "tag": runs[0].step,
                "n": len(runs),
                "bent": k["bent"],
                "bent_reason": k.get("bent_reason", ""),
                "knee_offered_rps": k["offered_rps"],
                "knee_p99_ms": k["p99_ms"],
                "bent_at_rps": k["bent_at_rps"],
                "bent_p99_ms": k["bent_p99_ms"],
                "first_p99_ms": float(steps["p99_ms"].iloc[0]),
                "top_offered_rps": float(steps["offered_rps"].max()),
                "throughput_at_slo_rps": ramp.throughput_at_slo(runs),
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
    groups = _ramps(rs)
    if not groups:
        return None
    fig, (ax, ax_tp) = new_figure(2, width=6.2, height=4.4)
    top = 0.0
    reps = sorted({len(g) for g in groups})
    for runs in groups:
        variant = runs[0].variant
        df = ramp.held_steps(runs)
        c = color(variant)
        top = max(top, float(df["offered_rps"].max()))
        err = [
            (df["p99_ms"] - df["p99_ci_low"]).clip(lower=0),
            (df["p99_ci_high"] - df["p99_ms"]).clip(lower=0),
        ]
        ax.errorbar(df["offered_rps"], df["p99_ms"], yerr=err, fmt="-o", color=c, capsize=2,
                    label=f"{variant} p99")  # fmt: skip
        ax.plot(df["offered_rps"], df["p50_ms"], "--", color=c, alpha=0.7, label=f"{variant} p50")
        terr = [
            (df["achieved_rps"] - df["achieved_ci_low"]).clip(lower=0),
            (df["achieved_ci_high"] - df["achieved_rps"]).clip(lower=0),
        ]
        ax_tp.errorbar(df["offered_rps"], df["achieved_rps"], yerr=terr, fmt="-o", color=c,
                       capsize=2, label=variant)  # fmt: skip
        behind = df[~df["keeping_up"].astype(bool)]
        ax_tp.plot(behind["offered_rps"], behind["achieved_rps"], "x", color="black", ms=9)
        k = ramp.knee(runs)
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
    _draw_floor(ax, rs)
    ax.plot([], [], "D", ms=10, mfc="none", mec="black", label="knee (highest step in SLO)")
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
    n_text = "/".join(str(n) for n in reps)
    medians = (
        f"medians over {n_text} repetitions, bars: 95 % intervals" if reps != [1] else "one run"
    )
    notes = (medians, _shared_note(rs), _floor_note(rs))
    return caption(fig, rs, "; ".join(n for n in notes if n))


def latency_by_endpoint(rs: RunSet) -> Figure | None:
    """p99 per endpoint against offered rate: which request types the hops hurt most."""
    runs = [r for r in rs.first_round("latency") if not ramp.endpoint_steps(r).empty]
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
    return caption(fig, rs, "; ".join(n for n in ("first repetition", _shared_note(rs)) if n))


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
    placed = hop.get("placement") or "free"  # reports before placements left it to the scheduler
    return caption(fig, rs, f"{extra}, dataset {hop.get('size', '?')}, placement {placed}")


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
            why = row.bent_reason or "it did not hold the SLO"
            lines.append(
                f"- **{row.variant}**: knee at {_fmt(row.knee_offered_rps, 'req/s')} offered "
                f"(p99 {_fmt(row.knee_p99_ms, 'ms')}); at {_fmt(row.bent_at_rps, 'req/s')} "
                f"p99 rose to {_fmt(row.bent_p99_ms, 'ms')} ({why}). Throughput at the SLO: "
                f"{_fmt(row.throughput_at_slo_rps, 'req/s')}."
            )
    return lines


def _common_step_lines(rs: RunSet) -> list[str]:
    """p99 at the lowest rate every ramp ran, each a median with its interval (readings.json's
    `latency.*`), ranked against the first variant only where the intervals are apart."""
    found = readings.latency(rs)
    by_variant: dict[str, dict[float, readings.Reading]] = {}
    for r in found:
        study, variant, rest = r.name.split(".", 2)
        measure, _, where = rest.partition("@")
        if measure == "p99_ms":
            by_variant.setdefault(variant, {})[float(where.removesuffix("rps"))] = r
    if len(by_variant) < 2:
        return []
    common = set.intersection(*(set(d) for d in by_variant.values()))
    if not common:
        return ["The ramps share no offered rate, so p99 is not compared across variants."]
    rate = min(common)
    p99 = {v: d[rate] for v, d in by_variant.items()}
    ref = next(iter(p99))
    parts = [f"{ref} {p99[ref].text('{:.3g}')}"]
    for v, value in list(p99.items())[1:]:
        ratio = value.median / p99[ref].median if p99[ref].median else float("nan")
        verdict = readings.compare(value, p99[ref])
        parts.append(f"{v} {value.text('{:.3g}')} ({_fmt(ratio)}x {ref}: {verdict})")
    return [
        f"At {_fmt(rate, 'req/s')}, the lowest offered rate every ramp ran, p99 of all endpoints "
        f"(median [95 % interval], repetitions) was {', '.join(parts)}."
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


def _floor_lines(rs: RunSet) -> list[str]:
    report = floor_report(rs)
    if report is None:
        return [
            "No floor (floor.json, `archlab bench floor`) in this run set: how much of a low "
            "load's latency is the load generator's own is not quoted."
        ]
    df = floor_table(rs)
    parts = [
        f"{_fmt(r.offered_rps, 'req/s')}: p50 {_fmt(r.p50_ms, 'ms')}, p99 {_fmt(r.p99_ms, 'ms')}"
        for r in df.itertuples()
    ]
    lines = [
        f"Against the bare endpoint ({report.get('server', '?')}: the same HTTP server, "
        "framework and process model, a fixed body, no domain) the lab's own generator read, "
        f"from intended start, {'; '.join(parts)} (medians over {report.get('rounds', '?')} "
        "rounds). No variant's latency can be read below this floor; at low load a variant's "
        "p50 close to it is mostly HTTP stack and generator."
    ]
    check = _floor_check(report)
    if check is not None:
        rate, lab, ind, diff = check
        lines.append(
            f"At {_fmt(rate, 'req/s')} an independent client (stdlib http.client, one "
            f"keep-alive connection, its own open-loop schedule) read p50 {_fmt(ind, 'ms')} "
            f"where the lab's generator read {_fmt(lab, 'ms')} (observed): the generator's "
            f"own share of a request is {_pct(diff)} of the independent client's figure."
        )
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
        out += _common_step_lines(rs)
        note = _shared_note(rs)
        if note:
            out.append(
                f"\nOn {rs.machine_label()} the {note}: compare variants at equal offered load; "
                "capacity itself is the scaling notebook's (06) question."
            )
    out += ["", "### The floor: the lab's generator against the bare endpoint"]
    out += _floor_lines(rs)
    out += ["", "### What one hop costs"]
    out += _hop_lines(hop_table(rs))
    return "\n".join(out)
