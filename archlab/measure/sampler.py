"""Sample the CPU and memory of a process tree at an interval, in a background thread.

Two samplers share the tree walk and the CPU arithmetic:

- `TreeSampler` watches the load generator (locust and its worker processes) and writes
  `generator_cpu.csv`. locust's own CPU warning is sampled every 10 s and reads 0 at first, so
  short runs never warn; a saturated generator is flagged in the summary.
- `ProcessSampler` watches the system under test: the variant's whole process tree, re-walked
  at every tick (processes come and go on restarts), plus every process that declared a role in
  the telemetry directory even if it left the tree. Each row is labelled by role (see
  `RoleResolver`) and carries CPU user/system seconds, RSS, USS, PSS, swap, threads and context
  switches, and the resident pages by who maps them (shared/private, clean/dirty):
  `processes.csv`, from which the summary derives CPU-seconds per request and memory.

Memory beyond RSS comes from one read of `/proc/PID/smaps_rollup` (`smaps_rollup`), the file
psutil's `memory_full_info` reads for USS, PSS and swap anyway; it also splits the resident
pages into Shared_Clean, Shared_Dirty, Private_Clean and Private_Dirty, which is what shows a
forked child's inherited pages being copied (copy-on-write: shared becomes private dirty).
That read walks the process's page tables in the kernel: over the distributed variant's 13
processes it was half of a tick's CPU, and the sampler as a whole cost the harness 1.5 % of a
CPU, +6.5 % on the variant's own CPU at 100 req/s (`archlab bench instruments`). So it comes
every `memory_interval_s`, and whenever a process is new, for every process of that tick (a
"memory tick": a process's first row always has them); the other ticks leave those columns
empty and carry CPU, RSS, threads and context switches only.

CPU times are cumulative since each process started (psutil), so CPU-seconds over any window are
exact differences; `cpu_percent` is the share of one CPU over the last interval (empty on a
process's first row). A process that lives less than one interval is missed; one that dies loses
its CPU since its last sample.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from inotify_simple import INotify, flags

from archlab.rundir import CPU_COLUMNS, PROCESS_COLUMNS, SAMPLED_DECLARED, SAMPLED_TICK
from variants import telemetry

MEMORY_INTERVAL_S = 5.0
"""How often the process sampler reads each process's smaps_rollup (USS, PSS, swap, the page
split), by default; every tick reads CPU and RSS."""
DISCOVERY_POLL_S = 0.05  # without inotify: how often to look for newly declared processes
ROOT_ROLE = "root"  # the process the harness started, when it declared no role
UNLABELLED_ROLE = "unlabelled"  # any other process that declared no role
_TITLE = re.compile(re.escape(telemetry.TITLE_PREFIX) + r"([A-Za-z0-9_.-]+)")


ROLLUP_FIELDS = ("Pss", "Swap", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty",
                 "Private_Hugetlb")  # fmt: skip


def smaps_rollup(pid: int, proc_root: str = "/proc") -> dict[str, int] | None:
    """ROLLUP_FIELDS of a process in bytes, from `smaps_rollup` (or, where the kernel refuses
    it for a live process, the sum over `smaps`); None when neither can be read."""
    for name in ("smaps_rollup", "smaps"):
        try:
            with open(f"{proc_root}/{pid}/{name}", "rb") as fh:
                text = fh.read()
        except OSError:
            continue
        found = dict.fromkeys(ROLLUP_FIELDS, 0)
        for line in text.splitlines():
            key, sep, rest = line.partition(b":")
            field = key.decode("ascii", "replace")
            if sep and field in found:
                found[field] += int(rest.split()[0]) * 1024  # "<n> kB"
        return found
    return None


class ParentMap:
    """Every process's parent, kept from one tick to the next, to find a process's descendants.

    psutil's `children(recursive=True)` reads the stat file of every process on the machine at
    every call: 3 of the 19 ms of the harness's CPU that one tick over the distributed variant's
    13 processes took on this machine (~70 processes in all). This reads the parent only of
    a process it has not seen, and of the tree's members (a member whose parent died is
    reparented out of the tree); every `REFRESH_EVERY`-th walk it reads them all again, so a
    pid reused within one tick is found at the latest then.
    """

    REFRESH_EVERY = 10

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._parent: dict[int, int] = {}
        self._start: dict[int, int] = {}
        self._members: set[int] = set()
        self._walks = 0

    def _read_parent(self, pid: int) -> int | None:
        try:
            with open(f"{self.proc_root}/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            return None
        # "pid (comm) state ppid ... starttime (22nd) ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split(b" ", 20)
        if len(fields) < 2:
            return None
        if len(fields) > 19 and fields[19].isdigit():
            self._start[pid] = int(fields[19])
        return int(fields[1])

    def start_of(self, member: int) -> int | None:
        """When a member of the last walk started (clock ticks after boot, from the stat read
        in that walk): the same pid with another start is another process."""
        return self._start.get(member) if member in self._members else None

    def descendants(self, root: int) -> set[int]:
        """`root` and every process below it that is alive now (empty when root is gone)."""
        try:
            listing = {int(name) for name in os.listdir(self.proc_root) if name.isdigit()}
        except OSError:
            return set()
        refresh = self._walks % self.REFRESH_EVERY == 0
        self._walks += 1
        parent = {pid: ppid for pid, ppid in self._parent.items() if pid in listing}
        for pid in listing:
            if refresh or pid not in parent or pid in self._members:
                ppid = self._read_parent(pid)
                if ppid is None:
                    parent.pop(pid, None)
                else:
                    parent[pid] = ppid
        self._parent = parent
        self._start = {pid: t for pid, t in self._start.items() if pid in parent}
        children: dict[int, list[int]] = {}
        for pid, ppid in parent.items():
            children.setdefault(ppid, []).append(pid)
        found: set[int] = {root} if root in parent else set()
        todo = list(found)
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        self._members = found
        return found


@dataclass
class _Seen:
    proc: psutil.Process
    create_time: float
    last_time: float | None = None
    last_cpu: float | None = None
    percent: float | None = None  # over the interval before the last row
    start_ticks: int | None = None  # the tree walk's start time of it, to tell a reused pid
    name: str | None = None  # psutil's name (a 15-character comm read on with cmdline)


class _TreeWalker(threading.Thread):
    """Base: walk the tree of `root_pid` every `interval_s` and write one CSV row per process."""

    columns: tuple[str, ...] = ()

    def __init__(self, root_pid: int, path: Path, interval_s: float = 1.0) -> None:
        super().__init__(name=f"sampler-{root_pid}", daemon=True)
        self.root_pid = root_pid
        self.path = path
        self.interval_s = interval_s
        self._stop_event = threading.Event()
        self._seen: dict[int, _Seen] = {}
        self.latest: dict[int, float] = {}  # pid -> last cpu_percent, for progress lines
        self._skip: set[int] = set()  # declared pids found dead (or not ours) by discovery
        self._tree = ParentMap()
        self.error: str | None = None

    def _extra_pids(self) -> set[int]:
        return set()

    def _processes(self) -> list[psutil.Process]:
        """The tree's processes and the extra ones: a process sampled before is the same
        psutil object, known by the start time the tree walk read (not built, and its stat
        read, again each tick)."""
        found: dict[int, psutil.Process] = {}
        for pid in self._tree.descendants(self.root_pid):
            seen, start = self._seen.get(pid), self._tree.start_of(pid)
            if seen is not None and start is not None and seen.start_ticks == start:
                found[pid] = seen.proc
                continue
            with contextlib.suppress(psutil.Error):
                found[pid] = psutil.Process(pid)
        for pid in self._extra_pids() - set(found):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if self._extra_ok(proc):
                    found[pid] = proc
        return list(found.values())

    def _extra_ok(self, proc: psutil.Process) -> bool:
        """Whether a process found outside the tree belongs to the system under test."""
        return True

    def _missed(self, pid: int) -> None:
        """A declared process that exited before it could be sampled."""

    def _wait(self, timeout_s: float) -> None:
        """Until `timeout_s` has passed or the sampler is stopped (or, in a subclass, there is
        something to discover)."""
        self._stop_event.wait(timeout_s)

    def run(self) -> None:
        try:
            with self.path.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(self.columns)
                next_full = time.monotonic()
                while not self._stop_event.is_set():
                    if time.monotonic() >= next_full:
                        self._tick(writer)
                        next_full = time.monotonic() + self.interval_s
                        fh.flush()
                    elif self._discover(writer):
                        fh.flush()
                    self._wait(max(0.0, next_full - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - a broken sampler must not break the run
            self.error = f"{type(exc).__name__}: {exc}"

    def _discover(self, writer: Any) -> bool:
        """Sample, between full ticks, processes that just declared a role (short-lived ones)."""
        wrote = False
        for pid in self._extra_pids() - set(self._seen) - self._skip:
            try:
                proc = psutil.Process(pid)
                if not self._extra_ok(proc):
                    self._skip.add(pid)
                    continue
                seen = self._seen[pid] = _Seen(proc, proc.create_time())
                row = self._row(seen, time.time())
            except psutil.Error:
                self._skip.add(pid)  # gone already (a full tick still finds a reused pid)
                self._missed(pid)
                continue
            if row is not None:
                writer.writerow(row)
                wrote = True
        return wrote

    def _sample_one(self, proc: psutil.Process, now: float) -> tuple[Any, ...] | None:
        create_time = proc.create_time()
        seen = self._seen.get(proc.pid)
        if seen is None or seen.create_time != create_time:  # new, or the pid was reused
            start = self._tree.start_of(proc.pid)
            seen = self._seen[proc.pid] = _Seen(proc, create_time, start_ticks=start)
        elif seen.start_ticks is None:  # first sampled by discovery, outside a tree walk
            seen.start_ticks = self._tree.start_of(proc.pid)
        return self._row(seen, now)

    def _starting(self, procs: list[psutil.Process]) -> None:
        """Called with a tick's processes before it samples them."""

    def _tick(self, writer: Any) -> None:  # a csv writer
        now = time.time()
        latest: dict[int, float] = {}
        found = self._processes()
        self._starting(found)
        for proc in found:
            try:
                row = self._sample_one(proc, now)
            except psutil.Error:
                continue
            if row is not None:
                writer.writerow(row)
            seen = self._seen[proc.pid]
            if seen.percent is not None:
                latest[proc.pid] = seen.percent
        self.latest = latest
        alive = {p for p, s in self._seen.items() if s.last_time == now}
        for pid in set(self._seen) - alive:
            if not psutil.pid_exists(pid):
                del self._seen[pid]

    @staticmethod
    def _cpu(seen: _Seen, now: float, cpu_s: float) -> str:
        """cpu_percent over the interval since this process's previous row ('' for the first).

        Also moves the process's baseline to (now, cpu_s).
        """
        seen.percent = None
        if seen.last_time is not None and seen.last_cpu is not None and now > seen.last_time:
            seen.percent = max(0.0, 100 * (cpu_s - seen.last_cpu) / (now - seen.last_time))
        seen.last_time, seen.last_cpu = now, cpu_s
        return "" if seen.percent is None else f"{seen.percent:.1f}"

    def _row(self, seen: _Seen, now: float) -> tuple[Any, ...] | None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10.0)


