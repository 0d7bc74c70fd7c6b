"""`archlab report RUN... -o report.html`: one run, or several side by side, as one HTML page.

The page is self-contained: the figures are PNG images inlined as base64, the style sheet is
inline, there is no script, and its Content-Security-Policy forbids the browser to fetch
anything, so it opens the same offline, attached to a mail or years later. Sections:

0. a warning when the runs differ in more than the variant, naming how
   (`archlab.analysis.compare.differences`: the lines `archlab compare` prints);
1. what ran, one column per run (meta.json);
2. headline measures (summary.json) and each later run's ratio to the first run;
3. latency over time per endpoint: p50 and p99 per time bucket (requests.csv);
4. throughput and errors over time (requests.csv; the offered rate of a ramp from summary.json);
5. percentiles per endpoint (summary.json);
6. server CPU and memory per role (summary.json `server`; processes.csv over time);
7. GC per role (summary.json `gc`; every pause of gc.csv over time);
8. faults (faults.csv) and each run's notes.

Raw files are read through `archlab.rundir.open_stored` / `archlab.analysis.records`, so the
committed reference (raw files gzipped) reports like a fresh run.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps, ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from archlab import __version__
from archlab.analysis import compare
from archlab.analysis.runset import ENDPOINT_ORDER, SETUP_ENDPOINT, VARIANT_ORDER, Run
from archlab.analysis.summary import ALL, BUCKET_S
from archlab.figures.style import color, new_figure
from archlab.rundir import SAMPLED_DECLARED, iso, utc_now

DEFAULT_BUCKET_S = BUCKET_S  # the summary's empty-bucket width: one second
DPI = 100
MIB = 2**20
# the browser may fetch nothing: images are data: URIs, the style is inline, no script runs
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


# ---------------------------------------------------------------- the runs


@dataclass
class ReportRun(Run):
    """One run of a report: a run set's `Run` (its raw files read the same way), under the label
    of its column."""

    label: str = ""

    @property
    def span_s(self) -> float:
        """Seconds from the first request to the last response."""
        df = self.requests
        if df.empty:
            return 0.0
        return float((df["t"] + df["latency_ms"] / 1000).max())


def load_runs(run_dirs: Sequence[Path]) -> list[ReportRun]:
    runs = []
    for i, run_dir in enumerate(run_dirs):
        meta, summary = compare.load_run(Path(run_dir))
        label = str(meta.get("run_id", i + 1))
        run = ReportRun(tag=label, path=Path(run_dir), label=label)
        run.meta, run.summary = meta, summary  # as compare read them (summary made if missing)
        runs.append(run)
    labels = [r.label for r in runs]
    for i, run in enumerate(runs):  # the same run twice: tell the columns apart
        if labels.count(run.label) > 1:
            run.label = f"{run.label} #{i + 1}"
    return runs


def _colors(runs: Sequence[ReportRun]) -> list[str]:
    """The variant's colour when each run is another variant, else one colour per run."""
    variants = [str(r.meta.get("variant", "")) for r in runs]
    if len(set(variants)) == len(variants) and all(v in VARIANT_ORDER for v in variants):
        return [color(v) for v in variants]
    cycle = colormaps["tab10"].colors
    return [cycle[i % len(cycle)] for i in range(len(runs))]


def _endpoints(runs: Sequence[ReportRun]) -> list[str]:
    """Endpoints of the runs' summaries in the lab's order (setup fetch and ALL left out)."""
    seen = {ep for r in runs for ep in (r.summary.get("endpoints") or {})}
    seen -= {ALL, SETUP_ENDPOINT}
    return [ep for ep in ENDPOINT_ORDER if ep in seen] + sorted(seen - set(ENDPOINT_ORDER))


def _role_colors(roles: Sequence[str]) -> dict[str, Any]:
    cycle = colormaps["tab20"].colors
    return {role: cycle[i % len(cycle)] for i, role in enumerate(sorted(set(roles)))}


# ---------------------------------------------------------------- figures


