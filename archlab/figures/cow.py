"""Figure `04-copy_on_write` and its paragraph of notebook 04's reading: memory in prefork.

How much of a forked child's memory stays shared with its parent, per design and `fork_gc`
setting (`archlab.analysis.cow` holds the runs and the definitions). Top row, one panel per
design: private MiB per child over the run at the largest N measured (the mean over the
children, the band their min-max), a line per setting. Bottom row: the variant's total memory
(PSS peak, every process) against N, a line per setting, with the MiB each added child costs
in the legend. Nothing is drawn without the study's runs.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from archlab.analysis import cow
from archlab.analysis.polyglot import cpu_count
from archlab.analysis.runset import RunSet
from archlab.figures.style import caption, nan_float, new_figure

NO_RUNS = "no copy-on-write runs in this run set"
SETTING_LOOK: dict[str, dict[str, Any]] = {
    "as-is": {"color": "#7f7f7f", "linestyle": "-", "marker": "o"},
    "freeze": {"color": "#1f77b4", "linestyle": "-", "marker": "s"},
    "thresholds": {"color": "#ff7f0e", "linestyle": "--", "marker": "^"},
}
DESIGN_LABEL = {
    "monolith": "monolith --workers N (app built after the fork)",
    "monolith-preload": "monolith --workers N --preload on",
    "multiprocess": "multiprocess --backends N",
}


def _look(setting: str) -> dict[str, Any]:
    return SETTING_LOOK.get(setting, {"color": "#333333", "linestyle": ":", "marker": "x"})


def _timeline_panel(ax: Any, rs: RunSet, t: pd.DataFrame, design: str) -> None:
    n = max(cow.counts(t, design))
    for setting in cow.present(t.loc[t["design"] == design, "setting"], cow.SETTINGS):
        line = cow.timeline(rs, design, setting, n)
        if line.empty:
            continue
        look = _look(setting)
        ax.plot(line["t"], line["mean"], color=look["color"], linestyle=look["linestyle"],
                label=setting, lw=1.5)  # fmt: skip
        ax.fill_between(line["t"], line["min"], line["max"], color=look["color"], alpha=0.15,
                        lw=0)  # fmt: skip
    ax.axvline(0, color="#999999", lw=0.8, ls=":")
    ax.set_title(f"{DESIGN_LABEL.get(design, design)}\nN = {n}", fontsize=9)
    ax.set_xlabel("s after the first request (before 0: start-up)")
    ax.set_ylabel("private MiB per child (USS)")
    ax.set_ylim(bottom=0)
    ax.legend(title="fork_gc (band: min-max)", fontsize=7, title_fontsize=7)


def _totals_panel(ax: Any, t: pd.DataFrame, design: str) -> None:
    rows = t[t["design"] == design]
    for setting in cow.present(rows["setting"], cow.SETTINGS):
        points = cow.totals(t, design, setting)
        if not points:
            continue
        ns = sorted(points)
        fit = cow.per_child_cost(t, design, setting)
        label = setting if fit is None else f"{setting}: {fit[1]:+.0f} MiB per child"
        look = _look(setting)
        ax.plot(ns, [points[n] for n in ns], label=label, lw=1.5, **look)
    ns = cow.counts(t, design)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("children N")
    ax.set_ylabel("total MiB (PSS peak, every process)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)


def fig_copy_on_write(rs: RunSet) -> Figure | None:
    """Private MiB per child over time and the total against N, per design and setting."""
    t = cow.table(rs)
    if t.empty:
        return None
    designs = cow.present(t["design"], cow.DESIGNS)
    fig, axes = new_figure(len(designs), 2, width=4.3, height=3.4, squeeze=False)
    for col, design in enumerate(designs):
        _timeline_panel(axes[0][col], rs, t, design)
        _totals_panel(axes[1][col], t, design)
    fig.suptitle(
        f"Copy-on-write in the prefork designs: open loop at {_rate_label(rs)} req/s over "
        f"{cow.STREAMS} streams, {cpu_count(rs) or '?'} CPUs\n{_verdict(t) or ''}",
        fontsize=10,
    )
    return caption(fig, rs, "private: smaps_rollup Private_Clean + Private_Dirty; one run per cell")


def _rate_label(rs: RunSet) -> str:
    rates = set()
    for _, _, _, run in cow.study_runs(rs):
        offered = (run.summary.get("load") or {}).get("offered_rps")
        if offered:
            rates.add(float(offered))
    return " / ".join(f"{r:g}" for r in sorted(rates)) or f"{cow.RATE:g}"


def _cell(t: pd.DataFrame, design: str, setting: str, n: int) -> Any:
    sel = t[(t["design"] == design) & (t["setting"] == setting) & (t["n"] == n)]
    return sel.iloc[0] if len(sel) else None


def _mib(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.0f}"


def _verdict(t: pd.DataFrame) -> str:
    """gc.freeze() against as-is, private MiB per child at each design's largest N."""
    parts = []
    for design in cow.present(t["design"], cow.DESIGNS):
        n = max(cow.counts(t, design))
        a, f = _cell(t, design, "as-is", n), _cell(t, design, "freeze", n)
        if a is not None and f is not None:
            parts.append(
                f"{design}: {_mib(a.private_mib)} vs {_mib(f.private_mib)} MiB/child at N={n}"
            )
    return "private as-is vs freeze: " + "; ".join(parts) if parts else ""


