"""meta.json: everything needed to interpret and repeat a run.

Written when a run starts (status "starting") and rewritten as it progresses, so an interrupted
or failed run still says what it was. Field meanings: results/README.md.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archlab.machine import git_info, machine_info

SCHEMA_VERSION = 3  # results/README.md documents it; bump with every incompatible change


def repo_root() -> Path | None:
    """The source checkout this archlab runs from, or None for a non-editable install."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").exists() else None


def results_root() -> Path:
    """results/ of the source checkout when there is one, else ./results."""
    return (repo_root() or Path.cwd()) / "results"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
        "status": "starting",
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


def write_meta(run_dir: Path, meta: dict[str, Any]) -> Path:
    """Write meta.json atomically (a reader never sees half a file)."""
    path = run_dir / "meta.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def read_meta(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "meta.json").read_text()))