def _buckets(t: pd.Series, bucket_s: float) -> pd.Series:
    return np.floor(t / bucket_s) * bucket_s


def latency_series(run: ReportRun, bucket_s: float) -> pd.DataFrame:
    """p50 and p99 of the observed latency per endpoint (and ALL) and time bucket."""
    df = run.requests
    if df.empty:
        return pd.DataFrame(columns=["endpoint", "t", "p50", "p99"])
    b = _buckets(df["t"], bucket_s).rename("t")
    per = df.groupby([df["endpoint"], b])["latency_ms"].quantile([0.5, 0.99]).unstack()
    every = df.groupby(b)["latency_ms"].quantile([0.5, 0.99]).unstack()
    every.index = pd.MultiIndex.from_product([[ALL], every.index], names=["endpoint", "t"])
    out = pd.concat([every, per]).rename(columns={0.5: "p50", 0.99: "p99"})
    return out.reset_index()


def _log_axis(ax: Any) -> None:
    """A log y axis labelled 0.1, 1, 10, 100 (and 2, 3, 5 when it spans less than a decade)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))


def _shade_faults(ax: Any, run: ReportRun, c: Any) -> None:
    """A fault's duration shaded in the run's colour; a crash (no end) as a dotted line."""
    for _, fault in run.faults.iterrows():
        if pd.isna(fault["t_end"]):
            ax.axvline(fault["t_start"], color=c, ls=":", lw=1.2)
        else:
            ax.axvspan(fault["t_start"], fault["t_end"], color=c, alpha=0.08, lw=0)


def _run_handles(runs: Sequence[ReportRun], colors: Sequence[Any]) -> list[Line2D]:
    return [Line2D([], [], color=c, lw=2, label=r.label) for r, c in zip(runs, colors, strict=True)]


def fig_latency(runs: Sequence[ReportRun], bucket_s: float) -> Figure | None:
    """One panel per endpoint (ALL first): p99 solid, p50 dashed, one colour per run."""
    series = [latency_series(r, bucket_s) for r in runs]
    if all(s.empty for s in series):
        return None
    panels = [ALL, *_endpoints(runs)]
    ncols = 2
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(ncols, nrows, width=6.4, height=2.5, squeeze=False, sharex=True)
    colors = _colors(runs)
    for k, endpoint in enumerate(panels):
        ax = axes[k // ncols, k % ncols]
        for run, s, c in zip(runs, series, colors, strict=True):
            one = s[s["endpoint"] == endpoint]
            if one.empty:
                continue
            ax.plot(one["t"], one["p99"], color=c, lw=1.3)
            ax.plot(one["t"], one["p50"], color=c, lw=0.9, ls="--", alpha=0.8)
            _shade_faults(ax, run, c)
        _log_axis(ax)
        ax.set_title("all endpoints" if endpoint == ALL else endpoint, fontsize=9)
        ax.set_ylabel("ms", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, which="both", lw=0.5)
    for k in range(len(panels), nrows * ncols):
        axes[k // ncols, k % ncols].set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel("s after the first request", fontsize=8)
        ax.xaxis.set_tick_params(labelbottom=True)
    handles = _run_handles(runs, colors) + [
        Line2D([], [], color="black", lw=1.3, label="p99"),
        Line2D([], [], color="black", lw=0.9, ls="--", label="p50"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=8)
    return fig


def fig_throughput(runs: Sequence[ReportRun], bucket_s: float) -> Figure | None:
    """Requests/s sent (and a ramp's offered rate) and the error rate, per time bucket."""
    if all(r.requests.empty for r in runs):
        return None
    fig, (ax_r, ax_e) = new_figure(2, 1, width=6.4, height=2.6)
    colors = _colors(runs)
    for run, c in zip(runs, colors, strict=True):
        df = run.requests
        if df.empty:
            continue
        g = df.groupby(_buckets(df["t"], bucket_s))
        sent, errors = g.size(), g["is_error"].mean()
        ax_r.plot(sent.index, sent / bucket_s, color=c, lw=1.2)
        ax_e.plot(errors.index, 100 * errors, color=c, lw=1.2)
        rows = (run.summary.get("windows") or {}).get("rows") or []
        steps = [(r["start"] - run.origin, r["seconds"], r.get("offered_rps")) for r in rows]
        steps = [s for s in steps if s[2]]
        if steps:
            xs = [x for t0, w, _ in steps for x in (t0, t0 + w)]
            ys = [y for _, _, y in steps for _ in (0, 1)]
            ax_r.plot(xs, ys, color=c, lw=0.9, ls=":")
        for ax in (ax_r, ax_e):
            _shade_faults(ax, run, c)
    ax_r.set_title(
        f"requests/s sent per {bucket_s:g} s (dotted: a ramp's offered rate)", fontsize=9
    )
    ax_e.set_title(f"errors, % of the requests sent per {bucket_s:g} s", fontsize=9)
    ax_e.set_ylim(-2, max(10.0, ax_e.get_ylim()[1]))
    for ax in (ax_r, ax_e):
        ax.set_xlabel("s after the first request", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, lw=0.5)
    handles = _run_handles(runs, colors)
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=8)
    return fig


