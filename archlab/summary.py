"""Latency and throughput summaries computed from the raw request records.

Percentiles come from HDR histograms of the raw latencies (microsecond resolution, 3 significant
digits), never from locust's rounded statistics. The functions are pure (records in, dict out)
so tests and notebooks can call them without a run directory.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from archlab.records import Record, is_error, read_records

SCHEMA_VERSION = 1
ALL = "ALL"
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
HDR_LOWEST_US = 1
HDR_HIGHEST_US = 60_000_000  # 60 s; slower requests are clamped (and show in "max")
HDR_DIGITS = 3
SATURATION_PERCENT = 90.0  # of one CPU, per load-generator process
SATURATION_SHARE = 0.10  # share of samples above it that flags a run


def latency_stats(latencies_ms: Sequence[float]) -> dict[str, float]:
    """min/mean/max (exact) and percentiles (HDR, capped at the exact max) in milliseconds."""
    if not latencies_ms:
        return {"min": 0.0, "mean": 0.0, **{k: 0.0 for k in PERCENTILES}, "max": 0.0}
    hist = HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_DIGITS)
    for ms in latencies_ms:
        hist.record_value(min(HDR_HIGHEST_US, max(HDR_LOWEST_US, round(ms * 1000))))
    exact_max = max(latencies_ms)
    values = hist.get_percentile_to_value_dict(list(PERCENTILES.values()))
    stats = {"min": min(latencies_ms), "mean": math.fsum(latencies_ms) / len(latencies_ms)}
    for key, pct in PERCENTILES.items():
        # HDR reports the top of a value's bucket; the true percentile never exceeds the max.
        stats[key] = min(values[pct] / 1000, exact_max)
    stats["max"] = exact_max
    return {k: round(v, 3) for k, v in stats.items()}


def endpoint_stats(records: Sequence[Record], window_s: float) -> dict[str, Any]:
    """Count, throughput over `window_s`, error rate, status counts and latency of `records`."""
    errors = [r for r in records if is_error(r)]
    return {
        "count": len(records),
        "throughput_rps": round(len(records) / window_s, 3) if window_s > 0 else 0.0,
        "errors": len(errors),
        "error_rate": round(len(errors) / len(records), 6) if records else 0.0,
        "statuses": {str(k): v for k, v in sorted(Counter(r.status for r in records).items())},
        "top_errors": dict(Counter(r.error or f"HTTP {r.status}" for r in errors).most_common(5)),
        "latency_ms": latency_stats([r.latency_ms for r in records]),
    }


def summarize(
    records: Iterable[Record], *, start: float | None = None, end: float | None = None
) -> dict[str, Any]:
    """Per-endpoint stats plus an "ALL" row over the measured window.

    The window defaults to first request sent .. last response received. Given `start`/`end`
    (epoch seconds), only requests sent inside [start, end) count, e.g. to drop a warm-up.
    """
    selected = [
        r
        for r in records
        if (start is None or r.start_time >= start) and (end is None or r.start_time < end)
    ]
    if selected:
        first = min(r.start_time for r in selected) if start is None else start
        last = max(r.start_time + r.latency_ms / 1000 for r in selected) if end is None else end
    else:
        first = last = start or 0.0
    window_s = max(0.0, last - first)
    by_endpoint: dict[str, list[Record]] = defaultdict(list)
    for r in selected:
        by_endpoint[r.endpoint].append(r)
    endpoints = {name: endpoint_stats(by_endpoint[name], window_s) for name in sorted(by_endpoint)}
    endpoints[ALL] = endpoint_stats(selected, window_s)
    return {
        "schema_version": SCHEMA_VERSION,
        "window": {"start": first, "end": last, "seconds": round(window_s, 3)},
        "endpoints": endpoints,
    }


def read_cpu_samples(path: Path) -> list[dict[str, Any]]:
    """Rows of a *_cpu.csv file written by archlab.sampler."""
    with path.open(newline="") as fh:
        return [
            {**row, "pid": int(row["pid"]), "cpu_percent": float(row["cpu_percent"])}
            for row in csv.DictReader(fh)
        ]


def summarize_cpu(
    samples: Iterable[dict[str, Any]],
    *,
    start: float | None = None,
    end: float | None = None,
    interval_s: float = 1.0,
) -> dict[str, Any]:
    """Mean/max CPU per process (percent of one CPU) and whether any process saturated.

    Only samples whose interval lies mostly inside [start, end] count, so the generator's own
    start-up (importing locust costs a CPU-second) is not mistaken for load. A process counts as
    saturated when at least SATURATION_SHARE of its samples exceed SATURATION_PERCENT of one CPU;
    a saturated generator under-reports throughput and adds latency.
    """
    per_pid: dict[int, list[float]] = defaultdict(list)
    names: dict[int, str] = {}
    for row in samples:
        mid = float(row["time"]) - interval_s / 2  # a sample reports the interval ending at time
        if (start is not None and mid < start) or (end is not None and mid > end):
            continue
        per_pid[row["pid"]].append(row["cpu_percent"])
        names[row["pid"]] = row.get("name", "")
    processes = {}
    for pid, values in sorted(per_pid.items()):
        hot = sum(v > SATURATION_PERCENT for v in values) / len(values)
        processes[str(pid)] = {
            "name": names[pid],
            "samples": len(values),
            "mean_cpu_percent": round(sum(values) / len(values), 1),
            "max_cpu_percent": round(max(values), 1),
            "share_above_threshold": round(hot, 3),
            "saturated": hot >= SATURATION_SHARE,
        }
    return {
        "threshold_percent": SATURATION_PERCENT,
        "samples": sum(p["samples"] for p in processes.values()),
        "mean_cpu_percent": max((p["mean_cpu_percent"] for p in processes.values()), default=0.0),
        "max_cpu_percent": max((p["max_cpu_percent"] for p in processes.values()), default=0.0),
        "saturated": any(p["saturated"] for p in processes.values()),
        "processes": processes,
    }


def summarize_run(run_dir: Path, warmup_s: float = 0.0) -> dict[str, Any]:
    """Summary of a run directory: requests.csv plus generator_cpu.csv when present."""
    records = read_records(run_dir / "requests.csv")
    start = min((r.start_time for r in records), default=0.0) + warmup_s if warmup_s else None
    summary = summarize(records, start=start)
    summary["warmup_s"] = warmup_s
    cpu_path = run_dir / "generator_cpu.csv"
    if cpu_path.exists():
        window = summary["window"]
        summary["generator"] = summarize_cpu(
            read_cpu_samples(cpu_path), start=window["start"], end=window["end"]
        )
    return summary


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    path = run_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def format_table(summary: dict[str, Any]) -> str:
    """A fixed-width table of the summary (latencies in ms) for the terminal."""
    head = ("endpoint", "count", "req/s", "err%", "p50", "p90", "p99", "p99.9", "max", "mean")
    rows = []
    for name, st in summary["endpoints"].items():
        lat = st["latency_ms"]
        rows.append(
            (
                name,
                str(st["count"]),
                f"{st['throughput_rps']:.1f}",
                f"{100 * st['error_rate']:.2f}",
                *(f"{lat[k]:.1f}" for k in ("p50", "p90", "p99", "p99_9", "max", "mean")),
            )
        )
    width = max([len(head[0])] + [len(r[0]) for r in rows])
    fmt = f"{{:<{width}}}" + "  {:>8}" * (len(head) - 1)
    lines = [fmt.format(*head), "-" * (width + 10 * (len(head) - 1))]
    lines += [fmt.format(*r) for r in rows]
    window = summary.get("window", {})
    lines.append(f"window {window.get('seconds', 0):.1f} s; latency in ms (HDR percentiles)")
    gen = summary.get("generator")
    if gen:
        flag = "  SATURATED: throughput and latency are unreliable" if gen["saturated"] else ""
        lines.append(
            f"load generator CPU: mean {gen['mean_cpu_percent']:.0f}%, "
            f"max {gen['max_cpu_percent']:.0f}% of one CPU{flag}"
        )
    return "\n".join(lines)
