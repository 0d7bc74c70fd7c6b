"""Notebook 08: the recommendation engine in Python and in Rust, in the same process family.

The pairs of runs (`archlab.analysis.polyglot`, which holds every number and the noise rule)
differ only in the recommendations group's engine. One figure, seven panels:

- (a) the ramp: the recommendations endpoint's p99 and p50 against offered load per engine,
  (b) beside the engine role's CPU in each step;
- (c) CPU: the engine's CPU-ms per related call and per request, the server's per request;
- (d) memory: the engine's PSS in the ramp run and after `archlab bench engine`, (e) the
  model's build seconds per size (median, min-max whiskers);
- (f, g) faults: the other endpoints' (and recommendations') p99 inside vs outside the
  gc-pressure and cpu-hog fault windows, with what the engine itself recorded (GC or "no
  collector", CPU, whether the fault reached a process).

A part without its runs says so in its panel; nothing is modelled or interpolated.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from archlab.analysis import polyglot as pg
from archlab.analysis.migration import band_percent
from archlab.analysis.runset import RunSet
from archlab.figures.style import caption, new_mosaic

ENGINE_COLORS = {"python": "#3572a5", "rust": "#b7410e"}
OUTSIDE_ALPHA = 0.35
NOTE_CHARS = 105  # a fault panel's notes wrap at this width (6.5 pt, 7 in)
NOT_MEASURED = "not measured in this run set"
NOISE_LABELS = {"p50_ms": "p50", "p99_ms": "p99", "cpu_ms_per_request": "CPU/request",
                "pss_mib": "PSS"}  # fmt: skip
SCENARIO_TITLES = {
    pg.GC_PRESSURE: "gc-pressure: gc fault in the engine + model rebuilt every second",
    pg.CPU_HOG: "cpu-hog: CPU hog thread in the engine",
}


def _num(value: Any) -> float | None:
    return pg.as_float(value)


def _fmt(value: float | None, unit: str = "") -> str:
    """Three significant digits, no exponent: 0.0823, 1.67, 27.3, 1619."""
    if value is None or math.isnan(value):
        return "-"
    if value == 0:
        text = "0"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"
    return f"{text} {unit}".strip()


def _x(a: float | None, b: float | None) -> str:
    """'x14' / 'x1.23' for a / b; '' when not both."""
    r = pg.ratio(a, b)
    if r is None:
        return ""
    return f"x{r:.0f}" if r >= 10 else f"x{r:.2f}"


def _missing(ax: Any, why: str = NOT_MEASURED) -> None:
    ax.text(0.5, 0.5, textwrap.fill(why, 40), transform=ax.transAxes, ha="center",
            va="center", fontsize=8, color="#777777")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def _log_axis(ax: Any) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.grid(True, which="major", axis="y", alpha=0.3)


def _engines_label(rs: RunSet) -> str:
    n = pg.cpu_count(rs)
    return f"{n} CPUs" if n else "? CPUs"


# ---------------------------------------------------------------- panels


def _ramp_panel(ax: Any, rs: RunSet) -> None:
    """(a) recommendations p99 (solid) and p50 (dashed) per engine against offered load."""
    table = pg.ramps(rs)
    if table.empty:
        _missing(ax, f"(a) ramp: {NOT_MEASURED}")
        return
    comparison = pg.ramp_comparison(rs)
    for engine, sub in table.groupby("engine", sort=False):
        c = ENGINE_COLORS.get(str(engine), "#555555")
        ax.plot(sub["offered_rps"], sub["recs_p99_ms"], "-o", color=c, ms=4,
                label=f"{engine} p99")  # fmt: skip
        ax.plot(sub["offered_rps"], sub["recs_p50_ms"], "--", color=c, alpha=0.8,
                label=f"{engine} p50")  # fmt: skip
        behind = sub[~sub["keeping_up"]]
        ax.plot(behind["offered_rps"], behind["recs_p99_ms"], "x", color="black", ms=8)
        last = sub.iloc[-1]
        below = engine != table.groupby("engine")["recs_p99_ms"].last().idxmax()
        ax.annotate(f"p99 {_fmt(last['recs_p99_ms'], 'ms')}", (last["offered_rps"],
                    last["recs_p99_ms"]), xytext=(-6, -9 if below else 6),
                    textcoords="offset points", ha="right", va="center", fontsize=7,
                    color=c)  # fmt: skip
    if not comparison.empty:
        beyond = comparison[comparison["beyond_noise_p99"].fillna(False).astype(bool)]
        ax.scatter(beyond["offered_rps"], [0.04] * len(beyond), marker="*", s=40,
                   color="#333333", transform=ax.get_xaxis_transform(),
                   label="p99 gap python/rust beyond the noise band")  # fmt: skip
    _log_axis(ax)
    ax.margins(y=0.25)
    ax.set_xlabel("offered load (req/s, open loop; each step 1 run per engine)", fontsize=8)
    ax.set_ylabel("latency from intended start (ms, log)", fontsize=8)
    ax.set_title("(a) GET /products/{id}/recommendations vs offered load (ramp)", fontsize=9,
                 loc="left")  # fmt: skip
    ax.legend(fontsize=7, ncols=3, loc="upper left")


def _steps_panel(ax: Any, rs: RunSet) -> None:
    """(b) the engine role's CPU per ramp step (cores), where a model rebuild shows up."""
    table = pg.ramps(rs)
    if table.empty:
        _missing(ax)
        return
    engines = list(dict.fromkeys(table["engine"]))
    width = 0.8 / len(engines)
    rates = sorted(table["offered_rps"].unique())
    x = {rate: i for i, rate in enumerate(rates)}
    for k, engine in enumerate(engines):
        sub = table[table["engine"] == engine]
        xs = [x[r] + (k - (len(engines) - 1) / 2) * width for r in sub["offered_rps"]]
        cores = (sub["engine_cpu_s"] / sub["seconds"]).to_numpy(dtype=float)
        ax.bar(xs, cores, width, color=ENGINE_COLORS.get(engine, "#555555"), label=engine)
    ax.set_xticks(range(len(rates)), [f"{r:g}" for r in rates], fontsize=7, rotation=45)
    ax.set_xlabel("offered load (req/s)", fontsize=8)
    ax.set_ylabel("engine role's CPU (cores)", fontsize=8)
    ax.set_title("(b) engine role's CPU in each ramp step", fontsize=9, loc="left")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)


