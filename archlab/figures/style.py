"""The look shared by every figure: variant colours, the caption naming the run set and machine.

Figures are built as bare `matplotlib.figure.Figure` objects, not through pyplot: nothing is
kept in a global registry (rendering many is leak-free) and a notebook shows each one exactly
once, as the value of its cell (with `%matplotlib inline`, which registers the PNG display).
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from archlab.analysis.runset import RunSet

VARIANT_COLORS = {"monolith": "#d62728", "multiprocess": "#1f77b4", "distributed": "#2ca02c"}
# the migration path's steps between the variants: hues between their neighbours
STEP_COLORS = {"recs-process": "#9467bd", "recs-service": "#17becf"}
CAPTION_CHARS_PER_INCH = 17  # at 7 pt: a longer caption wraps instead of running off the figure


def new_figure(
    ncols: int = 1, nrows: int = 1, *, width: float = 6.0, height: float = 4.0, **kw: Any
) -> tuple[Figure, Any]:
    """A figure and its axes (squeezed like plt.subplots)."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, **kw)
    return fig, axes


def new_mosaic(
    layout: list[list[str]], *, width: float, height: float, **kw: Any
) -> tuple[Figure, dict[str, Any]]:
    """A figure and its named axes (like plt.subplot_mosaic), for panels of unequal width."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplot_mosaic(layout, **kw)


def color(variant: str) -> str:
    return VARIANT_COLORS.get(variant) or STEP_COLORS.get(variant, "#7f7f7f")


def caption(fig: Figure, rs: RunSet, extra: str = "") -> Figure:
    """Name the data under the plot: profile, machine, and anything the reader must know."""
    text = f"run set '{rs.scale}' ({rs.path.name}); {rs.machine_label()}"
    if extra:
        text += f"; {extra}"
    width = int(fig.get_figwidth() * CAPTION_CHARS_PER_INCH)
    text = "\n".join(textwrap.fill(line, width=width) for line in text.splitlines())
    fig.supxlabel(text, fontsize=7, color="#555555", x=0.01, ha="left")
    return fig


def nan_float(value: Any) -> float:
    """A table cell as a float for plotting: None and pandas' missing values become NaN (a gap,
    not a zero)."""
    return math.nan if value is None or pd.isna(value) else float(value)
