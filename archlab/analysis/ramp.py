"""The step ramp read as a load-latency curve: one row per step, the SLO, the knee.

Each step of an open-loop ramp offers a fixed arrival rate; `summary.json` already holds a
window per step (HDR percentiles of the corrected latency, throughput, errors, CPU). A ramp may
be repeated (`archlab reproduce` runs a step of the matrix in several interleaved rounds):
`repetitions` groups the runs of one configuration (variant, pinned CPUs, knobs) and every
reading below reduces them step by step with `rounds.Spread`, so one run (n = 1) is the same
reading with a degenerate interval.

One definition, used by the figures, the captions and the readings alike: a step HOLDS when,
over the repetitions, the median achieved rate kept up with the offered one (KEEPING_UP), the
upper end of the p99's interval (all endpoints, from the intended start) is within SLO_P99_MS
and the median error rate within SLO_MAX_ERROR_RATE. The knee is the highest-rate step that
holds, and throughput at the SLO its median achieved rate. Judging each step against the SLO
alone, not against the first step's p99, keeps one noisy step within the SLO from moving the
knee, and taking the highest holding step keeps one bad step below it from doing so; the
interval's upper end means a step holds only when the repetitions agree it did. `bent` False:
the top step tried held, so capacity lies above what was tried. The latency figures, the
scaling study and the cost model all read the knee from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from archlab.analysis.rounds import Spread
from archlab.analysis.runset import SETUP_ENDPOINT, Run
from archlab.analysis.summary import KEEPING_UP

SLO_P99_MS = 100.0
SLO_MAX_ERROR_RATE = 0.01


class RampKey(NamedTuple):
    """What makes two ramps repetitions of each other: the same variant, CPUs and knobs."""

    variant: str
    cpus: int | None
    knobs: tuple[tuple[str, Any], ...]


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def key_of(run: Run) -> RampKey:
    """The configuration a run measured, from its meta.json (never from its tag)."""
    return RampKey(run.variant, run.cpus, _frozen(run.meta.get("knobs") or {}))


def repetitions(runs: Iterable[Run]) -> dict[RampKey, list[Run]]:
    """The runs grouped by configuration, in the order first seen: each group is what a
    median over repetitions is taken of."""
    groups: dict[RampKey, list[Run]] = {}
    for run in runs:
        groups.setdefault(key_of(run), []).append(run)
    return groups


def _as_runs(runs: Run | Iterable[Run]) -> list[Run]:
    return [runs] if isinstance(runs, Run) else list(runs)


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
    """One run's steps for ALL endpoints, with `keeping_up` and `meets_slo` (the step holds
    on this run alone: `held_steps` of the one run).

    The last step is left out when it is much shorter than the others (cut by the load's end).
    """
    df = endpoint_steps(run)
    if df.empty:
        return df
    df = df[df["endpoint"] == "ALL"].reset_index(drop=True)
    full = df["seconds"].max()
    df = df[df["seconds"] >= 0.8 * full].reset_index(drop=True)
    df["p99_ms"] = df["p99_ms"].astype(float)
    df["keeping_up"] = df["achieved_rps"] >= KEEPING_UP * df["offered_rps"]
    df["meets_slo"] = (
        df["keeping_up"]
        & (df["p99_ms"].fillna(float("inf")) <= SLO_P99_MS)
        & (df["error_rate"] <= SLO_MAX_ERROR_RATE)
    )
    return df


def _median(values: Iterable[Any]) -> float | None:
    found = [float(v) for v in values if v is not None and not pd.isna(v)]
    return float(np.median(found)) if found else None


def held_steps(runs: Run | Iterable[Run]) -> pd.DataFrame:
    """One row per offered rate over the repetitions (`runs`, one configuration): `n` runs with
    the step, the median achieved rate, error rate, p50 and p99 with the p99's interval
    (`p99_ci_low`, `p99_ci_high`), `keeping_up` and `holds` (also as `meets_slo`)."""
    frames = [f for f in (ramp_steps(r) for r in _as_runs(runs)) if not f.empty]
    if not frames:
        return pd.DataFrame()
    rows = []
    for offered, d in pd.concat(frames, ignore_index=True).groupby("offered_rps", sort=True):
        p99 = Spread.of(d["p99_ms"])
        achieved = Spread.of(d["achieved_rps"])
        assert achieved is not None
        error_rate = _median(d["error_rate"]) or 0.0
        keeping_up = achieved.median >= KEEPING_UP * float(offered)
        within = p99 is not None and p99.ci_high <= SLO_P99_MS
        rows.append(
            {
                "variant": d["variant"].iloc[0],
                "cpus": d["cpus"].iloc[0],
                "offered_rps": float(offered),
                "n": len(d),
                "achieved_rps": achieved.median,
                "achieved_ci_low": achieved.ci_low,
                "achieved_ci_high": achieved.ci_high,
                "error_rate": error_rate,
                "p50_ms": _median(d["p50_ms"]),
                "p99_ms": p99.median if p99 else None,
                "p99_ci_low": p99.ci_low if p99 else None,
                "p99_ci_high": p99.ci_high if p99 else None,
                "keeping_up": keeping_up,
                "within_slo": within,
                "errors_ok": error_rate <= SLO_MAX_ERROR_RATE,
                "holds": keeping_up and within and error_rate <= SLO_MAX_ERROR_RATE,
            }
        )
    df = pd.DataFrame(rows)
    df["meets_slo"] = df["holds"]
    return df


def why_not(step: pd.Series | dict[str, Any]) -> str:
    """Why a step does not hold, as a caption says it ('' when it holds)."""
    reasons = []
    if not step["keeping_up"]:
        reasons.append("fell behind the offered rate")
    if not step["within_slo"]:
        reasons.append(f"p99 over the SLO ({SLO_P99_MS:g} ms)")
    if not step["errors_ok"]:
        reasons.append(f"errors over {SLO_MAX_ERROR_RATE:.0%}")
    return ", ".join(reasons)


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def knee(runs: Run | Iterable[Run]) -> dict[str, Any] | None:
    """The highest-rate step that holds over the repetitions (one Run or several of one
    configuration), and the step above it that did not; None without ramp data.

    Keys: offered_rps, achieved_rps (with achieved_ci_low/high), p99_ms (with
    p99_ci_low/high), n (repetitions), None when no step held; bent_at_rps, bent_p99_ms and
    bent_reason of the first step above the knee; bent (False: the top step tried held);
    top_offered_rps.
    """
    runs = _as_runs(runs)
    df = held_steps(runs)
    if df.empty:
        return None
    held = df[df["holds"]]
    k = held.iloc[-1] if not held.empty else None
    above = df if k is None else df[df["offered_rps"] > k["offered_rps"]]
    b = above.iloc[0] if not above.empty else None
    n = len(runs)
    out: dict[str, Any] = {
        key: None if k is None else _num(k[key])
        for key in (
            "offered_rps", "achieved_rps", "achieved_ci_low", "achieved_ci_high",
            "p99_ms", "p99_ci_low", "p99_ci_high",
        )
    }  # fmt: skip
    return out | {
        "n": n,
        "bent_at_rps": None if b is None else float(b["offered_rps"]),
        "bent_p99_ms": None if b is None else _num(b["p99_ms"]),
        "bent_reason": "" if b is None else why_not(b),
        "bent": b is not None,
        "top_offered_rps": float(df["offered_rps"].max()),
    }


def throughput_at_slo(runs: Run | Iterable[Run]) -> float:
    """The knee's median achieved rate (req/s): what the ramp sustained while holding the
    SLO; 0 when no step held."""
    k = knee(runs)
    return float(k["achieved_rps"]) if k and k["achieved_rps"] is not None else 0.0