def _per_role(df: pd.DataFrame, column: str, scale: float = 1.0) -> pd.DataFrame:
    """time x role: the column summed over each role's processes at each sampling tick that
    read it (PSS comes only on the sampler's memory ticks; a row read between ticks is none)."""
    if "sampled" in df:
        df = df[df["sampled"] != SAMPLED_DECLARED]
    values = pd.to_numeric(df[column], errors="coerce") / scale
    frame = pd.DataFrame({"t": df["t"], "role": df["role"], "v": values})
    read = frame.groupby("t")["v"].transform(lambda v: v.notna().any())
    frame = frame[read.astype(bool)].fillna({"v": 0.0})
    return frame.pivot_table(index="t", columns="role", values="v", aggfunc="sum").fillna(0.0)


def _stack(ax: Any, table: pd.DataFrame, role_colors: dict[str, Any]) -> None:
    roles = list(table.columns)
    ax.stackplot(
        table.index.to_numpy(),
        [table[r].to_numpy() for r in roles],
        labels=roles,
        colors=[role_colors[r] for r in roles],
        lw=0,
    )


def fig_resources(runs: Sequence[ReportRun]) -> Figure | None:
    """Per run: CPU (% of one CPU) and PSS (MiB) per role over the load, stacked."""
    shown = [r for r in runs if not r.processes.empty]
    if not shown:
        return None
    role_colors = _role_colors([role for r in shown for role in r.processes["role"].unique()])
    fig, axes = new_figure(2, len(shown), width=6.4, height=2.4, squeeze=False)
    for i, run in enumerate(shown):
        df = run.processes
        df = df[(df["t"] >= -1) & (df["t"] <= run.span_s + 1)]
        ax_c, ax_m = axes[i, 0], axes[i, 1]
        if not df.empty:
            _stack(ax_c, _per_role(df, "cpu_percent"), role_colors)
            _stack(ax_m, _per_role(df, "pss_bytes", MIB), role_colors)
        ax_c.set_ylabel(f"{run.label}\n% of one CPU", fontsize=8)
        ax_m.set_ylabel("PSS MiB", fontsize=8)
        for ax in (ax_c, ax_m):
            ax.set_xlim(0, max(run.span_s, 1.0))
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3, lw=0.5)
        if i == 0:
            ax_c.set_title("server CPU per role (stacked)", fontsize=9)
            ax_m.set_title("server memory (PSS) per role (stacked)", fontsize=9)
        if i == len(shown) - 1:
            for ax in (ax_c, ax_m):
                ax.set_xlabel("s after the first request", fontsize=8)
        handles, labels = ax_m.get_legend_handles_labels()
        if handles:
            ax_m.legend(
                handles[::-1],
                labels[::-1],
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                fontsize=7,
                ncols=2 if len(handles) > 7 else 1,
                frameon=False,
            )
    return fig


