"""The family's shared memory: one sealed read-only catalog segment, one writable control segment.

Both are `memfd`s: anonymous shared memory that no path names, so nothing leaks when the
postmaster is killed and each process's `/proc/<pid>/maps` shows the very same segment
(`/memfd:archlab-catalog`). The postmaster maps them before forking; children inherit the
mappings, so a backend reads the catalog with no IPC, no copy and no attach step.

The catalog segment is sealed (`F_SEAL_WRITE`, `F_SEAL_GROW`, `F_SEAL_SHRINK`) once built
and mapped `PROT_READ`: the kernel refuses every write from every process, so it cannot be
corrupted and survives a crash-and-restart unchanged. The postmaster maps it with
`MAP_POPULATE`, so every page is resident and already mapped once: a child's view of it is
shared, never private, and the catalog counts once in USS/PSS however many backends read it.

The control segment is PostgreSQL's ProcArray in miniature: a header (magic, generation,
pid of the lock holder) and one slot per process (pid, role, backend number, state, start
time, requests served). Every access goes through `locked()`, one process-shared lock, the
way an LWLock guards a shared structure. A process killed while holding it leaves it held
and the slot it was writing half-written: that is what the `crash-restart-all` policy
repairs, by building a new segment and a new lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import multiprocessing
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

CATALOG_NAME = "archlab-catalog"
CONTROL_NAME = "archlab-control"
_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


class SealedSegment:
    """An immutable shared segment: a memfd filled once, sealed, mapped read-only."""

    def __init__(self, name: str, fill: Callable[[int], None]) -> None:
        """`fill(fd)` writes the contents (e.g. in a child process, to keep this heap clean)."""
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            fill(fd)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            self.size = os.fstat(fd).st_size
            if self.size == 0:
                raise ValueError(f"segment {name} is empty")
            self.map = mmap.mmap(
                fd, self.size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ
            )
        finally:
            os.close(fd)  # the mapping keeps the memory alive
        self.name = name

    def close(self) -> None:
        self.map.close()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


STATES = ("free", "starting", "ok", "down", "stopping")
STATE_CODES = {name: i for i, name in enumerate(STATES)}

_MAGIC = b"ARCHCTL1"
_HDR = struct.Struct("=8sIiI")  # magic, generation, lock holder pid (0: none), slots
_SLOT = struct.Struct("=iBBHdQ")  # pid, role, state, backend number, started at, requests
_SLOT_SIZE = 32
_HDR_SIZE = 32
_HOLDER_OFFSET = 12


OWNER_TIMEOUT_S = 1.0


class LockTimeout(Exception):
    """The control segment's lock stayed held: its holder is stuck or died holding it."""


@dataclass(frozen=True)
class Slot:
    index: int
    pid: int
    role: str
    state: str
    number: int
    started_at: float
    requests: int


