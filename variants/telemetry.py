"""Per-process telemetry shared by every variant: its role, and each garbage collection.

Every process of every variant calls `install(role)` once it knows its role (after fork, in
the process itself). When the harness sets `ARCHLAB_TELEMETRY_DIR`:

- the process declares its role: `<dir>/roles/<pid>` holds the role (one line). The harness's
  process sampler reads it to label the process's CPU and memory samples, and the profiler to
  label its stacks, so a variant needs nothing else to be measured per role.
- each collection is recorded from `gc.callbacks` into `<dir>/gc-<role>-<pid>.csv`: pid, role,
  generation, start (epoch seconds, the clock of the request records), duration, objects
  collected and uncollectable. Rows are buffered in memory and written by a daemon thread every
  second and at exit, so the callback itself only reads two clocks and appends a tuple.
  `install` runs one young (generation 0) collection, so every process has at least one row
  even if it never allocates again (an idle supervisor): it proves the recorder is live.

`ARCHLAB_TELEMETRY=0` turns the GC recording off (the role is still declared): the harness uses
it to measure the recorder's own overhead (`archlab run --no-gc-telemetry`).

A forked child inherits the parent's recorder but not its flush thread; an at-fork hook detaches
it, so a child records nothing (and never writes the parent's rows twice) until it calls
`install` itself.
"""

from __future__ import annotations

import atexit
import csv
import gc
import os
import threading
import time
from pathlib import Path
from typing import Any

ENV_DIR = "ARCHLAB_TELEMETRY_DIR"
ENV_SWITCH = "ARCHLAB_TELEMETRY"  # "0": declare roles, do not record GC
ROLES_DIR = "roles"
NO_COLLECTOR_DIR = "no-collector"
"""`<dir>/no-collector/<pid>` (holding the role): a native process declares it has no garbage
collector, so its role's GC record reads "no collector" rather than zero collections."""
GC_COLUMNS = ("pid", "role", "generation", "start", "duration_ms", "collected", "uncollectable")
FLUSH_EVERY_S = 1.0
TITLE_PREFIX = "archlab: "  # every process of a variant shows as `archlab: <role ...>` in ps


def process_title(text: str) -> str:
    """The `ps` title of a variant's process (the sampler reads the role back from it)."""
    return TITLE_PREFIX + text


GcRow = tuple[float, float, int, int, int]  # start (epoch s), seconds, generation, freed, left
_wall = time.time
_perf = time.perf_counter


def safe_role(role: str) -> str:
    """The role as it appears in file names: letters, digits, '-' and '_'."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in role) or "unnamed"


class GcRecorder:
    """Records this process's collections; `callback` is appended to `gc.callbacks`."""

    def __init__(self, role: str, path: Path) -> None:
        self.role = role
        self.pid = os.getpid()
        self.path = path
        self._rows: list[GcRow] = []
        self._started_wall = 0.0
        self._started = 0.0
        self._lock = threading.Lock()
        self._detached = False
        new = not path.exists()
        self._file = path.open("a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(GC_COLUMNS)
            self._file.flush()

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside every collection of this process: two clock reads and an append; the
        # formatting happens in `flush`, on the flush thread.
        if phase == "start":
            self._started_wall = _wall()
            self._started = _perf()
            return
        self._rows.append(
            (
                self._started_wall,
                _perf() - self._started,
                info["generation"],
                info["collected"],
                info["uncollectable"],
            )
        )

    def flush(self) -> None:
        with self._lock:
            if self._detached:
                return
            rows, self._rows = self._rows, []
            if rows and not self._file.closed:
                pid, role = self.pid, self.role
                self._writer.writerows(
                    (pid, role, gen, f"{start:.6f}", f"{seconds * 1000:.3f}", coll, uncoll)
                    for start, seconds, gen, coll, uncoll in rows
                )
                self._file.flush()

    def detach(self) -> None:
        """Stop recording in a forked child: the rows and the file are the parent's.

        The lock is replaced, not taken: the parent's flush thread may have held it at the
        moment of the fork, and no thread in the child would ever release it.
        """
        self._lock = threading.Lock()
        self._detached = True
        self._rows = []
        if self.callback in gc.callbacks:
            gc.callbacks.remove(self.callback)

    def _flush_forever(self) -> None:
        while not self._detached:
            time.sleep(FLUSH_EVERY_S)
            self.flush()


_recorder: GcRecorder | None = None


def _after_fork_in_child() -> None:
    global _recorder
    if _recorder is not None and _recorder.pid != os.getpid():
        _recorder.detach()
        _recorder = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def declare_role(folder: Path, role: str) -> Path:
    """Write `<folder>/roles/<pid>` (atomically) so the harness can label this process."""
    roles = folder / ROLES_DIR
    roles.mkdir(parents=True, exist_ok=True)
    path = roles / str(os.getpid())
    tmp = roles / f".{os.getpid()}.tmp"
    tmp.write_text(role + "\n")
    tmp.replace(path)
    return path


def enabled() -> bool:
    """True when the harness asked for GC telemetry (the directory is set, the switch not 0)."""
    return bool(os.environ.get(ENV_DIR)) and os.environ.get(ENV_SWITCH, "1") != "0"


def install(role: str) -> GcRecorder | None:
    """Declare this process's role and record its GC pauses; a no-op without the env var.

    Safe to call again, and after fork: the child drops the parent's recorder and starts its own.
    Returns the recorder, or None when GC recording is off.
    """
    global _recorder
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return None
    declare_role(Path(folder), role)
    if not enabled():
        return None
    if _recorder is not None:
        if _recorder.pid == os.getpid() and _recorder.role == role:
            return _recorder
        _recorder.flush()
        _recorder.detach()
    path = Path(folder) / f"gc-{safe_role(role)}-{os.getpid()}.csv"
    recorder = GcRecorder(role, path)
    gc.callbacks.append(recorder.callback)
    _recorder = recorder
    gc.collect(0)  # one young collection: a first row, even for a process that stays idle
    recorder.flush()
    threading.Thread(target=recorder._flush_forever, name="gc-telemetry", daemon=True).start()
    atexit.register(recorder.flush)
    return recorder


def flush() -> None:
    """Write this process's buffered GC rows now (call before `os._exit`, which skips atexit)."""
    if _recorder is not None and _recorder.pid == os.getpid():
        _recorder.flush()