def fig_gc(runs: Sequence[ReportRun]) -> Figure | None:
    """Per run: every GC pause (duration vs time), colour = role, large dots = full collections."""
    shown = [r for r in runs if not r.gc.empty]
    if not shown:
        return None
    role_colors = _role_colors([role for r in shown for role in r.gc["role"].unique()])
    fig, axes = new_figure(1, len(shown), width=12.8, height=2.2, squeeze=False)
    for i, run in enumerate(shown):
        ax = axes[i, 0]
        df = run.gc[(run.gc["t"] >= 0) & (run.gc["t"] <= run.span_s)]
        for role, one in df.groupby("role"):
            full = one["generation"] == 2
            c = role_colors[str(role)]
            ax.scatter(one["t"][~full], one["duration_ms"][~full], s=3, color=c, label=str(role))
            ax.scatter(one["t"][full], one["duration_ms"][full], s=30, color=c, edgecolors="k")
        _log_axis(ax)
        ax.set_xlim(0, max(run.span_s, 1.0))
        ax.set_ylabel(f"{run.label}\npause ms", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, which="both", lw=0.5)
        if len(df):
            ax.legend(
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                fontsize=7,
                markerscale=3,
                ncols=2 if df["role"].nunique() > 7 else 1,
                frameon=False,
            )
        if i == 0:
            ax.set_title("GC pauses per role (large, outlined: full collections)", fontsize=9)
        if i == len(shown) - 1:
            ax.set_xlabel("s after the first request", fontsize=8)
    return fig


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------- tables


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _x(value: float | None) -> str:
    return "-" if value is None else f"×{value:.2f}"


def _table(df: pd.DataFrame, *, index: bool = False, classes: str = "t") -> str:
    return df.to_html(
        index=index, index_names=False, border=0, classes=classes, na_rep="-", escape=True
    )


def runs_table(runs: Sequence[ReportRun]) -> pd.DataFrame:
    """What ran: one column per run, one row per property of the run (meta.json)."""
    rows = []
    for r in runs:
        m, git = r.meta, r.meta.get("git") or {}
        commit = (git.get("commit") or "-")[:10] + (" (dirty)" if git.get("dirty") else "")
        rows.append(
            {
                "run": r.label,
                "variant": m.get("variant", "-"),
                "scenario": compare.dig(m, "scenario", "name") or "-",
                "status": m.get("status", "-"),
                "dataset": m.get("dataset_size", "-"),
                "load": m.get("load_generator", "-"),
                "window s": _fmt(compare.dig(r.summary, "window", "seconds")),
                "CPUs": compare.pinning(m) or "-",
                "knobs": " ".join(f"{k}={v}" for k, v in (m.get("knobs") or {}).items()) or "-",
                "started (UTC)": m.get("started_at", "-"),
                "commit": commit,
            }
        )
    return pd.DataFrame(rows).set_index("run").T


def headline_table(runs: Sequence[ReportRun]) -> pd.DataFrame:
    """Headline measures, one column per run, then run i / run 1 for every later run."""
    rows = []
    for name, values, ratios in compare.ratios([r.summary for r in runs]):
        digits = _DIGITS.get(name, 1)
        row = {"measure": name} | {
            r.label: _fmt(v, digits) for r, v in zip(runs, values, strict=True)
        }
        if len(runs) > 1:
            base = runs[0].label
            row |= {f"{r.label} / {base}": _x(x) for r, x in zip(runs[1:], ratios[1:], strict=True)}
        rows.append(row)
    return pd.DataFrame(rows).set_index("measure") if rows else pd.DataFrame()


