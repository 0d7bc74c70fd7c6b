"""Profiles of the whole variant with py-spy, and a top-frames table per role.

`archlab run --profile` records the variant's root process and every process it forks
(`py-spy record --subprocesses --format speedscope`) for the load or a window of it
(`--profile-window START:END`, seconds after the load started); `--profile-gil` records only
the threads holding the GIL (who holds it, not who waits for it). Output in `<run>/profile/`:

- `profile.speedscope.json`: open in https://www.speedscope.app (one profile per thread);
- `top_frames.csv`: per role, the functions with the largest self share (samples where the
  function is the innermost frame) and their total share (samples where it is anywhere on the
  stack), over all threads of all processes of the role;
- `py-spy.log`: py-spy's own output.

Profiling needs ptrace permission on the variant's processes (root, CAP_SYS_PTRACE or
kernel.yama.ptrace_scope = 0). A profile that cannot be taken is reported in meta.json
(`profile.status` = `failed` or `unavailable`, with the reason) and never fails the run.
Sampling costs throughput (DESIGN.md: ~10-15% at 100 Hz on a CPU-bound endpoint): compare
profiled runs only with profiled runs.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archlab.host import procs
from archlab.host.cpus import pin_command
from archlab.rundir import PROFILE_DIR, PROFILE_LOG, SPEEDSCOPE, TOP_COLUMNS, TOP_FRAMES

_PROFILE_NAME = re.compile(r"Process (\d+) Thread")
_PROJECT_DIR = re.compile(r"/(?=(?:archlab|variants|workloads)/)")  # before a top folder
PTRACE_HINT = (
    "py-spy needs ptrace permission on the variant's processes: run as root, grant "
    "CAP_SYS_PTRACE (docker run --cap-add SYS_PTRACE), or set kernel.yama.ptrace_scope=0"
)


@dataclass(frozen=True)
class ProfilePlan:
    """What to profile: the whole load (window None) or START:END seconds after it began."""

    gil: bool = False
    window: tuple[float, float] | None = None
    rate_hz: int = 100

    def to_dict(self) -> dict[str, Any]:
        return {
            "gil": self.gil,
            "window": list(self.window) if self.window else None,
            "rate_hz": self.rate_hz,
        }


def parse_window(text: str) -> tuple[float, float]:
    """'10:40' -> (10.0, 40.0): seconds after the load started."""
    start, sep, end = text.partition(":")
    try:
        window = (float(start or 0), float(end))
    except ValueError:
        raise ValueError(f"bad profile window {text!r}; use START:END in seconds") from None
    if not sep or window[0] < 0 or window[1] <= window[0]:
        raise ValueError(f"bad profile window {text!r}; use START:END with 0 <= START < END")
    return window


def find_py_spy() -> str | None:
    """py-spy next to this interpreter (the venv's), else on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


class Profiler:
    """Starts py-spy at the window's start (call `poll` from the load loop), stops it at the end.

    `finish` always returns the `profile` block of meta.json and never raises.
    """

    def __init__(
        self,
        plan: ProfilePlan,
        run_dir: Path,
        target_pid: int,
        load_s: float,
        cpus: list[int] | None = None,
    ) -> None:
        self.plan = plan
        self.dir = run_dir / PROFILE_DIR
        self.target_pid = target_pid
        start, end = plan.window if plan.window else (0.0, load_s)
        self.start_s, self.end_s = start, min(end, load_s)
        self.cpus = cpus
        self.proc: procs.Proc | None = None
        self.started_at: float | None = None
        self.info: dict[str, Any] = {"enabled": True, **plan.to_dict(), "status": "pending"}
        self.binary = find_py_spy()
        if self.start_s >= load_s:
            self.info.update(status="skipped", error="the window starts after the load ends")
        elif self.binary is None:
            self.info.update(status="unavailable", error="py-spy not found (pip install py-spy)")

    def poll(self, elapsed_s: float) -> None:
        """Start py-spy once `elapsed_s` (since the load started) reaches the window."""
        if self.info["status"] != "pending" or elapsed_s < self.start_s:
            return
        self.dir.mkdir(exist_ok=True)
        duration = max(1, round(self.end_s - max(elapsed_s, self.start_s)))
        cmd = [
            str(self.binary),
            "record",
            "--pid",
            str(self.target_pid),
            "--subprocesses",
            "--format",
            "speedscope",
            "--output",
            str(self.dir / SPEEDSCOPE),
            "--rate",
            str(self.plan.rate_hz),
            "--duration",
            str(duration),
            "--nonblocking",  # no pausing: lower overhead, and idle threads are seen as idle
        ]
        if self.plan.gil:
            cmd.append("--gil")
        try:
            self.proc = procs.start(
                pin_command(cmd, self.cpus), name="py-spy", log_path=self.dir / PROFILE_LOG
            )
        except OSError as exc:
            self.info.update(status="failed", error=f"cannot start py-spy: {exc}")
            return
        self.started_at = time.time()
        self.info.update(status="running", command=cmd, started_at=self.started_at)

    def finish(self, roles: dict[int, str] | None = None) -> dict[str, Any]:
        """Stop py-spy (SIGINT makes it write its file), check the output, build the table."""
        try:
            self.stop()
            if self.info["status"] == "running":
                self._check(roles or {})
        except Exception as exc:  # noqa: BLE001 - a profile must never fail the run
            self.info.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        if self.info["status"] == "pending":
            self.info.update(status="skipped", error="the load ended before the window began")
        return self.info

    def stop(self) -> None:
        """Stop py-spy if it runs (idempotent); it writes its file on SIGINT."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pgid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=30)
        procs.stop(proc, grace_s=5)
        self.info["exit_code"] = proc.popen.returncode
        self.info["ended_at"] = time.time()

    def _check(self, roles: dict[int, str]) -> None:
        out = self.dir / SPEEDSCOPE
        log = procs.log_tail(self.dir / PROFILE_LOG, 15)
        if not out.exists() or out.stat().st_size == 0:
            hint = f" ({PTRACE_HINT})" if re.search(r"permission|ptrace", log, re.I) else ""
            said = next((ln for ln in log.splitlines() if ln.startswith("Error")), "")
            self.info.update(
                status="failed",
                error=f"py-spy wrote no profile (exit code {self.info.get('exit_code')})"
                + (f": {said}" if said else "")
                + hint,
                log_tail=log,
            )
            return
        table = top_frames(load_speedscope(out), roles)
        write_top_frames(self.dir / TOP_FRAMES, table)
        self.info.update(
            status="ok",
            samples=sum(rows[0]["role_samples"] for rows in table.values() if rows),
            roles=sorted(table),
        )
        counts = re.search(r"Samples: (\d+) Errors: (\d+)", log)
        if counts:  # errors: stacks py-spy could not read consistently (--nonblocking)
            self.info["py_spy_samples"], self.info["py_spy_errors"] = map(int, counts.groups())
        problems = [line for line in log.splitlines() if line.startswith("Error")]
        if problems:
            self.info["warnings"] = "\n".join(problems)


def load_speedscope(path: Path) -> dict[str, Any]:
    """A speedscope file, or its gzipped copy (`.gz`, as the committed reference keeps it)."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as fh:
            return dict(json.load(fh))
    return dict(json.loads(path.read_text()))


def short_file(path: str) -> str:
    """A frame's file relative to site-packages, the stdlib or the checkout it was recorded in.

    The checkout is found by the project's own top folders, not by where this checkout lives:
    a profile recorded in another clone (the committed reference) must classify the same.
    """
    match = re.search(r"/(?:site-packages|lib/python3\.\d+)/(.+)$", path)
    if match:
        return match.group(1)
    starts = [m.end() for m in _PROJECT_DIR.finditer(path)]
    return path[starts[-1] :] if starts else path


def top_frames(
    speedscope: dict[str, Any], roles: dict[int, str], limit: int = 20
) -> dict[str, list[dict[str, Any]]]:
    """Per role: the `limit` functions with the largest self share, with their total share.

    A function is (name, file) with line numbers merged. py-spy's synthetic root frames
    (`process <pid>:...`, thread names) are skipped. The pid in each profile's name
    ("Process <pid> Thread <tid>") picks the role; an unknown pid counts as `pid <pid>`.
    """
    frames = speedscope["shared"]["frames"]
    keys: list[tuple[str, str] | None] = []
    for f in frames:
        if not f.get("file") and re.match(r"(process|thread) ", f.get("name", "")):
            keys.append(None)
        else:
            keys.append((f.get("name", "?"), short_file(f.get("file", ""))))
    self_count: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    total_count: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    samples: Counter[str] = Counter()
    for profile in speedscope.get("profiles", []):
        match = _PROFILE_NAME.match(profile.get("name", ""))
        pid = int(match.group(1)) if match else -1
        role = roles.get(pid, f"pid {pid}")
        for stack in profile.get("samples", []):
            names = [keys[i] for i in stack if keys[i] is not None]
            if not names:
                continue
            samples[role] += 1
            self_count[role][names[-1]] += 1  # type: ignore[index]
            for key in set(names):
                total_count[role][key] += 1  # type: ignore[index]
    table: dict[str, list[dict[str, Any]]] = {}
    for role in sorted(samples):
        n = samples[role]
        rows = []
        for rank, (key, count) in enumerate(self_count[role].most_common(limit), start=1):
            rows.append(
                {
                    "role": role,
                    "rank": rank,
                    "function": key[0],
                    "file": key[1],
                    "self_samples": count,
                    "self_share": round(count / n, 4),
                    "total_samples": total_count[role][key],
                    "total_share": round(total_count[role][key] / n, 4),
                    "role_samples": n,
                }
            )
        table[role] = rows
    return table


def write_top_frames(path: Path, table: dict[str, list[dict[str, Any]]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=TOP_COLUMNS)
        writer.writeheader()
        for rows in table.values():
            writer.writerows(rows)


def read_top_frames(path: Path) -> dict[str, list[dict[str, Any]]]:
    table: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            table[row["role"]].append(
                {
                    "function": row["function"],
                    "file": row["file"],
                    "self_share": float(row["self_share"]),
                    "total_share": float(row["total_share"]),
                    "role_samples": int(row["role_samples"]),
                }
            )
    return dict(table)


def format_top_frames(table: dict[str, list[dict[str, Any]]], limit: int = 8) -> str:
    lines = []
    for role, rows in table.items():
        if not rows:
            continue
        lines.append(f"{role} ({rows[0]['role_samples']} samples)   self%  total%")
        for row in rows[:limit]:
            where = f"{row['function']} ({row['file']})"
            shares = f"{100 * row['self_share']:5.1f}  {100 * row['total_share']:5.1f}"
            lines.append(f"  {where[:70]:<70} {shares}")
    return "\n".join(lines)