def _paired_bars(ax: Any, labels: Sequence[str], values: dict[str, list[float | None]],
                 unit: str, within: Sequence[bool | None] = (),
                 tops: dict[str, list[float | None]] | None = None) -> None:  # fmt: skip
    """One group per label, one bar per engine with its value on top (above `tops`, e.g. a
    whisker, when given); 'xN' (python / rust) over the pair, or 'within noise' when the gap is
    inside the pair's band."""
    engines = [e for e in pg.ENGINES if e in values]
    width = 0.8 / max(1, len(engines))
    for k, engine in enumerate(engines):
        for i, v in enumerate(values[engine]):
            if v is None:
                continue
            xi = i + (k - (len(engines) - 1) / 2) * width
            top = (tops or {}).get(engine, [None] * len(labels))[i] or v
            ax.bar(xi, v, width, color=ENGINE_COLORS[engine], label=engine if i == 0 else None)
            ax.annotate(_fmt(v), (xi, top), xytext=(0, 2), textcoords="offset points",
                        ha="center", fontsize=6.5)  # fmt: skip
    if set(pg.ENGINES) <= set(values):
        for i in range(len(labels)):
            a, b = values["python"][i], values["rust"][i]
            if a is None or b is None:
                continue
            high = max(
                x or 0.0 for e in pg.ENGINES for x in ((tops or {}).get(e, [None] * len(labels))[i],
                                                      values[e][i])
            )  # fmt: skip
            note = "within noise" if i < len(within) and within[i] else _x(a, b)
            ax.annotate(note, (i, high), xytext=(0, 12), textcoords="offset points",
                        ha="center", fontsize=7, fontweight="bold", color="#333333")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    _log_axis(ax)
    ax.margins(y=0.3)
    ax.set_ylabel(f"{unit} (log)", fontsize=8)


def _cpu_panel(ax: Any, rs: RunSet) -> None:
    """(c) CPU-ms per related call (engine role) and per request (engine, whole server)."""
    table = pg.cpu_table(rs)
    if table.empty:
        _missing(ax, f"(c) CPU: {NOT_MEASURED}")
        return
    band = pg.noise(rs, pg.RAMP).bands.get("cpu_ms_per_request")
    cols = [
        (pg.RAMP, "engine_cpu_ms_per_call", "per call\nramp"),
        (pg.RAMP, "engine_cpu_ms_per_call_median_step", "per call\nramp, step\nmedian"),
        (pg.PROFILE, "engine_cpu_ms_per_call", "per call\nprofile"),
        (pg.RAMP, "engine_cpu_ms_per_request", "engine per\nrequest\nramp"),
        (pg.RAMP, "server_cpu_ms_per_request", "server per\nrequest\nramp"),
    ]
    values: dict[str, list[float | None]] = {}
    labels, within = [], []
    for scenario, column, label in cols:
        sub = table[table["scenario"] == scenario].set_index("engine")
        if sub.empty or column not in sub:
            continue
        labels.append(label)
        for engine in pg.ENGINES:
            v = _num(sub[column].get(engine)) if engine in sub.index else None
            values.setdefault(engine, []).append(v)
        a, b = (values.get(e, [None])[-1] for e in pg.ENGINES)
        judged = pg.inside_noise(a, b, band) if column == "server_cpu_ms_per_request" else None
        within.append(bool(judged))
    _paired_bars(ax, labels, values, "CPU ms", within)
    ax.set_title("(c) CPU ms: engine per related call; engine, server per request", fontsize=9,
                 loc="left")  # fmt: skip
    ax.legend(fontsize=7, loc="upper right")


def _memory_panel(ax: Any, rs: RunSet) -> None:
    """(d) the engine's PSS: the ramp run's median and peak, and after the bench's rebuilds."""
    mem = pg.memory_table(rs)
    bench = pg.build_table(rs)
    labels: list[str] = []
    values: dict[str, list[float | None]] = {e: [] for e in pg.ENGINES}
    ramp = mem[mem["scenario"] == pg.RAMP].set_index("engine") if len(mem) else mem
    for column, label in (
        ("pss_median_mib", "ramp run\nmedian"),
        ("pss_peak_mib", "ramp run\npeak"),
    ):
        if len(ramp):
            labels.append(label)
            for e in pg.ENGINES:
                values[e].append(_num(ramp[column].get(e)) if e in ramp.index else None)
    for size in dict.fromkeys(bench["size"]) if len(bench) else []:
        sub = bench[bench["size"] == size].set_index("engine")
        labels.append(f"bench\n{size}")
        for e in pg.ENGINES:
            values[e].append(_num(sub["pss_mib"].get(e)) if e in sub.index else None)
    if not labels:
        _missing(ax, f"(d) memory: {NOT_MEASURED}")
        return
    _paired_bars(ax, labels, values, "PSS MiB")
    ax.set_title("(d) engine process PSS, MiB", fontsize=9, loc="left")