_DIGITS = {
    "error rate %": 2,
    "server CPU ms/request": 3,
    "server cores used": 2,
    "server processes": 0,
    "generator CPU mean %": 0,
}
_PCTS = (("min", "min"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99_9"))
_PCTS += (("max", "max"),)


def percentile_table(runs: Sequence[ReportRun]) -> pd.DataFrame:
    """Per endpoint (ALL first) and run: count, rate, errors, percentiles (summary.json)."""
    corrected = any(r.summary.get("corrected") for r in runs)
    endpoints = [ALL, *_endpoints(runs)]
    extra = {ep for r in runs for ep in (r.summary.get("endpoints") or {})} - set(endpoints)
    rows, index = [], []
    for ep in [*endpoints, *sorted(extra)]:
        base = compare.dig(runs[0].summary, "endpoints", ep, "latency_ms", "p99")
        for r in runs:
            st = compare.dig(r.summary, "endpoints", ep)
            if not st:
                continue
            lat = st.get("latency_ms") or {}
            row = {
                "count": _fmt(st.get("count")),
                "req/s": _fmt(st.get("throughput_rps")),
                "errors": _fmt(st.get("errors")),
                "error %": _fmt(100 * (st.get("error_rate") or 0.0), 2),
            }
            row |= {f"{k} ms": _fmt(lat.get(key)) for k, key in _PCTS}
            if corrected:
                row["p99 corrected ms"] = _fmt(compare.dig(st, "latency_corrected_ms", "p99"))
            if len(runs) > 1:
                row[f"p99 / {runs[0].label}"] = _x(compare.ratio(lat.get("p99"), base))
            rows.append(row)
            index.append((ep, r.label))
    return _indexed(rows, index, ["endpoint", "run"], several=len(runs) > 1)


def _indexed(
    rows: list[dict[str, str]], index: list[tuple[str, str]], names: list[str], several: bool
) -> pd.DataFrame:
    """Rows indexed by (group, run), or by group alone for a single run."""
    if not rows:
        return pd.DataFrame()
    if not several:
        return pd.DataFrame(rows, index=pd.Index([g for g, _ in index], name=names[0]))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=names))


def _role_rows(
    runs: Sequence[ReportRun],
    section: Callable[[dict[str, Any]], dict[str, Any] | None],
    columns: Callable[[dict[str, Any]], dict[str, str]],
) -> pd.DataFrame:
    roles = sorted({role for r in runs for role in (section(r.summary) or {})})
    rows, index = [], []
    for role in roles:
        for r in runs:
            st = (section(r.summary) or {}).get(role)
            if st:
                rows.append(columns(st))
                index.append((role, r.label))
    return _indexed(rows, index, ["role", "run"], several=len(runs) > 1)


def server_table(runs: Sequence[ReportRun]) -> pd.DataFrame:
    """CPU and memory per role and in total (summary.json `server`)."""

    def section(s: dict[str, Any]) -> dict[str, Any] | None:
        server = s.get("server")
        if not server:
            return None
        return {"(total)": server.get("total"), **(server.get("roles") or {})}

    def columns(st: dict[str, Any]) -> dict[str, str]:
        return {
            "processes": _fmt(st.get("processes")),
            "CPU s": _fmt(st.get("cpu_s"), 2),
            "CPU ms/request": _fmt(st.get("cpu_ms_per_request"), 3),
            "cores": _fmt(st.get("mean_cores"), 2),
            "PSS peak MiB": _fmt(_mib(st.get("pss_peak_bytes"))),
            "PSS mean MiB": _fmt(_mib(st.get("pss_mean_bytes"))),
            "USS peak MiB": _fmt(_mib(st.get("uss_peak_bytes"))),
            "RSS peak MiB": _fmt(_mib(st.get("rss_peak_bytes"))),
            "threads peak": _fmt(st.get("threads_peak")),
        }

    return _role_rows(runs, section, columns)


def gc_table(runs: Sequence[ReportRun]) -> pd.DataFrame:
    """GC per role in the summary window (summary.json `gc`)."""

    def columns(st: dict[str, Any]) -> dict[str, str]:
        full = (st.get("by_generation") or {}).get("2") or {}
        return {
            "collections": _fmt(st.get("collections")),
            "full (gen 2)": _fmt(full.get("count", 0)),
            "total pause ms": _fmt(st.get("total_pause_ms")),
            "max pause ms": _fmt(st.get("max_pause_ms")),
            "p99 pause ms": _fmt(st.get("p99_pause_ms"), 2),
            "pause ms/s": _fmt(st.get("pause_ms_per_s"), 2),
            "max pause ms (whole run)": _fmt(st.get("max_pause_ms_whole_run")),
        }

    return _role_rows(runs, lambda s: compare.dig(s, "gc", "roles"), columns)


