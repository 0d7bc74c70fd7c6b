"""Figure `04-server_sensitivity` and its paragraph of notebook 04's reading: the HTTP server.

How much of a variant's cost per request is the HTTP server under its processes
(`archlab.analysis.servers` holds the runs, the numbers and the rule for "distinguishable").
Two panels side by side, one bar per server for each variant (median over rounds, whiskers
min-max): (a) CPU ms per request of the variant's processes, (b) p99 of all endpoints, at the
same offered load. The title says what share of the distributed variant's extra CPU over the
monolith is the server. Nothing is drawn without the study's runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from archlab.analysis import servers as sv
from archlab.analysis.polyglot import cpu_count
from archlab.analysis.runset import RunSet
from archlab.figures.style import caption, color, nan_float, new_figure

NO_RUNS = "no server-sensitivity runs in this run set"
# the default server solid, the others lighter and hatched (the variant keeps its colour)
SERVER_LOOK: dict[str, dict[str, Any]] = {
    s: {"alpha": 1.0, "hatch": None} if s == sv.DEFAULT_SERVER else {"alpha": 0.5, "hatch": "//"}
    for s in sv.SERVERS
}
PANELS = (
    ("cpu_ms_per_request", "(a) CPU per request", "CPU ms per request (the variant's processes)",
     "{:.2f}"),
    ("p99_ms", "(b) p99 latency", "p99 ms, all endpoints (corrected)", "{:.1f}"),
)  # fmt: skip


def _panel(ax: Any, t: pd.DataFrame, variants: list[str], measure: str, fmt: str) -> None:
    width = 0.8 / len(sv.SERVERS)
    for k, server in enumerate(sv.SERVERS):
        rows = t[t["server"] == server].set_index("variant")
        xs, med, lo, hi, colors = [], [], [], [], []
        for i, variant in enumerate(variants):
            if variant not in rows.index or math.isnan(nan_float(rows.loc[variant, measure])):
                continue
            r = rows.loc[variant]
            xs.append(i + (k - (len(sv.SERVERS) - 1) / 2) * width)
            med.append(nan_float(r[measure]))
            lo.append(nan_float(r[f"{measure}_min"]))
            hi.append(nan_float(r[f"{measure}_max"]))
            colors.append(color(variant))
        if not xs:
            continue
        look = SERVER_LOOK[server]
        ax.bar(xs, med, width, color=colors, alpha=look["alpha"], hatch=look["hatch"],
               edgecolor="#333333", linewidth=0.5)  # fmt: skip
        m, a, b = np.array(med), np.array(lo), np.array(hi)
        ax.errorbar(xs, m, yerr=[m - a, b - m], fmt="none", ecolor="#333333", capsize=3, lw=1)
        for x, value, top in zip(xs, med, hi, strict=True):
            ax.text(x, top, fmt.format(value), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(variants)), variants)
    ax.margins(y=0.15)
    ax.set_ylim(bottom=0)


def _rounds_label(rs: RunSet) -> str:
    n = len(sv.rounds(rs))
    return f"{n} round{'s' if n != 1 else ''}"


def _rate_label(rs: RunSet) -> str:
    rates = sv.offered_rates(rs)
    return " / ".join(f"{r:g}" for r in rates) if rates else f"{sv.RATE:g}"


def fig_server_sensitivity(rs: RunSet) -> Figure | None:
    """CPU ms per request and p99 per variant under each HTTP server (None without the runs)."""
    t = sv.table(rs)
    if t.empty:
        return None
    variants = sv.present(t["variant"], sv.VARIANTS)
    fig, axes = new_figure(2, width=4.8, height=3.8)
    for ax, (measure, title, ylabel, fmt) in zip(axes, PANELS, strict=True):
        _panel(ax, t, variants, measure, fmt)
        ax.set_title(title, loc="left")
        ax.set_ylabel(ylabel)
    handles = [
        Patch(facecolor="#999999", edgecolor="#333333", alpha=SERVER_LOOK[s]["alpha"],
              hatch=SERVER_LOOK[s]["hatch"], label=s)
        for s in sv.SERVERS
        if s in set(t["server"])
    ]  # fmt: skip
    axes[0].legend(handles=handles, title="HTTP server", fontsize=8, title_fontsize=8)
    cpus = cpu_count(rs)
    found = sv.shares(rs)
    verdict = "; ".join(sv.share_text(s, short=True) for s in found) or (
        f"no {sv.COSTLIEST} and {sv.BASE} under both servers: no share computed"
    )
    fig.suptitle(
        f"How much of the cost is the HTTP server: open loop at {_rate_label(rs)} req/s, "
        f"{_rounds_label(rs)}, {cpus or '?'} CPUs\n{verdict}",
        fontsize=10,
    )
    behind = t[t["keeping_up"] == False]  # noqa: E712 - None (unknown) is not behind
    extra = "bars: median over rounds, whiskers: min-max; CPU: every process of the variant "
    extra += "(summary server.total), not the load generator"
    if len(behind):
        names = ", ".join(f"{r.variant} on {r.server}" for r in behind.itertuples())
        extra += f"; fell behind the offered load: {names}"
    return caption(fig, rs, extra)


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * (ratio - 1):+.0f} %"


def _verdict(effect: sv.Effect) -> str:
    apart = effect.apart
    if apart is None:
        return "one round: not judged"
    return "distinguishable" if apart else "not distinguishable: the rounds' ranges overlap"


def _effect_text(effect: sv.Effect | None, unit: str, digits: int) -> str | None:
    if effect is None:
        return None
    a, b = effect.default, effect.other

    def one(s: sv.Spread) -> str:
        if s.rounds < 2:
            return f"{s.median:.{digits}f}"
        return f"{s.median:.{digits}f} ({s.low:.{digits}f}-{s.high:.{digits}f})"

    return f"{one(a)} vs {one(b)} {unit} ({_pct(effect.ratio)}, {_verdict(effect)})"


def reading(rs: RunSet) -> str:
    """Notebook 04's paragraph on the HTTP server, computed from the study's runs."""
    t = sv.table(rs)
    if t.empty:
        return (
            f"**HTTP server**: {NO_RUNS} (`archlab reproduce` runs each variant under "
            f"{', '.join(sv.SERVERS)} at {sv.RATE:g} req/s, open loop, in rounds)."
        )
    cpus = cpu_count(rs)
    interleaved = " interleaved" if len(sv.rounds(rs)) > 1 else ""
    head = (
        f"**HTTP server** (open loop at {_rate_label(rs)} req/s, {_rounds_label(rs)}"
        f"{interleaved}, {cpus or '?'} CPUs; medians over rounds, min-max in brackets; "
        f"{sv.DEFAULT_SERVER} vs {', '.join(sv.ALTERNATIVES)}):"
    )
    bullets = []
    for variant in sv.present(t["variant"], sv.VARIANTS):
        for server in sv.ALTERNATIVES:
            cpu = _effect_text(sv.effect(rs, variant, "cpu_ms_per_request", server), "CPU ms", 2)
            p99 = _effect_text(sv.effect(rs, variant, "p99_ms", server), "ms", 1)
            if cpu is None and p99 is None:
                have = ", ".join(t.loc[t["variant"] == variant, "server"])
                bullets.append(f"- {variant}: measured under {have} only.")
                continue
            rows = t[t["variant"] == variant].set_index("server")
            rps = " vs ".join(
                f"{nan_float(rows.loc[s, 'achieved_rps']):.1f}" for s in (sv.DEFAULT_SERVER, server)
            )
            bullets.append(f"- {variant}: CPU per request {cpu}; p99 {p99}; achieved {rps} req/s.")
    lines = ["\n".join([head, *bullets])]
    found = sv.shares(rs)
    for s in found:
        text = sv.share_text(s)
        lines.append(text[0].upper() + text[1:])
    if not found:
        lines.append(
            f"No share of {sv.COSTLIEST}'s extra CPU is computed: it needs {sv.COSTLIEST} and "
            f"{sv.BASE} measured in the same rounds under {sv.DEFAULT_SERVER} and another server."
        )
    behind = t[t["keeping_up"] == False]  # noqa: E712 - None (unknown) is not behind
    if len(behind):
        names = ", ".join(f"{r.variant} on {r.server}" for r in behind.itertuples())
        lines.append(
            f"Fell behind the offered load in some round: {names}; there the comparison is "
            "not at the same load."
        )
    return "\n\n".join(lines)
