"""Notebook 07: the migration path, step by step: what each step buys in isolation, at what cost.

The steps are `variants.placement.PATH` (monolith, recs-process, multiprocess, recs-service,
distributed), each a small diff of the one before. `archlab reproduce` runs every step at one
offered load (open loop) three times; `archlab.analysis.migration` names the runs and holds
the noise rule. Per step:

- **steady** (`path-<step>`): p50 and p99 of each endpoint (corrected, summary.json), CPU ms per
  request and PSS peak summed over the placement's processes (`server.total`);
- **crash-recommendations**: errors and p99 of the *other* endpoints (those that do not call
  recommendations) during the crash's window, from the kill until the role is ready again, and
  their baseline before the crash (`faults.rows`, notebook 03's numbers);
- **gc-pressure**: errors and p99 of the same endpoints while the recommendation engine runs a
  full collection (gc.csv), against the requests outside those collections
  (`gcwindows.inside_outside`, notebook 02's numbers).

A step is *isolated* from a fault when every other endpoint with requests in the window stayed
within the blast tolerance of its baseline (`TOLERANCE`). A step without its run is drawn
as missing (hatched), never interpolated from its neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter

from archlab.analysis import blast, faults, gcwindows
from archlab.analysis import migration as mig
from archlab.analysis.faults import TOLERANCE
from archlab.analysis.ramp import latency
from archlab.analysis.runset import ENDPOINT_COMPONENTS, ENDPOINT_ORDER, Run, RunSet
from archlab.analysis.summary import ALL
from archlab.figures import gcstalls
from archlab.figures.style import caption, color, new_mosaic
from variants.placement import PATH

OTHERS = tuple(
    e for e in ENDPOINT_ORDER if gcwindows.ENGINE_COMPONENT not in ENDPOINT_COMPONENTS[e]
)
MISSING = "not measured"
NOISE_LABELS = {"p50_ms": "p50", "p99_ms": "p99", "cpu_ms_per_request": "CPU", "pss_mib": "PSS"}
ISOLATION_CHANGE = {  # (isolated before, isolated after) -> what the step did
    (False, True): "bought isolation",
    (True, False): "lost isolation",
    (True, True): "isolated at both",
    (False, False): "isolated at neither",
}


# ---------------------------------------------------------------- run set -> tables


def step_run(rs: RunSet, placement: str, scenario: str = mig.STEADY) -> Run | None:
    """The finished run of one step under one scenario, if the run set has it."""
    run = rs.runs.get(mig.tag(placement, scenario))
    return run if run is not None and run.finished else None


def steps_table(rs: RunSet) -> pd.DataFrame:
    """One row per step of the path (missing ones included): the steady run's measures."""
    rows = []
    for i, placement in enumerate(PATH):
        run = step_run(rs, placement)
        row: dict[str, Any] = {"step": i, "placement": placement, "measured": run is not None}
        if run is not None:
            m = mig.steady_measures(run)
            total = run.summary.get("server", {}).get("total", {})
            row |= {
                "requests": m.requests,
                "throughput_rps": run.summary.get("endpoints", {})
                .get(ALL, {})
                .get("throughput_rps"),
                "p50_ms": m.p50_ms,
                "p99_ms": m.p99_ms,
                "cpu_ms_per_request": m.cpu_ms_per_request,
                "pss_mib": m.pss_mib,
                "processes": total.get("processes_peak"),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def endpoint_table(rs: RunSet) -> pd.DataFrame:
    """Per measured step and endpoint: p50 and p99 (corrected) of the steady run."""
    rows = []
    for i, placement in enumerate(PATH):
        run = step_run(rs, placement)
        if run is None:
            continue
        for endpoint, stats in run.summary.get("endpoints", {}).items():
            if endpoint not in ENDPOINT_ORDER:
                continue
            lat = latency(stats)
            rows.append(
                {
                    "step": i,
                    "placement": placement,
                    "endpoint": endpoint,
                    "count": stats.get("count", 0),
                    "p50_ms": lat.get("p50"),
                    "p99_ms": lat.get("p99"),
                }
            )
    return pd.DataFrame(
        rows, columns=["step", "placement", "endpoint", "count", "p50_ms", "p99_ms"]
    )


FAULT_COLUMNS = (
    "step", "placement", "endpoint", "n", "errors", "p99_ms",
    "baseline_n", "baseline_errors", "baseline_p99_ms", "within", "window_s",
)  # fmt: skip


def _crash_rows(run: Run) -> list[dict[str, Any]]:
    """The other endpoints during the run's first crash window, against before the crash."""
    df = faults.rows([run])
    if df.empty:
        return []
    df = df[~df["targeted"] & (df["fault_start_s"] == df["fault_start_s"].min())]
    return [
        {
            "endpoint": r.endpoint,
            "n": int(r.during_count),
            "errors": round((_num(r.during_error_rate) or 0.0) * r.during_count),
            "p99_ms": r.during_p99_ms,
            "baseline_n": int(r.baseline_count),
            "baseline_errors": round((_num(r.baseline_error_rate) or 0.0) * r.baseline_count),
            "baseline_p99_ms": r.baseline_p99_ms,
            "within": bool(r.within),
            "window_s": r.window_s,
        }
        for r in df.itertuples()
    ]


def _gc_rows(run: Run) -> list[dict[str, Any]]:
    """The other endpoints inside the engine's full collections, against outside them."""
    requests = gcwindows.measured_requests(run)
    if requests.empty:
        return []
    engine, _ = gcwindows.engine_pauses(run)
    full = engine[engine["generation"] == gcwindows.FULL_GENERATION]
    full = full[full["end"] >= requests["start_time"].min()]
    window_s = float(full["duration_ms"].sum()) / 1000
    rows = []
    for r in gcwindows.inside_outside(requests, full):
        if r["endpoint"] not in OTHERS:
            continue
        inside = blast.Stats(int(r["n_inside"]), int(r["errors_inside"]), _num(r["p99_inside_ms"]))
        outside = blast.Stats(
            int(r["n_outside"]), int(r["errors_outside"]), _num(r["p99_outside_ms"])
        )
        rows.append(
            {
                "endpoint": r["endpoint"],
                "n": inside.count,
                "errors": inside.errors,
                "p99_ms": inside.p99_ms,
                "baseline_n": outside.count,
                "baseline_errors": outside.errors,
                "baseline_p99_ms": outside.p99_ms,
                "within": blast.within(inside, outside, TOLERANCE),
                "window_s": window_s,
            }
        )
    return rows


FAULT_ROWS: dict[str, Callable[[Run], list[dict[str, Any]]]] = {
    mig.CRASH: _crash_rows,
    mig.GC_PRESSURE: _gc_rows,
}


def fault_table(rs: RunSet, scenario: str) -> pd.DataFrame:
    """Per measured step and other endpoint: errors and p99 in the fault's window vs baseline.

    crash-recommendations: the crash's window (blast); gc-pressure: inside the engine's full
    collections. `within`: inside the blast tolerance of the baseline; `window_s`: the crash
    window's length, or the full collections' total duration.
    """
    rows = []
    for i, placement in enumerate(PATH):
        run = step_run(rs, placement, scenario)
        if run is None:
            continue
        for row in FAULT_ROWS[scenario](run):
            rows.append({"step": i, "placement": placement, **row})
    # a window with no request has no p99 (None): NaN, so every reader skips it alike
    return pd.DataFrame(rows, columns=list(FAULT_COLUMNS)).astype(
        {"p99_ms": float, "baseline_p99_ms": float, "window_s": float}
    )


def isolation_summary(rs: RunSet) -> pd.DataFrame:
    """Per step and fault scenario: the other endpoints together (errors pooled, the worst
    endpoint's p99) and whether every one of them stayed within tolerance (`isolated`; None
    when no request fell in the window or the run is missing)."""
    rows = []
    for scenario in mig.FAULT_SCENARIOS:
        table = fault_table(rs, scenario)
        for i, placement in enumerate(PATH):
            sub = table[(table["step"] == i) & (table["n"] > 0)]
            row: dict[str, Any] = {
                "scenario": scenario,
                "step": i,
                "placement": placement,
                "measured": step_run(rs, placement, scenario) is not None,
                "n": int(sub["n"].sum()),
                "errors": int(sub["errors"].sum()),
                "baseline_n": int(sub["baseline_n"].sum()),
                "baseline_errors": int(sub["baseline_errors"].sum()),
                "isolated": bool(sub["within"].all()) if len(sub) else None,
                "worst_endpoint": None,
                "p99_ms": math.nan,
                "baseline_p99_ms": math.nan,
                "window_s": float(sub["window_s"].iloc[0]) if len(sub) else math.nan,
            }
            ranked = sub.dropna(subset=["p99_ms"])
            if len(ranked):
                worst = ranked.loc[ranked["p99_ms"].idxmax()]
                row |= {
                    "worst_endpoint": worst["endpoint"],
                    "p99_ms": float(worst["p99_ms"]),
                    "baseline_p99_ms": float(worst["baseline_p99_ms"]),
                }
            row["error_rate"] = row["errors"] / row["n"] if row["n"] else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def replicate_table(rs: RunSet) -> pd.DataFrame:
    """Per step with both: the steady run's measures next to its replicate's (the crash run),
    both from the warm-up's end to the crash, and the gap |ln(steady / replicate)| of each."""
    rows = []
    for i, placement in enumerate(PATH):
        steady, replicate = _pair(rs, placement)
        if steady is None or replicate is None:
            continue
        row: dict[str, Any] = {"step": i, "placement": placement}
        for name in mig.MEASURES:
            a, b = steady.get(name), replicate.get(name)
            row |= {name: a, f"replicate_{name}": b, f"gap_{name}": mig.log_gap(a, b)}
        rows.append(row)
    return pd.DataFrame(rows)


def _pair(rs: RunSet, placement: str) -> tuple[mig.Measures | None, mig.Measures | None]:
    run = step_run(rs, placement)
    replicate = step_run(rs, placement, mig.REPLICATE_SCENARIO)
    pair = mig.replicate_pair(run, replicate) if run and replicate else None
    return pair or (None, None)


def noise(rs: RunSet) -> tuple[dict[str, float], int]:
    """The run set's noise band per measure, and how many replicates it comes from."""
    pairs = [(a, b) for a, b in (_pair(rs, p) for p in PATH) if a is not None and b is not None]
    return mig.noise_bands(pairs), len(pairs)


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _load(rs: RunSet) -> str:
    """The path's load as its runs recorded it (rate, duration, dataset)."""
    runs = rs.of(mig.KIND)
    rates = sorted({(r.meta.get("load") or {}).get("offered_rps") for r in runs} - {None})
    seconds = sorted({r.meta.get("duration_s") for r in runs} - {None})
    sizes = sorted({r.meta.get("dataset_size") for r in runs} - {None})
    rate = " / ".join(f"{x:g}" for x in rates) or "?"
    return (
        f"open loop at {rate} req/s, {' / '.join(f'{s:g}' for s in seconds)} s per run, "
        f"dataset {', '.join(sizes) or '?'}"
    )


# ---------------------------------------------------------------- the figure


def _frame(ax: Any, measured: Sequence[bool]) -> None:
    """x = the steps of the path; a step without its run is hatched and labelled."""
    ax.set_xlim(-0.6, len(PATH) - 0.4)
    ax.set_xticks(range(len(PATH)), PATH, fontsize=8)
    for tick, placement in zip(ax.get_xticklabels(), PATH, strict=True):
        tick.set_color(color(placement))
    for i, ok in enumerate(measured):
        if not ok:
            ax.axvspan(i - 0.45, i + 0.45, facecolor="none", edgecolor="#c8c8c8", hatch="///", lw=0)
            ax.text(i, 0.5, MISSING, transform=ax.get_xaxis_transform(), rotation=90,
                    ha="center", va="center", fontsize=7, color="#777777")  # fmt: skip
    ax.grid(True, axis="y", alpha=0.3)


def _bars(ax: Any, steps: pd.DataFrame, column: str, band: float | None, fmt: str) -> None:
    """One bar per measured step; the whisker spans the noise band around the value."""
    for row in steps[steps["measured"]].itertuples():
        value = _num(getattr(row, column))
        if value is None:
            continue
        ax.bar(row.step, value, 0.6, color=color(row.placement), alpha=0.85)
        top = value
        if band:
            lo, hi = value * math.exp(-band), value * math.exp(band)
            ax.errorbar(row.step, value, yerr=[[value - lo], [hi - value]], color="#333333",
                        capsize=3, lw=0.8)  # fmt: skip
            top = hi
        ax.annotate(fmt.format(value), (row.step, top), xytext=(0, 2),
                    textcoords="offset points", ha="center", fontsize=7)  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.margins(y=0.18)


def _endpoint_points(ax: Any, table: pd.DataFrame, endpoints: Sequence[str], low: str,
                     high: str, hollow_low: bool) -> None:  # fmt: skip
    """Per step, one column per endpoint: `low` to `high` (ms, log)."""
    offsets = np.linspace(-0.3, 0.3, len(endpoints))
    for offset, endpoint in zip(offsets, endpoints, strict=True):
        sub = table[table["endpoint"] == endpoint].dropna(subset=[high])
        if sub.empty:
            continue
        c = gcstalls.ENDPOINT_COLORS.get(endpoint, "#333333")
        x = sub["step"].to_numpy(dtype=float) + offset
        lo = sub[low].to_numpy(dtype=float)
        hi = sub[high].to_numpy(dtype=float)
        ax.vlines(x, lo, hi, color=c, lw=1.2, alpha=0.7)
        if hollow_low:
            ax.scatter(x, lo, s=18, facecolors="white", edgecolors=c, zorder=3)
        else:
            ax.scatter(x, lo, s=40, marker="_", color="#555555", zorder=3)
        ax.scatter(x, hi, s=18, color=c, zorder=3, label=endpoint)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _error_bars(ax: Any, summary: pd.DataFrame) -> None:
    """Pooled error % of the other endpoints per measured step, with the requests counted."""
    for row in summary[summary["measured"]].itertuples():
        if not row.n:
            ax.text(row.step, 0.5, "no request\nin window", transform=ax.get_xaxis_transform(),
                    ha="center", va="center", fontsize=7, color="#777777")  # fmt: skip
            continue
        pct = 100 * row.error_rate
        ax.bar(row.step, pct, 0.6, color=color(row.placement), alpha=0.85)
        verdict = "isolated" if row.isolated else "not isolated"
        ax.annotate(f"{pct:.1f} % of {row.n}\n{verdict}", (row.step, pct), xytext=(0, 2),
                    textcoords="offset points", ha="center", fontsize=7)  # fmt: skip
    top = float(np.nanmax([100 * summary["error_rate"].max(), 0.0]))
    ax.set_ylim(0, max(10.0, 1.35 * top))


def fig_migration_path(rs: RunSet) -> Figure | None:
    """Per step of the path: steady latency, CPU and memory; the other endpoints under faults."""
    if not rs.of(mig.KIND):
        return None
    steps = steps_table(rs)
    bands, replicates = noise(rs)
    summary = isolation_summary(rs)
    fig, ax = new_mosaic(
        [["lat", "lat"], ["cpu", "mem"], ["crash_err", "crash_p99"], ["gc_err", "gc_p99"]],
        width=12,
        height=14,
    )
    _endpoint_points(ax["lat"], endpoint_table(rs), ENDPOINT_ORDER, "p50_ms", "p99_ms", True)
    ax["lat"].set_title("steady: p50 (o) to p99 (•) of each endpoint, ms (log)", fontsize=9)
    ax["lat"].set_ylabel("steady", fontsize=9)
    _bars(ax["cpu"], steps, "cpu_ms_per_request", bands.get("cpu_ms_per_request"), "{:.2f}")
    ax["cpu"].set_title("steady: server CPU ms per request", fontsize=9)
    _bars(ax["mem"], steps, "pss_mib", bands.get("pss_mib"), "{:.0f}")
    ax["mem"].set_title("steady: memory, PSS peak of all processes, MiB", fontsize=9)
    for key in ("lat", "cpu", "mem"):
        _frame(ax[key], steps["measured"].tolist())
    for scenario, name, window, base in (
        (mig.CRASH, "crash", "during the crash window", "before the crash"),
        (mig.GC_PRESSURE, "gc", "inside the engine's full collections", "outside them"),
    ):
        sub = summary[summary["scenario"] == scenario]
        _error_bars(ax[f"{name}_err"], sub)
        ax[f"{name}_err"].set_title(f"other endpoints' errors {window}, %", fontsize=9)
        ax[f"{name}_err"].set_ylabel(scenario, fontsize=9)
        table = fault_table(rs, scenario)
        _endpoint_points(ax[f"{name}_p99"], table, OTHERS, "baseline_p99_ms", "p99_ms", False)
        ax[f"{name}_p99"].set_title(f"their p99 (•) vs {base} (-), ms (log)", fontsize=9)
        for key in (f"{name}_err", f"{name}_p99"):
            _frame(ax[key], sub["measured"].tolist())
    handles, labels = ax["lat"].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, title="endpoint",
               title_fontsize=7)  # fmt: skip
    fig.suptitle("The migration path, step by step: what each step isolates, and what it costs")
    noise_text = (
        "whiskers: the noise band, the median gap between a step's steady run and its replicate "
        f"(its {mig.REPLICATE_SCENARIO} run before the crash; {replicates} steps): "
        + ", ".join(f"{NOISE_LABELS[k]} ±{mig.band_percent(v):.0f} %" for k, v in bands.items())
        if bands
        else "no replicate in this run set: no noise band"
    )
    return caption(
        fig,
        rs,
        f"each step one run per scenario, {_load(rs)}; other endpoints = those not calling "
        f"recommendations; isolated = every one within the blast tolerance of its baseline; "
        f"{noise_text}; hatched: {MISSING} in this run set (never interpolated)",
    )