def faults_table(runs: Sequence[ReportRun]) -> pd.DataFrame:
    rows = []
    for r in runs:
        for _, f in r.faults.iterrows():
            rows.append(
                {
                    "run": r.label,
                    "kind": f["kind"],
                    "component": f["component"],
                    "role": f["role"],
                    "start s": _fmt(float(f["t_start"])),
                    "end s": "- (crash)" if pd.isna(f["t_end"]) else _fmt(float(f["t_end"])),
                    "params": f["params"],
                }
            )
    return pd.DataFrame(rows)


def _mib(value: Any) -> float | None:
    return None if value is None else value / MIB


# ---------------------------------------------------------------- the page

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 0 auto; padding: 0 24px 48px;
       max-width: 1280px; }
h1 { font-size: 22px; margin: 20px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px;
     border-bottom: 1px solid #ddd; padding-bottom: 2px; }
.sub { color: #666; margin: 0 0 12px; } nav a { margin-right: 12px; color: #1f5fa8; }
table.t { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 14px; }
table.t th, table.t td { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; vertical-align: top; }
table.t td { text-align: right; font-variant-numeric: tabular-nums; }
table.t thead th { background: #f4f4f4; text-align: right; }
table.t tbody th { text-align: left; font-weight: 600; background: #fafafa; white-space: nowrap; }
table.runs td { text-align: left; } table.runs thead th { text-align: left; }
.warning { border: 2px solid #c77700; background: #fff4e0; padding: 10px 16px; margin: 14px 0;
           border-radius: 4px; }
.warning strong { color: #8a4b00; } .warning ul { margin: 6px 0 0; padding-left: 20px; }
.ok { border-left: 4px solid #2ca02c; background: #eef8ee; padding: 6px 12px; }
figure { margin: 8px 0 18px; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 12.5px; }
.note { color: #555; font-size: 12.5px; }
"""


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n{body}\n</section>'


def _figure(fig: Figure | None, alt: str, caption: str) -> str:
    if fig is None:
        return f'<p class="note">{html.escape(alt)}: no data in these runs.</p>'
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def warning_box(diffs: Sequence[str]) -> str:
    items = "".join(f"<li>{html.escape(d)}</li>" for d in diffs)
    return (
        '<div class="warning" role="alert"><strong>These runs differ in more than the '
        "variant: read the comparison with care.</strong><ul>" + items + "</ul></div>"
    )


def _notes(runs: Sequence[ReportRun]) -> str:
    items = []
    for r in runs:
        notes = list(r.summary.get("notes") or [])
        if r.meta.get("error"):
            notes.insert(0, f"run error: {str(r.meta['error']).splitlines()[0]}")
        inv = r.summary.get("invariants")
        if inv is not None:
            notes.append("invariants hold" if inv.get("ok") else "INVARIANTS VIOLATED")
        gen = r.summary.get("generator") or {}
        if "saturated" in gen:
            notes.append(
                f"load generator: mean {_fmt(gen.get('mean_cpu_percent'), 0)}% of one CPU, "
                + ("SATURATED" if gen["saturated"] else "not saturated")
            )
        body = "".join(f"<li>{html.escape(n)}</li>" for n in notes) or "<li>none</li>"
        items.append(f"<h3>{html.escape(r.label)}</h3><ul>{body}</ul>")
    return "".join(items)


def render(run_dirs: Sequence[Path], bucket_s: float = DEFAULT_BUCKET_S) -> tuple[str, list[str]]:
    """The report page for these runs, and how they differ (compare.differences)."""
    if bucket_s <= 0:
        raise ValueError(f"the time bucket must be positive, got {bucket_s}")
    if not run_dirs:
        raise ValueError("no run to report on")
    runs = load_runs(run_dirs)
    diffs = compare.differences([r.meta for r in runs])
    several = len(runs) > 1
    title = "archlab report: " + " vs ".join(r.label for r in runs)
    if diffs:
        verdict = warning_box(diffs)
    elif several:
        verdict = (
            '<p class="ok">Comparable: same dataset, seed, scenario, load shape, duration, '
            "CPU pinning, shared knobs, profiling and machine; only the variant differs.</p>"
        )
    else:
        verdict = ""
    bucket = f"{bucket_s:g} s"
    sections = [
        _section(
            "runs",
            "What ran",
            _table(runs_table(runs), index=True, classes="t runs"),
        ),
        _section(
            "headline",
            "Headline" + (f" and ratios to {runs[0].label}" if several else ""),
            _table(headline_table(runs), index=True)
            + '<p class="note">All endpoints, inside the summary window (summary.json)'
            + ("; ratios are run i / run 1 (below 1: less than the first run)" if several else "")
            + ".</p>",
        ),
        _section(
            "latency",
            "Latency over time per endpoint",
            _figure(
                fig_latency(runs, bucket_s),
                "latency over time per endpoint",
                f"p99 (solid) and p50 (dashed) of the observed latency of the requests sent in "
                f"each {bucket} (requests.csv; linear interpolation, so a bucket's p99 may sit "
                "between two requests); shaded: a fault's duration, dotted: a crash.",
            ),
        ),
        _section(
            "throughput",
            "Throughput and errors over time",
            _figure(
                fig_throughput(runs, bucket_s),
                "throughput and errors over time",
                f"requests sent per {bucket} and the share of them that were errors (status 0 "
                "or 5xx, or marked failed by the generator).",
            ),
        ),
        _section(
            "percentiles",
            "Percentiles per endpoint",
            _table(percentile_table(runs), index=True)
            + '<p class="note">summary.json: HDR histograms of the requests sent inside the '
            "summary window (after the warm-up); observed latency"
            + (
                "; corrected = from the intended start (open loop)"
                if any(r.summary.get("corrected") for r in runs)
                else ""
            )
            + ".</p>",
        ),
        _section(
            "server",
            "Server CPU and memory per role",
            _figure(
                fig_resources(runs),
                "server CPU and memory per role over time",
                "processes.csv: per sampling tick, each role's CPU (percent of one CPU over the "
                "interval) and PSS (shared pages counted once), stacked; the first request at 0.",
            )
            + _maybe_table(server_table(runs), "no processes.csv/server section in these runs"),
        ),
        _section(
            "gc",
            "Garbage collection per role",
            _figure(
                fig_gc(runs),
                "GC pauses per role over time",
                "gc.csv: every collection of every process of the variant, its duration; "
                "the table covers the summary window only (except its last column).",
            )
            + _maybe_table(gc_table(runs), "no gc.csv/gc section in these runs"),
        ),
    ]
    faults = faults_table(runs)
    if not faults.empty:
        sections.append(
            _section(
                "faults",
                "Faults",
                _table(faults) + '<p class="note">faults.csv; s after the first request.</p>',
            )
        )
    sections.append(_section("notes", "Notes", _notes(runs)))
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("runs", "runs"),
            ("headline", "headline"),
            ("latency", "latency"),
            ("throughput", "throughput"),
            ("percentiles", "percentiles"),
            ("server", "CPU / memory"),
            ("gc", "GC"),
            *((("faults", "faults"),) if not faults.empty else ()),
            ("notes", "notes"),
        )
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="sub">{len(runs)} run(s); written {iso(utc_now())} by archlab {__version__}</p>
<nav>{nav}</nav>
{verdict}
{"".join(sections)}
</body>
</html>
"""
    return page, diffs


def _maybe_table(df: pd.DataFrame, empty: str) -> str:
    return _table(df, index=True) if not df.empty else f'<p class="note">{html.escape(empty)}</p>'


def write_report(
    run_dirs: Sequence[Path], out: Path, bucket_s: float = DEFAULT_BUCKET_S
) -> list[str]:
    """Write the report page to `out`; returns how the runs differ (compare.differences)."""
    page, diffs = render(run_dirs, bucket_s)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return diffs
