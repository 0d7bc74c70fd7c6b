"""Contexts served by a native program behind the same contract: which exist, where their
binaries are, and the command line that starts one.

A placement group may say `engine = "rust"` instead of the default `"python"`; the group's
supervisor (the postmaster for an `ipc` or `http` group of a family, the launcher for a
service) then execs the program named here instead of running the Python context. The
program speaks the same IPC frames or the same `/rpc/<method>` JSON, owns the same store
(`<state-dir>/<context>.db`), and gives the same answers (tests/test_engine_golden.py).

The Rust engine is built by `make setup` (engines/recommendations-rs/setup.sh) from
Debian's packaged crates, offline; where no toolchain can be had the Python engine still
works and `binary` says why the native one cannot start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from variants import telemetry

if TYPE_CHECKING:
    from variants.placement import Placement

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("python", "rust")
"""Every engine a group may name; "python" is the shop's own code, in-process."""


@dataclass(frozen=True)
class NativeEngine:
    engine: str
    context: str
    folder: Path
    program: str

    @property
    def binary(self) -> Path:
        return self.folder / "target" / "release" / self.program

    @property
    def setup(self) -> Path:
        return self.folder / "setup.sh"


NATIVE: dict[tuple[str, str], NativeEngine] = {
    ("rust", "recommendations"): NativeEngine(
        "rust",
        "recommendations",
        ROOT / "engines" / "recommendations-rs",
        "archlab-recommendations",
    ),
}
"""(engine, context) -> the program that serves that context."""


class NativeUnavailable(RuntimeError):
    """The native engine's program is not built; the message says how to build it."""


def supports(engine: str, contexts: tuple[str, ...]) -> bool:
    """A group hosting `contexts` can run on `engine` (python: always; native: one context
    that has a program)."""
    return engine == "python" or (len(contexts) == 1 and (engine, contexts[0]) in NATIVE)


def engine_for(engine: str, context: str) -> NativeEngine:
    return NATIVE[(engine, context)]


def binary(engine: str, context: str) -> Path:
    """The built program, or NativeUnavailable saying how to build it."""
    native = engine_for(engine, context)
    if not native.binary.is_file():
        raise NativeUnavailable(
            f"the {engine} {context} engine is not built ({native.binary} is missing): "
            f"run `make setup` (or {native.setup})"
        )
    return native.binary


def unavailable_reason(engine: str = "rust", context: str = "recommendations") -> str | None:
    """Why the native engine cannot run here, or None when it can (tests skip on this)."""
    try:
        binary(engine, context)
    except NativeUnavailable as exc:
        return str(exc)
    return None


def argv(
    engine: str,
    context: str,
    *,
    role: str,
    state_dir: Path,
    rebuild_interval_s: float,
    serve: Mapping[str, str],
    peers: Mapping[str, str],
    call_timeout_ms: int | None = None,
    threads: int | None = None,
    parent_pid: int | None = None,
    ready_fd: int | None = None,
) -> list[str]:
    """The program's command line, argv[0] being its `ps` title (`archlab: <role>`).

    `serve`: {"socket": PATH} (IPC) or {"port": N} (HTTP); `peers`: for each context it calls,
    {"orders-socket": PATH} or {"orders-url": URL}.
    """
    args = [telemetry.process_title(role), "--role", role, "--state-dir", str(state_dir)]
    args += ["--rebuild-interval", f"{rebuild_interval_s:g}"]
    for key, value in (*serve.items(), *peers.items()):
        args += [f"--{key}", str(value)]
    for flag, value in (
        ("--call-timeout-ms", call_timeout_ms),
        ("--threads", threads),
        ("--parent-pid", parent_pid),
        ("--ready-fd", ready_fd),
    ):
        if value is not None:
            args += [flag, str(value)]
    binary(engine, context)  # fail here, with the reason, rather than in exec
    return args


def peer_args(
    placement: Placement, group: str, socket_dir: Path | None, urls: Mapping[str, str]
) -> dict[str, str]:
    """`--<context>-socket PATH` or `--<context>-url URL` for each context `group` calls, by
    the placement's transport (`urls`: group -> its base URL)."""
    from variants.peers import socket_path  # not at the top: peers -> placement -> here

    found = {}
    for context, host in placement.peers(group).items():
        if placement.reach(context) == "ipc" and socket_dir is not None:
            found[f"{context}-socket"] = str(socket_path(socket_dir, context))
        else:
            found[f"{context}-url"] = urls[host]
    return found


def standalone(
    engine: str,
    context: str,
    state_dir: Path,
    serve: Mapping[str, str],
    peers: Mapping[str, str],
    parent_pid: int | None = None,
) -> list[str]:
    """The program's command line with its path first and no timed rebuild, for a process
    that a benchmark or a test starts on its own (no supervisor to title it)."""
    args = argv(
        engine,
        context,
        role=context,
        state_dir=state_dir,
        rebuild_interval_s=0,
        serve=serve,
        peers=peers,
        parent_pid=parent_pid,
    )
    return [str(binary(engine, context)), *args[1:]]