def _build_panel(ax: Any, rs: RunSet) -> None:
    """(e) the model's build seconds per size and engine: median, min-max whiskers."""
    bench = pg.build_table(rs)
    if bench.empty:
        _missing(ax, f"(e) model build: {pg.engine_bench_status(rs) or NOT_MEASURED}")
        ax.set_title("(e) model build seconds", fontsize=9, loc="left")
        return
    sizes = list(dict.fromkeys(bench["size"]))
    values: dict[str, list[float | None]] = {e: [] for e in pg.ENGINES}
    for size in sizes:
        sub = bench[bench["size"] == size].set_index("engine")
        for e in pg.ENGINES:
            values[e].append(_num(sub["build_s_median"].get(e)) if e in sub.index else None)
    tops: dict[str, list[float | None]] = {e: [] for e in pg.ENGINES}
    for k, engine in enumerate(pg.ENGINES):
        sub = bench[bench["engine"] == engine].set_index("size")
        for i, size in enumerate(sizes):
            if size not in sub.index:
                tops[engine].append(None)
                continue
            r = sub.loc[size]
            ax.vlines(i + (k - 0.5) * 0.4, r["build_s_min"], r["build_s_max"], color="#222222",
                      lw=1, zorder=3)  # fmt: skip
            tops[engine].append(_num(r["build_s_max"]))
    _paired_bars(ax, [f"{s}" for s in sizes], values, "build seconds", tops=tops)
    rounds = (rs.engine_bench or {}).get("rounds")
    ax.set_title(f"(e) model build s, median of {rounds} rounds (min-max)", fontsize=9,
                 loc="left")  # fmt: skip
    ax.set_xlabel("dataset size (archlab bench engine)", fontsize=8)


def _fault_panel(ax: Any, rs: RunSet, scenario: str, letter: str) -> None:
    """(f, g) p99 inside (solid) vs outside (pale) the fault window: the other endpoints pooled
    (dots: each one) and recommendations, per engine; what the engine recorded, as text."""
    table = pg.fault_table(rs, scenario)
    title = f"({letter}) {SCENARIO_TITLES.get(scenario, scenario)}"
    ax.set_title(title, fontsize=9, loc="left")
    if table.empty:
        _missing(ax)
        return
    groups = [(pg.OTHERS_LABEL, "other endpoints\n(pooled; dots: each)"),
              (pg.RECS, "recommendations")]  # fmt: skip
    engines = [e for e in pg.ENGINES if e in set(table["engine"])]
    slots = [(e, side) for e in engines for side in ("outside", "inside")]
    width = 0.8 / len(slots)
    for g, (name, _) in enumerate(groups):
        for k, (engine, side) in enumerate(slots):
            row = table[(table["engine"] == engine) & (table["endpoint"] == name)]
            if row.empty:
                continue
            v = _num(row[f"p99_{side}_ms"].iloc[0])
            n = int(row[f"n_{side}"].iloc[0])
            xi = g + (k - (len(slots) - 1) / 2) * width
            if v is None:
                continue
            alpha = 1.0 if side == "inside" else OUTSIDE_ALPHA
            ax.bar(xi, v, width, color=ENGINE_COLORS[engine], alpha=alpha)
            top = v
            if name == pg.OTHERS_LABEL:
                each = table[(table["engine"] == engine) & table["endpoint"].isin(pg.OTHERS)]
                dots = each[f"p99_{side}_ms"].dropna().to_numpy(dtype=float)
                ax.scatter([xi - width / 4] * len(dots), dots, s=6, color="#222222", zorder=3)
                top = max([v, *dots])
            ax.annotate(f"{_fmt(v)}\nn={n}", (xi, top), xytext=(0, 2),
                        textcoords="offset points", ha="center", fontsize=5.5)  # fmt: skip
    ax.set_xticks(range(len(groups)), [label for _, label in groups], fontsize=7)
    _log_axis(ax)
    ax.set_ylim(top=ax.get_ylim()[1] * 30)  # room for the engine's notes
    ax.set_ylabel("p99 (ms, log)", fontsize=8)
    notes = []
    summaries = pg.fault_summaries(rs)
    for k, engine in enumerate(engines):
        sub = summaries[(summaries["scenario"] == scenario) & (summaries["engine"] == engine)]
        if sub.empty:
            continue
        if scenario == pg.GC_PRESSURE and sub["gc"].iloc[0] == pg.NO_COLLECTOR:
            for g in range(len(groups)):  # where this engine's GC pauses would be: none to draw
                x = g + (2 * k + 0.5 - (len(slots) - 1) / 2) * width
                ax.text(x, 0.5, pg.NO_COLLECTOR, transform=ax.get_xaxis_transform(),
                        ha="center", va="center", fontsize=7.5, fontweight="bold",
                        color=ENGINE_COLORS[engine], rotation=90)  # fmt: skip
        notes.append(textwrap.fill(f"{engine}: " + _engine_note(sub.iloc[0]), NOTE_CHARS,
                                   subsequent_indent="    "))  # fmt: skip
    ax.text(0.01, 0.98, "\n".join(notes), transform=ax.transAxes, va="top", fontsize=6.5,
            color="#222222", linespacing=1.3)  # fmt: skip
    handles = [
        Patch(color=ENGINE_COLORS[e], alpha=a, label=f"{e} {side}")
        for e in engines
        for side, a in (("outside", OUTSIDE_ALPHA), ("inside", 1.0))
    ]
    ax.legend(handles=handles, fontsize=6.5, ncols=len(handles), loc="upper left",
              bbox_to_anchor=(0.0, 0.80), title="the fault window", title_fontsize=6.5,
              frameon=False)  # fmt: skip


