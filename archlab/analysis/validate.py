"""`archlab validate`: a run directory checked against its format (archlab/rundir.py).

The files, headers and statuses are rundir's; what each field and column must hold is said
here. `validate_run(run_dir)` returns a list of problems (empty = valid): missing files, wrong CSV
headers, rows that do not parse, meta.json and summary.json fields that are missing or of the
wrong type. Notebooks and tests rely on what it checks; `archlab validate RUN...` runs it.
Runs of older schema versions (1: before the instruments, 2: before the ledger and the
invariant check) are checked against the files they had; a run against a deployment the
harness did not start (`--target`, meta.json `server_telemetry` not collected) against the
files it can have: no server-side ones (rundir.SERVER_SIDE).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archlab.measure.integrity import METHOD_API, METHOD_DATABASES
from archlab.rundir import (
    COMPLETED_FILES,
    COMPLETED_STATUSES,
    CSV_HEADERS,
    FAULTS,
    GC,
    GENERATOR_CPU,
    INVARIANTS,
    LEDGER,
    LIFECYCLE,
    META,
    PROCESSES,
    PROFILE_DIR,
    PROFILE_LOG,
    REQUESTS,
    ROLES,
    SAMPLED_DECLARED,
    SAMPLED_TICK,
    SERVER_SIDE,
    SPEEDSCOPE,
    SUMMARY,
    SUPPORTED_VERSIONS,
    TOP_COLUMNS,
    TOP_FRAMES,
    Status,
    open_stored,
    server_telemetry_collected,
    stored,
)

_NUM = (int, float)
META_FIELDS: dict[str, Any] = {
    "schema_version": int,
    "run_id": str,
    "status": str,
    "variant": str,
    "variant_module": str,
    "knobs": dict,
    "scenario": dict,
    "seed": int,
    "dataset_size": str,
    "duration_s": _NUM,
    "users": int,
    "spawn_rate": _NUM,
    "base_url": str,
    "load_generator": str,
    "cpu_pinning": dict,
    "machine": dict,
    "git": dict,
    "started_at": str,
    "command": list,
    "cwd": str,
    "notes": list,
    "processes": dict,
}
META_FIELDS_V2: dict[str, Any] = {
    "load": dict,
    "telemetry": dict,
    "profile": dict,
    "warmup_s": _NUM,
}
SUMMARY_FIELDS: dict[str, Any] = {
    "schema_version": int,
    "window": dict,
    "warmup_s": _NUM,
    "endpoints": dict,
}
SUMMARY_FIELDS_V2: dict[str, Any] = {
    "corrected": bool,
    "windows": dict,
    "load": dict,
    "notes": list,
    "server": dict,
    "gc": dict,
    "generator": dict,
}
ENDPOINT_FIELDS: dict[str, Any] = {
    "count": int,
    "throughput_rps": _NUM,
    "errors": int,
    "error_rate": _NUM,
    "statuses": dict,
    "top_errors": dict,
    "latency_ms": dict,
}
LATENCY_KEYS = ("min", "mean", "p50", "p90", "p99", "p99_9", "max")
TARGET_META_FIELDS: dict[str, Any] = {"target": str, "variant_module": type(None)}
SERVER_SUMMARY_FIELDS = ("server", "gc")  # absent from a run without server telemetry
INVARIANTS_FIELDS: dict[str, Any] = {
    "ok": bool,
    "checks": dict,
    "counts": dict,
    "violations": dict,
    "outbox": dict,
    "notifications_verified": bool,
}


def _json_object(v: str) -> bool:
    try:
        return isinstance(json.loads(v), dict)
    except ValueError:
        return False


def _float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _int(v: str) -> bool:
    try:
        int(v)
        return True
    except ValueError:
        return False


def _opt(check: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda v: v == "" or check(v)


# per file: column -> check of the text in each row
COLUMN_CHECKS: dict[str, dict[str, Callable[[str], bool]]] = {
    REQUESTS: {
        "start_time": _float,
        "latency_ms": lambda v: _float(v) and float(v) >= 0,
        "status": _int,
        "intended_time": _opt(_float),
    },
    GENERATOR_CPU: {
        "time": _float,
        "pid": _int,
        "cpu_percent": _float,
        "rss_bytes": _int,
        "cpu_user_s": _opt(_float),
        "cpu_system_s": _opt(_float),
    },
    PROCESSES: {
        "time": _float,
        "pid": _int,
        "ppid": _int,
        "role": bool,
        "create_time": _float,
        "cpu_user_s": _float,
        "cpu_system_s": _float,
        "cpu_percent": _opt(_float),
        "rss_bytes": _int,
        "uss_bytes": _opt(_int),
        "pss_bytes": _opt(_int),
        "swap_bytes": _opt(_int),
        "threads": _int,
        "ctx_voluntary": _int,
        "ctx_involuntary": _int,
        "shared_clean_bytes": _opt(_int),
        "shared_dirty_bytes": _opt(_int),
        "private_clean_bytes": _opt(_int),
        "private_dirty_bytes": _opt(_int),
        "sampled": lambda v: v in (SAMPLED_TICK, SAMPLED_DECLARED),
    },
    GC: {
        "pid": _int,
        "role": bool,
        "generation": lambda v: v in ("0", "1", "2"),
        "start": _float,
        "duration_ms": lambda v: _float(v) and float(v) >= 0,
        "collected": _int,
        "uncollectable": _int,
    },
    ROLES: {"pid": _int, "role": bool, "declared_at": _float},
    LEDGER: {"time": _float, "idempotency_key": bool, "order_id": _int},
    FAULTS: {
        "id": _int,
        "kind": bool,
        "component": bool,
        "start": _float,
        "end": lambda v: v == "" or _float(v),  # empty: a crash (no duration)
        "pids": lambda v: all(p.isdigit() for p in v.split()),
        "params": _json_object,
    },
}


def _check_fields(data: Any, fields: dict[str, Any], where: str) -> list[str]:
    if not isinstance(data, dict):
        return [f"{where}: not an object"]
    problems = []
    for name, kind in fields.items():
        if name not in data:
            problems.append(f"{where}: missing field {name!r}")
        elif not isinstance(data[name], kind) or (kind is int and isinstance(data[name], bool)):
            problems.append(f"{where}: field {name!r} is {type(data[name]).__name__}")
    return problems


def validate_csv(path: Path, name: str | None = None, max_problems: int = 5) -> list[str]:
    """Header and every row of one of the schema's CSV files (or of its gzipped copy)."""
    name = name or path.name
    accepted = CSV_HEADERS[name]
    problems: list[str] = []
    with open_stored(path) as fh:
        reader = csv.reader(fh)
        header = tuple(next(reader, ()))
        if header not in accepted:
            return [f"{name}: header {list(header)}, expected {list(accepted[0])}"]
        checks = [(i, col, COLUMN_CHECKS.get(name, {}).get(col)) for i, col in enumerate(header)]
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                if name == REQUESTS and not fh.read(1):
                    continue  # a torn last line (the generator was killed) is tolerated
                problems.append(f"{name}:{line}: {len(row)} fields, expected {len(header)}")
            else:
                for i, col, check in checks:
                    if check is not None and not check(row[i]):
                        problems.append(f"{name}:{line}: bad {col} {row[i]!r}")
            if len(problems) >= max_problems:
                problems.append(f"{name}: (stopped after {max_problems} problems)")
                break
    return problems


