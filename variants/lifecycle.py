"""Process lifecycle plumbing shared by every deployer that supervises processes.

`die_with_parent` keeps a supervisor's children from outliving it, however it dies;
`record` appends one event (a start, a death, a restart) to `<state-dir>/lifecycle.jsonl`,
the file the harness copies into the run and reads deaths and recovery times from.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

LIFECYCLE_FILE = "lifecycle.jsonl"
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux).

    If the parent is already gone (it died before prctl took effect), exit at once.
    """
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the getppid check remains
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def record(path: Path | None, **event: Any) -> dict[str, Any]:
    """Append one JSON line (one write, atomic with O_APPEND across processes)."""
    entry = {"time": round(time.time(), 6), **event}
    if path is not None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())
        finally:
            os.close(fd)
    return entry