def _engine_note(s: pd.Series) -> str:
    """One line of what the engine recorded in a fault run."""
    if s["reached"]:
        parts = [f"fault reached pid {s['pids']} for {s['window_s']:.1f} s"]
    else:
        parts = ["fault reached no process (faults.csv: no pid)"]
    if s["gc"] == pg.NO_COLLECTOR:
        parts.append(pg.NO_COLLECTOR)
    elif s["gc"] == "python" and s.get("pauses_inside"):
        parts.append(
            f"{int(s['full_inside'])} full GCs inside, {s['pause_ms_inside'] / 1000:.1f} s of "
            f"pauses, max {_fmt(s['max_pause_ms_inside'], 'ms')}"
        )
    elif s["gc"] == "python":
        parts.append("no GC pause inside")
    cores_in, cores_out = _num(s["engine_cores_inside"]), _num(s["engine_cores_outside"])
    if cores_in is not None and cores_out is not None:
        parts.append(f"engine role {_fmt(cores_in)} cores inside vs {_fmt(cores_out)} outside")
    if s["engine_deaths"]:
        when = s.get("deaths_after_fault_end_s")
        when = f", {when} s from the fault's end" if when else ""
        parts.append(f"engine exited {int(s['engine_deaths'])}x (code {s['death_codes']}{when})")
    return "; ".join(parts)


def fig_polyglot(rs: RunSet) -> Figure | None:
    """The two engines side by side: ramp, CPU, memory and build, faults."""
    if not pg.complete_pairs(rs) and pg.build_table(rs).empty:
        return None  # no pair and no benchmark: nothing to put side by side
    fig, ax = new_mosaic(
        [
            ["lat", "lat", "lat", "lat", "steps", "steps"],
            ["cpu", "cpu", "mem", "mem", "build", "build"],
            [pg.GC_PRESSURE] * 3 + [pg.CPU_HOG] * 3,
        ],
        width=14,
        height=13.5,
    )
    _ramp_panel(ax["lat"], rs)
    _steps_panel(ax["steps"], rs)
    _cpu_panel(ax["cpu"], rs)
    _memory_panel(ax["mem"], rs)
    _build_panel(ax["build"], rs)
    for scenario, letter in zip(pg.FAULT_SCENARIOS, "fg", strict=False):
        _fault_panel(ax[scenario], rs, scenario, letter)
    fig.suptitle(
        f"Recommendation engine in Python vs Rust in the same process family "
        f"({pg.PLACEMENT}), {_engines_label(rs)}: measured, one run per engine and scenario",
        fontsize=11,
    )
    bands = pg.noise(rs, pg.RAMP)
    band_text = (
        "noise band (median gap of what the engine does not serve, between the two ramps): "
        + ", ".join(
            f"{NOISE_LABELS.get(k, k)} ±{band_percent(v):.0f} %" for k, v in bands.bands.items()
        )  # fmt: skip
        if bands.bands
        else "no ramp pair: no noise band"
    )
    return caption(
        fig,
        rs,
        f"server and load generator share the CPUs; {band_text}; (b) engine CPU = the "
        "recommendations role's CPU-s / related calls answered (one per recommendations "
        "request), incl. any model rebuild; x = python / rust",
    )


FIGURES = {"polyglot": fig_polyglot}


# ---------------------------------------------------------------- reading


def _gap(a: float | None, b: float | None, band: float | None) -> str:
    """'x1.23 beyond the noise (±14 %)' or 'within the noise (±14 %)'."""
    within = pg.inside_noise(a, b, band)
    ratio = _x(a, b)
    if within is None:
        return ratio
    where = f"the ±{band_percent(band or 0):.0f} % noise band"
    return f"within {where}" if within else f"{ratio}, beyond {where}"


def _not_run(rs: RunSet) -> str:
    """Why the comparison is missing, from what the run set recorded."""
    reasons = [r for r in (pg.hop_status(rs), pg.engine_bench_status(rs)) if r and "skipped" in r]
    why = "; ".join(reasons) if reasons else (
        "the run set records no reason (`archlab reproduce` skips these runs where the Rust "
        "engine is not built, and says why on its output)"
    )  # fmt: skip
    text = f"The Python-vs-Rust comparison was not run in this run set: {why}."
    alone = {e: [s for s in pg.SCENARIOS if pg.pair_run(rs, s, e)] for e in pg.ENGINES}
    found = [f"{e} ({', '.join(s)})" for e, s in alone.items() if s]
    if found:
        text += (
            f" Runs of one engine only: {'; '.join(found)}; nothing is compared without its pair."
        )
    return text


