"""GC stalls under the gc-pressure scenario: who pauses, and which requests feel it.

The recommendation model is rebuilt every second under load and a gc fault (allocation churn
plus forced full collections) hits the recommendations component for the middle of the run.
In the monolith the engine shares the process with every endpoint; in multiprocess and
distributed it has its own process, so its pauses should reach only the requests that call it.

The definitions (pause, full collection, overlap, which latency, p99) are
`archlab.analysis.gcwindows`'s.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from archlab.analysis import gcwindows, readings
from archlab.analysis import remedies as rm
from archlab.analysis.gcwindows import (
    FULL_GENERATION,
    MIN_PAUSE_MS,
    engine_pauses,
    inside_outside,
    measured_requests,
    p99,
    pauses,
)
from archlab.analysis.runset import ENDPOINT_COMPONENTS, ENDPOINT_ORDER, VARIANT_ORDER, Run, RunSet
from archlab.figures import remedies
from archlab.figures.style import caption, color, new_figure

KIND = "gc"
# bounded contexts each endpoint calls on its way (variants/edge/app.py, Orders.place)
# the role that parses every HTTP request of a variant
FRONT_ROLE = {"monolith": "monolith", "multiprocess": "backend", "distributed": "gateway"}
ENDPOINT_COLORS = dict(
    zip(ENDPOINT_ORDER, ("#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd"), strict=True)
)
NO_PAUSE = "no pause overlapped"


# ---------------------------------------------------------------- pure logic (unit tested)


def path_roles(variant: str, endpoint: str, roles: set[str]) -> set[str]:
    """Roles whose processes a request of `endpoint` passes through (front + contexts called).

    A pause in any of them can hold the request; notifications (drained from an outbox, off the
    request path), masters and launchers are never on it. Unknown variant: every role.
    """
    from archlab.deployers import VARIANTS

    spec = VARIANTS.get(variant)
    if spec is None or variant not in FRONT_ROLE:
        return set(roles)
    found = {FRONT_ROLE[variant]}
    for component in ENDPOINT_COMPONENTS.get(endpoint, ()):
        found.add(spec.host_role(component))
    return found


def attribute_slow(
    requests: pd.DataFrame, all_pauses: pd.DataFrame, variant: str
) -> tuple[pd.Series, float]:
    """Each slow request (corrected latency > the run's p99) -> the role it is attributed to.

    Only pauses of roles on the request's path count. Among those that overlap it, the role
    whose pauses overlap it longest (summed overlap) gets the request; none: NO_PAUSE.
    Returns the attribution (index = slow requests) and the p99 threshold.
    """
    threshold = p99(requests["corrected_ms"])
    slow = requests[requests["corrected_ms"] > threshold]
    roles = set(all_pauses["role"].unique()) if not all_pauses.empty else set()
    best_role = pd.Series(NO_PAUSE, index=slow.index, dtype=object)
    best_overlap = np.zeros(len(slow))
    s = slow["start_time"].to_numpy()[:, None]
    e = slow["end_time"].to_numpy()[:, None]
    for role, group in all_pauses.groupby("role"):
        ps, pe = group["start"].to_numpy()[None, :], group["end"].to_numpy()[None, :]
        overlap = np.clip(np.minimum(e, pe) - np.maximum(s, ps), 0, None).sum(axis=1)
        on_path = np.array(
            [role in path_roles(variant, ep, roles | {role}) for ep in slow["endpoint"]],
            dtype=bool,
        )
        better = on_path & (overlap > best_overlap)
        best_role[better] = role
        best_overlap = np.where(better, overlap, best_overlap)
    return best_role, threshold


# ---------------------------------------------------------------- run set -> tables


def _runs(rs: RunSet) -> list[Run]:
    """One gc-pressure run per variant (the first repetition): the per-request detail of one
    run is drawn; the numbers over every repetition are the reading's (`readings.gc_stalls`)."""
    return [r for r in rs.first_round(KIND) if not r.requests.empty and not r.gc.empty]


def inside_outside_table(rs: RunSet) -> pd.DataFrame:
    """Per variant and endpoint: p99 inside vs outside the engine's full collections."""
    rows = []
    for run in _runs(rs):
        engine_only, engine = engine_pauses(run)
        for row in inside_outside(measured_requests(run), engine_only):
            rows.append({"variant": run.variant, "engine_roles": ", ".join(sorted(engine)), **row})
    return pd.DataFrame(rows)


def attribution_table(rs: RunSet) -> pd.DataFrame:
    """Per variant and role: how many of the slow requests are attributed to its pauses."""
    rows = []
    for run in _runs(rs):
        attributed, threshold = attribute_slow(measured_requests(run), pauses(run.gc), run.variant)
        n = len(attributed)
        for role, count in attributed.value_counts().items():
            rows.append(
                {
                    "variant": run.variant,
                    "role": role,
                    "slow_requests": n,
                    "attributed": int(count),
                    "share": count / n if n else math.nan,
                    "p99_threshold_ms": threshold,
                }
            )
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["variant", "attributed"], key=_variant_key, ascending=[True, False])
    return df.reset_index(drop=True)


