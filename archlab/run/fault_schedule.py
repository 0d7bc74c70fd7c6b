"""The harness's side of fault injection: run a scenario's fault plan during `archlab run`.

A plan is a list of `workloads.scenarios.FaultSpec` (kind, component, start and length as
fractions of the load's duration, params). At each start the scheduler asks the variant which
role hosts the component (`VariantSpec.host_role`), finds that role's live processes from the
telemetry roles directory, and

- `crash` (mode `kill`, the default): SIGKILLs them, together with their gunicorn master
  (role `<role>-master`) where they have one, so the unit a process manager restarts dies
  whole; mode `abort`: asks their controllers to `os.abort()`;
- any other kind: writes `<state>/faults/<component>.json` active, and signals the armed
  processes (`variants/faults.py`); at the end it writes it inactive and signals again.

Every fault becomes one row of the run's `faults.csv` (results/README.md), written when the
scheduler stops; faults still active then are stopped and their `end` is the stop time.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.deployers import VariantSpec
from archlab.rundir import FAULT_COLUMNS, FAULTS
from variants import faults as controller
from variants.telemetry import ROLES_DIR
from workloads.scenarios import FaultSpec

FAULTS_DIR = "faults"


def alive(pid: int) -> bool:
    """True for a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def pids_of_role(roles_dir: Path, role: str) -> list[int]:
    """The live pids that declared `role` in `<telemetry>/roles/<pid>`."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in roles_dir.iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if entry.read_text().strip() == role and alive(int(entry.name)):
                    found.append(int(entry.name))
    return sorted(found)


@dataclass
class _Injected:
    number: int
    spec: FaultSpec
    role: str
    pids: list[int]
    start: float
    end: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


class FaultScheduler:
    """Starts and stops a plan's faults on time, in a thread; `stop` ends what is active."""

    def __init__(
        self,
        plan: Sequence[FaultSpec],
        variant: VariantSpec,
        *,
        telemetry_dir: Path,
        faults_dir: Path,
        duration_s: float,
    ) -> None:
        self.variant = variant
        self.roles_dir = telemetry_dir / ROLES_DIR
        self.faults_dir = faults_dir
        self.events: list[tuple[float, str, int]] = []  # (offset s, "start"/"end", fault no.)
        self.plan = list(plan)
        for n, spec in enumerate(self.plan):
            variant.host_role(spec.component)  # unknown components fail before the run
            self.events.append((spec.at * duration_s, "start", n))
            if spec.kind != "crash" and spec.duration is not None:
                self.events.append(((spec.at + spec.duration) * duration_s, "end", n))
        self.events.sort(key=lambda e: (e[0], e[1] == "start"))
        self.injected: dict[int, _Injected] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="fault-scheduler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for offset, what, n in self.events:
            if self._stop.wait(max(0.0, self._t0 + offset - time.monotonic())):
                return
            try:
                with self._lock:
                    if what == "start":
                        self._begin(n)
                    else:
                        self._end(n)
            except Exception as exc:  # noqa: BLE001 - record, keep the run going
                self.errors.append(f"fault {n} {what}: {type(exc).__name__}: {exc}")

    def _armed_pids(self, component: str, role: str) -> list[int]:
        return sorted(
            pid
            for pid, (r, comps) in controller.armed(self.faults_dir).items()
            if r == role and component in comps and alive(pid)
        )

    def _signal(self, pids: list[int], sig: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _begin(self, n: int) -> None:
        spec = self.plan[n]
        role = self.variant.host_role(spec.component)
        params = {**controller.DEFAULT_PARAMS.get(spec.kind, {}), **dict(spec.params)}
        if spec.kind == "crash" and params.get("mode", "kill") == "kill":
            # The unit a process manager restarts dies whole: a gunicorn worker with its
            # master (the monolith; a distributed service), an auxiliary on its own.
            pids = pids_of_role(self.roles_dir, role) + pids_of_role(
                self.roles_dir, f"{role}-master"
            )
            now = time.time()
            self._signal(pids, signal.SIGKILL)
        else:
            pids = self._armed_pids(spec.component, role)
            now = time.time()
            controller.write_fault(
                self.faults_dir,
                spec.component,
                {"id": n, "kind": spec.kind, "params": params, "active": True, "pids": pids},
            )
            self._signal(pids, controller.SIGNAL)
        self.injected[n] = _Injected(n, spec, role, pids, now, params=params)
        if spec.kind == "crash":
            self.injected[n].end = None

    def _end(self, n: int) -> None:
        fault = self.injected.get(n)
        if fault is None or fault.end is not None or fault.spec.kind == "crash":
            return
        controller.write_fault(
            self.faults_dir,
            fault.spec.component,
            {
                "id": n,
                "kind": fault.spec.kind,
                "params": fault.params,
                "active": False,
                "pids": fault.pids,
            },
        )
        fault.end = time.time()
        self._signal([p for p in fault.pids if alive(p)], controller.SIGNAL)

    def stop(self) -> None:
        """Stop the schedule and every fault still active (before the variant stops)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for n in list(self.injected):
                with contextlib.suppress(Exception):
                    self._end(n)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for n in sorted(self.injected):
            f = self.injected[n]
            rows.append(
                {
                    "id": n,
                    "kind": f.spec.kind,
                    "component": f.spec.component,
                    "role": f.role,
                    "pids": " ".join(str(p) for p in f.pids),
                    "start": f"{f.start:.6f}",
                    "end": "" if f.end is None else f"{f.end:.6f}",
                    "params": json.dumps(f.params, sort_keys=True),
                }
            )
        return rows

    def write(self, path: Path) -> int:
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FAULT_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows())
        return len(self.injected)


def read_faults(path: Path) -> list[dict[str, Any]]:
    """faults.csv as dicts: start/end as floats (end None for a crash), pids as ints."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return [
            {
                **row,
                "id": int(row["id"]),
                "pids": [int(p) for p in row["pids"].split()],
                "start": float(row["start"]),
                "end": float(row["end"]) if row["end"] else None,
                "params": json.loads(row["params"]),
            }
            for row in csv.DictReader(fh)
        ]


@contextlib.contextmanager
def scheduled(
    plan: Sequence[FaultSpec],
    variant: VariantSpec,
    *,
    run_dir: Path,
    telemetry_dir: Path,
    faults_dir: Path,
    duration_s: float,
) -> Iterator[FaultScheduler | None]:
    """Run the plan for the block (nothing without a plan); write faults.csv afterwards."""
    if not plan:
        yield None
        return
    scheduler = FaultScheduler(
        plan, variant, telemetry_dir=telemetry_dir, faults_dir=faults_dir, duration_s=duration_s
    )
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.stop()
        scheduler.write(run_dir / FAULTS)