def _setup(rs: RunSet) -> str:
    measured = pg.complete_pairs(rs)
    missing = [s for s in pg.SCENARIOS if s not in measured]
    runs = rs.of(pg.KIND)
    sizes = sorted({r.meta.get("dataset_size") for r in runs} - {None})
    shared = any((r.meta.get("cpu_pinning") or {}).get("shared") for r in runs)
    text = (
        f"**What ran.** The process family (`{pg.PLACEMENT}`) with its recommendations group "
        f"in Python and in Rust, nothing else changed (knob `{pg.KNOB}`), on "
        f"{rs.machine_label()}"
        + (", the CPUs shared by server and load generator (unpinned)" if shared else "")
        + f"; dataset {', '.join(sizes) or '?'}. Each scenario is one run per engine, back to "
        f"back. Pairs measured: {', '.join(measured) or 'none'}"
    )
    if missing:
        text += f"; not measured: {', '.join(missing)}"
    return text + "."


def _noise_text(rs: RunSet) -> str:
    parts = []
    for scenario in pg.complete_pairs(rs):
        n = pg.noise(rs, scenario)
        if n.bands:
            parts.append(
                f"{scenario} "
                + ", ".join(
                    f"{NOISE_LABELS.get(k, k)} ±{band_percent(v):.0f} %" for k, v in n.bands.items()
                )  # fmt: skip
            )
    if not parts:
        return "**Noise.** No complete pair: no noise band, nothing is compared against noise."
    return (
        "**Noise.** The endpoints that never call the engine ("
        + ", ".join(pg.OTHERS)
        + "), the roles other than the engine and their memory are measured in both runs of a "
        "pair and the engine is not on their path; their median gap |ln(python / rust)| is the "
        "pair's noise band (the ramp: per step; the fault runs: outside the fault window): "
        + "; ".join(parts)
        + ". A gap between the engines within it is not told apart."
    )


def _ramp_text(rs: RunSet) -> str | None:
    comparison = pg.ramp_comparison(rs)
    if comparison.empty:
        return None
    runs = pg.pair(rs, pg.RAMP)
    load = runs["python"].meta.get("load") or {}
    head = (
        f"**Latency vs offered load** (ramp, open loop "
        f"{comparison['offered_rps'].min():g} → {comparison['offered_rps'].max():g} req/s, "
        f"{load.get('step_s', '?')} s steps), the recommendations endpoint: "
    )
    parts = []
    for q in ("p50", "p99"):
        c = comparison.dropna(subset=[f"{q}_python_over_rust"])
        beyond = c[c[f"beyond_noise_{q}"].fillna(False).astype(bool)]
        within = c[~c[f"beyond_noise_{q}"].fillna(False).astype(bool)]
        r = c[f"{q}_python_over_rust"]
        text = (
            f"{q} python {_fmt(c[f'python_{q}_ms'].min())}–{_fmt(c[f'python_{q}_ms'].max())} ms, "
            f"rust {_fmt(c[f'rust_{q}_ms'].min())}–{_fmt(c[f'rust_{q}_ms'].max())} ms; "
            f"python/rust x{r.min():.2f}–x{r.max():.3g}, beyond the noise at {len(beyond)} of "
            f"{len(c)} steps"
        )
        if len(within):
            text += f" (within it at {', '.join(f'{v:g}' for v in within['offered_rps'])} req/s)"
        parts.append(text)
    top = comparison.iloc[-1]
    parts.append(
        f"at {top['offered_rps']:g} req/s p99 {_fmt(top['python_p99_ms'], 'ms')} (python) vs "
        f"{_fmt(top['rust_p99_ms'], 'ms')} (rust)"
    )
    lines = [head + "; ".join(parts) + "."]
    knee_parts = []
    for engine, k in pg.knees(rs).items():
        if k is None:
            continue
        if k["bent"]:
            knee_parts.append(
                f"{engine} bent at {k['bent_at_rps']:g} req/s (p99 {_fmt(k['bent_p99_ms'], 'ms')}"
                f"; last step before: {_fmt(k['offered_rps'])} req/s, "
                f"{_fmt(k['p99_ms'], 'ms')})"
            )
        else:
            knee_parts.append(
                f"{engine} did not bend up to {k['offered_rps']:g} req/s "
                f"(p99 {_fmt(k['p99_ms'], 'ms')})"
            )
    cpu = pg.cpu_table(rs)
    busy = cpu[cpu["scenario"] == pg.RAMP].set_index("engine") if len(cpu) else cpu
    busy_parts = []
    for engine in pg.ENGINES:
        if engine in busy.index and _num(busy.loc[engine].get("busiest_step_engine_cpu_s")):
            b = busy.loc[engine]
            busy_parts.append(
                f"{engine} {_fmt(b['busiest_step_engine_cpu_s'])} CPU-s at "
                f"{b['busiest_step_offered_rps']:g} req/s against a median of "
                f"{_fmt(b['median_step_engine_cpu_s'])} per step"
            )
    interval = pg.rebuild_interval_s(runs["python"])
    seconds = runs["python"].meta.get("duration_s")
    text = "All endpoints together: " + "; ".join(knee_parts) + "."
    if busy_parts:
        text += " The engine role's busiest step: " + "; ".join(busy_parts)
        if interval and seconds and interval < seconds:
            text += (
                f" (consistent with a model rebuild: the runs' shop config rebuilds it every "
                f"{interval:g} s and the ramp lasts {seconds:g} s; that step's latency is not "
                "the serving alone)"
            )
        text += "."
    lines.append(text)
    return " ".join(lines)


