"""The look shared by every figure: variant colours, the caption naming the run set and machine."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from archlab.figures.runset import VARIANT_COLORS, RunSet


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 6.0, height: float = 4.0, **kw):  # type: ignore[no-untyped-def]
    """A figure and its axes (squeezed like plt.subplots)."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kw)


def color(variant: str) -> str:
    return VARIANT_COLORS.get(variant, "#7f7f7f")


def caption(fig: Figure, rs: RunSet, extra: str = "") -> Figure:
    """Name the data under the plot: profile, machine, and anything the reader must know."""
    text = f"run set '{rs.profile}' ({rs.path.name}); {rs.machine_label()}"
    if extra:
        text += f"; {extra}"
    fig.text(0.01, -0.02, text, fontsize=7, color="#555555", ha="left", va="top")
    return fig
