"""The CPU of the variant's processes over the measured window, from two readings only.

The process sampler (sampler.py) reads every process each interval; CPU per request in the
summary comes from those readings. A run that switches the sampler off, to measure what the
sampler itself costs, still needs the variant's CPU, and both arms of that comparison must
measure it the same way, with an instrument too small to matter: this one reads the variant's
processes once when the measured window opens (the first request sent + the warm-up, as the
summary's window) and once when the load has ended.

A reading is the cumulative CPU (user + system) of the variant's process tree plus the processes
that declared a role outside it (as the sampler finds them), *including* what each process's
reaped children used (psutil's `children_user`/`children_system`), so a child that exits between
the readings is still counted once: in its parent's children time. The harness's own CPU (the
process running the run: the samplers' threads live in it) is read at the same two moments.
"""

from __future__ import annotations

import contextlib
import csv
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from archlab.measure.sampler import RoleResolver

POLL_S = 0.05  # how often the opening waits for the first request's record


def tree_cpu(root_pid: int, roles_dir: Path | None) -> tuple[float, set[tuple[int, float]]]:
    """(CPU seconds of the variant's processes and their reaped children, their identities)."""
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(root_pid)
        for proc in [root, *root.children(recursive=True)]:
            found[proc.pid] = proc
    roles = RoleResolver(roles_dir, root_pid)
    for pid in roles.declared_pids() - set(found):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if roles.declared(pid, proc.create_time()) is not None:
                found[pid] = proc
    total, seen = 0.0, set()
    for proc in found.values():
        try:
            with proc.oneshot():
                t = proc.cpu_times()
                key = (proc.pid, proc.create_time())
        except psutil.Error:
            continue  # gone between the walk and the reading: its parent's children time has it
        total += t.user + t.system + t.children_user + t.children_system
        seen.add(key)
    return total, seen


def _own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def first_start(requests: Path) -> float | None:
    """The send time of the first request in requests.csv (None before the recorder wrote one)."""
    try:
        with requests.open(newline="") as fh:
            reader = csv.DictReader(fh)
            row = next(reader, None)
    except OSError:
        return None
    try:
        return float(row["start_time"]) if row else None
    except (KeyError, TypeError, ValueError):
        return None


class CpuBracket:
    """Two readings of the variant's CPU: `open` in a thread (it waits for the window), `close`.

    `root_pid` is asked at each reading (the harness may have restarted the variant).
    """

    def __init__(
        self,
        root_pid: Callable[[], int],
        roles_dir: Path | None,
        requests: Path,
        warmup_s: float,
    ) -> None:
        self.root_pid = root_pid
        self.roles_dir = roles_dir
        self.requests = requests
        self.warmup_s = warmup_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._open, name="cpu-bracket", daemon=True)
        self._opened: tuple[float, float, float, set[tuple[int, float]]] | None = None
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def _open(self) -> None:
        try:
            first = None
            while first is None:
                if self._stop.wait(POLL_S):
                    return
                first = first_start(self.requests)
            if self._stop.wait(max(0.0, first + self.warmup_s - time.time())):
                return
            cpu, seen = tree_cpu(self.root_pid(), self.roles_dir)
            self._opened = (time.time(), cpu, _own_cpu(), seen)
        except Exception as exc:  # noqa: BLE001 - a broken bracket must not break the run
            self.error = f"{type(exc).__name__}: {exc}"

    def close(self) -> dict[str, Any]:
        """The second reading (now), and both as meta.json's `cpu_bracket`."""
        self._stop.set()
        self._thread.join(timeout=10.0)
        if self._opened is None:
            return {"opened": False, "error": self.error or "the window never opened"}
        t0, cpu0, own0, seen0 = self._opened
        cpu1, seen1 = tree_cpu(self.root_pid(), self.roles_dir)
        t1, own1 = time.time(), _own_cpu()
        return {
            "opened": True,
            "start": round(t0, 6),
            "end": round(t1, 6),
            "seconds": round(t1 - t0, 3),
            "server_cpu_s": round(cpu1 - cpu0, 4),
            "harness_cpu_s": round(own1 - own0, 4),
            "processes": len(seen1),
            "started_inside": len(seen1 - seen0),
            "ended_inside": len(seen0 - seen1),
        }