def _cpu_text(rs: RunSet) -> str | None:
    cpu = pg.cpu_table(rs)
    if cpu.empty:
        return None
    res = [r for r in cpu["cpu_resolution_ms"].dropna()]
    parts = []
    for scenario in pg.STEADY_SCENARIOS:
        sub = cpu[cpu["scenario"] == scenario].set_index("engine")
        if not set(pg.ENGINES) <= set(sub.index):
            continue
        py, rust = sub.loc["python"], sub.loc["rust"]
        band = pg.noise(rs, scenario).bands.get("cpu_ms_per_request")
        what = "whole run, rebuild included" if scenario == pg.RAMP else "under py-spy"
        text = (
            f"{scenario} ({what}): per related call {_fmt(py['engine_cpu_ms_per_call'], 'ms')} "
            f"(python, {int(py['related_calls'])} calls) vs "
            f"{_fmt(rust['engine_cpu_ms_per_call'], 'ms')} (rust, {int(rust['related_calls'])})"
            f", {_x(py['engine_cpu_ms_per_call'], rust['engine_cpu_ms_per_call'])}"
        )
        if scenario == pg.RAMP and _num(py.get("engine_cpu_ms_per_call_median_step")):
            a, b = (
                py["engine_cpu_ms_per_call_median_step"],
                rust["engine_cpu_ms_per_call_median_step"],
            )
            text += f"; median over the steps {_fmt(a, 'ms')} vs {_fmt(b, 'ms')}, {_x(a, b)}"
        text += (
            f"; per request, the engine {_fmt(py['engine_cpu_ms_per_request'], 'ms')} vs "
            f"{_fmt(rust['engine_cpu_ms_per_request'], 'ms')}, the whole server "
            f"{_fmt(py['server_cpu_ms_per_request'], 'ms')} vs "
            f"{_fmt(rust['server_cpu_ms_per_request'], 'ms')} ("
            + _gap(py["server_cpu_ms_per_request"], rust["server_cpu_ms_per_request"], band)
            + ")"
        )
        at_timeout = int(py["recs_at_timeout"]) + int(rust["recs_at_timeout"])
        errors = int(py["recs_errors"]) + int(rust["recs_errors"])
        if at_timeout or errors:
            text += (
                f"; {errors} recommendation error(s) and {at_timeout} at the call timeout "
                "left out of the calls"
            )
        parts.append(text)
    if not parts:
        return None
    return (
        "**CPU** (the recommendations role's CPU-s over the measured window divided by the "
        "related calls it answered; each recommendations request makes one"
        + (f"; the counters move in {min(res):g} ms steps" if res else "")
        + "): "
        + ". ".join(parts)
        + "."
    )


def _memory_text(rs: RunSet) -> str | None:
    mem = pg.memory_table(rs)
    parts = []
    for scenario in pg.SCENARIOS:
        sub = mem[mem["scenario"] == scenario].set_index("engine")
        if not set(pg.ENGINES) <= set(sub.index):
            continue
        py, rust = sub.loc["python"], sub.loc["rust"]
        band = pg.noise(rs, scenario).bands.get("pss_mib")
        parts.append(
            f"{scenario} {_fmt(py['pss_median_mib'])} / {_fmt(py['pss_peak_mib'])} MiB vs "
            f"{_fmt(rust['pss_median_mib'])} / {_fmt(rust['pss_peak_mib'])} MiB (median "
            + _gap(py["pss_median_mib"], rust["pss_median_mib"], band)
            + ")"
        )
    bench = pg.build_table(rs)
    ratios = pg.build_ratios(rs)
    for r in ratios.itertuples() if len(ratios) else []:
        sub = bench[bench["size"] == r.size].set_index("engine")
        parts.append(
            f"after `archlab bench engine`'s rebuilds at {r.size}: "
            f"{_fmt(sub.loc['python', 'pss_mib'])} vs {_fmt(sub.loc['rust', 'pss_mib'])} MiB "
            f"(x{r.pss_python_over_rust:.2f})"
        )
    if not parts:
        return None
    return (
        "**Memory** (the engine process's PSS, median / peak over each run, python vs rust): "
        + "; ".join(parts)
        + "."
    )