def largest_pauses(rs: RunSet) -> pd.DataFrame:
    """Per variant and role: largest pause, largest full collection, full-collection count/total."""
    rows = []
    for run in _runs(rs):
        gc = run.gc
        for role, group in gc.groupby("role"):
            full = group[group["generation"] == FULL_GENERATION]
            rows.append(
                {
                    "variant": run.variant,
                    "role": role,
                    "collections": len(group),
                    "pauses_ge_1ms": int((group["duration_ms"] >= MIN_PAUSE_MS).sum()),
                    "max_pause_ms": float(group["duration_ms"].max()),
                    "full_collections": len(full),
                    "max_full_ms": float(full["duration_ms"].max()) if len(full) else math.nan,
                    "total_full_ms": float(full["duration_ms"].sum()),
                }
            )
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["variant", "max_pause_ms"], key=_variant_key, ascending=[True, False])
    return df.reset_index(drop=True)


def _variant_key(col: pd.Series) -> pd.Series:
    if col.name != "variant":
        return col
    return col.map(lambda v: VARIANT_ORDER.index(v) if v in VARIANT_ORDER else len(VARIANT_ORDER))


def _role_colors(runs: list[Run]) -> dict[str, str]:
    palette = ["#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#9467bd", "#ff7f0e"]
    roles = sorted({r for run in runs for r in pauses(run.gc)["role"].unique()})
    special = {"recommendations": "#222222", "monolith": "#222222"}  # the engine's host
    out, i = {}, 0
    for role in roles:
        if role in special:
            out[role] = special[role]
        else:
            out[role] = palette[i % len(palette)]
            i += 1
    return out


# ---------------------------------------------------------------- figures


