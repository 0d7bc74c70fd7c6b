"""Forking a member of the family: what every child does first, and how it always exits.

A child is forked from the postmaster without exec, so it starts with the postmaster's
imported modules (shared copy-on-write; what the collector does around the fork is the
`fork_gc` setting, `variants.forkgc`: by default `gc.freeze()` before the fork keeps the
child's collections from touching, and so copying, those pages) and inherits the
shared-memory mappings. It then
arranges to die with the postmaster (`PR_SET_PDEATHSIG`, checked against a race with the
postmaster's own death), drops the postmaster's signal handling, names itself in `ps`, and
installs its own telemetry. It leaves only through `os._exit`: never through the
postmaster's code, its `atexit` hooks or its buffered files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable

import setproctitle

from variants import forkgc
from variants import telemetry as _telemetry
from variants.lifecycle import die_with_parent

EXIT_FAILED = 70
_RESET = (
    signal.SIGCHLD,
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def title(text: str) -> str:
    return _telemetry.process_title(text)


def log_format(role: str) -> logging.Formatter:
    return logging.Formatter(f"%(asctime)s [%(process)d] {role} %(levelname)s %(name)s %(message)s")


def fork(
    role: str,
    name: str,
    body: Callable[[], int],
    block: frozenset[int] = frozenset(),
    *,
    telemetry: bool = True,
    fork_gc: str = forkgc.FREEZE,
) -> int:
    """Fork a child that runs `body()` as `role` (its telemetry role) titled `name`; its pid.

    `block`: signals the child takes synchronously (`sigtimedwait`). They are blocked before
    its first thread starts: the kernel hands a process-directed signal to any thread that
    does not block it, where its default action would end the process.
    `telemetry=False`: `body` execs a program that declares its own role (no Python GC rows
    under its pid).
    `fork_gc`: what the collector does around the fork (`variants.forkgc.SETTINGS`).
    """
    forkgc.before_fork(fork_gc)
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = EXIT_FAILED
    try:
        forkgc.in_child(fork_gc)
        signal.set_wakeup_fd(-1)
        for sig in _RESET:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, block)
        die_with_parent(parent)
        setproctitle.setproctitle(title(name))
        for handler in logging.getLogger().handlers:
            handler.setFormatter(log_format(name))
        recorder = _telemetry.install(role) if telemetry else None
        try:
            code = body()
        finally:
            if recorder is not None:
                recorder.flush()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    raise AssertionError("unreachable")