def _gc_text(rs: RunSet) -> str | None:
    gc = pg.gc_table(rs)
    if gc.empty:
        return None
    lines = []
    for engine in pg.ENGINES:
        sub = gc[gc["engine"] == engine]
        if sub.empty:
            continue
        none = sub[sub["gc"] == pg.NO_COLLECTOR]
        py = sub[sub["gc"] == "python"]
        parts = []
        for r in py.itertuples():
            if r.collections:
                parts.append(
                    f"{r.scenario} {int(r.collections)} collections ({int(r.full_collections)} "
                    f"full), {_fmt(r.total_pause_ms, 'ms')} of pauses, largest "
                    f"{_fmt(r.max_pause_ms, 'ms')}"
                )
            else:
                parts.append(
                    f"{r.scenario} none in the window (largest of the whole run "
                    f"{_fmt(_num(r.max_pause_ms_whole_run), 'ms')}, before it)"
                )
        if len(none):
            parts.append(
                f"{pg.NO_COLLECTOR} in {', '.join(none['scenario'])} (summary `gc.no_collector`"
                ", roles.csv `collector` none): there is no pause to count, not zero pauses"
            )
        unknown = sub[sub["gc"] == "not recorded"]
        if len(unknown):
            parts.append(f"no GC record in {', '.join(unknown['scenario'])}")
        lines.append(f"{engine}: " + "; ".join(parts))
    return "**GC in the engine role.** " + ". ".join(lines) + "."


def _fault_text(rs: RunSet, scenario: str) -> str | None:
    table = pg.fault_table(rs, scenario)
    summaries = pg.fault_summaries(rs)
    if table.empty or summaries.empty:
        return None
    runs = pg.pair(rs, scenario)
    any_run = next(iter(runs.values()))
    load = any_run.meta.get("load") or {}
    interval = pg.rebuild_interval_s(any_run)
    head = (
        f"**{scenario}** ({load.get('loop', '?')} loop, {load.get('users', '?')} users"
        + (f", model rebuilt every {interval:g} s" if interval else "")
        + "; p99 inside the engine's fault window vs outside it):"
    )
    lines = [head]
    inside: dict[str, float | None] = {}
    reached: dict[str, bool] = {}
    for engine in pg.ENGINES:
        s = summaries[(summaries["scenario"] == scenario) & (summaries["engine"] == engine)]
        rows = table[table["engine"] == engine].set_index("endpoint")
        if s.empty or pg.OTHERS_LABEL not in rows.index:
            continue
        s = s.iloc[0]
        reached[engine] = bool(s["reached"])
        others = rows.loc[pg.OTHERS_LABEL]
        inside[engine] = _num(others["p99_inside_ms"])
        text = f"- {engine}: {_engine_note(s)}; other endpoints (pooled) " + (
            f"{_fmt(others['p99_inside_ms'], 'ms')} vs {_fmt(others['p99_outside_ms'], 'ms')} "
            f"({_x(others['p99_inside_ms'], others['p99_outside_ms'])}, n = "
            f"{int(others['n_inside'])} inside), errors {int(others['errors_inside'])}"
        )
        each = [
            f"{e} {_x(rows.loc[e, 'p99_inside_ms'], rows.loc[e, 'p99_outside_ms'])}"
            for e in pg.OTHERS
            if e in rows.index
        ]
        text += f" (each: {', '.join(each)})"
        if pg.RECS in rows.index:
            r = rows.loc[pg.RECS]
            n = int(r["n_inside"])
            slow = int(r["at_timeout_inside"] or 0)
            text += (
                f"; recommendations {_fmt(r['p99_inside_ms'], 'ms')} vs "
                f"{_fmt(r['p99_outside_ms'], 'ms')}, errors {int(r['errors_inside'])} of {n} inside"
            )
            text += (
                f", {slow} ({100 * slow / n:.1f} %) at or over the engine call's timeout "
                "(answered degraded or late: requests.csv does not record which)"
                if slow and n
                else ", none at the engine call's timeout"
            )
        if not s["reached"]:
            text += (
                ". The fault reached no process of this engine: this run shows it without "
                "its fault, and the inside/outside gap above is the window's own noise"
            )
        lines.append(text + ".")
    if len(inside) == len(pg.ENGINES):
        if all(reached.values()):
            band = pg.noise(rs, scenario).bands.get("p99_ms")
            lines.append(
                f"- inside the window, the other endpoints' p99: python "
                f"{_fmt(inside['python'], 'ms')} vs rust {_fmt(inside['rust'], 'ms')} ("
                + _gap(inside["python"], inside["rust"], band)
                + ")."
            )
        else:
            lines.append(
                "- the engines are not compared under this fault: it did not reach both of them."
            )
    return "\n".join(lines)


def _profile_text(rs: RunSet) -> str | None:
    runs = pg.pair(rs, pg.PROFILE)
    if not runs:
        return None
    table = pg.profile_table(rs)
    parts = []
    for engine, run in runs.items():
        info = pg.profile_info(run)
        if info["status"] != "ok":
            parts.append(f"{engine}: py-spy {info['status']} ({info.get('error') or 'no reason'})")
            continue
        mine = table[(table["engine"] == engine) & (table["role"] == pg.ENGINE_ROLE)]
        if info["engine_sampled"] and len(mine):
            r = mine.iloc[0]
            engine_part = (
                f"the engine role {int(r['samples'])} of them, largest self time "
                f"{r['top_function']} ({100 * r['top_self_share']:.0f} %)"
            )
        else:
            why = (
                "a native process (it declared no garbage collector) that py-spy, which reads "
                "CPython stacks, cannot sample"
                if info["engine_collector"] is False
                else "no reason recorded"
            )
            engine_part = f"none of the engine role: {why}"
        parts.append(
            f"{engine}: {info['samples']} stacks at {info['rate_hz']} Hz over roles "
            f"{', '.join(info['roles_sampled'])}; {engine_part}"
        )
    return "**Profile** (py-spy, open loop at one rate): " + "; ".join(parts) + "."


