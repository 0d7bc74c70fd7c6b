"""CPU isolation between process groups: each group's processes on CPUs of their own.

A thread cannot be given a core of its own inside one CPython process, but a process can: its
CPU affinity (`sched_setaffinity`) is inherited by every thread it starts, every child it
forks and every program it execs. So a group whose work comes in bursts (the recommendation
engine's model rebuilds and full collections, a CPU hog) can be kept off the CPUs that serve
the front. The supervisor confines each child as it starts it (`confine`); the harness's own
pinning (`archlab run --pin`) decides which CPUs the supervisor may hand out.

A cgroup cpuset or CPU quota would do the same with a hard limit, but needs a delegated
cgroup (root, or systemd), which neither a laptop nor CI reliably gives; affinity needs
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from variants.placement import Placement

OFF = "off"
"""The `cpu_isolation` knob's value for no confinement beyond the placement's own `cpus`."""


class IsolationError(ValueError):
    """The isolation asked for cannot be arranged on the CPUs this process may use."""


def split(
    placement: Placement, alone: str, cpus: Sequence[int] | None = None
) -> dict[str, tuple[int, ...]]:
    """group -> CPUs: `alone` on the last of `cpus` (default: this process's), every other group
    on the rest."""
    usable = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    if alone not in placement.isolatable:
        raise IsolationError(
            f"cannot isolate {alone!r}: choose one of {', '.join(placement.isolatable)}"
        )
    if len(usable) < 2:
        raise IsolationError(
            f"isolating {alone} needs 2 CPUs or more; this process may use {usable}"
        )
    own, rest = (usable[-1],), tuple(usable[:-1])
    return {name: own if name == alone else rest for name in placement.groups}


def confine(cpus: Sequence[int]) -> None:
    """Run this process (and what it starts from now on) on `cpus`; nothing if empty."""
    if cpus:
        os.sched_setaffinity(0, cpus)