class ControlSegment:
    """The writable shared process table and the lock that guards it."""

    def __init__(self, slots: int, generation: int, numbered: str, fixed: tuple[str, ...]) -> None:
        """`numbered`: the role of the many backends; `fixed`: one slot per other role."""
        self.numbered = numbered
        self.fixed = fixed
        # role codes in slots; 0 marks a free slot
        self.role_codes = {numbered: 1, **{role: i + 2 for i, role in enumerate(fixed)}}
        self.role_names = {code: role for role, code in self.role_codes.items()}
        self.slots = slots
        self.generation = generation
        size = _HDR_SIZE + slots * _SLOT_SIZE
        fd = os.memfd_create(CONTROL_NAME, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            self.map: Any = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self.lock = multiprocessing.get_context("fork").Lock()
        _HDR.pack_into(self.map, 0, _MAGIC, generation, 0, slots)

    # -- the lock -------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[Any]:
        """Hold the segment's lock; the holder's pid is recorded for crash recovery.

        Backends wait as long as it takes, like PostgreSQL's for an LWLock; the postmaster
        passes a timeout (`OWNER_TIMEOUT_S`), because a lock left held by a dead process
        must never hang the one process that can repair it.
        """
        if not self.lock.acquire(timeout=timeout):
            raise LockTimeout(f"the lock was not released in {timeout} s (held by {self.holder()})")
        struct.pack_into("=i", self.map, _HOLDER_OFFSET, os.getpid())
        try:
            yield self.map
        finally:
            struct.pack_into("=i", self.map, _HOLDER_OFFSET, 0)
            self.lock.release()

    def holder(self) -> int:
        return struct.unpack_from("=i", self.map, _HOLDER_OFFSET)[0]

    def recover_lock(self, dead_pid: int) -> bool:
        """Release the lock if `dead_pid` died holding it (what `restart-one` must do)."""
        if dead_pid == 0 or self.holder() != dead_pid:
            return False
        struct.pack_into("=i", self.map, _HOLDER_OFFSET, 0)
        with contextlib.suppress(ValueError):
            self.lock.release()
        return True

    # -- slots: the postmaster's writes (with a lock timeout), then the backends' -----------

    def aux_slot(self, role: str) -> int:
        """Auxiliaries have fixed slots, so their state survives their restarts."""
        return self.fixed.index(role)

    def claim(self, role: str, number: int, pid: int, state: str = "starting") -> int:
        """Put a new process in the first free slot (an auxiliary in its own); its index."""
        with self.locked(OWNER_TIMEOUT_S) as m:
            if role != self.numbered:
                index = self.aux_slot(role)
            else:
                for index in range(len(self.fixed), self.slots):
                    if m[_HDR_SIZE + index * _SLOT_SIZE + 4] == 0:
                        break
                else:
                    raise RuntimeError("the process table is full")
            _SLOT.pack_into(
                m,
                _HDR_SIZE + index * _SLOT_SIZE,
                pid,
                self.role_codes[role],
                STATE_CODES[state],
                number,
                time.time(),
                0,
            )
        return index

    def set_pid(self, index: int, pid: int) -> None:
        with self.locked(OWNER_TIMEOUT_S) as m:
            struct.pack_into("=i", m, _HDR_SIZE + index * _SLOT_SIZE, pid)

    def set_state(self, index: int, state: str) -> None:
        with self.locked(OWNER_TIMEOUT_S) as m:
            m[_HDR_SIZE + index * _SLOT_SIZE + 5] = STATE_CODES[state]

    def release(self, index: int, state: str = "free") -> int:
        """Mark a slot's process gone; returns the requests it served."""
        offset = _HDR_SIZE + index * _SLOT_SIZE
        with self.locked(OWNER_TIMEOUT_S) as m:
            pid, role, _, number, started, requests = _SLOT.unpack_from(m, offset)
            if state == "free":
                _SLOT.pack_into(m, offset, 0, 0, 0, 0, 0.0, 0)
            else:
                _SLOT.pack_into(m, offset, 0, role, STATE_CODES[state], number, started, 0)
        return requests

    def count_request(self, index: int) -> None:
        """A backend served one more request (its share of the shared statistics)."""
        offset = _HDR_SIZE + index * _SLOT_SIZE + 16
        with self.locked() as m:
            (n,) = struct.unpack_from("=Q", m, offset)
            struct.pack_into("=Q", m, offset, n + 1)

    def read(self) -> list[Slot]:
        """Every used slot, read consistently."""
        with self.locked() as m:
            raw = [_SLOT.unpack_from(m, _HDR_SIZE + i * _SLOT_SIZE) for i in range(self.slots)]
        return [
            Slot(i, pid, self.role_names[role], STATES[state], number, started, requests)
            for i, (pid, role, state, number, started, requests) in enumerate(raw)
            if role
        ]

    def aux_states(self) -> dict[str, str]:
        """Each auxiliary's state as the postmaster last recorded it."""
        with self.locked() as m:
            codes = [m[_HDR_SIZE + i * _SLOT_SIZE + 5] for i in range(len(self.fixed))]
        # a slot not claimed yet (a fresh segment) belongs to an auxiliary being started
        return {
            role: STATES[code] if code else "starting"
            for role, code in zip(self.fixed, codes, strict=True)
        }

    def close(self) -> None:
        self.map.close()