def _validate_summary(
    summary: Any, version: int, server_side: bool = True, sampled: bool = True
) -> list[str]:
    problems = _check_fields(summary, SUMMARY_FIELDS, SUMMARY)
    if version >= 2:
        fields = {
            k: v
            for k, v in SUMMARY_FIELDS_V2.items()
            if (server_side or k not in SERVER_SUMMARY_FIELDS) and (sampled or k != "server")
        }
        problems += _check_fields(summary, fields, SUMMARY)
    if problems:
        return problems
    if summary["schema_version"] != version:
        problems.append(
            f"summary.json: schema_version {summary['schema_version']}, meta.json {version}"
        )
    endpoints = summary["endpoints"]
    if "ALL" not in endpoints:
        problems.append("summary.json: endpoints has no ALL row")
    for name, st in endpoints.items():
        problems += _check_fields(st, ENDPOINT_FIELDS, f"summary.json endpoints[{name!r}]")
        lat = st.get("latency_ms", {}) if isinstance(st, dict) else {}
        missing = [k for k in LATENCY_KEYS if k not in lat]
        if missing:
            problems.append(f"summary.json endpoints[{name!r}].latency_ms lacks {missing}")
        if version >= 2 and summary.get("corrected") and "latency_corrected_ms" not in st:
            problems.append(f"summary.json endpoints[{name!r}] lacks latency_corrected_ms")
    if version >= 2 and server_side:
        if sampled:
            server = summary["server"]
            problems += _check_fields(server, {"roles": dict, "total": dict}, "summary.json server")
        problems += _check_fields(
            summary["gc"], {"roles": dict, "collections": int}, "summary.json gc"
        )
    if version >= 2:
        problems += _check_fields(
            summary["windows"], {"width_s": _NUM, "rows": list}, "summary.json windows"
        )
    return problems


