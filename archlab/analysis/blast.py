"""Blast radius: what a fault did to every endpoint, from a run's own records.

For each fault of a run (`faults.csv`) and each endpoint (`requests.csv`), compared with the
run's own baseline:

- **baseline**: requests sent after the warm-up and before the first fault starts. If that
  leaves an endpoint without requests, the requests after the warm-up outside every fault's
  window (a crash's window counted as `max_window_s`) are used instead (`baseline_source`).
- **during**: requests in flight at some moment of the fault's window (sent before its end,
  answered or failed after its start: a request cut off by a kill was sent before it). A fault
  with an end: `[start, end]`.
  A crash (no end): from the kill until the component is back, i.e. until the lifecycle log's
  next `ready` event of the crashed role; without one, until the last endpoint recovered (see
  below), at least `consecutive x bucket_s`; never longer than `max_window_s`
  (`window_source`: `fault`, `lifecycle`, `records` or `max`).
- **error rate**: `is_error` (status 0 or >= 500, or a generator-marked failure) / requests.
- **p99**: nearest-rank 99th percentile of the latency from the intended start
  (`Record.corrected_ms`: the observed latency for closed-loop load).
- **recovery**: the first moment after the fault starts from which `consecutive` buckets of
  `bucket_s` (aligned on the fault's start; a request is in the bucket of its intended start
  in an open loop, of its start otherwise; empty buckets are skipped, they neither break nor
  extend a streak) are each within the tolerance: error rate <= baseline + `error_pp`, and p99
  <= max(`p99_factor` x baseline p99, baseline p99 + `p99_slack_ms`). `recovery_s` is that
  bucket's start minus the fault's start (0: the endpoint never noticed; precision: one
  bucket); `None` when the records end before such a streak.
- **lifecycle**: from `lifecycle.jsonl`, seconds from the fault's start to the crashed role's
  next `start`/`restart` event (`restart_s`) and next `ready` event (`ready_s`); the roles
  followed are the fault's role and component and the role under which the log records the
  death of one of the fault's pids.

A request's time is `summary.scheduled_at`: its intended start in an open loop (when the load
meant it to leave, whatever held the sender up), its start otherwise.

Everything here is a pure function over records and faults, so the tests use synthetic data;
`blast_run(run_dir)` reads a run directory, `archlab blast RUN...` prints the matrix.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.analysis.records import Record, is_error, read_records
from archlab.analysis.summary import BUCKET_S, scheduled_at
from archlab.rundir import FAULTS, LIFECYCLE, REQUESTS, read_jsonl, read_meta, warmup_of

SETUP_ENDPOINT = "/products (setup)"
READY_EVENTS = ("ready",)
RESTART_EVENTS = ("start", "restart")


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class Tolerance:
    """When an endpoint counts as back to its baseline (see the module docstring)."""

    error_pp: float = 0.01  # error rate <= baseline + 1 percentage point
    p99_factor: float = 2.0  # p99 <= max(2 x baseline p99, baseline p99 + 20 ms)
    p99_slack_ms: float = 20.0
    bucket_s: float = BUCKET_S
    consecutive: int = 3
    max_window_s: float = 30.0  # a crash's window ends at the latest this long after the kill


@dataclass(frozen=True)
class Fault:
    """One row of faults.csv: what was injected where, and when (epoch seconds)."""

    kind: str
    component: str
    role: str
    start: float
    end: float | None = None  # None: a crash (the window ends with the recovery)
    pids: tuple[int, ...] = ()
    params: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.component}"


@dataclass
class Stats:
    count: int = 0
    errors: int = 0
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.count if self.count else None


@dataclass
class BlastRow:
    fault: Fault
    endpoint: str
    window: tuple[float, float]
    window_source: str
    during: Stats
    baseline: Stats
    baseline_source: str
    recovery_s: float | None
    restart_s: float | None = None
    ready_s: float | None = None
    run: dict[str, Any] = field(default_factory=dict)  # run_id, variant, scenario

    def to_dict(self, origin: float | None = None) -> dict[str, Any]:
        """One flat row (CSV and JSON); times relative to `origin` (the first request)."""
        origin = self.fault.start if origin is None else origin
        return {
            "run_id": self.run.get("run_id", ""),
            "variant": self.run.get("variant", ""),
            "scenario": self.run.get("scenario", ""),
            "fault": self.fault.kind,
            "component": self.fault.component,
            "role": self.fault.role,
            "fault_start_s": _r(self.fault.start - origin),
            "fault_end_s": None if self.fault.end is None else _r(self.fault.end - origin),
            "endpoint": self.endpoint,
            "window_s": _r(self.window[1] - self.window[0]),
            "window_source": self.window_source,
            "during_count": self.during.count,
            "during_error_rate": _r(self.during.error_rate, 4),
            "baseline_count": self.baseline.count,
            "baseline_error_rate": _r(self.baseline.error_rate, 4),
            "baseline_source": self.baseline_source,
            "during_p99_ms": _r(self.during.p99_ms),
            "baseline_p99_ms": _r(self.baseline.p99_ms),
            "recovery_s": _r(self.recovery_s),
            "lifecycle_restart_s": _r(self.restart_s),
            "lifecycle_ready_s": _r(self.ready_s),
        }


CSV_COLUMNS = tuple(
    BlastRow(Fault("", "", "", 0.0), "", (0.0, 0.0), "", Stats(), Stats(), "", None).to_dict()
)


# --- pure computations -------------------------------------------------------------------


def p99(latencies_ms: Sequence[float]) -> float | None:
    """Nearest-rank 99th percentile (None without values)."""
    if not latencies_ms:
        return None
    ordered = sorted(latencies_ms)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def stats(records: Iterable[Record]) -> Stats:
    records = list(records)
    return Stats(
        count=len(records),
        errors=sum(is_error(r) for r in records),
        p99_ms=p99([r.corrected_ms for r in records]),
    )


def within(bucket: Stats, baseline: Stats, tol: Tolerance) -> bool:
    """A bucket's error rate and p99 are within the tolerance of the baseline."""
    if not bucket.count:
        return True
    base_err = baseline.error_rate or 0.0
    if (bucket.error_rate or 0.0) > base_err + tol.error_pp + 1e-12:
        return False
    if baseline.p99_ms is None or bucket.p99_ms is None:
        return True
    limit = max(tol.p99_factor * baseline.p99_ms, baseline.p99_ms + tol.p99_slack_ms)
    return bucket.p99_ms <= limit


