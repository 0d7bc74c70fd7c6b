"""Which CPUs the system under test and the load generator get, and how many locust processes.

On a machine with enough CPUs the two are pinned to disjoint sets of whole cores (SMT siblings
stay together), so the generator never steals the server's CPU time and vice versa; the
generator gets a quarter of the cores (at least one), the server the rest, and locust runs one
worker process per generator CPU when it has more than one. Below `MIN_CPUS_TO_PIN` CPUs no
pinning is worth having: both share every CPU, and the run says so plainly.

Pinning is applied by `archlab.host.pin`, an exec wrapper, so the affinity is set before the child
starts and every process it forks inherits it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

MIN_CPUS_TO_PIN = 4


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,6' -> [0, 1, 2, 3, 6] (the kernel's cpulist format)."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad CPU list {text!r}; use e.g. 0-3,6")
        start, end = int(lo), int(hi) if sep else int(lo)
        if end < start:
            raise ValueError(f"bad CPU range {part!r} in {text!r}")
        cpus.update(range(start, end + 1))
    if not cpus:
        raise ValueError(f"empty CPU list {text!r}")
    return sorted(cpus)


def format_cpu_list(cpus: list[int]) -> str:
    """[0, 1, 2, 3, 6] -> '0-3,6'."""
    parts: list[str] = []
    run: list[int] = []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def cores(usable: list[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> list[list[int]]:
    """The usable CPUs grouped by physical core (SMT siblings together), in CPU order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for cpu in usable:
        try:
            text = (sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text()
            siblings = tuple(c for c in parse_cpu_list(text.strip()) if c in usable)
        except (OSError, ValueError):
            siblings = (cpu,)
        groups.setdefault(siblings or (cpu,), []).append(cpu)
    return sorted((sorted(set(g)) for g in groups.values()), key=lambda g: g[0])


@dataclass(frozen=True)
class CpuPlan:
    """CPU sets (None = not pinned) and locust processes for one run."""

    sut: list[int] | None
    generator: list[int] | None
    processes: int
    shared: bool  # generator and system under test compete for the same CPUs
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "server": self.sut,
            "generator": self.generator,
            "shared": self.shared,
            "generator_processes": self.processes,
        }


def plan_cpus(
    usable: list[int],
    *,
    sut: list[int] | None = None,
    generator: list[int] | None = None,
    processes: int | None = None,
    pin: bool = True,
    sysfs: Path = Path("/sys/devices/system/cpu"),
) -> CpuPlan:
    """Decide the pinning. Explicit sets win; one given set implies the other is the rest."""
    usable = sorted(usable)
    if processes is not None and processes < 1:
        raise ValueError("--processes must be at least 1")
    for name, cpus in (("--sut-cpus", sut), ("--gen-cpus", generator)):
        if cpus is not None and not set(cpus) <= set(usable):
            raise ValueError(
                f"{name} {format_cpu_list(cpus)} is not within the usable CPUs "
                f"{format_cpu_list(usable)}"
            )
    if not pin:
        if sut is not None or generator is not None:
            raise ValueError("--no-pin cannot be combined with --sut-cpus/--gen-cpus")
        return _unpinned(usable, processes, "pinning switched off (--no-pin)")
    if sut is None and generator is None:
        if len(usable) < MIN_CPUS_TO_PIN:
            return _unpinned(usable, processes, None)
        groups = cores(usable, sysfs)
        if len(groups) < 2:
            return _unpinned(usable, processes, None)
        n_gen = max(1, math.ceil(len(groups) / 4))
        generator = [c for g in groups[-n_gen:] for c in g]
        sut = [c for g in groups[:-n_gen] for c in g]
    elif sut is None:
        sut = [c for c in usable if c not in set(generator or [])]
    elif generator is None:
        generator = [c for c in usable if c not in set(sut)]
    assert sut is not None and generator is not None
    if not sut or not generator:
        raise ValueError("both the system under test and the generator need at least one CPU")
    if set(sut) & set(generator):
        raise ValueError(
            f"--sut-cpus {format_cpu_list(sut)} and --gen-cpus {format_cpu_list(generator)} "
            "overlap; they must be disjoint (or use --no-pin to share every CPU)"
        )
    n_proc = processes if processes is not None else (len(generator) if len(generator) > 1 else 1)
    notes = []
    if n_proc > len(generator):
        notes.append(
            f"{n_proc} locust processes on {len(generator)} generator CPU(s): they compete"
        )
    return CpuPlan(
        sut=sorted(sut), generator=sorted(generator), processes=n_proc, shared=False, notes=notes
    )


def _unpinned(usable: list[int], processes: int | None, why: str | None) -> CpuPlan:
    reason = why or f"only {len(usable)} usable CPU(s), fewer than {MIN_CPUS_TO_PIN}"
    note = (
        f"load generator and system under test share the same {len(usable)} CPU(s) "
        f"(not pinned: {reason}): compare latency at equal offered load below saturation; do "
        "not read capacity (max throughput) off this run, derive it from server CPU-seconds "
        "per request"
    )
    return CpuPlan(sut=None, generator=None, processes=processes or 1, shared=True, notes=[note])


def pin_command(cmd: list[str], cpus: list[int] | None) -> list[str]:
    """`cmd` wrapped so that it (and all it forks) runs on `cpus`; unchanged when None."""
    if cpus is None:
        return list(cmd)
    return [sys.executable, "-m", "archlab.host.pin", format_cpu_list(cpus), "--", *cmd]


def set_affinity(cpus: list[int] | None) -> list[int] | None:
    """Pin this process to `cpus`; returns the previous set (None when nothing changed)."""
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        return None
    previous = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus)
    return previous


def pin_threads(pid: int, cpus: list[int], proc_root: str = "/proc") -> int:
    """Every thread of the running process `pid` on `cpus`: how many threads moved.

    Linux keeps an affinity per thread, and `sched_setaffinity(pid)` moves only the thread
    whose id is `pid`; a thread started later inherits its creator's, so moving them all once
    moves the process for good.
    """
    try:
        tids = [int(tid) for tid in os.listdir(f"{proc_root}/{pid}/task")]
    except OSError:
        return 0
    moved = 0
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that exited meanwhile
            os.sched_setaffinity(tid, cpus)
            moved += 1
    return moved