def _build_text(rs: RunSet) -> str:
    status = pg.engine_bench_status(rs)
    if status is not None:
        return f"**Model build.** Not measured: {status}."
    bench = pg.build_table(rs)
    ratios = pg.build_ratios(rs).set_index("size")
    parts = []
    for size in dict.fromkeys(bench["size"]):
        sub = bench[bench["size"] == size].set_index("engine")
        cells = [
            f"{e} {_fmt(sub.loc[e, 'build_s_median'], 's')} "
            f"({_fmt(sub.loc[e, 'build_s_min'])}–{_fmt(sub.loc[e, 'build_s_max'])})"
            for e in pg.ENGINES
            if e in sub.index
        ]
        text = f"{size}: " + " vs ".join(cells)
        if size in ratios.index and pd.isna(ratios.loc[size, "build_python_over_rust"]):
            text += (
                ", python/rust not measurable (a build under the 1 ms resolution of "
                "`ModelStats.build_seconds`)"
            )
        elif size in ratios.index:
            r = ratios.loc[size]
            text += (
                f", python/rust x{r['build_python_over_rust']:.0f}"
                + (
                    " (the rounds' ranges do not overlap)"
                    if r["ranges_apart"]
                    else " (the rounds' ranges overlap: not told apart)"
                )  # fmt: skip
            )
        parts.append(text)
    bench_json = rs.engine_bench or {}
    return (
        f"**Model build** (`archlab bench engine`: {bench_json.get('rounds', '?')} alternating "
        f"rebuilds per engine and size on {bench_json.get('cpus', '?')} CPUs, median (min–max) "
        "of the build measured inside each engine): " + "; ".join(parts) + "."
    )


def _hop_text(rs: RunSet) -> str:
    status = pg.hop_status(rs)
    if status is not None:
        return f"**One related call** (`archlab bench hop`). Not measured: {status}."
    table = pg.hop_table(rs)
    parts = [
        f"{r.hop} p50 {_fmt(r.p50_us, 'µs')}, p99 {_fmt(r.p99_us, 'µs')}"
        for r in table.itertuples()
    ]
    call = table["call"].iloc[0] if len(table) else "?"
    hop = rs.hop or {}
    return (
        f"**One related call** (`archlab bench hop`, `{call}`, {hop.get('calls', '?')} "
        f"sequential calls after {hop.get('warmup', '?')} warm-up, dataset "
        f"{hop.get('size', '?')}): " + "; ".join(parts) + "."
    )


def _limits(rs: RunSet) -> str:
    points = [
        "One run per engine and scenario: the bands above come from what the engine does not "
        "serve in the same two runs, not from repeating the engine's own measure; a gap within "
        "them is not a difference",
        "A degraded recommendation is a 200 and requests.csv does not record the flag: only "
        "those at or over the engine call's timeout are counted; fast degraded answers (the "
        "engine restarting) count as answered calls",
        "Capacity: the server and the load generator share the machine's CPUs, so no "
        "throughput limit is read off these runs (compare at equal offered load)",
    ]
    cpu = pg.cpu_table(rs)
    res = cpu["cpu_resolution_ms"].dropna() if len(cpu) else []
    if len(res):
        text = f"CPU counters move in {float(min(res)):g} ms steps"
        steps = pg.ramps(rs)
        if len(steps):
            low = steps.groupby("engine")["engine_cpu_s"].min().dropna()
            engine = str(low.idxmin()) if len(low) else None
            if engine is not None:
                sub = steps[steps["engine"] == engine]["engine_cpu_s"]
                text += (
                    f": the {engine} engine's CPU per ramp step ({_fmt(1000 * sub.min())}–"
                    f"{_fmt(1000 * sub.max())} ms) is read at that resolution; its whole-run "
                    "numbers are the ones to read"
                )
        points.append(text)
    summaries = pg.fault_summaries(rs)
    if len(summaries) and not summaries["reached"].all():
        missed = summaries[~summaries["reached"]]
        points.append(
            "The fault reached no engine process in "
            + ", ".join(f"{r.scenario} ({r.engine})" for r in missed.itertuples())
            + ": those runs show the engine without its fault"
        )
    if any(not pg.profile_info(r)["engine_sampled"] for r in pg.pair(rs, pg.PROFILE).values()):
        points.append("py-spy cannot see inside the native engine: its time has no breakdown here")
    return "**What these numbers cannot show.**\n\n" + "\n".join(f"- {p}." for p in points)


def reading(rs: RunSet) -> str:
    """What the pairs say, in numbers computed from the runs, with what is within noise."""
    if not pg.complete_pairs(rs):
        lines = [_not_run(rs)]
        if pg.engine_bench_status(rs) is None:
            lines.append(_build_text(rs))
        if pg.hop_status(rs) is None:
            lines.append(_hop_text(rs))
        return "\n\n".join(lines)
    sections = [
        _setup(rs),
        _noise_text(rs),
        _ramp_text(rs),
        _cpu_text(rs),
        _memory_text(rs),
        _gc_text(rs),
        *(_fault_text(rs, s) for s in pg.FAULT_SCENARIOS),
        _profile_text(rs),
        _build_text(rs),
        _hop_text(rs),
        _limits(rs),
    ]
    return "\n\n".join(s for s in sections if s)


__all__ = ["FIGURES", "fig_polyglot", "reading"]