def _child_text(row: Any) -> str:
    text = f"{_mib(row.private_mib)}"
    if row.children and row.children > 1:
        text += f" ({_mib(row.private_min_mib)}-{_mib(row.private_max_mib)})"
    return text


def reading(rs: RunSet) -> str:
    """Notebook 04's paragraph on copy-on-write, computed from the study's runs."""
    t = cow.table(rs)
    if t.empty:
        return (
            f"**Copy-on-write**: {NO_RUNS} (`archlab reproduce` runs each prefork design at "
            f"N = {', '.join(map(str, cow.COUNTS))} children under each `fork_gc` setting, "
            f"{', '.join(cow.SETTINGS)}, open loop at {cow.RATE:g} req/s)."
        )
    head = (
        f"**Copy-on-write** (open loop at {_rate_label(rs)} req/s over {cow.STREAMS} streams, "
        f"one run per cell; private = a child's USS at the end of the run, mean over the "
        "children with their min-max; shared = its Shared_Clean + Shared_Dirty; total = PSS "
        "peak over every process of the variant):"
    )
    bullets = []
    for design in cow.present(t["design"], cow.DESIGNS):
        n = max(cow.counts(t, design))
        cells = []
        for setting in cow.present(t.loc[t["design"] == design, "setting"], cow.SETTINGS):
            row = _cell(t, design, setting, n)
            if row is None:
                continue
            totals = cow.totals(t, design, setting)
            fit = cow.per_child_cost(t, design, setting)
            text = (
                f"{setting} {_child_text(row)} private, {_mib(row.shared_mib)} shared; total "
                + ", ".join(f"{_mib(totals[k])}" for k in sorted(totals))
                + f" MiB at N = {', '.join(map(str, sorted(totals)))}"
            )
            if fit is not None:
                text += f" ({fit[1]:+.0f} MiB per added child)"
            cells.append(text)
        bullets.append(
            f"- {DESIGN_LABEL.get(design, design)}, per child at N = {n}: " + "; ".join(cells) + "."
        )
    lines = ["\n".join([head, *bullets])]
    freeze = _freeze_effect(t)
    if freeze:
        lines.append(freeze)
    preload = _preload_effect(t)
    if preload:
        lines.append(preload)
    lines.append(_rebuild_note(t))
    return "\n\n".join(line for line in lines if line)


def _rebuild_note(t: pd.DataFrame) -> str:
    before = cow.before_first_rebuild(t)
    if before is None:
        return ""
    interval = float(t["rebuild_interval_s"].dropna().min())
    if not before:
        return (
            f"Some children lived past the model's rebuild interval ({interval:g} s): those runs "
            "include a rebuild, when a monolith worker builds a second model beside the first."
        )
    return (
        f"Every child of these runs lived at most {float(t['life_s'].max()):.0f} s, less than "
        f"the model's rebuild interval ({interval:g} s): these are the children before their "
        "first model rebuild. A rebuild builds a new model beside the old one and frees the old "
        "one, whose pages the allocator keeps: what a worker holds after it is in "
        'docs/architecture.md ("Copy-on-write in the prefork designs").'
    )


def _freeze_effect(t: pd.DataFrame) -> str:
    parts = []
    for design in cow.present(t["design"], cow.DESIGNS):
        n = max(cow.counts(t, design))
        a, f = _cell(t, design, "as-is", n), _cell(t, design, "freeze", n)
        if a is None or f is None or pd.isna(a.private_mib) or pd.isna(f.private_mib):
            continue
        saved = a.private_mib - f.private_mib
        shared = nan_float(f.shared_mib) - nan_float(a.shared_mib)
        total = nan_float(a.total_mib) - nan_float(f.total_mib)
        parts.append(
            f"{design} {saved:+.1f} MiB private and {shared:+.1f} MiB shared per child, "
            f"{total:+.0f} MiB total at N = {n}"
        )
    if not parts:
        return ""
    return (
        "What `gc.freeze()` before the fork saved against nothing (private and total: as-is "
        "minus freeze; shared: freeze minus as-is): " + "; ".join(parts) + ". It keeps the "
        "collector off the inherited objects; what the children's requests read is copied "
        "anyway (reference counts), so it saves only what no child touches, and only once a "
        "collection would have visited it."
    )


def _preload_effect(t: pd.DataFrame) -> str:
    parts = []
    for setting in cow.SETTINGS:
        common = set(cow.totals(t, "monolith", setting)) & set(
            cow.totals(t, "monolith-preload", setting)
        )
        if not common:
            continue
        n = max(common)
        off = cow.totals(t, "monolith", setting)[n]
        on = cow.totals(t, "monolith-preload", setting)[n]
        parts.append(f"{setting}: {off:.0f} vs {on:.0f} MiB at N = {n} ({on / off - 1:+.0%})")
    if not parts:
        return ""
    return (
        "Preloading the monolith's read-only state in the master, total without vs with: "
        + "; ".join(parts)
        + ". A worker still copies the pages of the model its requests walk (their reference "
        "counts are written)."
    )
