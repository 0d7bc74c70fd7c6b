"""The run directory's format: every file a run writes, every column list, meta.json, the statuses.

One owner for all of it: the harness writes a run through these names, every reader (summary,
blast, compare, run sets, figures, notebooks) reads through them, and `archlab validate`
(archlab/analysis/validate.py) checks a run against them. Field meanings: results/README.md.

Files the variant writes itself (its lifecycle log, its per-process GC files) keep their names
in `variants/` (a deployer does not import the harness); this module names them for the harness.
meta.json is written when a run starts (status "starting") and rewritten as it progresses, so an
interrupted or failed run still says what it was.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from archlab.host.machine import git_info, machine_info
from variants import lifecycle, telemetry

SCHEMA_VERSION = 3  # results/README.md documents it; bump with every incompatible change
SUPPORTED_VERSIONS = (1, 2, 3)

# ---------------------------------------------------------------- files of a run directory
META = "meta.json"
SUMMARY = "summary.json"
REQUESTS = "requests.csv"  # every request, written by the recorder (archlab/measure/recorder.py)
LEDGER = "ledger.csv"  # every order answered 201, likewise
GENERATOR_CPU = "generator_cpu.csv"
PROCESSES = "processes.csv"
GC = "gc.csv"  # merged from the variant's per-process files in TELEMETRY_DIR
ROLES = "roles.csv"
FAULTS = "faults.csv"  # only runs with a fault plan
INVARIANTS = "invariants.json"
LIFECYCLE = lifecycle.LIFECYCLE_FILE  # the variant's, copied from its state folder
SERVER_LOG = "server.log"
LOCUST_LOG = "locust.log"
# locust's own report and statistics (`--html`, `--csv`), kept beside ours for cross-checking;
# optional (runs before them lack them, so COMPLETED_FILES does not name them)
LOCUST_HTML = "locust.html"
LOCUST_CSV_PREFIX = "locust"  # --csv prefix: locust writes <prefix>_stats.csv, ...
LOCUST_STATS = f"{LOCUST_CSV_PREFIX}_stats.csv"  # per endpoint, the whole run (locust's rounding)
LOCUST_STATS_HISTORY = f"{LOCUST_CSV_PREFIX}_stats_history.csv"  # aggregated, every ~1 s
LOCUST_FAILURES = f"{LOCUST_CSV_PREFIX}_failures.csv"
LOCUST_EXCEPTIONS = f"{LOCUST_CSV_PREFIX}_exceptions.csv"
STATE_DIR = "state"  # the variant's databases (removed with --discard-state)
TELEMETRY_DIR = "telemetry"  # what the variant's processes write while they run
PROFILE_DIR = "profile"
SPEEDSCOPE = "profile.speedscope.json"  # in PROFILE_DIR
TOP_FRAMES = "top_frames.csv"  # in PROFILE_DIR
PROFILE_LOG = "py-spy.log"  # in PROFILE_DIR

# meta.json `server_telemetry`: whether the deployment's own processes were measured; a run
# against a deployment the harness did not start (`archlab run --target`) lacks SERVER_SIDE
SERVER_TELEMETRY_COLLECTED = "collected"
SERVER_TELEMETRY_NOT_COLLECTED = "not collected (--target)"
SERVER_SIDE = (PROCESSES, GC, ROLES, SERVER_LOG)

# ---------------------------------------------------------------- columns
RECORD_COLUMNS = ("start_time", "endpoint", "latency_ms", "status", "error", "intended_time")
RECORD_COLUMNS_V1 = RECORD_COLUMNS[:5]  # before open-loop load (schema 1)
LEDGER_COLUMNS = ("time", "idempotency_key", "order_id")
CPU_COLUMNS = ("time", "pid", "name", "cpu_percent", "rss_bytes", "cpu_user_s", "cpu_system_s")
CPU_COLUMNS_V1 = CPU_COLUMNS[:5]
PROCESS_COLUMNS = (
    "time",
    "pid",
    "ppid",
    "role",
    "name",
    "create_time",
    "cpu_user_s",
    "cpu_system_s",
    "cpu_percent",
    "rss_bytes",
    "uss_bytes",
    "pss_bytes",
    "swap_bytes",
    "threads",
    "ctx_voluntary",
    "ctx_involuntary",
    # /proc/PID/smaps_rollup: the resident pages by who maps them (uss = private clean + dirty)
    "shared_clean_bytes",
    "shared_dirty_bytes",
    "private_clean_bytes",
    "private_dirty_bytes",
    "sampled",  # SAMPLED_TICK or SAMPLED_DECLARED
)
PROCESS_COLUMNS_V1 = PROCESS_COLUMNS[:16]  # before the smaps_rollup columns
PROCESS_COLUMNS_V2 = PROCESS_COLUMNS[:20]  # before `sampled`: every row read as a tick's
SAMPLED_TICK = "tick"
"""processes.csv `sampled`: a row of a sampling tick, which reads every process at one time."""
SAMPLED_DECLARED = "declared"
"""A row read between ticks, of a process that just declared its role (a short-lived one is
caught before it exits); it is no tick of its own, so no per-tick sum counts it."""
GC_COLUMNS = telemetry.GC_COLUMNS
ROLE_COLUMNS = ("pid", "role", "declared_at", "collector")
ROLE_COLUMNS_V1 = ("pid", "role", "declared_at")
COLLECTORS = ("python", "none")
"""roles.csv's `collector`: CPython's cyclic GC, or none (a native engine's process)."""
FAULT_COLUMNS = ("id", "kind", "component", "role", "pids", "start", "end", "params")
TOP_COLUMNS = (
    "role",
    "rank",
    "function",
    "file",
    "self_samples",
    "self_share",
    "total_samples",
    "total_share",
    "role_samples",
)
# file -> accepted headers (first = current)
CSV_HEADERS: dict[str, tuple[tuple[str, ...], ...]] = {
    REQUESTS: (RECORD_COLUMNS, RECORD_COLUMNS_V1),
    GENERATOR_CPU: (CPU_COLUMNS, CPU_COLUMNS_V1),
    PROCESSES: (PROCESS_COLUMNS, PROCESS_COLUMNS_V2, PROCESS_COLUMNS_V1),
    GC: (GC_COLUMNS,),
    ROLES: (ROLE_COLUMNS, ROLE_COLUMNS_V1),
    LEDGER: (LEDGER_COLUMNS,),
    FAULTS: (FAULT_COLUMNS,),
}
# where the recorder (archlab/measure/recorder.py, a locust plugin) writes REQUESTS and LEDGER
ENV_RECORDS = "ARCHLAB_RECORDS"
ENV_LEDGER = "ARCHLAB_LEDGER"
# what a completed run of each schema version holds
_COMPLETED_V1 = (META, SUMMARY, REQUESTS, GENERATOR_CPU, SERVER_LOG, LOCUST_LOG)
_COMPLETED_V2 = (*_COMPLETED_V1[:4], PROCESSES, GC, ROLES, SERVER_LOG, LOCUST_LOG)
COMPLETED_FILES: dict[int, tuple[str, ...]] = {
    1: _COMPLETED_V1,
    2: _COMPLETED_V2,
    3: (*_COMPLETED_V2, LEDGER, INVARIANTS),
}


class Status(StrEnum):
    """meta.json's "status": where a run is, or how it ended."""

    STARTING = "starting"
    WAITING = "waiting for /healthz"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED_INVARIANTS = "failed-invariants"  # ran to its end but lost or corrupted data
    FAILED = "failed"
    INTERRUPTED = "interrupted"


COMPLETED_STATUSES = (Status.COMPLETED, Status.FAILED_INVARIANTS)  # ran to its end
# a run set's manifest step: a finished run that a resumed reproduction kept
KEPT_STATUS = "done (kept)"
USABLE_STEP_STATUSES = (*COMPLETED_STATUSES, KEPT_STATUS)  # steps with data to plot


# ---------------------------------------------------------------- where runs live


def repo_root() -> Path | None:
    """The source checkout this archlab runs from, or None for a non-editable install."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").exists() else None


def results_root() -> Path:
    """results/ of the source checkout when there is one, else ./results."""
    return (repo_root() or Path.cwd()) / "results"


def default_runs_dir() -> Path:
    """results/runs: where `archlab run` puts run directories."""
    return results_root() / "runs"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_run_dir(results_dir: Path, variant: str, scenario: str, run_id: str | None) -> Path:
    """Create results_dir/<run-id>; the default id is <UTC time>-<variant>-<scenario>[-N]."""
    results_dir.mkdir(parents=True, exist_ok=True)
    if run_id is not None:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", run_id):
            raise ValueError(f"run id {run_id!r} may only contain letters, digits, '.', '_', '-'")
        path = results_dir / run_id
        path.mkdir()  # an existing run is never overwritten
        return path
    base = f"{utc_now():%Y%m%d-%H%M%S}-{variant}-{scenario}"
    for n in range(1, 1000):
        path = results_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"too many runs named {base}")


def start_csv(path: Path) -> Path:
    """Create one of the run's CSV files with its current header, for writers that append."""
    path.write_text(",".join(CSV_HEADERS[path.name][0]) + "\n")
    return path


def stored(path: Path) -> Path | None:
    """path, or its gzipped copy path.gz (the committed reference keeps raw files gzipped)."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.exists():
            return candidate
    return None


def open_stored(path: Path) -> TextIO:
    """A raw file for reading as text, or its gzipped copy; FileNotFoundError when neither."""
    found = stored(path)
    if found is None:
        raise FileNotFoundError(f"{path} not found")
    if found.name.endswith(".gz"):  # a copy found for `path`, or `path` named with its .gz
        return gzip.open(found, "rt", newline="")
    return path.open(newline="")


# ---------------------------------------------------------------- meta.json and other JSON files


def new_meta(
    *,
    run_id: str,
    variant: str,
    module: str,
    knobs: dict[str, int | str],
    scenario: dict[str, Any],
    seed: int,
    size: str,
    duration_s: float,
    users: int,
    spawn_rate: float,
    base_url: str,
    started_at: datetime,
    argv: list[str] | None = None,
    load: dict[str, Any] | None = None,
    cpu_pinning: dict[str, Any] | None = None,
    load_generator: str = "locust FastHttpUser, closed loop, headless, 1 process",
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The initial meta.json of a run; the runner adds processes, health, status and end time."""
    root = repo_root()
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": Status.STARTING,
        "variant": variant,
        "variant_module": module,
        "knobs": knobs,
        "scenario": scenario,
        "seed": seed,
        "dataset_size": size,
        "duration_s": duration_s,
        "users": users,
        "spawn_rate": spawn_rate,
        "base_url": base_url,
        "load": load,
        "load_generator": load_generator,
        "cpu_pinning": cpu_pinning or {"server": None, "generator": None, "shared": True},
        "machine": machine_info(),
        "git": git_info(root) if root else {"commit": None, "dirty": None},
        "started_at": iso(started_at),
        "ended_at": None,
        "command": argv if argv is not None else [sys.executable, *sys.argv],
        "cwd": os.getcwd(),
        "notes": list(notes or []),
        "processes": {},
    }


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write a JSON file atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when it is missing or does not parse."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (lifecycle.jsonl); a torn or foreign line is skipped."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def write_meta(run_dir: Path, meta: dict[str, Any]) -> Path:
    return write_json(run_dir / META, meta)


def read_meta(run_dir: Path) -> dict[str, Any]:
    """meta.json of a run; {} when there is none (a run killed before it wrote one)."""
    return read_json(run_dir / META) or {}


def server_telemetry_collected(meta: dict[str, Any]) -> bool:
    """The run measured the deployment's processes (every run but a --target one)."""
    return meta.get("server_telemetry", SERVER_TELEMETRY_COLLECTED) == SERVER_TELEMETRY_COLLECTED


def warmup_of(meta: dict[str, Any]) -> float:
    """The run's warm-up: requests sent before it are left out of every summary."""
    return float(meta.get("warmup_s") or 0.0)


# ---------------------------------------------------------------- a run set (archlab reproduce)
MANIFEST = "manifest.json"  # the scale, the machine, every step with its status and run folder
RUNS_DIR = "runs"  # one run directory per step
PARTIAL_DIR = ".partial"  # in RUNS_DIR: unfinished runs set aside on resume
HOP = "hop.json"  # `archlab bench hop` output
ENGINE_BENCH = "engine.json"  # `archlab bench engine` output
FLOOR = "floor.json"  # `archlab bench floor` output: the generator against the bare endpoint
READINGS = "readings.json"  # every headline number of a run set: median, 95 % interval, n, unit