def recovery_time(
    records: Sequence[Record], start: float, baseline: Stats, tol: Tolerance
) -> float | None:
    """Seconds from `start` to the first of `consecutive` healthy non-empty buckets.

    `records` are one endpoint's. None when the records end before such a streak.
    """
    buckets: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        if scheduled_at(r) >= start:
            buckets[int((scheduled_at(r) - start) // tol.bucket_s)].append(r)
    streak_start: int | None = None
    streak = 0
    for index in sorted(buckets):
        if within(stats(buckets[index]), baseline, tol):
            if streak == 0:
                streak_start = index
            streak += 1
            if streak >= tol.consecutive:
                return (streak_start or 0) * tol.bucket_s
        else:
            streak, streak_start = 0, None
    return None


def lifecycle_times(
    fault: Fault, lifecycle: Sequence[dict[str, Any]]
) -> tuple[float | None, float | None]:
    """(restart_s, ready_s): the crashed role's next start/restart and ready after the fault.

    The roles followed: the fault's role and component, and the role of every process of the
    fault's `pids` whose death the log records after the fault's start (a supervisor's or the
    harness's own name for it, e.g. `monolith-process`).
    """
    events = sorted(lifecycle, key=lambda e: float(e.get("time", 0.0)))
    after = [e for e in events if float(e.get("time", 0.0)) >= fault.start]
    names = {n for n in (fault.role, fault.component) if n}
    names |= {
        str(e.get("role"))
        for e in after
        if e.get("event") == "exit" and e.get("pid") in fault.pids and e.get("role")
    }
    restart = ready = None
    for event in after:
        if event.get("role") not in names:
            continue
        t = float(event["time"]) - fault.start
        kind = event.get("event")
        if restart is None and kind in RESTART_EVENTS:
            restart = t
        if ready is None and kind in READY_EVENTS:
            ready = t
    return restart, ready


def _by_endpoint(records: Iterable[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.endpoint != SETUP_ENDPOINT:
            out[r.endpoint].append(r)
    return dict(sorted(out.items()))


def baselines(
    by_endpoint: dict[str, list[Record]],
    faults: Sequence[Fault],
    measured_from: float,
    tol: Tolerance,
) -> dict[str, tuple[Stats, str]]:
    """Each endpoint's baseline and where it came from (`pre-fault` or `outside-faults`)."""
    first_fault = min((f.start for f in faults), default=math.inf)
    spans = [(f.start, f.end if f.end is not None else f.start + tol.max_window_s) for f in faults]
    out = {}
    for endpoint, recs in by_endpoint.items():
        before = [r for r in recs if measured_from <= scheduled_at(r) < first_fault]
        if before:
            out[endpoint] = (stats(before), "pre-fault")
            continue
        outside = [
            r
            for r in recs
            if scheduled_at(r) >= measured_from
            and not any(a <= scheduled_at(r) <= b for a, b in spans)
        ]
        out[endpoint] = (stats(outside), "outside-faults")
    return out


def blast(
    records: Sequence[Record],
    faults: Sequence[Fault],
    *,
    warmup_s: float = 0.0,
    lifecycle: Sequence[dict[str, Any]] = (),
    tol: Tolerance | None = None,
) -> list[BlastRow]:
    """One row per fault x endpoint (endpoints sorted by name, faults by start)."""
    tol = tol or Tolerance()
    if not records:
        return []
    measured_from = min(r.start_time for r in records) + warmup_s
    by_endpoint = _by_endpoint(records)
    base = baselines(by_endpoint, faults, measured_from, tol)
    rows: list[BlastRow] = []
    for fault in sorted(faults, key=lambda f: f.start):
        recovery = {
            ep: recovery_time(recs, fault.start, base[ep][0], tol)
            for ep, recs in by_endpoint.items()
        }
        restart_s, ready_s = lifecycle_times(fault, lifecycle)
        if fault.end is not None:
            window, source = (fault.start, fault.end), "fault"
        else:
            if ready_s is not None:
                length, source = ready_s, "lifecycle"
            elif recovery and all(v is not None for v in recovery.values()):
                longest = max(v for v in recovery.values() if v is not None)
                length, source = max(longest, tol.consecutive * tol.bucket_s), "records"
            else:
                length, source = tol.max_window_s, "max"
            if length > tol.max_window_s:
                length, source = tol.max_window_s, "max"
            window = (fault.start, fault.start + length)
        for endpoint, recs in by_endpoint.items():
            during = stats(
                r for r in recs if scheduled_at(r) < window[1] and r.end_time >= window[0]
            )
            rows.append(
                BlastRow(
                    fault=fault,
                    endpoint=endpoint,
                    window=window,
                    window_source=source,
                    during=during,
                    baseline=base[endpoint][0],
                    baseline_source=base[endpoint][1],
                    recovery_s=recovery[endpoint],
                    restart_s=restart_s,
                    ready_s=ready_s,
                )
            )
    return rows


# --- run directories ---------------------------------------------------------------------


def _float(text: str | None) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def read_faults(path: Path) -> list[Fault]:
    """faults.csv: kind, component, role, pids, start, end (empty for a crash), params."""
    if not path.exists():
        return []
    faults = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            start = _float(row.get("start"))
            if start is None:
                continue
            faults.append(
                Fault(
                    kind=row.get("kind", ""),
                    component=row.get("component", ""),
                    role=row.get("role", ""),
                    start=start,
                    end=_float(row.get("end")),
                    pids=tuple(int(p) for p in re.findall(r"\d+", row.get("pids") or "")),
                    params=row.get("params") or "",
                )
            )
    return faults


def read_lifecycle(path: Path) -> list[dict[str, Any]]:
    """lifecycle.jsonl's timed events (every event a variant or the harness records has one)."""
    return [event for event in read_jsonl(path) if "time" in event]


def blast_run(run_dir: Path, tol: Tolerance | None = None) -> tuple[list[BlastRow], float]:
    """The rows of one run directory and its origin (first request, for relative times)."""
    meta = read_meta(run_dir)
    records = read_records(run_dir / REQUESTS)
    rows = blast(
        records,
        read_faults(run_dir / FAULTS),
        warmup_s=warmup_of(meta),
        lifecycle=read_lifecycle(run_dir / LIFECYCLE),
        tol=tol,
    )
    scenario = meta.get("scenario")
    info = {
        "run_id": meta.get("run_id", run_dir.name),
        "variant": meta.get("variant", ""),
        "scenario": scenario.get("name", "") if isinstance(scenario, dict) else scenario or "",
    }
    for row in rows:
        row.run = info
    origin = min((r.start_time for r in records), default=0.0)
    return rows, origin


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_text(rows: Sequence[dict[str, Any]]) -> str:
    """The matrix: one line per fault x run x endpoint."""
    head = (
        "fault",
        "variant",
        "endpoint",
        "at s",
        "window s",
        "err% during",
        "err% base",
        "p99 during",
        "p99 base",
        "recovery s",
        "ready s",
    )
    table = [
        (
            f"{r['fault']}:{r['component']}",
            r["variant"],
            r["endpoint"],
            f"{r['fault_start_s']:.1f}",
            f"{r['window_s']:.1f} ({r['window_source']})",
            _pct(r["during_error_rate"]),
            _pct(r["baseline_error_rate"]),
            _ms(r["during_p99_ms"]),
            _ms(r["baseline_p99_ms"]),
            "not" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}",
            "-" if r["lifecycle_ready_s"] is None else f"{r['lifecycle_ready_s']:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    lines += [fmt.format(*t) for t in table]
    lines.append(
        "latency p99 in ms; recovery: seconds from the fault's start until 3 consecutive 1 s "
        "buckets are within tolerance ('not': never within the records); ready: the lifecycle "
        "log's next ready event of the role"
    )
    return "\n".join(lines)


def format_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def matrix(run_dirs: Sequence[Path], tol: Tolerance | None = None) -> list[dict[str, Any]]:
    """Flat rows of every run, sorted by fault, variant, endpoint."""
    out = []
    for run_dir in run_dirs:
        rows, origin = blast_run(run_dir, tol)
        out += [row.to_dict(origin) for row in rows]
    out.sort(key=lambda r: (r["fault"], r["component"], r["variant"], r["run_id"], r["endpoint"]))
    return out
