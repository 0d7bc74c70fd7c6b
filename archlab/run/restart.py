"""The harness as a process manager: restart a variant whose top process dies during the run.

A variant's top process (the monolith's gunicorn master, the multiprocess postmaster, the
distributed launcher) restarts what is below it, but nothing restarts it; when it dies the
harness restarts it (`VariantSpec.restarted_by_harness`), as systemd (`Restart=always`) or
a container runtime would: same command, same state directory, so it carries on with its
data. The run continues; the downtime and warm-up are
measured. Events go to `<state-dir>/lifecycle.jsonl` (role `<variant>-process`): `exit`
(unexpected), `restart` (the new pid) and `ready` (when /healthz answers again, with
`downtime_s` since the death).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from archlab.host import procs
from variants.lifecycle import record

POLL_S = 0.1


class Restarter(threading.Thread):
    """Watches `first` until `stop()`; restarts `cmd` whenever the current process exits."""

    def __init__(
        self,
        first: procs.Proc,
        cmd: Sequence[str],
        *,
        role: str,
        health_url: str,
        lifecycle: Path,
        log_path: Path,
        env: Mapping[str, str],
        ready_timeout_s: float,
        on_restart: Callable[[procs.Proc], None] | None = None,
    ) -> None:
        super().__init__(name="harness-restarter", daemon=True)
        self.current = first
        self.started: list[procs.Proc] = []  # what this thread started (the caller stops them)
        self.cmd = list(cmd)
        self.role = role
        self.health_url = health_url
        self.lifecycle = lifecycle
        self.log_path = log_path
        self.env = dict(env)
        self.ready_timeout_s = ready_timeout_s
        self.on_restart = on_restart
        self.restarts = 0
        self.errors: list[str] = []
        self.ready = True  # False from a death until the restarted process answers its health
        self._halt = threading.Event()
        self._halted = threading.Event()  # the watch loop has ended: no more restarts
        self._release = threading.Event()  # what it started is stopped: the thread may end

    def alive(self) -> bool:
        return self.current.alive()

    def run(self) -> None:
        """Watch and restart; then stay alive until `stop_started`, because a child dies with
        the thread that started it (archlab/host/launch.py)."""
        try:
            self._watch()
        finally:
            self._halted.set()
            self._release.wait()

    def _watch(self) -> None:
        while not self._halt.wait(POLL_S):
            code = self.current.popen.poll()
            if code is None:
                continue
            died = time.time()
            self.ready = False
            record(
                self.lifecycle,
                event="exit",
                role=self.role,
                pid=self.current.pid,
                exit_code=code if code >= 0 else None,
                signal=None if code >= 0 else -code,
                expected=False,
            )
            with contextlib.suppress(Exception):
                procs.stop(self.current, grace_s=2.0)  # what is left of its group
            if self._halt.is_set():
                return
            proc = procs.start(
                self.cmd, name=self.current.name, log_path=self.log_path, env=self.env
            )
            self.started.append(proc)
            self.current = proc
            self.restarts += 1
            record(self.lifecycle, event="restart", role=self.role, pid=proc.pid, by="harness")
            if self.on_restart is not None:
                self.on_restart(proc)
            try:
                procs.wait_healthy(proc, self.health_url, self.ready_timeout_s)
            except Exception as exc:  # noqa: BLE001 - recorded; the next poll sees it dead
                self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            self.ready = True
            record(
                self.lifecycle,
                event="ready",
                role=self.role,
                pid=proc.pid,
                downtime_s=round(time.time() - died, 3),
            )

    def stop(self) -> None:
        """No more restarts (a restart under way finishes first); the current process runs on."""
        self._halt.set()
        if self.is_alive():
            self._halted.wait(timeout=self.ready_timeout_s + 10)

    def stop_started(self) -> None:
        """Stop every process this thread started, then let the thread end."""
        try:
            for proc in self.started:
                with contextlib.suppress(Exception):
                    procs.stop(proc)
        finally:
            self._release.set()
            if self.is_alive():
                self.join(timeout=10)
