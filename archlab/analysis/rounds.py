"""A measure repeated over interleaved rounds: its median, its 95 % interval, and when two differ.

Every repeated study (the headline scenarios of `archlab reproduce`, the HTTP servers, the
isolation remedies) runs one round of every variant, then the next, so drift on a shared
machine spreads over all of them. A number a figure or a reading quotes is the median over the
rounds with a 95 % confidence interval of that median: a percentile bootstrap over the rounds
(`scipy.stats.bootstrap`, a fixed seed so a figure redraws the same). Two measures are called
different only when their intervals do not overlap; otherwise they are "not distinguishable at
this N".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0  # the bootstrap's resampling: fixed, so the same rounds give the same interval
NOT_DISTINGUISHABLE = "not distinguishable at this N"


def median_interval(values: Iterable[float]) -> tuple[float, float]:
    """The CONFIDENCE bootstrap interval of the median of `values` (one value: itself)."""
    data = np.asarray([float(v) for v in values], dtype=float)
    if data.size == 0:
        raise ValueError("no values")
    if data.size == 1 or np.all(data == data[0]):
        return float(data[0]), float(data[0])
    from scipy import stats  # 1 s to import: only where an interval is computed

    res = stats.bootstrap(
        (data,),
        np.median,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(SEED),
    )
    ci = res.confidence_interval
    return float(ci.low), float(ci.high)


def interval_text(
    median: float, ci_low: float, ci_high: float, n: int, fmt: str = "{:.1f}", unit: str = ""
) -> str:
    """'12.3 ms [11.0, 14.2], n=5': a median, its interval and N, as captions quote them."""
    u = f" {unit}" if unit else ""
    if n < 2:
        return f"{fmt.format(median)}{u} (n=1)"
    return f"{fmt.format(median)}{u} [{fmt.format(ci_low)}, {fmt.format(ci_high)}], n={n}"


def intervals_apart(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool | None:
    """Whether two (ci_low, ci_high, n) intervals do not overlap; None when a side has one
    repetition (no spread measured: nothing is judged)."""
    if a[2] < 2 or b[2] < 2:
        return None
    return a[0] > b[1] or b[0] > a[1]


@dataclass(frozen=True)
class Spread:
    """A measure over rounds: median, its interval (ci_low, ci_high), min, max, rounds."""

    median: float
    low: float
    high: float
    rounds: int
    ci_low: float
    ci_high: float

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Spread | None:
        found = [float(v) for v in values if v is not None and not np.isnan(v)]
        if not found:
            return None
        ci_low, ci_high = median_interval(found)
        return cls(float(np.median(found)), min(found), max(found), len(found), ci_low, ci_high)

    def apart(self, other: Spread) -> bool | None:
        """True when the two intervals do not overlap, False when they do; None when a side
        has one round (no spread measured: nothing is judged)."""
        return intervals_apart(
            (self.ci_low, self.ci_high, self.rounds), (other.ci_low, other.ci_high, other.rounds)
        )

    def text(self, fmt: str = "{:.1f}", unit: str = "") -> str:
        """'12.3 ms [11.0, 14.2], n=5': the median, its interval and N, as captions quote it."""
        return interval_text(self.median, self.ci_low, self.ci_high, self.rounds, fmt, unit)
