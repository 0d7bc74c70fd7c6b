"""The fault runs of a run set as one table: `archlab.analysis.blast` per endpoint and run,
with what the figures, the readings and the notebooks judge by.

A row is one endpoint of one run. `targeted` is True when the faulty component is one of the
contexts the endpoint calls (`runset.ENDPOINT_COMPONENTS`), or the gateway every request
crosses; the other endpoints are the ones isolation should protect. `within` applies
`TOLERANCE` to the row (error rate and p99 during the fault against the baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from archlab.analysis import blast
from archlab.analysis.runset import ENDPOINT_COMPONENTS, Run, RunSet

TOLERANCE = blast.Tolerance()


@lru_cache(maxsize=32)
def _matrix(paths: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(blast.matrix([Path(p) for p in paths], TOLERANCE))


def rows(runs: Sequence[Run]) -> pd.DataFrame:
    """blast.matrix over `runs`, plus `p99_ratio`, `targeted` and `within`."""
    if not runs:
        return pd.DataFrame()
    df = _matrix(tuple(str(r.path) for r in runs)).copy()
    if df.empty:
        return df
    df["p99_ratio"] = df["during_p99_ms"] / df["baseline_p99_ms"]
    df["targeted"] = [
        comp == "gateway" or comp in ENDPOINT_COMPONENTS.get(ep, ())
        for ep, comp in zip(df["endpoint"], df["component"], strict=True)
    ]
    base_err = df["baseline_error_rate"].fillna(0.0)
    tol = TOLERANCE
    limit = np.maximum(
        tol.p99_factor * df["baseline_p99_ms"], df["baseline_p99_ms"] + tol.p99_slack_ms
    )
    err_ok = df["during_error_rate"].fillna(0.0) <= base_err + tol.error_pp + 1e-12
    p99_ok = (
        df["during_p99_ms"].isna() | df["baseline_p99_ms"].isna() | (df["during_p99_ms"] <= limit)
    )
    df["within"] = err_ok & p99_ok
    return df


def table(rs: RunSet) -> pd.DataFrame:
    """`rows` of the run set's fault runs (every repetition)."""
    return rows(rs.of("fault"))


def per_run(df: pd.DataFrame) -> pd.DataFrame:
    """One row per fault run: the worst endpoint's error rate, the other endpoints' worst
    error rate and p99 ratio, and the last endpoint's recovery (NaN: one never came back
    within the records); what a reading takes the median of over repetitions."""
    if df.empty:
        return pd.DataFrame()
    out = []
    for (scenario, variant, run_id), sel in df.groupby(["scenario", "variant", "run_id"]):
        others = sel[~sel["targeted"]]
        recovered = not sel["recovery_s"].isna().any()
        out.append(
            {
                "scenario": scenario,
                "variant": variant,
                "run_id": run_id,
                "error_rate": float(sel["during_error_rate"].fillna(0.0).max()),
                "others_error_rate": float(others["during_error_rate"].fillna(0.0).max())
                if len(others)
                else np.nan,
                "others_p99_ratio": float(others["p99_ratio"].max()) if len(others) else np.nan,
                "recovery_s": float(sel["recovery_s"].max()) if recovered else np.nan,
            }
        )
    return pd.DataFrame(out)
