"""Summaries computed from a run's raw records: latency, throughput, CPU, memory, GC, profile.

Percentiles come from HDR histograms of the raw latencies (microsecond resolution, 3 significant
digits), never from locust's rounded statistics. Open-loop runs get both the observed latency
(from when the request was sent) and the corrected latency (from when the schedule intended it
to be sent: coordinated omission corrected). The functions are pure (records in, dict out) so
tests and notebooks can call them without a run directory; `summarize_run` reads a directory.
Field meanings: results/README.md.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hdrh.histogram import HdrHistogram

from archlab.analysis.records import Record, is_error, read_records
from archlab.measure.gcdata import read_gc, read_roles, roles_without_collector, summarize_gc
from archlab.measure.integrity import METHOD_API
from archlab.measure.profiler import read_top_frames
from archlab.measure.sampler import ROOT_ROLE, UNLABELLED_ROLE
from archlab.rundir import (
    GC,
    GENERATOR_CPU,
    INVARIANTS,
    PROCESSES,
    PROFILE_DIR,
    REQUESTS,
    ROLES,
    SAMPLED_DECLARED,
    SCHEMA_VERSION,
    SUMMARY,
    TOP_FRAMES,
    open_stored,
    read_meta,
    stored,
    write_json,
)

ALL = "ALL"
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
HDR_LOWEST_US = 1
HDR_HIGHEST_US = 60_000_000  # 60 s; slower requests are clamped (and show in "max")
HDR_DIGITS = 3
SATURATION_PERCENT = 90.0  # of one CPU, per load-generator process
SATURATION_SHARE = 0.10  # share of samples above it that flags a run
KEEPING_UP = 0.95  # a rate below this share of the offered rate fell behind (sent or served)
ON_TIME_P99_MS = 0.1  # an open loop whose send lag p99 is above this was late: a flagged run
DEFAULT_WINDOW_S = 10.0
# The time resolution at which a load must never go silent: empty buckets here, recovery
# buckets in archlab.analysis.blast and the recovery timelines of archlab.figures.isolation.
BUCKET_S = 1.0


def latency_stats(latencies_ms: Sequence[float]) -> dict[str, float]:
    """min/mean/max (exact) and percentiles (HDR, capped at the exact max) in milliseconds.

    HDR picks the value at rank round(p/100 * n) (at least 1) and reports the top of its bucket,
    i.e. at most 0.1% above the recorded value.
    """
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


def _scheduled(records: Sequence[Record]) -> bool:
    return any(r.intended_time is not None for r in records)


def scheduled_at(record: Record) -> float:
    """When the load meant the request to leave: an open loop's intended start (a stalled sender
    cannot move a request out of its second), else when it was sent."""
    return record.start_time if record.intended_time is None else record.intended_time


def empty_buckets(
    records: Iterable[Record], start: float, width_s: float = BUCKET_S
) -> list[float]:
    """Offsets (s after `start`) of the whole buckets of `width_s`, from `start` to the last
    request, in which no request was scheduled (`scheduled_at`).

    An open loop schedules requests in every bucket whatever the server does, so an empty one
    means the load itself fell silent: an outage the records cannot show. In a closed loop it is
    the users stalled with the server (coordinated omission).
    """
    times = [t for t in map(scheduled_at, records) if t >= start]
    if not times or width_s <= 0:
        return []
    whole = int((max(times) - start) // width_s)
    filled = {int((t - start) // width_s) for t in times}
    return [round(i * width_s, 6) for i in range(whole) if i not in filled]


def endpoint_stats(
    records: Sequence[Record], window_s: float, corrected: bool = False
) -> dict[str, Any]:
    """Count, throughput over `window_s`, error rate, status counts and latency of `records`.

    With `corrected`, also `latency_corrected_ms` (from the intended start; requests without one,
    e.g. the setup fetch, count with their observed latency).
    """
    errors = [r for r in records if is_error(r)]
    stats = {
        "count": len(records),
        "throughput_rps": round(len(records) / window_s, 3) if window_s > 0 else 0.0,
        "errors": len(errors),
        "error_rate": round(len(errors) / len(records), 6) if records else 0.0,
        "statuses": {str(k): v for k, v in sorted(Counter(r.status for r in records).items())},
        "top_errors": dict(Counter(r.error or f"HTTP {r.status}" for r in errors).most_common(5)),
        "latency_ms": latency_stats([r.latency_ms for r in records]),
    }
    if corrected:
        stats["latency_corrected_ms"] = latency_stats([r.corrected_ms for r in records])
    return stats


def _compact(records: Sequence[Record], seconds: float, corrected: bool) -> dict[str, Any]:
    keep = ("p50", "p90", "p99", "p99_9", "max")
    lat = latency_stats([r.latency_ms for r in records])
    row: dict[str, Any] = {
        "count": len(records),
        "throughput_rps": round(len(records) / seconds, 3) if seconds > 0 else 0.0,
        "errors": sum(is_error(r) for r in records),
        "latency_ms": {k: lat[k] for k in keep},
    }
    if corrected:
        cor = latency_stats([r.corrected_ms for r in records])
        row["latency_corrected_ms"] = {k: cor[k] for k in keep}
    return row


def time_windows(
    records: Sequence[Record],
    *,
    start: float,
    end: float,
    width_s: float,
    corrected: bool,
    steps: Sequence[dict[str, float]] = (),
) -> list[dict[str, Any]]:
    """Stats per endpoint (and ALL) for consecutive windows of `width_s` from `start` to `end`.

    A request belongs to the window in which it was sent. The last window may be shorter.
    `steps` (a ramp's offered load per step) adds `users`/`offered_rps` to the matching window.
    """
    if width_s <= 0 or end <= start:
        return []
    n = max(1, math.ceil((end - start) / width_s - 1e-9))
    buckets: list[list[Record]] = [[] for _ in range(n)]
    for r in records:
        if start <= r.start_time < end:
            buckets[min(n - 1, int((r.start_time - start) // width_s))].append(r)
    rows = []
    for i, bucket in enumerate(buckets):
        w_start = start + i * width_s
        seconds = min(width_s, end - w_start)
        by_endpoint: dict[str, list[Record]] = defaultdict(list)
        for r in bucket:
            by_endpoint[r.endpoint].append(r)
        endpoints = {k: _compact(v, seconds, corrected) for k, v in sorted(by_endpoint.items())}
        endpoints[ALL] = _compact(bucket, seconds, corrected)
        row: dict[str, Any] = {
            "index": i,
            "start": round(w_start, 6),
            "seconds": round(seconds, 3),
            "endpoints": endpoints,
        }
        if i < len(steps):
            row["users"] = steps[i]["users"]
            row["offered_rps"] = steps[i]["offered_rps"] or None
        rows.append(row)
    return rows


def summarize(
    records: Iterable[Record],
    *,
    start: float | None = None,
    end: float | None = None,
    window_s: float | None = None,
    steps: Sequence[dict[str, float]] = (),
) -> dict[str, Any]:
    """Per-endpoint stats plus an "ALL" row over the measured window, and per time window.

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
        last = max(r.end_time for r in selected) if end is None else end
    else:
        first = last = start or 0.0
    window = max(0.0, last - first)
    corrected = _scheduled(selected)
    by_endpoint: dict[str, list[Record]] = defaultdict(list)
    for r in selected:
        by_endpoint[r.endpoint].append(r)
    endpoints = {
        name: endpoint_stats(by_endpoint[name], window, corrected) for name in sorted(by_endpoint)
    }
    endpoints[ALL] = endpoint_stats(selected, window, corrected)
    width = window_s if window_s is not None else DEFAULT_WINDOW_S
    return {
        "schema_version": SCHEMA_VERSION,
        "window": {"start": first, "end": last, "seconds": round(window, 3)},
        "corrected": corrected,
        "endpoints": endpoints,
        "windows": {
            "width_s": width,
            "rows": time_windows(
                selected, start=first, end=last, width_s=width, corrected=corrected, steps=steps
            ),
        },
    }


def load_stats(records: Sequence[Record], load: dict[str, Any] | None, window_s: float) -> dict:
    """How the offered load was met: the open loop's send lag and whether it kept up."""
    loop = (load or {}).get("loop", "closed")
    out: dict[str, Any] = {"loop": loop, "offered_rps": (load or {}).get("offered_rps")}
    scheduled = [r for r in records if r.intended_time is not None]
    out["achieved_rps"] = round(len(records) / window_s, 3) if window_s > 0 else 0.0
    if scheduled:
        lags = [max(0.0, (r.start_time - r.intended_time) * 1000) for r in scheduled]  # type: ignore[operator]
        lag = latency_stats(lags) if any(lags) else latency_stats([0.0])
        out["send_lag_ms"] = {k: lag[k] for k in ("p50", "p99", "max")}
        # the sender's own lateness is in every corrected latency: a late run says so
        out["late_sender"] = bool(lag["p99"] > ON_TIME_P99_MS)
        out["scheduled_rps"] = round(len(scheduled) / window_s, 3) if window_s > 0 else 0.0
        offered = out["offered_rps"]
        # the generator kept up with its schedule (None: no single offered rate, e.g. a ramp)
        out["on_schedule"] = bool(out["scheduled_rps"] >= KEEPING_UP * offered) if offered else None
    return out


# --- the load generator's CPU -------------------------------------------------------------


def read_cpu_samples(path: Path) -> list[dict[str, Any]]:
    """Rows of generator_cpu.csv (written by archlab.measure.sampler.TreeSampler)."""
    with open_stored(path) as fh:
        rows = []
        for row in csv.DictReader(fh):
            try:
                sample: dict[str, Any] = {
                    **row,
                    "pid": int(row["pid"]),
                    "cpu_percent": float(row["cpu_percent"]),
                }
                if row.get("cpu_user_s"):
                    sample["cpu_s"] = float(row["cpu_user_s"]) + float(row["cpu_system_s"])
            except (KeyError, TypeError, ValueError):
                continue
            rows.append(sample)
        return rows


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
    a saturated generator under-reports throughput and adds latency. `cpu_s` (when the file has
    cumulative CPU columns) is the generator's CPU-seconds inside the window, all processes.
    """
    per_pid: dict[int, list[float]] = defaultdict(list)
    cumulative: dict[int, list[float]] = defaultdict(list)
    names: dict[int, str] = {}
    for row in samples:
        mid = float(row["time"]) - interval_s / 2  # a sample reports the interval ending at time
        if (start is not None and mid < start) or (end is not None and mid > end):
            continue
        per_pid[row["pid"]].append(row["cpu_percent"])
        if "cpu_s" in row:
            cumulative[row["pid"]].append(row["cpu_s"])
        names[row["pid"]] = row.get("name", "")
    processes: dict[str, dict[str, Any]] = {}
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
    out: dict[str, Any] = {
        "threshold_percent": SATURATION_PERCENT,
        "samples": sum(p["samples"] for p in processes.values()),
        "mean_cpu_percent": max((p["mean_cpu_percent"] for p in processes.values()), default=0.0),
        "max_cpu_percent": max((p["max_cpu_percent"] for p in processes.values()), default=0.0),
        "saturated": any(p["saturated"] for p in processes.values()),
        "processes": processes,
    }
    if cumulative:
        # the first sample inside the window closes the interval that began one interval earlier
        out["cpu_s"] = round(
            sum(v[-1] - v[0] + per_pid[pid][0] / 100 * interval_s for pid, v in cumulative.items()),
            3,
        )
    return out


# --- the system under test's processes -----------------------------------------------------


class ProcSample(NamedTuple):
    time: float
    pid: int
    role: str
    create_time: float
    cpu_user_s: float
    cpu_system_s: float
    rss: int
    uss: int | None
    pss: int | None
    threads: int
    ctx: int
    tick: bool = True  # False: read between ticks (rundir.SAMPLED_DECLARED), no tick of its own


def read_process_samples(path: Path) -> list[ProcSample]:
    """Rows of processes.csv (archlab.measure.sampler.ProcessSampler)."""
    out = []
    with open_stored(path) as fh:
        for row in csv.DictReader(fh):
            try:
                out.append(
                    ProcSample(
                        float(row["time"]),
                        int(row["pid"]),
                        row["role"],
                        float(row["create_time"]),
                        float(row["cpu_user_s"]),
                        float(row["cpu_system_s"]),
                        int(row["rss_bytes"]),
                        int(row["uss_bytes"]) if row["uss_bytes"] else None,
                        int(row["pss_bytes"]) if row["pss_bytes"] else None,
                        int(row["threads"]),
                        int(row["ctx_voluntary"]) + int(row["ctx_involuntary"]),
                        row.get("sampled") != SAMPLED_DECLARED,
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _at(times: list[float], values: list[float], t: float, created: float) -> float:
    """A cumulative counter at time t, interpolated between samples.

    Before the first sample: 0 if the process was created after t, else the first value (its
    CPU before it was first seen is unknown). After the last sample: the last value.
    """
    i = bisect.bisect_right(times, t)
    if i == 0:
        return 0.0 if created >= t else values[0]
    if i == len(times):
        return values[-1]
    t0, t1, v0, v1 = times[i - 1], times[i], values[i - 1], values[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1


def summarize_processes(
    samples: Sequence[ProcSample], *, start: float, end: float, requests: int
) -> dict[str, Any]:
    """CPU-seconds (per request) and memory of the system under test, per role and in total.

    CPU is the difference of each process's cumulative CPU time between `start` and `end`
    (interpolated between samples). Memory is summed over the processes of a role (or all) at
    each sampling tick; `peak` is the largest sum, `mean` the average over ticks in the window.
    PSS counts a page shared by k processes as 1/k in each, so its sum is the variant's real
    footprint; USS is what each process alone holds; RSS double-counts shared pages.
    A process's role is the one on its last row (it may declare it after its first sample).
    """
    by_proc: dict[tuple[int, float], list[ProcSample]] = defaultdict(list)
    for s in samples:
        by_proc[(s.pid, s.create_time)].append(s)
    role_of = {key: rows[-1].role for key, rows in by_proc.items()}
    window_s = max(0.0, end - start)

    def blank() -> dict[str, Any]:
        return {
            "processes": 0,
            "cpu_user_s": 0.0,
            "cpu_system_s": 0.0,
            "ctx_switches": 0,
        }

    roles: dict[str, dict[str, Any]] = defaultdict(blank)
    total = blank()
    for key, rows in by_proc.items():
        rows.sort(key=lambda s: s.time)
        if rows[-1].time < start or rows[0].create_time > end:
            continue  # not alive during the window
        times = [s.time for s in rows]
        created = rows[0].create_time
        user = [s.cpu_user_s for s in rows]
        system = [s.cpu_system_s for s in rows]
        ctx = [float(s.ctx) for s in rows]
        d_user = _at(times, user, end, created) - _at(times, user, start, created)
        d_sys = _at(times, system, end, created) - _at(times, system, start, created)
        d_ctx = _at(times, ctx, end, created) - _at(times, ctx, start, created)
        for bucket in (roles[role_of[key]], total):
            bucket["processes"] += 1
            bucket["cpu_user_s"] += d_user
            bucket["cpu_system_s"] += d_sys
            bucket["ctx_switches"] += d_ctx
    # memory and threads: sums per tick; USS and PSS over the memory ticks only (the sampler
    # reads them every memory_interval_s: a tick where no process has them did not read them)
    ticks: dict[float, list[ProcSample]] = defaultdict(list)
    for s in samples:
        if start <= s.time <= end and s.tick:
            ticks[s.time].append(s)
    mem: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for tick in ticks.values():
        sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        read_memory = any(s.pss is not None for s in tick)
        for s in tick:
            role = role_of[(s.pid, s.create_time)]
            for target in (role, ALL):
                sums[target]["rss"] += s.rss
                if read_memory:
                    sums[target]["uss"] += s.uss or 0
                    sums[target]["pss"] += s.pss or 0
                sums[target]["threads"] += s.threads
                sums[target]["processes"] += 1
        for target, values in sums.items():
            for k, v in values.items():
                mem[target][k].append(v)

    def finish(bucket: dict[str, Any], target: str) -> dict[str, Any]:
        cpu = bucket["cpu_user_s"] + bucket["cpu_system_s"]
        series = mem.get(target, {})
        out = {
            "processes": bucket["processes"],
            "cpu_s": round(cpu, 3),
            "cpu_user_s": round(bucket["cpu_user_s"], 3),
            "cpu_system_s": round(bucket["cpu_system_s"], 3),
            "cpu_ms_per_request": round(1000 * cpu / requests, 4) if requests else None,
            "mean_cores": round(cpu / window_s, 3) if window_s else None,
            "ctx_switches_per_s": round(bucket["ctx_switches"] / window_s, 1) if window_s else None,
        }
        for k in ("pss", "uss", "rss"):
            values = series.get(k, [])
            out[f"{k}_peak_bytes"] = int(max(values)) if values else None
            out[f"{k}_mean_bytes"] = int(sum(values) / len(values)) if values else None
        threads = series.get("threads", [])
        out["threads_peak"] = int(max(threads)) if threads else None
        counts = series.get("processes", [])
        out["processes_peak"] = int(max(counts)) if counts else bucket["processes"]
        return out

    return {
        "samples": len(samples),
        "roles": {role: finish(b, role) for role, b in sorted(roles.items())},
        "total": finish(total, ALL),
    }


# --- the whole run -------------------------------------------------------------------------


def summarize_run(
    run_dir: Path, warmup_s: float = 0.0, window_s: float | None = None
) -> dict[str, Any]:
    """Summary of a run directory from its raw files (those present) and meta.json."""
    meta = read_meta(run_dir)
    load = meta.get("load")
    if window_s is None:
        window_s = (meta.get("telemetry") or {}).get("window_s")  # the run's --window
    records = read_records(run_dir / REQUESTS)
    start = min((r.start_time for r in records), default=0.0) + warmup_s if warmup_s else None
    steps: list[dict[str, float]] = []
    if load and load.get("steps"):
        rate = float(load.get("rate_per_user") or 0.0)
        steps = [
            {
                "users": n,
                "offered_rps": n * rate if load.get("loop") == "open" else 0.0,
            }
            for n in load["steps"]
        ]
        if window_s is None:
            window_s = float(load.get("step_s") or DEFAULT_WINDOW_S)
    summary = summarize(records, start=start, window_s=window_s, steps=steps)
    summary["warmup_s"] = warmup_s
    window = summary["window"]
    w_start, w_end, w_s = window["start"], window["end"], window["seconds"]
    inside = [r for r in records if start is None or r.start_time >= start]  # as summarize
    summary["load"] = load_stats(inside, load, w_s)
    empty = empty_buckets(inside, w_start)
    summary["load"]["empty_buckets"] = {
        "count": len(empty),
        "offsets_s": empty,  # from the window's start
        "width_s": BUCKET_S,
        "by": "intended_time" if _scheduled(inside) else "start_time",
    }
    count = summary["endpoints"][ALL]["count"]
    notes: list[str] = list(meta.get("notes", []))

    interval = float((meta.get("telemetry") or {}).get("sample_interval_s") or 1.0)
    cpu_path = run_dir / GENERATOR_CPU
    gen_samples = read_cpu_samples(cpu_path) if stored(cpu_path) else []
    proc_path = run_dir / PROCESSES
    proc_samples = read_process_samples(proc_path) if stored(proc_path) else []
    _window_cpu(summary["windows"]["rows"], gen_samples, proc_samples, interval)
    if stored(cpu_path):
        gen = summarize_cpu(gen_samples, start=w_start, end=w_end, interval_s=interval)
        if "cpu_s" in gen and count:
            gen["cpu_ms_per_request"] = round(1000 * gen["cpu_s"] / count, 4)
        gen["pinned_cpus"] = (meta.get("cpu_pinning") or {}).get("generator")
        gen["shares_cpus_with_sut"] = bool((meta.get("cpu_pinning") or {}).get("shared", True))
        summary["generator"] = gen
        if gen["saturated"]:
            notes.append(
                f"the load generator saturated (a process above {SATURATION_PERCENT:.0f}% of a "
                "CPU in at least 10% of samples): throughput and latency are unreliable"
            )
    if stored(proc_path):
        server = summarize_processes(proc_samples, start=w_start, end=w_end, requests=count)
        server["interval_s"] = interval
        summary["server"] = server
        unlabelled = server["roles"].get(UNLABELLED_ROLE)
        if unlabelled:
            notes.append(
                f"{unlabelled['processes']} process(es) of the variant declared no role "
                "(variants.telemetry.install(role)); they are counted as 'unlabelled'"
            )
        usable = len((meta.get("machine") or {}).get("usable_cpus") or []) or None
        gen_cpu = summary.get("generator", {}).get("cpu_s")
        if (
            usable
            and w_s
            and gen_cpu is not None
            and summary.get("generator", {}).get("shares_cpus_with_sut")
        ):
            busy = (server["total"]["cpu_s"] + gen_cpu) / (w_s * usable)
            summary["machine_cpu_share"] = round(busy, 3)
            if busy >= SATURATION_PERCENT / 100:
                notes.append(
                    f"generator and system under test together used {100 * busy:.0f}% of the "
                    f"machine's {usable} CPUs: the machine, not the variant, set the pace"
                )
    missed = (meta.get("telemetry") or {}).get("sampler_missed") or []
    if missed:
        roles_missed = sorted({m["role"] for m in missed})
        notes.append(
            f"{len(missed)} process(es) exited before the sampler's first look (roles "
            f"{', '.join(roles_missed)}): their CPU and memory are not in the totals"
        )
    gc_path = run_dir / GC
    if stored(gc_path):
        summary["gc"] = summarize_gc(read_gc(gc_path), start=w_start, end=w_end)
        if not summary["gc"]["roles"] and (meta.get("telemetry") or {}).get("gc", True):
            notes.append(
                "no GC telemetry: no process of the variant called variants.telemetry.install"
            )
    if (run_dir / ROLES).exists():
        summary["roles_declared"] = sorted(set(read_roles(run_dir / ROLES).values()))
        native = roles_without_collector(run_dir / ROLES)
        if native and "gc" in summary:
            summary["gc"]["no_collector"] = native
            notes.append(f"no garbage collector in role(s) {', '.join(native)} (native code)")
    profile = meta.get("profile") or {}
    if profile.get("enabled"):
        summary["profile"] = {
            "status": profile.get("status"),
            "error": profile.get("error"),
            "gil": profile.get("gil"),
            "top_frames": {
                role: rows[:5]
                for role, rows in read_top_frames(run_dir / PROFILE_DIR / TOP_FRAMES).items()
            },
        }
        notes.append("profiled with py-spy: sampling costs throughput; compare like with like")
    if (meta.get("telemetry") or {}).get("gc") is False:
        notes.append("GC telemetry was switched off for this run (--no-gc-telemetry)")
    inv_path = run_dir / INVARIANTS
    if inv_path.exists():
        try:
            inv = json.loads(inv_path.read_text())
            summary["invariants"] = {
                # runs before --target existed checked the databases and did not say so
                **({"method": inv["method"]} if "method" in inv else {}),
                "ok": inv["ok"],
                "checks": inv["checks"],
                "counts": inv["counts"],
                "notifications_verified": inv.get("notifications_verified", True),
            }
        except (ValueError, KeyError, TypeError):
            notes.append("invariants.json does not parse")
        else:
            if not inv["ok"]:
                failed = [name for name, ok in inv["checks"].items() if not ok]
                notes.append(f"INVARIANTS VIOLATED: {', '.join(failed)} (see invariants.json)")
            if inv.get("method") == METHOD_API:
                notes.append(
                    "invariants checked through the API (--target): "
                    f"{', '.join(inv.get('not_checked', []))} need the databases, not checked"
                )
            elif not summary["invariants"]["notifications_verified"]:
                notes.append(
                    "the outbox had not drained when the variant stopped: unsent notifications "
                    "were not checked"
                )
    if summary["load"].get("on_schedule") is False:
        notes.append(
            f"the open loop fell behind its schedule ({summary['load']['scheduled_rps']:.1f} of "
            f"{summary['load']['offered_rps']:.1f} requests/s sent): see corrected latency"
        )
    summary["notes"] = notes
    return summary


def _window_cpu(
    rows: list[dict[str, Any]],
    gen_samples: list[dict[str, Any]],
    proc_samples: list[ProcSample],
    interval_s: float,
) -> None:
    """Add the server's and the generator's CPU (percent of one CPU) to each time window."""
    for row in rows:
        start, end = row["start"], row["start"] + row["seconds"]
        if proc_samples and row["seconds"] > 0:
            total = summarize_processes(proc_samples, start=start, end=end, requests=0)["total"]
            row["server_cpu_percent"] = round(100 * total["cpu_s"] / row["seconds"], 1)
        if gen_samples:
            gen = summarize_cpu(gen_samples, start=start, end=end, interval_s=interval_s)
            row["generator_cpu_percent"] = round(
                sum(p["mean_cpu_percent"] for p in gen["processes"].values()), 1
            )
            row["generator_busiest_percent"] = gen["mean_cpu_percent"]


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    return write_json(run_dir / SUMMARY, summary)


# --- text ----------------------------------------------------------------------------------


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def format_table(summary: dict[str, Any]) -> str:
    """Fixed-width tables of the summary (latencies in ms) for the terminal."""
    corrected = summary.get("corrected", False)
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
    if corrected:
        lines.append("")
        lines.append("corrected for coordinated omission (from each request's intended start):")
        head_c = ("endpoint", "p50", "p90", "p99", "p99.9", "max")
        fmt_c = f"{{:<{width}}}" + "  {:>8}" * (len(head_c) - 1)
        lines.append(fmt_c.format(*head_c))
        for name, st in summary["endpoints"].items():
            cor = st.get("latency_corrected_ms", {})
            if cor:
                cells = (f"{cor[k]:.1f}" for k in ("p50", "p90", "p99", "p99_9", "max"))
                lines.append(fmt_c.format(name, *cells))
    load = summary.get("load") or {}
    if load.get("loop") == "open" and load.get("send_lag_ms"):
        offered = load.get("offered_rps")
        lag = load["send_lag_ms"]
        lines.append(
            f"open loop: offered {offered if offered is not None else 'ramp'} req/s, "
            f"sent {load.get('scheduled_rps', 0):.1f}/s; send lag p50 {lag['p50']:.3f} ms, "
            f"p99 {lag['p99']:.3f} ms, max {lag['max']:.1f} ms"
            + (
                f"  LATE SENDER: p99 above {ON_TIME_P99_MS} ms, corrected latency includes it"
                if load.get("late_sender")
                else ""
            )
        )
    empty = load.get("empty_buckets") or {}
    if empty.get("count"):
        offsets = empty["offsets_s"]
        shown = ", ".join(f"{o:g}" for o in offsets[:10]) + (", ..." * (len(offsets) > 10))
        lines.append(
            f"EMPTY BUCKETS: {empty['count']} {empty['width_s']:g} s bucket(s) held no request "
            f"(by {empty['by']}; at {shown} s): the load fell silent there, "
            "so the records cannot show what the server did"
        )
    win_rows = (summary.get("windows") or {}).get("rows") or []
    if len(win_rows) > 1:
        lines.append("")
        lines.append(f"per {summary['windows']['width_s']:g} s window (ALL):")
        lines.append(
            "   from   users  offered    req/s   err    p50    p99  p99.9"
            + ("  corr.p99" if corrected else "")
            + "  server%  gen%"
        )
        start = summary["window"]["start"]
        for row in win_rows:
            st = row["endpoints"][ALL]
            lat = st["latency_ms"]
            offered = row.get("offered_rps")
            line = (
                f"{row['start'] - start:6.0f}s {row.get('users', '-')!s:>7} "
                f"{'-' if offered is None else f'{offered:.0f}':>8} {st['throughput_rps']:8.1f} "
                f"{st['errors']:5d} {lat['p50']:6.1f} {lat['p99']:6.1f} {lat['p99_9']:6.1f}"
            )
            if corrected:
                line += f"  {st['latency_corrected_ms']['p99']:8.1f}"
            line += f"  {row.get('server_cpu_percent', '-')!s:>7} "
            line += f"{row.get('generator_cpu_percent', '-')!s:>5}"
            lines.append(line)
    server = summary.get("server")
    if server and server["roles"]:
        lines.append("")
        lines.append(
            "server role             procs   CPU-s  ms CPU/req  cores  PSS MiB  USS MiB  RSS MiB"
        )
        for role, st in [*server["roles"].items(), ("TOTAL", server["total"])]:
            per_req = st["cpu_ms_per_request"]
            lines.append(
                f"{role[:22]:<22} {st['processes']:6d} {st['cpu_s']:7.2f} "
                f"{'-' if per_req is None else f'{per_req:.3f}':>11} "
                f"{st['mean_cores'] or 0:6.2f} {_mib(st['pss_peak_bytes']):>8} "
                f"{_mib(st['uss_peak_bytes']):>8} {_mib(st['rss_peak_bytes']):>8}"
            )
        lines.append("(memory: peak of the per-tick sum over the role's processes)")
    gc_sum = summary.get("gc")
    if gc_sum and gc_sum["roles"]:
        lines.append("")
        lines.append("GC role                collections  total ms  max ms  p99 ms  max whole run")
        for role, st in gc_sum["roles"].items():
            lines.append(
                f"{role[:22]:<22} {st['collections']:11d} {st['total_pause_ms']:9.1f} "
                f"{st['max_pause_ms']:7.1f} {st['p99_pause_ms']:7.1f} "
                f"{st['max_pause_ms_whole_run']:13.1f}"
            )
    gen = summary.get("generator")
    if gen:
        flag = "  SATURATED: throughput and latency are unreliable" if gen["saturated"] else ""
        per_req = gen.get("cpu_ms_per_request")
        extra = f", {per_req:.3f} ms CPU/request" if per_req is not None else ""
        lines.append("")
        lines.append(
            f"load generator CPU: mean {gen['mean_cpu_percent']:.0f}%, "
            f"max {gen['max_cpu_percent']:.0f}% of one CPU (busiest process){extra}{flag}"
        )
    profile = summary.get("profile")
    if profile:
        lines.append(
            f"profile: {profile['status']}"
            + (f" ({profile['error']})" * bool(profile.get("error")))
        )
    for note in summary.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


__all__ = [
    "ALL",
    "BUCKET_S",
    "ROOT_ROLE",
    "empty_buckets",
    "endpoint_stats",
    "format_table",
    "latency_stats",
    "scheduled_at",
    "summarize",
    "summarize_cpu",
    "summarize_processes",
    "summarize_run",
    "time_windows",
    "write_summary",
]