FIGURES = {"migration_path": fig_migration_path}


# ---------------------------------------------------------------- reading


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _cpu(value: float) -> str:
    return f"{value:.2f}"


def _mib(value: float) -> str:
    return f"{value:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return ""
    r = b / a
    return f"{100 * (r - 1):+.0f} %" if 0.5 <= r <= 2 else f"x{r:.2g}"


def _change(a: float | None, b: float | None, unit: str, band: float | None,
            fmt: Callable[[float], str] = _ms) -> str:  # fmt: skip
    """'a -> b unit (+x %)', and whether the difference is inside the noise band."""
    a, b = _num(a), _num(b)
    text = f"{'-' if a is None else fmt(a)} → {'-' if b is None else fmt(b)} {unit}"
    ratio = _ratio(a, b)
    verdict = mig.inside_noise(a, b, band)
    notes = [ratio] if ratio else []
    if verdict:
        notes.append(f"inside the noise, ±{mig.band_percent(band or 0):.0f} %")
    return text + (f" ({', '.join(notes)})" if notes else "")


def _errors(a: pd.Series, b: pd.Series) -> str:
    text = (
        f"errors {100 * a['error_rate']:.1f} % of {a['n']} → {100 * b['error_rate']:.1f} % of "
        f"{b['n']}"
    )
    if mig.rates_differ(a["errors"], a["n"], b["errors"], b["n"]) is False:
        text += " (no difference beyond binomial noise)"
    return text


