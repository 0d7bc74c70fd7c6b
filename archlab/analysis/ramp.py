"""The step ramp read as a load-latency curve: one row per step, the SLO, the knee.

Each step of an open-loop ramp offers a fixed arrival rate; `summary.json` already holds a
window per step (HDR percentiles of the corrected latency, throughput, errors, CPU). A step
*meets the SLO* when the server kept up with the offered rate, the p99 of all endpoints (from
the intended start) stayed under SLO_P99_MS and errors under SLO_MAX_ERROR_RATE. Throughput at
the SLO is the highest achieved rate of such a step; the latency figures, the scaling study and
the cost model all read it from here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from archlab.analysis.runset import SETUP_ENDPOINT, Run
from archlab.analysis.summary import KEEPING_UP

SLO_P99_MS = 100.0
SLO_MAX_ERROR_RATE = 0.01
KNEE_FACTOR = 3.0  # the knee: the last step before p99 exceeds 3x the first step's, or the SLO


def latency(stats: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's percentiles from summary.json: corrected from the intended start when the
    load was scheduled (open loop), else as observed."""
    return stats.get("latency_corrected_ms") or stats.get("latency_ms") or {}


def endpoint_steps(run: Run) -> pd.DataFrame:
    """One row per ramp step and endpoint (incl. ALL): offered and achieved rate, percentiles."""
    rows = []
    for w in run.summary.get("windows", {}).get("rows", []):
        if w.get("offered_rps") is None:
            continue
        for endpoint, stats in w["endpoints"].items():
            if endpoint == SETUP_ENDPOINT:
                continue
            lat = latency(stats)
            count = stats.get("count", 0)
            rows.append(
                {
                    "variant": run.variant,
                    "tag": run.tag,
                    "cpus": run.cpus,
                    "step": w["index"],
                    "seconds": w["seconds"],
                    "offered_rps": w["offered_rps"],
                    "endpoint": endpoint,
                    "count": count,
                    "achieved_rps": stats.get("throughput_rps", 0.0),
                    "errors": stats.get("errors", 0),
                    "error_rate": stats.get("errors", 0) / count if count else 0.0,
                    "p50_ms": lat.get("p50"),
                    "p90_ms": lat.get("p90"),
                    "p99_ms": lat.get("p99"),
                    "p99_9_ms": lat.get("p99_9"),
                    "server_cpu_percent": w.get("server_cpu_percent"),
                    "generator_cpu_percent": w.get("generator_cpu_percent"),
                }
            )
    return pd.DataFrame(rows)


def ramp_steps(run: Run) -> pd.DataFrame:
    """One row per step for ALL endpoints, with `keeping_up` and `meets_slo`.

    The last step is left out when it is much shorter than the others (cut by the load's end).
    """
    df = endpoint_steps(run)
    if df.empty:
        return df
    df = df[df["endpoint"] == "ALL"].reset_index(drop=True)
    full = df["seconds"].max()
    df = df[df["seconds"] >= 0.8 * full].reset_index(drop=True)
    df["keeping_up"] = df["achieved_rps"] >= KEEPING_UP * df["offered_rps"]
    df["meets_slo"] = (
        df["keeping_up"]
        & (df["p99_ms"].fillna(float("inf")) <= SLO_P99_MS)
        & (df["error_rate"] <= SLO_MAX_ERROR_RATE)
    )
    return df


def throughput_at_slo(run: Run) -> float:
    """The highest achieved rate (req/s) of a step that met the SLO; 0 when none did."""
    df = ramp_steps(run)
    ok = df[df["meets_slo"]] if not df.empty else df
    return float(ok["achieved_rps"].max()) if not ok.empty else 0.0


def knee(run: Run) -> dict[str, Any] | None:
    """The last step before the curve bends: p99 above KNEE_FACTOR x the first step's p99, or
    the SLO missed. None without ramp data; `bent` False when no step of the ramp bent it."""
    df = ramp_steps(run)
    if df.empty:
        return None
    base = df["p99_ms"].iloc[0]
    last_good = None
    for _, row in df.iterrows():
        bent = not row["meets_slo"] or row["p99_ms"] > KNEE_FACTOR * base
        if bent:
            return {
                "offered_rps": None if last_good is None else float(last_good["offered_rps"]),
                "achieved_rps": None if last_good is None else float(last_good["achieved_rps"]),
                "p99_ms": None if last_good is None else float(last_good["p99_ms"]),
                "bent_at_rps": float(row["offered_rps"]),
                "bent_p99_ms": float(row["p99_ms"]),
                "bent": True,
            }
        last_good = row
    assert last_good is not None
    return {
        "offered_rps": float(last_good["offered_rps"]),
        "achieved_rps": float(last_good["achieved_rps"]),
        "p99_ms": float(last_good["p99_ms"]),
        "bent_at_rps": None,
        "bent_p99_ms": None,
        "bent": False,
    }
