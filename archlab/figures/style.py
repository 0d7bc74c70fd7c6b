"""The look shared by every figure: variant colours, the caption naming the run set and machine.

Figures are built as bare `matplotlib.figure.Figure` objects, not through pyplot: nothing is
kept in a global registry (rendering many is leak-free) and a notebook shows each one exactly
once, as the value of its cell (with `%matplotlib inline`, which registers the PNG display).
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from archlab.analysis.runset import VARIANT_COLORS, RunSet


def new_figure(
    ncols: int = 1, nrows: int = 1, *, width: float = 6.0, height: float = 4.0, **kw: Any
) -> tuple[Figure, Any]:
    """A figure and its axes (squeezed like plt.subplots)."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, **kw)
    return fig, axes


def color(variant: str) -> str:
    return VARIANT_COLORS.get(variant, "#7f7f7f")


def caption(fig: Figure, rs: RunSet, extra: str = "") -> Figure:
    """Name the data under the plot: profile, machine, and anything the reader must know."""
    text = f"run set '{rs.scale}' ({rs.path.name}); {rs.machine_label()}"
    if extra:
        text += f"; {extra}"
    fig.supxlabel(text, fontsize=7, color="#555555", x=0.01, ha="left")
    return fig