def _validate_invariants(path: Path, meta: dict[str, Any]) -> list[str]:
    try:
        report = json.loads(path.read_text())
    except ValueError as exc:
        return [f"invariants.json does not parse: {exc}"]
    problems = _check_fields(report, INVARIANTS_FIELDS, INVARIANTS)
    if problems:
        return problems
    method = report.get("method", METHOD_DATABASES)
    if method not in (METHOD_DATABASES, METHOD_API):
        problems.append(f"invariants.json: method {method!r}")
    if (method == METHOD_API) == server_telemetry_collected(meta):
        problems.append(
            f"invariants.json: method {method} in a run whose server telemetry is "
            f"{meta.get('server_telemetry', 'collected')}"
        )
    if report["ok"] != all(report["checks"].values()):
        problems.append("invariants.json: ok disagrees with its checks")
    status = meta.get("status")
    if status == Status.COMPLETED and not report["ok"]:
        problems.append("meta.json: status completed but the invariants failed")
    if status == Status.FAILED_INVARIANTS and report["ok"]:
        problems.append("meta.json: status failed-invariants but the invariants hold")
    return problems


def validate_run(run_dir: Path) -> list[str]:
    """Every problem found in a run directory ([] = it follows the schema)."""
    meta_path = run_dir / META
    if not meta_path.exists():
        return [f"{run_dir}: no {META}"]
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        return [f"meta.json does not parse: {exc}"]
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if version not in SUPPORTED_VERSIONS:
        return [f"meta.json: schema_version {version!r} is not one of {SUPPORTED_VERSIONS}"]
    server_side = server_telemetry_collected(meta)
    sampled = (meta.get("telemetry") or {}).get("process_sampler") is not False
    fields = META_FIELDS if server_side else {**META_FIELDS, **TARGET_META_FIELDS}
    problems = _check_fields(meta, fields, META)
    if version >= 2:
        problems += _check_fields(meta, META_FIELDS_V2, META)
    if meta.get("run_id") != run_dir.name:
        problems.append(f"meta.json: run_id {meta.get('run_id')!r} is not {run_dir.name!r}")
    completed = meta.get("status") in COMPLETED_STATUSES
    if completed:
        required = list(COMPLETED_FILES[version])
        if version >= 2 and (meta.get("telemetry") or {}).get("gc") is False:
            required.remove(GC)  # switched off: may still exist, header only
        if not sampled:
            required.remove(PROCESSES)  # the process sampler was switched off
        if not server_side:
            required = [name for name in required if name not in SERVER_SIDE]
        for name in required:
            if stored(run_dir / name) is None:
                problems.append(f"missing {name} (required in a completed run)")
    for name in CSV_HEADERS:
        if stored(run_dir / name) is not None:
            problems += validate_csv(run_dir / name, name)
    summary_path = run_dir / SUMMARY
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
            problems += _validate_summary(summary, version, server_side, sampled)
        except ValueError as exc:
            problems.append(f"summary.json does not parse: {exc}")
    profile = meta.get("profile") or {}
    if version >= 2 and profile.get("enabled"):
        status = profile.get("status")
        if status not in ("ok", "failed", "unavailable", "skipped"):
            problems.append(f"meta.json: profile.status {status!r}")
        if status in ("failed", "unavailable", "skipped") and not profile.get("error"):
            problems.append(f"meta.json: profile.status {status} without an error")
        pdir = run_dir / PROFILE_DIR
        if status == "ok":
            for name in (SPEEDSCOPE, TOP_FRAMES, PROFILE_LOG):
                if stored(pdir / name) is None:
                    problems.append(f"missing {PROFILE_DIR}/{name} (profile.status ok)")
            top = pdir / TOP_FRAMES
            if stored(top) is not None:
                with open_stored(top) as fh:
                    if tuple(next(csv.reader(fh), ())) != TOP_COLUMNS:
                        problems.append(f"{PROFILE_DIR}/{TOP_FRAMES}: wrong header")
    inv_path = run_dir / INVARIANTS
    if version >= 3 and inv_path.is_file():
        problems += _validate_invariants(inv_path, meta)
    lifecycle = run_dir / LIFECYCLE
    if lifecycle.is_file():
        for line, text in enumerate(lifecycle.read_text().splitlines(), start=1):
            try:
                if not isinstance(json.loads(text), dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                problems.append(f"{LIFECYCLE}:{line}: {exc}")
                break
    return problems


__all__ = ["validate_csv", "validate_run"]
