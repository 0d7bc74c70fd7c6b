"""Every figure of the lab, one function each: `f(run_set) -> matplotlib Figure | None`.

`reproduce` renders them all into results/figures/ and the notebooks call the same functions,
so a PNG and a notebook cell can never disagree. A function returns None when the run set has
no data for it (e.g. no scaling runs in a set made on one CPU).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from archlab.analysis.runset import RunSet

FigureFn = Callable[[RunSet], Figure | None]
# notebook -> module; each module has FIGURES (name -> function) and reading(run_set) -> str
MODULES = {
    "01_latency_throughput": "archlab.figures.latency",
    "02_gc_stalls": "archlab.figures.gcstalls",
    "03_isolation": "archlab.figures.isolation",
    "04_cost": "archlab.figures.cost",
    "05_profiles": "archlab.figures.profiles",
    "06_scaling": "archlab.figures.scaling",
    "07_migration_path": "archlab.figures.migration",
    "08_polyglot": "archlab.figures.polyglot",
}


def figure_functions() -> dict[str, FigureFn]:
    """All figures, named '<notebook>-<figure>', in notebook order."""
    found: dict[str, FigureFn] = {}
    for notebook, module_name in MODULES.items():
        module = importlib.import_module(module_name)
        for name, fn in module.FIGURES.items():
            found[f"{notebook[:2]}-{name}"] = fn
    return found


def render_all(rs: RunSet, out_dir: Path, *, echo: Callable[[str], None] = print) -> list[Path]:
    """Render every figure as PNG and SVG into out_dir; returns the PNG paths."""
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "archlab"  # same figure, same SVG: no churn in git
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, fn in figure_functions().items():
        fig = fn(rs)
        if fig is None:
            echo(f"{name}: no data in this run set, skipped")
            continue
        for ext in ("png", "svg"):
            meta = {"Date": None} if ext == "svg" else {}
            fig.savefig(out_dir / f"{name}.{ext}", dpi=110, bbox_inches="tight", metadata=meta)
        written.append(out_dir / f"{name}.png")
        echo(f"{name}.png / .svg")
    return written