class TreeSampler(_TreeWalker):
    """The load generator: CPU and RSS per process (`generator_cpu.csv`).

    A process's first reading is only a baseline and is not written, as in schema 1.
    """

    columns = CPU_COLUMNS

    def _row(self, seen: _Seen, now: float) -> tuple[Any, ...] | None:
        proc = seen.proc
        with proc.oneshot():
            times = proc.cpu_times()
            rss = proc.memory_info().rss
            name = proc.name()
        first = seen.last_time is None
        percent = self._cpu(seen, now, times.user + times.system)
        if first:
            return None
        return (
            f"{now:.3f}",
            proc.pid,
            name,
            percent,
            rss,
            f"{times.user:.3f}",
            f"{times.system:.3f}",
        )


class RoleResolver:
    """Which role a process plays, from what the variant declared.

    In order: the file `<telemetry>/roles/<pid>` written by `variants.telemetry.install(role)`
    (ignored when older than the process: a reused pid); a process title starting with
    `archlab: <role>` (setproctitle); else `root` for the process the harness started and
    `unlabelled` for any other. A role declared in a file is kept for the process's lifetime;
    one read from the title is not, because a forked child wears its parent's title until it
    sets its own (a backend sampled in that window would stay `postmaster`).
    """

    def __init__(self, roles_dir: Path | None, root_pid: int) -> None:
        self.roles_dir = roles_dir
        self.root_pid = root_pid
        self._known: dict[tuple[int, float], str] = {}

    def declared_pids(self) -> set[int]:
        if self.roles_dir is None:
            return set()
        try:
            return {int(name) for name in os.listdir(self.roles_dir) if name.isdigit()}
        except OSError:
            return set()

    def role(self, proc: psutil.Process, create_time: float) -> str:
        key = (proc.pid, create_time)
        known = self._known.get(key)
        if known is not None:
            return known
        declared = self.declared(proc.pid, create_time)
        if declared is not None:
            self._known[key] = declared
            return declared
        with contextlib.suppress(psutil.Error):
            match = _TITLE.match(" ".join(proc.cmdline()))
            if match:
                return match.group(1)
        return ROOT_ROLE if proc.pid == self.root_pid else UNLABELLED_ROLE

    def declared(self, pid: int, create_time: float) -> str | None:
        """The role in the process's roles file, unless the file predates the process."""
        if self.roles_dir is None:
            return None
        path = self.roles_dir / str(pid)
        try:
            if path.stat().st_mtime < create_time - 1.0:
                return None  # written by an earlier process with the same pid
            role = path.read_text().strip()
        except OSError:
            return None
        return role or None