def _count(value: Any) -> str:
    return "-" if _num(value) is None else f"{value:.0f}"


def _isolated(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else ("yes" if value else "no")


def _transition(
    a: pd.Series, b: pd.Series, summary: pd.DataFrame, bands: dict[str, float], skipped: list[str]
) -> str:
    """One step of the path: the isolation it bought or lost, then its cost."""
    head = f"**{a['placement']} → {b['placement']}**"
    if skipped:
        head += f" ({', '.join(skipped)} {MISSING})"
    parts = []
    for scenario in mig.FAULT_SCENARIOS:
        sa = summary[(summary["scenario"] == scenario) & (summary["step"] == a["step"])].iloc[0]
        sb = summary[(summary["scenario"] == scenario) & (summary["step"] == b["step"])].iloc[0]
        if not (sa["n"] and sb["n"]):
            parts.append(f"{scenario}: not measured at both ends")
            continue
        gained = ISOLATION_CHANGE.get((sa["isolated"], sb["isolated"]), "isolation not judged")
        parts.append(
            f"{scenario}: {gained}; other endpoints' {_errors(sa, sb)}, worst p99 "
            + _change(sa["p99_ms"], sb["p99_ms"], "ms", bands.get("p99_ms"))
        )
    cost = [
        "CPU " + _change(a["cpu_ms_per_request"], b["cpu_ms_per_request"], "ms/request",
                         bands.get("cpu_ms_per_request"), _cpu),
        "PSS " + _change(a["pss_mib"], b["pss_mib"], "MiB", bands.get("pss_mib"), _mib),
        "p50 " + _change(a["p50_ms"], b["p50_ms"], "ms", bands.get("p50_ms")),
        "p99 " + _change(a["p99_ms"], b["p99_ms"], "ms", bands.get("p99_ms")),
    ]  # fmt: skip
    return (
        f"{head}: " + "; ".join(parts) + ". Cost (steady, all endpoints): " + "; ".join(cost) + "."
    )


def reading(rs: RunSet) -> str:
    """Which step bought which isolation, at what cost, from the runs (differences inside the
    run set's own noise are named as such)."""
    steps = steps_table(rs)
    if not rs.of(mig.KIND):
        return "No run of the migration path in this run set: nothing to read here."
    measured = steps[steps["measured"]]
    missing = steps[~steps["measured"]]["placement"].tolist()
    bands, replicates = noise(rs)
    summary = isolation_summary(rs)
    lines = [
        f"Every step: {_load(rs)}. Steps measured: {len(measured)} of {len(PATH)}"
        + (f" ({', '.join(missing)} {MISSING}: left out, not interpolated)." if missing else ".")
    ]
    if bands:
        lines.append(
            f"Noise, from {replicates} replicate(s) (each step's steady run against its "
            f"{mig.REPLICATE_SCENARIO} run before the crash, over the same stretch): two runs "
            "of one step typically (median) differed by "
            + ", ".join(
                f"{mig.band_percent(v):.0f} % ({NOISE_LABELS[k]})" for k, v in bands.items()
            )
            + "; a difference between two steps within that is called inside the noise. Error "
            f"rates are compared as binomial counts ({mig.ERROR_Z:g} standard errors)."
        )
    else:
        lines.append(
            "No replicate in this run set (a step with both its steady and its "
            f"{mig.REPLICATE_SCENARIO} run): steady differences are not judged against noise."
        )
    rows = list(measured.iterrows())
    for (ia, a), (ib, b) in zip(rows, rows[1:], strict=False):
        skipped = steps.loc[ia + 1 : ib - 1, "placement"].tolist()
        lines.append("- " + _transition(a, b, summary, bands, skipped))
    for scenario in mig.FAULT_SCENARIOS:
        sub = summary[(summary["scenario"] == scenario) & summary["isolated"].notna()]
        if sub.empty:
            lines.append(f"{scenario}: no step measured.")
            continue
        verdicts = ", ".join(f"{r.placement} {_isolated(r.isolated)}" for r in sub.itertuples())
        first = sub[sub["isolated"].astype(bool)]
        lines.append(
            f"Other endpoints isolated from {scenario}: {verdicts}"
            + (f"; first at {first['placement'].iloc[0]}." if len(first) else "; at no step.")
        )
    if len(measured) >= 2:
        a, b = measured.iloc[0], measured.iloc[-1]
        lines.append(
            f"End to end ({a['placement']} → {b['placement']}): CPU "
            + _change(a["cpu_ms_per_request"], b["cpu_ms_per_request"], "ms/request",
                      bands.get("cpu_ms_per_request"), _cpu)
            + ", PSS "
            + _change(a["pss_mib"], b["pss_mib"], "MiB", bands.get("pss_mib"), _mib)
            + ", p99 "
            + _change(a["p99_ms"], b["p99_ms"], "ms", bands.get("p99_ms"))
            + f", processes {_count(a['processes'])} → {_count(b['processes'])}."
        )  # fmt: skip
    lines.append(
        f"Tolerance (notebook 03): error rate <= baseline + {100 * TOLERANCE.error_pp:.0f} pp "
        f"and p99 <= max({TOLERANCE.p99_factor:g}x baseline, baseline + "
        f"{TOLERANCE.p99_slack_ms:.0f} ms); single runs on a shared machine, so read one "
        "step's numbers against its neighbours', not as capacities."
    )
    return "\n\n".join(lines)
