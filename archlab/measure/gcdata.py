"""GC pauses and declared roles: collect what every variant process wrote, summarise it per role.

During a run each process of the variant writes `<run>/telemetry/gc-<role>-<pid>.csv` and
`<run>/telemetry/roles/<pid>` (see `variants/telemetry.py`). After the variant has stopped,
`collect` merges them into `gc.csv` (every collection, sorted by start) and `roles.csv` (every
process that declared a role), then removes the raw folder.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from archlab.rundir import GC, GC_COLUMNS, ROLE_COLUMNS, ROLES, open_stored, stored
from variants.telemetry import NO_COLLECTOR_DIR, ROLES_DIR


class GcEvent(NamedTuple):
    pid: int
    role: str
    generation: int
    start: float  # epoch seconds
    duration_ms: float
    collected: int
    uncollectable: int


def _read_gc_file(path: Path) -> list[GcEvent]:
    events = []
    with open_stored(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(header) != GC_COLUMNS:
            return []
        for row in reader:
            if len(row) != len(GC_COLUMNS):
                continue  # a row cut short by a killed process
            try:
                events.append(
                    GcEvent(
                        int(row[0]),
                        row[1],
                        int(row[2]),
                        float(row[3]),
                        float(row[4]),
                        int(row[5]),
                        int(row[6]),
                    )
                )
            except ValueError:
                continue
    return events


def read_gc(path: Path) -> list[GcEvent]:
    """The events of a merged gc.csv (or of one raw per-process file)."""
    return _read_gc_file(path) if stored(path) is not None else []


def read_roles(path: Path) -> dict[int, str]:
    """pid -> role from roles.csv."""
    if stored(path) is None:
        return {}
    with open_stored(path) as fh:
        return {int(row["pid"]): row["role"] for row in csv.DictReader(fh)}


def roles_without_collector(path: Path) -> list[str]:
    """Roles whose every process declared it has no garbage collector (a native engine)."""
    if stored(path) is None:
        return []
    with open_stored(path) as fh:
        rows = list(csv.DictReader(fh))
    kinds: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        kinds[row["role"]].add(row.get("collector") or "python")
    return sorted(role for role, k in kinds.items() if k == {"none"})


def collect(telemetry_dir: Path, run_dir: Path, *, keep_raw: bool = False) -> dict[str, Any]:
    """Merge the per-process files into run_dir/gc.csv and run_dir/roles.csv."""
    events: list[GcEvent] = []
    files = sorted(telemetry_dir.glob("gc-*.csv")) if telemetry_dir.is_dir() else []
    for path in files:
        events.extend(_read_gc_file(path))
    events.sort(key=lambda e: (e.start, e.pid))
    with (run_dir / GC).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(GC_COLUMNS)
        for e in events:
            writer.writerow(
                (
                    e.pid,
                    e.role,
                    e.generation,
                    f"{e.start:.6f}",
                    f"{e.duration_ms:.3f}",
                    e.collected,
                    e.uncollectable,
                )
            )
    roles: list[tuple[int, str, str, str]] = []
    roles_dir = telemetry_dir / ROLES_DIR
    native = telemetry_dir / NO_COLLECTOR_DIR
    if roles_dir.is_dir():
        for path in roles_dir.iterdir():
            if path.name.isdigit():
                collector = "none" if (native / path.name).exists() else "python"
                try:
                    declared = f"{path.stat().st_mtime:.3f}"
                    roles.append((int(path.name), path.read_text().strip(), declared, collector))
                except OSError:
                    continue
    roles.sort()
    with (run_dir / ROLES).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ROLE_COLUMNS)
        writer.writerows(roles)
    if not keep_raw and telemetry_dir.is_dir():
        shutil.rmtree(telemetry_dir, ignore_errors=True)
    return {
        "files": len(files),
        "collections": len(events),
        "processes": len({e.pid for e in events}),
        "roles_declared": sorted({r[1] for r in roles}),
    }


def _nearest_rank(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def summarize_gc(
    events: Iterable[GcEvent], *, start: float | None = None, end: float | None = None
) -> dict[str, Any]:
    """Per role: collections and pause totals inside [start, end], plus the whole run's maximum.

    `pause_ms_per_s` is the role's total pause per second of window (summed over its
    processes): how much of a CPU-second each second the collector took from that role.
    """
    events = list(events)

    def inside(e: GcEvent) -> bool:
        return (start is None or e.start >= start) and (end is None or e.start < end)

    window_s = (end - start) if start is not None and end is not None else None
    by_role: dict[str, list[GcEvent]] = defaultdict(list)
    whole_run_max: dict[str, GcEvent] = {}
    for e in events:
        if e.role not in whole_run_max or e.duration_ms > whole_run_max[e.role].duration_ms:
            whole_run_max[e.role] = e
        if inside(e):
            by_role[e.role].append(e)
    roles: dict[str, Any] = {}
    for role in sorted(whole_run_max):
        mine = by_role.get(role, [])
        pauses = [e.duration_ms for e in mine]
        gens: dict[str, dict[str, Any]] = {}
        for gen in sorted({e.generation for e in mine}):
            g = [e.duration_ms for e in mine if e.generation == gen]
            gens[str(gen)] = {
                "count": len(g),
                "total_ms": round(math.fsum(g), 3),
                "max_ms": round(max(g), 3),
            }
        total = math.fsum(pauses)
        biggest = whole_run_max[role]
        roles[role] = {
            "processes": len({e.pid for e in mine}),
            "collections": len(mine),
            "by_generation": gens,
            "total_pause_ms": round(total, 3),
            "max_pause_ms": round(max(pauses), 3) if pauses else 0.0,
            "p99_pause_ms": round(_nearest_rank(pauses, 99), 3) if pauses else 0.0,
            "pause_ms_per_s": round(total / window_s, 3) if window_s else None,
            "collected": sum(e.collected for e in mine),
            "max_pause_ms_whole_run": round(biggest.duration_ms, 3),
            "max_pause_whole_run": {
                "pid": biggest.pid,
                "generation": biggest.generation,
                "start": biggest.start,
                "in_window": inside(biggest),
            },
        }
    largest = max(events, key=lambda e: e.duration_ms, default=None)
    return {
        "collections": sum(r["collections"] for r in roles.values()),
        "roles": roles,
        "largest_pause": None
        if largest is None
        else {
            "role": largest.role,
            "pid": largest.pid,
            "generation": largest.generation,
            "duration_ms": round(largest.duration_ms, 3),
            "start": largest.start,
            "in_window": inside(largest),
        },
    }
