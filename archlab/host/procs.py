"""Start servers and helpers in their own process groups and always stop them.

Every child gets its own session (`start_new_session=True`), so a Ctrl-C in the terminal reaches
only the harness, which then stops each child's whole group: first SIGTERM (graceful), then
SIGKILL. Descendants that escaped the group (a child calling `setsid`) are tracked with psutil and
stopped too, so nothing outlives a run, an exception or an interrupt; and every child gets SIGTERM
from the kernel if the harness itself is killed (archlab/host/launch.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from variants import ports

_BLOCK_WHILE_STOPPING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class ProcessError(RuntimeError):
    """A child process died or never became ready; the message carries its log tail."""


@dataclass
class Proc:
    """A started child: its Popen, the log it writes to, and the group it leads."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None
    started_at: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def pgid(self) -> int:
        # With start_new_session the child leads its own group: pgid == pid, even after it exits.
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, outside the ephemeral range, so a
    server the harness restarts (the monolith) can always bind it again (variants/ports.py)."""
    return ports.free_port()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path | None, lines: int = 40) -> str:
    """The last `lines` lines of a log file, for error messages."""
    if path is None or not path.exists():
        return "(no log)"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 16_384))
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def start(
    cmd: Sequence[str],
    *,
    name: str,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
) -> Proc:
    """Start `cmd` in a new session; stdout+stderr go to `log_path` (or are inherited if None).

    The child dies with the thread that starts it (archlab/host/launch.py): start long-lived
    children from a thread that outlives them (the main thread, or one that stops them first).
    """
    log = log_path.open("ab") if log_path is not None else None
    try:
        popen = subprocess.Popen(
            [sys.executable, "-m", "archlab.host.launch", str(os.getpid()), "--", *cmd],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        if log is not None:
            log.close()  # the child holds its own descriptor
    return Proc(name=name, popen=popen, log_path=log_path)


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_gone(proc: Proc, extra: list[psutil.Process], deadline: float) -> bool:
    """Poll until the group and the tracked descendants are gone; True if they are."""
    while True:
        proc.popen.poll()  # reap the leader so it does not linger as a zombie group member
        stragglers = [p for p in extra if live(p)]
        if not group_members(proc.pgid) and not stragglers:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def live(proc: psutil.Process) -> bool:
    """Running and not a zombie (an exited child not reaped yet counts as gone)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop(proc: Proc, grace_s: float = 15.0) -> int | None:
    """Stop `proc`'s whole group: SIGTERM, wait up to `grace_s`, then SIGKILL. Returns exit code.

    SIGINT/SIGTERM are blocked for the calling thread meanwhile, so a second Ctrl-C cannot cut the
    cleanup short; a pending one is delivered (as KeyboardInterrupt) once the children are gone.
    """
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCK_WHILE_STOPPING)
    try:
        extra = _descendants(proc.pid)
        _signal_group(proc.pgid, signal.SIGTERM)
        for child in extra:  # descendants that left the group get the same treatment
            with contextlib.suppress(psutil.Error):
                child.terminate()
        if not _wait_gone(proc, extra, time.monotonic() + grace_s):
            _signal_group(proc.pgid, signal.SIGKILL)
            for child in extra:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            _wait_gone(proc, extra, time.monotonic() + 5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5.0)
        return proc.popen.returncode
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


@contextlib.contextmanager
def running(
    cmd: Sequence[str],
    *,
    name: str,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    grace_s: float = 15.0,
) -> Iterator[Proc]:
    """Context manager: start `cmd` (see `start`) and stop its group on exit, whatever happens."""
    proc = start(cmd, name=name, log_path=log_path, env=env, cwd=cwd)
    try:
        yield proc
    finally:
        stop(proc, grace_s=grace_s)


def health_once(url: str, timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    """One GET of a health URL: (its JSON body, "") on a 200, else (None, why not)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = resp.read()
            if resp.status == 200:
                try:
                    return dict(json.loads(body)), ""
                except ValueError:
                    return {"raw": body.decode("utf-8", errors="replace")}, ""
            return None, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        exc.close()
        return None, f"HTTP {exc.code}"
    except (OSError, urllib.error.URLError) as exc:
        return None, str(getattr(exc, "reason", exc))


def wait_healthy(
    proc: Proc, url: str, timeout_s: float = 120.0, interval_s: float = 0.2
) -> dict[str, Any]:
    """Poll `url` until it answers 200 and return its JSON body.

    Connection refused and 503 mean "still starting". Raises ProcessError, with the tail of the
    child's log, if the child exits first or `timeout_s` passes.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        code = proc.popen.poll()
        if code is not None:
            raise ProcessError(
                f"{proc.name} exited with code {code} before {url} was healthy.\n"
                f"--- last lines of {proc.log_path} ---\n{proc.log_tail()}"
            )
        body, last = health_once(url, 2.0)
        if body is not None:
            return body
        if time.monotonic() >= deadline:
            raise ProcessError(
                f"{proc.name} was not healthy at {url} after {timeout_s:.0f} s (last: {last}).\n"
                f"--- last lines of {proc.log_path} ---\n{proc.log_tail()}"
            )
        time.sleep(interval_s)
