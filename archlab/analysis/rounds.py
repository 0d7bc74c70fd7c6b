"""A measure repeated over interleaved rounds: its median and range, and when two differ.

The studies that repeat runs (the HTTP servers, the isolation remedies) run one round of every
variant, then the next, so drift on a shared machine spreads over all of them; a difference is
called only when the two sets of rounds do not overlap at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spread:
    """A measure over rounds: median, min, max and how many rounds."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Spread | None:
        found = [float(v) for v in values if v is not None and not np.isnan(v)]
        if not found:
            return None
        return cls(float(np.median(found)), min(found), max(found), len(found))

    def apart(self, other: Spread) -> bool | None:
        """True when the two ranges do not overlap, False when they do; None when a side has
        one round (no spread measured: nothing is judged)."""
        if self.rounds < 2 or other.rounds < 2:
            return None
        return self.low > other.high or other.low > self.high