class RoleWatch:
    """Wakes the sampler when a process declares its role: inotify on the roles directory
    (`telemetry.install` renames each file into place), so between ticks the sampler sleeps
    instead of polling. Polling the directory every 50 ms cost the harness 3.6 ms of CPU per
    second on the 2-CPU VM, more than the ticks' reads once smaps came every 5 s."""

    def __init__(self, roles_dir: Path) -> None:
        roles_dir.mkdir(parents=True, exist_ok=True)
        self._inotify = INotify()
        self._inotify.add_watch(roles_dir, flags.MOVED_TO | flags.CLOSE_WRITE)
        self._wake_r, self._wake_w = os.pipe()
        self._poll = select.poll()
        self._poll.register(self._inotify.fileno(), select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)

    def wait(self, timeout_s: float) -> None:
        """Until a role file appears, `wake` is called, or `timeout_s` has passed."""
        for fd, _event in self._poll.poll(timeout_s * 1000):
            if fd == self._inotify.fileno():
                self._inotify.read(timeout=0)  # what came does not matter: discovery lists
            else:
                os.read(self._wake_r, 64)

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def close(self) -> None:
        self._inotify.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class ProcessSampler(_TreeWalker):
    """The system under test: every process of the variant, by role (`processes.csv`)."""

    columns = PROCESS_COLUMNS

    def __init__(
        self,
        root_pid: int,
        path: Path,
        interval_s: float = 1.0,
        roles_dir: Path | None = None,
        memory_interval_s: float = MEMORY_INTERVAL_S,
    ) -> None:
        super().__init__(root_pid, path, interval_s)
        self.roles = RoleResolver(roles_dir, root_pid)
        self.sampled_pids: set[int] = set()
        self.missed: dict[int, str] = {}  # pid -> role: declared, exited before a sample
        self.memory_interval_s = memory_interval_s
        self._next_memory = 0.0  # monotonic: the first tick is a memory tick
        self._memory_now = True
        self._sampled = SAMPLED_DECLARED  # SAMPLED_TICK while a tick runs
        self._watch: RoleWatch | None = None
        if roles_dir is not None:
            try:
                self._watch = RoleWatch(roles_dir)
            except OSError:  # no inotify left (fs.inotify.max_user_instances): poll instead
                self._watch = None

    def _wait(self, timeout_s: float) -> None:
        if self._watch is not None:
            if not self._stop_event.is_set():
                self._watch.wait(timeout_s)
        elif self.roles.roles_dir is not None:
            self._stop_event.wait(min(timeout_s, DISCOVERY_POLL_S))
        else:
            super()._wait(timeout_s)

    def _starting(self, procs: list[psutil.Process]) -> None:
        """A memory tick when it is time, or when a process is new: a new process's first row
        reads memory, and a tick reads it for all of its processes or for none."""
        now = time.monotonic()
        new = False
        for proc in procs:
            seen = self._seen.get(proc.pid)
            with contextlib.suppress(psutil.Error):
                new = new or seen is None or seen.create_time != proc.create_time()
        self._memory_now = new or now >= self._next_memory
        if self._memory_now:
            # half a tick early, so a tick that runs a little late does not skip its turn
            self._next_memory = now + self.memory_interval_s - self.interval_s / 2

    def _tick(self, writer: Any) -> None:
        self._sampled = SAMPLED_TICK
        try:
            super()._tick(writer)
        finally:
            self._memory_now = True  # what discovery samples between ticks: first rows
            self._sampled = SAMPLED_DECLARED

    def _extra_pids(self) -> set[int]:
        return self.roles.declared_pids()

    def _extra_ok(self, proc: psutil.Process) -> bool:
        # a role file older than the process was left by an earlier process with that pid
        return self.roles.declared(proc.pid, proc.create_time()) is not None

    def _missed(self, pid: int) -> None:
        if self.roles.roles_dir is not None and pid not in self.sampled_pids:
            with contextlib.suppress(OSError):
                role = (self.roles.roles_dir / str(pid)).read_text().strip()
                self.missed.setdefault(pid, role)

    def _row(self, seen: _Seen, now: float) -> tuple[Any, ...] | None:
        row = self._full_row(seen, now)
        if row is not None:
            self.sampled_pids.add(seen.proc.pid)
        return row

    def stop(self) -> None:
        self._stop_event.set()
        if self._watch is not None:
            self._watch.wake()
        super().stop()
        if self._watch is not None and not self.is_alive():
            self._watch.close()
        for pid in self.roles.declared_pids() - self.sampled_pids:
            self._missed(pid)

    def _full_row(self, seen: _Seen, now: float) -> tuple[Any, ...] | None:
        proc = seen.proc
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            times = proc.cpu_times()
            mem = proc.memory_info()
            pages = smaps_rollup(proc.pid) if self._memory_now else None
            ctx = proc.num_ctx_switches()
            if seen.name is None or self._memory_now:
                seen.name = proc.name()
            row_head = (proc.ppid(), seen.name, proc.num_threads())
        percent = self._cpu(seen, now, times.user + times.system)
        ppid, name, threads = row_head
        if pages is None:  # not a memory tick, or not ours to read: RSS only
            uss = pss = swap = ""
            split: tuple[int | str, ...] = ("",) * 4
        else:
            uss = pages["Private_Clean"] + pages["Private_Dirty"] + pages["Private_Hugetlb"]
            pss, swap = pages["Pss"], pages["Swap"]
            split = tuple(pages[k] for k in ROLLUP_FIELDS[2:6])
        return (
            f"{now:.3f}",
            proc.pid,
            ppid,
            self.roles.role(proc, seen.create_time),
            name,
            f"{seen.create_time:.3f}",
            f"{times.user:.3f}",
            f"{times.system:.3f}",
            percent,
            mem.rss,
            uss,
            pss,
            swap,
            threads,
            ctx.voluntary,
            ctx.involuntary,
            *split,
            self._sampled,
        )


@contextlib.contextmanager
def sampling(root_pid: int, path: Path, interval_s: float = 1.0) -> Iterator[TreeSampler]:
    """Run a TreeSampler (the load generator) for the duration of the with-block."""
    sampler = TreeSampler(root_pid, path, interval_s)
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


@contextlib.contextmanager
def sampling_processes(
    root_pid: int,
    path: Path,
    interval_s: float = 1.0,
    roles_dir: Path | None = None,
    memory_interval_s: float = MEMORY_INTERVAL_S,
) -> Iterator[ProcessSampler]:
    """Run a ProcessSampler (the system under test) for the duration of the with-block."""
    sampler = ProcessSampler(root_pid, path, interval_s, roles_dir, memory_interval_s)
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()
