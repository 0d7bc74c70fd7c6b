"""Windows of a run in which the recommendation engine was paused, and the requests in them.

The GC-stall figures (`archlab.figures.gcstalls`), the migration path and the isolation
remedies (`archlab.analysis.remedies`) all ask one question of a run: which requests overlapped
a full collection of the engine, and what was their p99 against the others'? The definitions
live here once:

- a *pause* is one row of `gc.csv` lasting at least MIN_PAUSE_MS, the interval
  [start, start + duration]; a *full collection* is a generation-2 pause;
- a request's interval is [start_time, end_time] (sent to last byte read): it *overlaps* a
  pause when pause.start < end_time and pause.end > start_time;
- latencies are `corrected_ms` (from the intended start; observed latency in closed loops);
  requests of the warm-up (`meta.warmup_s`) are left out, like in summary.json;
- p99 is nearest-rank.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from archlab.analysis import blast
from archlab.analysis.runset import ENDPOINT_COMPONENTS, ENDPOINT_ORDER, Run

MIN_PAUSE_MS = 1.0
FULL_GENERATION = 2
ENGINE_COMPONENT = "recommendations"
OTHERS = tuple(e for e in ENDPOINT_ORDER if ENGINE_COMPONENT not in ENDPOINT_COMPONENTS[e])
"""The endpoints that never call the engine: whatever its pauses do to them crossed a boundary
that should have stopped it."""


def p99(values: pd.Series | np.ndarray) -> float:
    """blast.py's nearest-rank p99, as a float (NaN when empty) for DataFrame columns."""
    value = blast.p99(np.asarray(values, dtype=float).tolist())
    return math.nan if value is None else float(value)


def overlap_counts(
    req_start: np.ndarray, req_end: np.ndarray, pause_start: np.ndarray, pause_end: np.ndarray
) -> np.ndarray:
    """Per request, how many pauses overlap it (pauses may overlap each other).

    #(pause.start < req.end) - #(pause.end <= req.start): every pause that ended before the
    request began also started before it ended, so the difference counts the overlapping ones.
    Two binary searches per request instead of a requests x pauses matrix.
    """
    starts = np.sort(np.asarray(pause_start, dtype=float))
    ends = np.sort(np.asarray(pause_end, dtype=float))
    began = np.searchsorted(starts, np.asarray(req_end, dtype=float), side="left")
    over = np.searchsorted(ends, np.asarray(req_start, dtype=float), side="right")
    return np.asarray(began - over)


def pauses(gc: pd.DataFrame, min_ms: float = MIN_PAUSE_MS) -> pd.DataFrame:
    """Collections of at least `min_ms`, with `end` (epoch s), sorted by start."""
    if gc.empty:
        return pd.DataFrame(columns=["pid", "role", "generation", "start", "duration_ms", "end"])
    df = gc[gc["duration_ms"] >= min_ms].copy()
    df["end"] = df["start"] + df["duration_ms"] / 1000
    return df.sort_values("start").reset_index(drop=True)


def engine_roles(variant: str, roles: set[str]) -> set[str]:
    """The roles hosting the recommendation engine: its own role where it exists, else its host.

    The host comes from the variant registry (`VariantSpec.hosts`): `monolith` for the monolith.
    """
    if ENGINE_COMPONENT in roles:
        return {ENGINE_COMPONENT}
    from archlab.deployers import VARIANTS

    spec = VARIANTS.get(variant)
    return {spec.host_role(ENGINE_COMPONENT)} if spec else set()


def overlapping(requests: pd.DataFrame, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per request, whether its interval overlaps any of the windows [starts, ends]."""
    counts = overlap_counts(
        requests["start_time"].to_numpy(), requests["end_time"].to_numpy(), starts, ends
    )
    return np.asarray(counts > 0)


def inside_outside(
    requests: pd.DataFrame, engine_pauses: pd.DataFrame
) -> list[dict[str, float | int | str]]:
    """Per endpoint: p99 and errors of requests overlapping an engine full collection vs the
    others (errors: `is_error`, none when the frame has no such column)."""
    full = engine_pauses[engine_pauses["generation"] == FULL_GENERATION]
    inside = overlapping(requests, full["start"].to_numpy(), full["end"].to_numpy())
    failed = (
        requests["is_error"].to_numpy(dtype=bool)
        if "is_error" in requests
        else np.zeros(len(requests), dtype=bool)
    )
    rows: list[dict[str, float | int | str]] = []
    for endpoint in endpoints(requests):
        mask = (requests["endpoint"] == endpoint).to_numpy()
        lat_in = requests["corrected_ms"].to_numpy()[mask & inside]
        lat_out = requests["corrected_ms"].to_numpy()[mask & ~inside]
        p_in, p_out = p99(lat_in), p99(lat_out)
        rows.append(
            {
                "endpoint": endpoint,
                "n_inside": int(lat_in.size),
                "n_outside": int(lat_out.size),
                "errors_inside": int((failed & mask & inside).sum()),
                "errors_outside": int((failed & mask & ~inside).sum()),
                "p99_inside_ms": p_in,
                "p99_outside_ms": p_out,
                "ratio": p_in / p_out if p_out and not math.isnan(p_out) else math.nan,
            }
        )
    return rows


def endpoints(requests: pd.DataFrame) -> list[str]:
    seen = set(requests["endpoint"].unique())
    return [e for e in ENDPOINT_ORDER if e in seen] + sorted(seen - set(ENDPOINT_ORDER))


def measured_requests(run: Run) -> pd.DataFrame:
    """The run's requests after the warm-up (summary.json's rule)."""
    df = run.requests
    if df.empty:
        return df
    warmup = float(run.meta.get("warmup_s") or 0.0)
    return df[df["t"] >= warmup].reset_index(drop=True)


def engine_pauses(run: Run) -> tuple[pd.DataFrame, set[str]]:
    """The run's pauses of the roles hosting the recommendation engine, and those roles."""
    engine = engine_roles(run.variant, set(run.gc["role"].unique()) if not run.gc.empty else set())
    all_pauses = pauses(run.gc)
    return all_pauses[all_pauses["role"].isin(engine)], engine