def gc_timeline(rs: RunSet) -> Figure | None:
    """Latency over time per variant, with every pause >= 1 ms per role and the fault window."""
    runs = _runs(rs)
    if not runs:
        return None
    colors = _role_colors(runs)
    fig, axes = new_figure(1, len(runs), width=11, height=3.4, squeeze=False, sharey=True)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        req = measured_requests(run)
        for endpoint in gcwindows.endpoints(req):
            sub = req[req["endpoint"] == endpoint]
            ax.scatter(
                sub["t"],
                sub["corrected_ms"].clip(lower=0.1),
                s=2,
                alpha=0.5,
                color=ENDPOINT_COLORS.get(endpoint, "#333333"),
                label=endpoint,
                rasterized=True,
            )
        for _, fault in run.faults.iterrows() if not run.faults.empty else []:
            end = fault["t_end"] if pd.notna(fault["t_end"]) else req["t"].max()
            ax.axvspan(fault["t_start"], end, color="#ffd54f", alpha=0.18, lw=0)
        all_pauses = pauses(run.gc)
        all_pauses["t"] = all_pauses["start"] - run.origin
        all_pauses = all_pauses[
            (all_pauses["t"] >= req["t"].min() - 1) & (all_pauses["t"] <= req["t"].max() + 1)
        ]
        roles = sorted(all_pauses["role"].unique())
        strip = 0.05
        for i, role in enumerate(roles):
            group = all_pauses[all_pauses["role"] == role]
            y0 = 1 - strip * (i + 1)
            ax.vlines(
                group["t"],
                y0,
                y0 + strip * 0.85,
                transform=ax.get_xaxis_transform(),
                color=colors[role],
                lw=0.6,
            )
            ax.text(1.002, y0 + strip / 2, role, transform=ax.transAxes, fontsize=6,
                    va="center", color=colors[role])  # fmt: skip
            for _, p in group[group["generation"] == FULL_GENERATION].iterrows():
                ax.axvspan(p["t"], p["t"] + p["duration_ms"] / 1000, color=colors[role],
                           alpha=0.22, lw=0)  # fmt: skip
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title(
            f"{run.variant}: {len(all_pauses)} pauses >= {MIN_PAUSE_MS:g} ms "
            f"({(all_pauses['generation'] == FULL_GENERATION).sum()} full collections)",
            fontsize=9,
            loc="left",
            color=color(run.variant),
        )
        ax.grid(True, which="major", axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds after the first request")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    from matplotlib.patches import Patch

    handles += [
        Patch(color="#ffd54f", alpha=0.4, label="gc fault active"),
        Patch(color="#222222", alpha=0.3, label="full collection (gen 2)\nband = its duration"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, markerscale=4)
    fig.suptitle("GC pauses and request latency under gc-pressure", fontsize=11)
    return caption(
        fig,
        rs,
        f"ticks at the top: one per pause >= {MIN_PAUSE_MS:g} ms, one row per role; "
        "dots: requests at their send time, latency from the intended start",
    )


def tail_inside_outside(rs: RunSet) -> Figure | None:
    """Per variant and endpoint: p99 of requests overlapping an engine full collection vs not."""
    df = inside_outside_table(rs)
    if df.empty:
        return None
    variants = [v for v in VARIANT_ORDER if v in set(df["variant"])] + sorted(
        set(df["variant"]) - set(VARIANT_ORDER)
    )
    fig, axes = new_figure(len(variants), 1, width=4.2, height=4.2, squeeze=False, sharey=True)
    for ax, variant in zip(axes[0], variants, strict=True):
        sub = df[df["variant"] == variant].reset_index(drop=True)
        x = np.arange(len(sub))
        ax.bar(x - 0.2, sub["p99_outside_ms"], 0.4, color="#bbbbbb", label="outside")
        ax.bar(x + 0.2, sub["p99_inside_ms"], 0.4, color=color(variant), label="inside")
        for xi, n, top in zip(x, sub["n_inside"], sub["p99_inside_ms"], strict=True):
            if pd.notna(top):
                ax.annotate(f"n={n}", (xi + 0.2, top), xytext=(0, 2), textcoords="offset points",
                            ha="center", fontsize=6)  # fmt: skip
        ax.set_xticks(x, [e.replace("/products", "/p") for e in sub["endpoint"]], rotation=35,
                      ha="right", fontsize=7)  # fmt: skip
        ax.set_yscale("log")
        ax.set_title(f"{variant}\n(engine role: {sub['engine_roles'].iloc[0]})", fontsize=9,
                     color=color(variant))  # fmt: skip
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7, title="full collection", title_fontsize=7, loc="upper left", ncol=2)
    axes[0, 0].set_ylabel("p99 latency (ms, log)")
    highest = np.nanmax(df[["p99_outside_ms", "p99_inside_ms"]].to_numpy(dtype=float))
    axes[0, 0].set_ylim(top=highest * 12)  # headroom on the log scale: the legend hides no bar
    fig.suptitle(
        "p99 of requests overlapping a full collection of the recommendation engine vs the rest",
        fontsize=10,
    )
    return caption(fig, rs, "n = requests inside; /p = /products; a p99 of few requests is noisy")


def slow_request_attribution(rs: RunSet) -> Figure | None:
    """Share of slow requests (> the run's p99) overlapping a pause on their path, by role."""
    df = attribution_table(rs)
    if df.empty:
        return None
    runs = _runs(rs)
    colors = _role_colors(runs)
    variants = list(dict.fromkeys(df["variant"]))
    fig, ax = new_figure(width=8, height=0.9 + 0.7 * len(variants))
    for y, variant in enumerate(variants):
        sub = df[(df["variant"] == variant) & (df["role"] != NO_PAUSE)]
        left = 0.0
        for _, row in sub.iterrows():
            ax.barh(y, 100 * row["share"], left=left, color=colors.get(row["role"], "#777777"),
                    edgecolor="white", label=row["role"])  # fmt: skip
            if row["share"] >= 0.06:
                ax.text(left + 50 * row["share"], y, row["role"], ha="center", va="center",
                        fontsize=7, color="white")  # fmt: skip
            left += 100 * row["share"]
        n = int(df[df["variant"] == variant]["slow_requests"].iloc[0])
        thr = float(df[df["variant"] == variant]["p99_threshold_ms"].iloc[0])
        ax.text(left + 1, y, f"{left:.0f} % of {n} (> {thr:.0f} ms)", va="center", fontsize=7)
    ax.set_yticks(range(len(variants)), variants)
    ax.invert_yaxis()
    ax.set_xlim(0, 115)
    ax.set_xlabel("% of slow requests overlapping a pause >= 1 ms of a role on their path")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    fig.legend(uniq.values(), uniq.keys(), fontsize=7, loc="outside right upper",
               title="pause in role", title_fontsize=7)  # fmt: skip
    ax.set_title("Slow requests (above the run's p99) explained by a GC pause", fontsize=10)
    return caption(fig, rs, "a request overlapping several roles' pauses goes to the longest")


FIGURES = {
    "gc_timeline": gc_timeline,
    "tail_inside_outside": tail_inside_outside,
    "slow_request_attribution": slow_request_attribution,
    "gc_isolation_bulkheads": remedies.gc_isolation_bulkheads,  # its own analysis module
}
# drawn in archlab/figures/remedies.py; the notebook calls gcstalls.gc_isolation_bulkheads
gc_isolation_bulkheads = remedies.gc_isolation_bulkheads


# ---------------------------------------------------------------- reading


def reading(rs: RunSet) -> str:
    """What the gc-pressure runs say, in numbers computed from them."""
    big = largest_pauses(rs)
    if big.empty:
        return (
            "No gc-pressure runs with GC telemetry in this run set: nothing to read here.\n"
            + _remedies(rs)
        )
    lines = _over_repetitions(rs)
    lines += [
        "**Largest full collection (generation 2) per variant and role (first repetition):**",
        "",
    ]
    for variant, group in big.groupby("variant", sort=False):
        full = group[group["full_collections"] > 0].sort_values("max_full_ms", ascending=False)
        parts = [
            f"{r.role} {r.max_full_ms:.0f} ms ({r.full_collections} full, "
            f"{r.total_full_ms / 1000:.1f} s in all)"
            for r in full.itertuples()
        ]
        lines.append(f"- {variant}: " + ("; ".join(parts) or "no full collection"))
    inout = inside_outside_table(rs)
    lines += ["", "**p99 inside / outside the engine's full collections**", ""]
    for variant, group in inout.groupby("variant", sort=False):
        others = group[group["endpoint"] != "/products/{id}/recommendations"]
        others = others[others["n_inside"] > 0]
        recs = group[group["endpoint"] == "/products/{id}/recommendations"]
        if others.empty:
            lines.append(f"- {variant}: no request of the other endpoints overlapped one.")
            continue
        ratios = ", ".join(
            f"{r.endpoint} x{r.ratio:.1f} (n={r.n_inside})" for r in others.itertuples()
        )
        rec = (
            f"; recommendations itself x{recs['ratio'].iloc[0]:.1f}"
            if len(recs) and recs["n_inside"].iloc[0] > 0
            else ""
        )
        lines.append(
            f"- {variant}: other endpoints {ratios} (median x{others['ratio'].median():.1f}){rec}"
        )
    lines.append("")
    lines.append(
        "A ratio near 1 for the other endpoints means the engine's pauses do not reach them; "
        "above 1 they do (one shared process in the monolith; elsewhere a shared front thread "
        "pool or shared CPUs)."
    )
    att = attribution_table(rs)
    if not att.empty:
        lines += ["", "**Slow requests (above the run's p99) overlapping a pause on their path:**"]
        lines.append("")
        for variant, group in att.groupby("variant", sort=False):
            hit = group[group["role"] != NO_PAUSE]
            n = int(group["slow_requests"].iloc[0])
            roles = ", ".join(f"{r.role} {100 * r.share:.0f} %" for r in hit.itertuples())
            lines.append(
                f"- {variant}: {100 * hit['share'].sum():.0f} % of {n} slow requests "
                f"(> {group['p99_threshold_ms'].iloc[0]:.0f} ms)" + (f": {roles}" if roles else "")
            )
    lines.append(_remedies(rs))
    return "\n".join(lines)


def _over_repetitions(rs: RunSet) -> list[str]:
    """The other endpoints' p99 inside the engine's full collections, per variant: the median
    over the repetitions with its interval (readings.json's `gc.*`)."""
    found = {r.name: r for r in readings.gc_stalls(rs)}
    lines = ["**The other endpoints' p99 inside the engine's full collections, over repetitions "
             "(median [95 % interval], n):**", ""]  # fmt: skip
    inside: dict[str, readings.Reading] = {}
    for variant in VARIANT_ORDER:
        got = found.get(f"gc.{variant}.others_p99_inside_ms")
        out = found.get(f"gc.{variant}.others_p99_outside_ms")
        if got is None:
            continue
        inside[variant] = got
        lines.append(
            f"- {variant}: {got.text('{:.0f}')} inside; "
            + (f"{out.text('{:.0f}')} outside" if out else "none outside")
        )
    if "monolith" in inside:
        for variant in [v for v in inside if v != "monolith"]:
            verdict = readings.compare(inside[variant], inside["monolith"])
            lines.append(f"- {variant} against the monolith: {verdict}")
    return [*lines, ""] if inside else []


def _remedies(rs: RunSet) -> str:
    return remedies.reading(rs) if rm.has_runs(rs) else ""
