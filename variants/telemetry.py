"""Per-process telemetry shared by every variant: each garbage collection, as it happens.

Every process of every variant calls `install(role)` once it knows its role (after
fork). When the harness sets `ARCHLAB_TELEMETRY_DIR`, each collection is recorded from
`gc.callbacks` into `<dir>/gc-<role>-<pid>.csv`: pid, role, generation, start (epoch
seconds, the clock of the request records), duration, objects collected and
uncollectable. Rows are buffered in memory and written by a daemon thread every
second and at exit, so the callback itself only reads two clocks and appends a tuple.
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
GC_COLUMNS = ("pid", "role", "generation", "start", "duration_ms", "collected", "uncollectable")
FLUSH_EVERY_S = 1.0


class GcRecorder:
    def __init__(self, role: str, path: Path) -> None:
        self.role = role
        self.pid = os.getpid()
        self.path = path
        self._rows: list[tuple] = []
        self._started_wall = 0.0
        self._started = 0.0
        self._lock = threading.Lock()
        new = not path.exists()
        self._file = path.open("a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(GC_COLUMNS)
            self._file.flush()

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_wall = time.time()
            self._started = time.perf_counter()
            return
        duration_ms = (time.perf_counter() - self._started) * 1000
        self._rows.append(
            (
                self.pid,
                self.role,
                info["generation"],
                f"{self._started_wall:.6f}",
                f"{duration_ms:.3f}",
                info["collected"],
                info["uncollectable"],
            )
        )

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            if rows and not self._file.closed:
                self._writer.writerows(rows)
                self._file.flush()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY_S)
            self.flush()


_recorder: GcRecorder | None = None


def install(role: str) -> GcRecorder | None:
    """Start recording this process's GC pauses under `role`; a no-op without the env var.

    Safe to call again after fork: the child drops the parent's recorder and starts its own.
    """
    global _recorder
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return None
    if _recorder is not None:
        if _recorder.pid == os.getpid() and _recorder.role == role:
            return _recorder
        if _recorder.callback in gc.callbacks:
            gc.callbacks.remove(_recorder.callback)
    Path(folder).mkdir(parents=True, exist_ok=True)
    safe_role = "".join(c if c.isalnum() or c in "-_" else "-" for c in role)
    recorder = GcRecorder(role, Path(folder) / f"gc-{safe_role}-{os.getpid()}.csv")
    gc.callbacks.append(recorder.callback)
    threading.Thread(target=recorder._flush_forever, name="gc-telemetry", daemon=True).start()
    atexit.register(recorder.flush)
    _recorder = recorder
    return recorder
