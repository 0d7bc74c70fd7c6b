"""The migration path measured step by step: its runs' tags, their measures, and the noise.

`archlab reproduce` runs each step of `variants.placement.PATH` at one offered load (open
loop) three ways: steady (`path-<placement>`) and under each scenario of `FAULT_SCENARIOS`
(`path-<placement>-<scenario>`). Figure and notebook 07 read those runs
(`archlab.figures.migration`); this module holds what they need that is not drawing.

Every step is a single run, so a difference between two steps may be this machine's
run-to-run noise. The run set measures that noise itself: a `REPLICATE_SCENARIO` run serves
the same placement at the same load and, until its fault starts, is a second measurement of
the steady state (the step's *replicate*). Both runs are measured over that same stretch
(warm-up end to fault start); per measure (p50 and p99 of all endpoints, CPU ms per request,
PSS peak) the *noise band* is the median gap |ln(steady / replicate)| over the steps that have
both: how far two runs of one step typically fall apart. The median, not the largest gap: a
short stretch can catch one run's outlier (3 s stretches of the quick scale once differed
2.2x in CPU per request) and a band stretched to it would call a doubling noise. Two steps
whose whole-run measures differ by a gap |ln(a / b)| within the band are not told apart
(conservative: a whole run is longer than the stretch, so less noisy). Error rates are
binomial counts instead: two differ when their gap exceeds `ERROR_Z` combined standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from archlab.analysis.ramp import latency
from archlab.analysis.runset import Run
from archlab.analysis.summary import ALL, read_process_samples, summarize_processes
from archlab.rundir import PROCESSES, warmup_of

KIND = "path"  # the manifest kind of every run of the path
STEADY = "open"  # the steady run's scenario: the open loop at the path's rate, no fault
CRASH = "crash-recommendations"
GC_PRESSURE = "gc-pressure"
FAULT_SCENARIOS = (CRASH, GC_PRESSURE)
REPLICATE_SCENARIO = CRASH  # steady until its crash
MEASURES = ("p50_ms", "p99_ms", "cpu_ms_per_request", "pss_mib")
MIN_REPLICATE_REQUESTS = 50  # fewer before the fault: no replicate (a p99 of nothing)
ERROR_Z = 2.0
MIB = 2**20


def tag(placement: str, scenario: str = STEADY) -> str:
    """The run's tag (and folder) in a run set: `path-<placement>[-<fault scenario>]`."""
    return f"{KIND}-{placement}" if scenario == STEADY else f"{KIND}-{placement}-{scenario}"


@dataclass(frozen=True)
class Measures:
    """What a stretch of one run says about its placement: all endpoints together."""

    requests: int
    p50_ms: float | None
    p99_ms: float | None
    cpu_ms_per_request: float | None
    pss_mib: float | None

    def get(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)


def steady_measures(run: Run) -> Measures:
    """The whole measured window of a run, as its summary.json has it."""
    summary = run.summary
    stats = summary.get("endpoints", {}).get(ALL, {})
    lat = latency(stats)
    total = summary.get("server", {}).get("total", {})
    pss = total.get("pss_peak_bytes")
    return Measures(
        requests=int(stats.get("count", 0)),
        p50_ms=lat.get("p50"),
        p99_ms=lat.get("p99"),
        cpu_ms_per_request=total.get("cpu_ms_per_request"),
        pss_mib=None if pss is None else pss / MIB,
    )


def stretch_measures(run: Run, start_s: float, end_s: float) -> Measures | None:
    """The requests a run sent from `start_s` to `end_s` after its first one, all endpoints.

    Latency is the nearest-rank percentile of the corrected latency, as in `blast`; CPU and
    memory are `summary.summarize_processes` over the same stretch. None with fewer than
    MIN_REPLICATE_REQUESTS requests in it.
    """
    req = run.requests
    if req.empty:
        return None
    start, end = run.origin + start_s, run.origin + end_s
    stretch = req[(req["start_time"] >= start) & (req["start_time"] < end)]
    n = len(stretch)
    if n < MIN_REPLICATE_REQUESTS:
        return None
    ms = stretch["corrected_ms"].to_numpy(dtype=float)
    cpu = pss = None
    path = run.file(PROCESSES)
    if path is not None:
        samples = read_process_samples(path)
        total = summarize_processes(samples, start=start, end=end, requests=n)["total"]
        cpu = total["cpu_ms_per_request"]
        pss = None if total["pss_peak_bytes"] is None else total["pss_peak_bytes"] / MIB
    return Measures(
        requests=n,
        p50_ms=nearest_rank(ms, 50),
        p99_ms=nearest_rank(ms, 99),
        cpu_ms_per_request=cpu,
        pss_mib=pss,
    )


def replicate_pair(steady: Run, faulted: Run) -> tuple[Measures, Measures] | None:
    """The same stretch of a steady run and of a fault run of the same step: from the end of
    the warm-up to the fault's start, so both are measured alike. None without a fault."""
    if faulted.faults.empty or faulted.requests.empty:
        return None
    start = max(warmup_of(steady.meta), warmup_of(faulted.meta))
    end = float(faulted.faults["start"].min()) - faulted.origin
    a, b = stretch_measures(steady, start, end), stretch_measures(faulted, start, end)
    return (a, b) if a is not None and b is not None else None


def nearest_rank(values: np.ndarray, q: float) -> float | None:
    """The nearest-rank percentile (blast's p99 rule, any q); None without values."""
    if len(values) == 0:
        return None
    return float(np.percentile(values, q, method="inverted_cdf"))


def log_gap(a: float | None, b: float | None) -> float | None:
    """|ln(a / b)|: a symmetric relative gap; None unless both are positive."""
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return abs(math.log(a / b))


def noise_bands(pairs: Iterable[tuple[Measures, Measures]]) -> dict[str, float]:
    """Per measure, the median gap between a step's steady run and its replicate."""
    gaps: dict[str, list[float]] = {}
    for steady, replicate in pairs:
        for name in MEASURES:
            gap = log_gap(steady.get(name), replicate.get(name))
            if gap is not None:
                gaps.setdefault(name, []).append(gap)
    return {name: float(np.median(values)) for name, values in gaps.items()}


def inside_noise(a: float | None, b: float | None, band: float | None) -> bool | None:
    """True when a and b differ by no more than the band; None when it cannot be judged."""
    gap = log_gap(a, b)
    if gap is None or band is None:
        return None
    return gap <= band


def band_percent(band: float) -> float:
    """A band as the percentage by which one measurement may exceed the other."""
    return 100 * (math.exp(band) - 1)


def rates_differ(errors_a: int, n_a: int, errors_b: int, n_b: int) -> bool | None:
    """Two error rates differ by more than ERROR_Z combined binomial standard errors.

    With no error on either side they are the same; None when a side has no requests.
    """
    if not n_a or not n_b:
        return None
    pa, pb = errors_a / n_a, errors_b / n_b
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    return abs(pa - pb) > ERROR_Z * se
