"""The postmaster: owns the socket and the shared memory, starts the family, restarts what dies.

It mirrors PostgreSQL's postmaster. At start it builds the sealed catalog segment (in a
short-lived child, so its own heap, which every child inherits, stays small) and the
writable control segment, binds 127.0.0.1:PORT, starts the auxiliaries in dependency order,
each only once the one before it is ready, then listens and forks the backends. It never
serves a request; its loop sleeps in `select()` on a signal wake-up pipe and the children's
readiness pipes, and reaps with `waitpid(WNOHANG)`.

Every start, readiness, death (exit code or signal), scheduled restart, crash-and-restart,
reload and shutdown is appended as a JSON line to `<state-dir>/lifecycle.jsonl`.

Signals: SIGTERM and SIGINT shut down gracefully (backends finish their requests and exit,
then the auxiliaries are stopped one by one in reverse dependency order); SIGQUIT stops
everything at once; SIGHUP re-reads the config file (see `config.FamilyConfig`), applies the
policies and the backend count, and replaces the backends one at a time (each replacement
is ready before the old one is told to finish), so they pick up the new settings.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import mmap
import os
import select
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import setproctitle

from variants import forkgc, isolation, lifecycle, native, telemetry
from variants.distributed import service
from variants.multiprocess import auxiliary, backend, process
from variants.multiprocess.config import FamilyConfig, roles
from variants.multiprocess.ipc import listen_unix
from variants.multiprocess.shmem import (
    CATALOG_NAME,
    ControlSegment,
    LockTimeout,
    SealedSegment,
    write_all,
)
from variants.peers import Endpoints, socket_path
from variants.placement import Placement
from variants.ports import free_port
from workloads.shop import catalog_snapshot, dataset
from workloads.shop.catalog_snapshot import SnapshotCatalog
from workloads.shop.config import ShopConfig

log = logging.getLogger("archlab.multiprocess.postmaster")
T = TypeVar("T")

SLOTS = 32 + 256
BACKOFF_S = 0.1
MAX_BACKOFF_S = 10.0
STABLE_S = 10.0
"""A process that was ready this long before it died starts its backoff afresh."""
STARTUP_ATTEMPTS = 5
"""An auxiliary that dies this many times before the family ever started aborts the start."""
BACKEND_STOP_S = 20.0
AUX_STOP_S = 15.0
QUIT_S = 5.0
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


class PMState(enum.Enum):
    """The postmaster's phase, after PostgreSQL's `PMState`; the value is its name as logged."""

    STARTUP = "startup"  # starting the auxiliaries, one at a time
    RUNNING = "running"
    RECOVERING = "recovering"  # a crash-and-restart: waiting to rebuild the control segment
    STOP_BACKENDS = "stopping-backends"
    STOP_AUXILIARIES = "stopping-auxiliaries"
    STOP_NOW = "stopping-now"  # SIGQUIT: everything at once
    DONE = "done"

    @property
    def stopping(self) -> bool:
        """A shutdown is under way: no death is a crash, nothing is restarted."""
        return self in (PMState.STOP_BACKENDS, PMState.STOP_AUXILIARIES, PMState.STOP_NOW)


@dataclass(frozen=True)
class Launch:
    """What a child's main function is handed, in the child: only what its kind keeps."""

    role: str
    number: int
    slot: int
    postmaster_pid: int
    listener: socket.socket | None
    ipc_listeners: dict[str, socket.socket]
    catalog: mmap.mmap | None
    control: ControlSegment | None
    placement: Placement
    endpoints: Endpoints
    state_dir: Path
    config: FamilyConfig
    shop: ShopConfig
    ready: Callable[[], None]
    ready_fd: int
    """The write end of the readiness pipe (`ready` writes to it; an exec'd program too)."""


def _backend_main(launch: Launch) -> int:
    assert launch.listener is not None and launch.control is not None
    return backend.run(
        number=launch.number,
        slot=launch.slot,
        postmaster_pid=launch.postmaster_pid,
        listener=launch.listener,
        ipc_listeners=launch.ipc_listeners,
        catalog=launch.catalog,
        control=launch.control,
        placement=launch.placement,
        endpoints=launch.endpoints,
        state_dir=launch.state_dir,
        config=launch.config,
        shop=launch.shop,
        ready=launch.ready,
    )


def _auxiliary_main(launch: Launch) -> int:
    return auxiliary.run(
        role=launch.role,
        postmaster_pid=launch.postmaster_pid,
        state_dir=launch.state_dir,
        catalog=launch.catalog,
        placement=launch.placement,
        endpoints=launch.endpoints,
        config=launch.config,
        shop=launch.shop,
        ready=launch.ready,
    )


def service_options(
    placement: Placement,
    group: str,
    endpoints: Endpoints,
    state_dir: Path,
    config: FamilyConfig,
    shop: ShopConfig,
    catalog: mmap.mmap | None = None,
) -> service.Options:
    """How an `http` group of the family is served (built in the postmaster first, so that a
    group that cannot be served fails the start with its reason)."""
    local: dict[str, Any] = {}
    if placement.maps_catalog(group):
        local["catalog"] = SnapshotCatalog(catalog) if catalog is not None else object()
    return service.Options(
        placement=placement,
        group=group,
        port=int(endpoints.urls[group].rsplit(":", 1)[1]),
        state_dir=state_dir,
        config=shop,
        endpoints=endpoints,
        threads=config.threads,
        workers=placement.replicas(group, 1),
        lifecycle=state_dir / lifecycle.LIFECYCLE_FILE,
        parent_pid=os.getppid(),
        title="service",
        local_peers=local,
    )


def _service_main(launch: Launch) -> int:
    opts = service_options(
        launch.placement,
        launch.role,
        launch.endpoints,
        launch.state_dir,
        launch.config,
        launch.shop,
        launch.catalog,
    )
    return service.serve(opts, launch.ready)


def _native_main(launch: Launch) -> int:
    """Exec the group's native program in place of this child: same pid, same slot, same
    readiness pipe and parent-death signal; it answers the same stop signals."""
    placement = launch.placement
    group = placement.groups[launch.role]
    (context,) = group.contexts
    socket_dir = launch.endpoints.socket_dir or launch.state_dir
    if placement.transport(launch.role) == "ipc":
        serve = {"socket": str(socket_path(socket_dir, context))}
    else:
        serve = {"port": launch.endpoints.urls[launch.role].rsplit(":", 1)[1]}
    peers = native.peer_args(placement, launch.role, socket_dir, launch.endpoints.urls)
    timeouts = launch.endpoints.ipc_timeouts_ms
    argv = native.argv(
        group.engine,
        context,
        role=launch.role,
        state_dir=launch.state_dir,
        rebuild_interval_s=launch.shop.rebuild_interval_s,
        serve=serve,
        peers=peers,
        call_timeout_ms=max((timeouts[c] for c in placement.peers(launch.role)), default=None),
        threads=launch.config.threads,
        parent_pid=launch.postmaster_pid,
        ready_fd=launch.ready_fd,
    )
    os.set_inheritable(launch.ready_fd, True)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # a signal mask survives exec
    os.execv(native.binary(group.engine, context), argv)


@dataclass(frozen=True)
class ChildKind:
    """One kind of child, after PostgreSQL's `child_process_kinds[]`: how to start and treat it.

    The postmaster asks these questions of a child's kind, never of its role's name.
    """

    role: str
    main: Callable[[Launch], int]
    """Runs in the child after the fork; its return value is the exit code."""
    numbered: bool = False
    """Many, numbered from 1 up to a configured count, each in any free slot that its exit
    frees (the backends); otherwise one per role in a fixed slot whose state is its health."""
    accepts_connections: bool = False
    """Keeps the listening socket and counts its requests in its slot; stopped first."""
    attaches_control: bool = False
    """Keeps the writable control segment mapped, so its crash is a crash-and-restart of all
    such children; the others unmap it right after the fork."""
    attaches_catalog: bool = False
    """Keeps the sealed catalog segment mapped."""
    blocked_signals: frozenset[int] = frozenset()
    """Taken synchronously by the child (see `process.fork`)."""
    stop_signal: signal.Signals = signal.SIGTERM
    """What asks it to finish its calls in flight and exit."""
    master: bool = False
    """A gunicorn master whose workers serve: its own role is `<role>-master`."""
    native: bool = False
    """Execs a native program (`variants.native`), which declares its own telemetry."""

    def title(self, number: int) -> str:
        """Its name in `ps` and in its log lines."""
        return f"{self.role} {number}" if self.numbered else self.role


def child_kinds(placement: Placement) -> dict[str, ChildKind]:
    """The family's kinds of child, one per group of the placement (its role), after
    PostgreSQL's `child_process_kinds[]`: the edge group's numbered backends, an auxiliary per
    `ipc` group, a gunicorn service per `http` group."""

    kinds = {
        placement.edge: ChildKind(
            placement.edge,
            _backend_main,
            numbered=True,
            accepts_connections=True,
            attaches_control=True,
            attaches_catalog=placement.maps_catalog(placement.edge),
        )
    }
    for group in placement.start_order:
        ipc = placement.transport(group) == "ipc"
        if placement.groups[group].engine != "python":
            kinds[group] = ChildKind(
                group,
                _native_main,
                stop_signal=signal.SIGUSR2 if ipc else signal.SIGTERM,
                native=True,
            )
            continue
        kinds[group] = ChildKind(
            group,
            _auxiliary_main if ipc else _service_main,
            attaches_catalog=placement.maps_catalog(group),
            blocked_signals=auxiliary.HANDLED if ipc else frozenset(),
            stop_signal=signal.SIGUSR2 if ipc else signal.SIGTERM,
            master=not ipc,
        )
    return kinds


@dataclass(frozen=True)
class Options:
    """What the postmaster is started with; `config` before the config file is overlaid."""

    port: int
    size: str
    seed: int
    state_dir: Path
    config: FamilyConfig
    shop: ShopConfig
    placement: Placement
    config_path: Path | None = None
    ready_timeout_s: float = 900.0
    fork_gc: str = forkgc.FREEZE  # what the collector does around each fork (variants.forkgc)


@dataclass
class Child:
    pid: int
    role: str
    number: int  # backend number from 1; 0 for an auxiliary
    kind: ChildKind
    slot: int
    generation: int
    started: float
    ready_fd: int | None
    ready_at: float | None = None
    stopping: bool = False
    kill_at: float | None = None
    replaces: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.role, self.number


@dataclass
class Recovery:
    """A crash-and-restart in progress: waiting for every backend to be gone."""

    restart: list[tuple[str, int]]
    not_before: float


@dataclass
class Postmaster:
    options: Options
    config: FamilyConfig = field(init=False)
    children: dict[int, Child] = field(default_factory=dict)
    pending: dict[tuple[str, int], float] = field(default_factory=dict)
    crashes: dict[tuple[str, int], int] = field(default_factory=dict)
    replace_queue: list[int] = field(default_factory=list)
    phase: PMState = PMState.STARTUP
    recovery: Recovery | None = None
    exit_code: int = 0
    signals: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.roles = roles(self.options.placement)
        self.config = self.options.config.overlaid(self.options.config_path, self.roles)
        self.placement = self.options.placement.with_engines(self.config.engines)
        self.kinds = child_kinds(self.placement)
        self.edge = self.placement.edge
        self.auxiliaries = self.placement.start_order
        """The roles other than the edge's, in start order (each needs only those before it)."""
        self.state_dir = self.options.state_dir
        self.lifecycle_path = self.state_dir / lifecycle.LIFECYCLE_FILE
        self.socket_dir = self.state_dir / "sockets"
        self.own_socket_dir = False
        self.listener: socket.socket | None = None
        self.catalog: SealedSegment | None = None
        self.control: ControlSegment | None = None
        self.ipc_listeners: dict[str, socket.socket] = {}
        self.endpoints = Endpoints()
        self.wake_r, self.wake_w = os.pipe()

    # -- records ---------------------------------------------------------------------------

    def record(self, event: str, **fields: Any) -> None:
        """Append one lifecycle event to lifecycle.jsonl (and the log)."""
        log.info("%s", json.dumps(lifecycle.record(self.lifecycle_path, event=event, **fields)))

    def _child_fields(self, child: Child) -> dict[str, Any]:
        return {"role": child.role, "number": child.number, "pid": child.pid}

    # -- start -----------------------------------------------------------------------------

    def run(self) -> int:
        setproctitle.setproctitle(process.title("postmaster"))
        telemetry.install("postmaster")
        self._install_signals()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.record(
            "postmaster-start",
            pid=os.getpid(),
            port=self.options.port,
            size=self.options.size,
            placement=self.placement.name,
            config=json.loads(self.config.describe()),
        )
        try:
            self._prepare()
        except Exception as exc:
            log.exception("start failed")
            self.record("start-failed", error=f"{type(exc).__name__}: {exc}")
            self._cleanup()
            return 1
        while self.phase is not PMState.DONE:
            self._step()
        self._cleanup()
        self.record("postmaster-exit", exit_code=self.exit_code)
        return self.exit_code

    def _install_signals(self) -> None:
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for sig in (
            signal.SIGCHLD,
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGHUP,
            signal.SIGQUIT,
        ):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _prepare(self) -> None:
        started = time.perf_counter()
        dataset.prepare_state(dataset.ensure(self.options.size, self.options.seed), self.state_dir)
        self._make_socket_dir()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.listener.bind(("127.0.0.1", self.options.port))  # listen() once backends exist
        for context in self.placement.edge_serves:  # every backend accepts on these
            self.ipc_listeners[context] = listen_unix(socket_path(self.socket_dir, context))
        urls = {
            g: f"http://127.0.0.1:{free_port()}"
            for g in self.auxiliaries
            if self.placement.transport(g) == "http"
        }
        self.endpoints = Endpoints(self.socket_dir, urls, dict(self.config.call_timeouts_ms))
        for group in urls:  # refuses a group that cannot be served, before anything starts
            service_options(
                self.placement,
                group,
                self.endpoints,
                self.state_dir,
                self.config,
                self.options.shop,
            )
        if self.placement.shared_catalog:
            built = time.perf_counter()
            self.catalog = SealedSegment(CATALOG_NAME, self._build_catalog)
            self.record(
                "catalog-segment",
                bytes=self.catalog.size,
                build_seconds=round(time.perf_counter() - built, 3),
            )
        self.control = self._new_control(1)
        log.info("prepared in %.1f s", time.perf_counter() - started)

    def _new_control(self, generation: int) -> ControlSegment:
        return ControlSegment(SLOTS, generation, numbered=self.edge, fixed=self.auxiliaries)

    def _make_socket_dir(self) -> None:
        longest = socket_path(self.socket_dir, "recommendations")
        if len(str(longest)) > MAX_SOCKET_PATH:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="archlab-mp-"))
            self.own_socket_dir = True
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in self.socket_dir.glob("*.sock"):
            stale.unlink()

    def _build_catalog(self, fd: int) -> None:
        """Fill the segment from a child, so the build's garbage never enters this heap."""
        db = self.state_dir / "catalog.db"

        def build() -> int:
            write_all(fd, catalog_snapshot.build(db))
            return 0

        pid = process.fork(
            "catalog-builder", "catalog builder", build, fork_gc=self.options.fork_gc
        )
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the catalog builder failed (status {status})")

    # -- the loop --------------------------------------------------------------------------

    def _step(self) -> None:
        now = time.monotonic()
        deadlines = [due for due in self.pending.values()]
        deadlines += [c.kill_at for c in self.children.values() if c.kill_at is not None]
        if self.recovery is not None:
            deadlines.append(self.recovery.not_before)
        timeout = min([1.0, *(max(0.0, d - now) for d in deadlines)])
        fds = [self.wake_r]
        fds += [c.ready_fd for c in self.children.values() if c.ready_fd is not None]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            readable = []
        if self.wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self.wake_r, 512):
                    pass
        for child in list(self.children.values()):
            if child.ready_fd is not None and child.ready_fd in readable:
                self._read_ready(child)
        self._handle_signals()
        self._reap()
        self._advance()

    def _handle_signals(self) -> None:
        signals, self.signals = self.signals, []
        for sig in signals:
            if sig in (signal.SIGTERM, signal.SIGINT):
                self._shutdown(f"{signal.Signals(sig).name} received")
            elif sig == signal.SIGQUIT:
                self._quit()
            elif sig == signal.SIGHUP:
                self._reload()

    def _read_ready(self, child: Child) -> None:
        fd = child.ready_fd
        assert fd is not None
        try:
            data = os.read(fd, 16)
        except OSError:
            data = b""
        os.close(fd)
        child.ready_fd = None
        if b"R" not in data:
            return  # it died before it was ready: _reap() deals with it
        child.ready_at = time.monotonic()
        if not child.kind.numbered and not child.stopping:
            self._shm(lambda c: c.set_state(child.slot, "ok"))
        self.record(
            "ready",
            **self._child_fields(child),
            seconds=round(child.ready_at - child.started, 3),
        )
        if child.replaces is not None:
            old = self.children.get(child.replaces)
            child.replaces = None
            if old is not None:
                grace = BACKEND_STOP_S if old.kind.numbered else AUX_STOP_S
                self._terminate(old, old.kind.stop_signal, grace)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self._on_exit(child, os.waitstatus_to_exitcode(status))

    def _on_exit(self, child: Child, code: int) -> None:
        now = time.monotonic()
        if child.ready_fd is not None:
            os.close(child.ready_fd)
        kind = child.kind
        expected = child.stopping or self.phase.stopping
        policy = self.config.policy(child.role, self.placement)
        # Decide before touching the segment: one that is to be rebuilt is left alone.
        restart_all = (
            not expected
            and code != 0
            and policy == "crash-restart-all"
            and self.phase is not PMState.STARTUP
        )
        control = self._control()
        served = {}
        sibling = None if kind.numbered else self._aux(child.role)
        if sibling is not None:  # a swap: the role's slot is its replacement's (or its old one's)
            if sibling.ready_at is not None:
                self._shm(lambda c: c.claim(sibling.role, 0, sibling.pid, "ok"))
        elif not restart_all and self.recovery is None and child.generation == control.generation:
            if control.recover_lock(child.pid):  # it died holding the lock
                self.record("lock-recovered", pid=child.pid, role=child.role)
            state = "free" if kind.numbered else "down"
            requests = self._shm(lambda c: c.release(child.slot, state))
            if kind.accepts_connections and requests is not None:
                served["requests"] = requests
        self.record(
            "exit",
            **self._child_fields(child),
            exit_code=code if code >= 0 else None,
            signal=signal.Signals(-code).name if code < 0 else None,
            uptime_s=round(now - child.started, 3),
            expected=child.stopping,
            **served,
        )
        if expected:
            return
        if kind.numbered and child.number > self.config.backends:
            return
        if child.ready_at is not None and now - child.ready_at >= STABLE_S:
            self.crashes.pop(child.key, None)
        if code == 0:
            self._schedule(child.key, 0.0, "clean exit")
            return
        failures = self.crashes[child.key] = self.crashes.get(child.key, 0) + 1
        if self.phase is PMState.STARTUP and failures >= STARTUP_ATTEMPTS:
            self.record("give-up", role=child.role, failures=failures)
            self._shutdown(f"{child.role} failed {failures} times while starting", exit_code=1)
            return
        delay = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (failures - 1))
        if restart_all:
            self._crash_restart_all(self._child_fields(child), delay, child.key)
            return
        self._schedule(child.key, delay, policy)

    def _schedule(self, key: tuple[str, int], delay: float, reason: str) -> None:
        self.pending[key] = time.monotonic() + delay
        self.record(
            "restart-scheduled", role=key[0], number=key[1], delay_s=round(delay, 3), reason=reason
        )

    def _crash_restart_all(
        self, cause: dict[str, Any], delay: float, dead: tuple[str, int] | None = None
    ) -> None:
        """PostgreSQL's answer to a crash: the shared memory may be corrupt, so start it over.

        Every process attached to the writable segment (the backends) is stopped at once;
        once all are gone the segment and its lock are built anew (`_advance_recovery`) and
        they, and `dead` if it is an auxiliary, are started again. Until then nothing
        touches the old segment.
        """
        attached = [c for c in self.children.values() if c.kind.attaches_control]
        self.record(
            "crash-restart-all",
            **cause,
            terminating=[c.pid for c in attached],
            delay_s=round(delay, 3),
        )
        for child in attached:
            child.replaces = None
            self._terminate(child, signal.SIGQUIT, QUIT_S)
        self.replace_queue.clear()
        restart = [k for k in self.pending if not self.kinds[k[0]].attaches_control]
        if dead is not None and not self.kinds[dead[0]].attaches_control and dead not in restart:
            restart.append(dead)
        self.pending.clear()
        if self.recovery is not None:
            restart += [k for k in self.recovery.restart if k not in restart]
        self.recovery = Recovery(restart, time.monotonic() + delay)
        if self.phase is PMState.RUNNING:
            self.phase = PMState.RECOVERING

    def _terminate(self, child: Child, sig: signal.Signals, grace_s: float) -> None:
        """Send `sig`; SIGKILL after `grace_s` if it has not exited by then."""
        child.stopping = True
        child.kill_at = time.monotonic() + grace_s
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, sig)

    def _advance(self) -> None:
        now = time.monotonic()
        for child in list(self.children.values()):
            if child.kill_at is not None and now >= child.kill_at:
                child.kill_at = None
                self.record("kill", **self._child_fields(child), reason="did not stop in time")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            elif (
                child.ready_at is None
                and not child.stopping
                and now - child.started > self.options.ready_timeout_s
            ):
                self.record("kill", **self._child_fields(child), reason="not ready in time")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
        if self.phase is PMState.STARTUP:
            self._advance_startup(now)
        elif self.phase is PMState.RECOVERING:
            self._advance_recovery(now)  # nothing starts before the segment is rebuilt
        elif self.phase is PMState.RUNNING:
            self._start_due(now)
            self._advance_replacement()
        elif self.phase is PMState.STOP_BACKENDS:
            if not any(c.kind.accepts_connections for c in self.children.values()):
                self.phase = PMState.STOP_AUXILIARIES
                self._advance_stop_aux()
        elif self.phase is PMState.STOP_AUXILIARIES:
            self._advance_stop_aux()
        elif self.phase is PMState.STOP_NOW and not self.children:
            self.phase = PMState.DONE

    def _advance_startup(self, now: float) -> None:
        for role in self.auxiliaries:
            running = self._aux(role)
            if running is None:
                due = self.pending.get((role, 0), now)
                if due <= now:
                    self.pending.pop((role, 0), None)
                    self._spawn(role, 0)
                return
            if running.ready_at is None:
                return
        listener = self._listener()
        listener.listen(2048)
        self.record("listening", port=self.options.port, backends=self.config.backends)
        self.phase = PMState.RUNNING
        self.pending = {k: v for k, v in self.pending.items() if not self.kinds[k[0]].numbered}
        for number in range(1, self.config.backends + 1):
            self._spawn(self.edge, number)

    def _advance_recovery(self, now: float) -> None:
        recovery = self.recovery
        assert recovery is not None
        attached = any(c.kind.attaches_control for c in self.children.values())
        if attached or now < recovery.not_before:
            return
        old = self._control()
        self.control = self._new_control(old.generation + 1)
        old.close()
        for child in self.children.values():  # auxiliaries keep running: record them anew
            state = "ok" if child.ready_at is not None and not child.stopping else "starting"
            child.slot = self.control.claim(child.role, child.number, child.pid, state)
            child.generation = self.control.generation
        for role in self.auxiliaries:
            if self._aux(role) is None:
                self.control.claim(role, 0, 0, "down")
        self.record("reinit", generation=self.control.generation)
        self.recovery = None
        self.phase = PMState.RUNNING
        for key in recovery.restart:
            self.pending[key] = now
        for number in range(1, self.config.backends + 1):
            self.pending[(self.edge, number)] = now
        self._start_due(now)

    def _start_due(self, now: float) -> None:
        for key, due in list(self.pending.items()):
            role, number = key
            if due > now:
                continue
            del self.pending[key]
            if self.kinds[role].numbered:
                if number > self.config.backends:
                    continue
            elif self._aux(role) is not None:
                continue
            self._spawn(role, number)

    def _advance_replacement(self) -> None:
        if any(c.replaces is not None for c in self.children.values()):
            return
        while self.replace_queue:
            old = self.children.get(self.replace_queue.pop(0))
            if old is not None and not old.stopping:
                self._spawn(self.edge, old.number, replaces=old.pid)
                return

    def _aux(self, role: str) -> Child | None:
        for child in self.children.values():
            if child.role == role and not child.stopping:
                return child
        return None

    def _shm(self, write: Callable[[ControlSegment], T]) -> T | None:
        """Apply a postmaster write to the control segment, never blocking on its lock.

        None when the segment is condemned (a crash-and-restart is under way) or its lock
        stayed held: a holder that died or hangs means the segment can no longer be trusted,
        which is itself a reason for a crash-and-restart.
        """
        if self.recovery is not None:
            return None
        control = self._control()
        try:
            return write(control)
        except LockTimeout as exc:
            self.record("lock-timeout", holder=control.holder(), error=str(exc))
            if self.phase is PMState.RUNNING:
                self._crash_restart_all({"reason": "lock-timeout", "holder": control.holder()}, 0.0)
            return None

    def _control(self) -> ControlSegment:
        assert self.control is not None
        return self.control

    def _listener(self) -> socket.socket:
        assert self.listener is not None
        return self.listener

    # -- children --------------------------------------------------------------------------

    def _spawn(self, role: str, number: int, replaces: int | None = None) -> Child | None:
        kind = self.kinds[role]
        control = self._control()
        # A replacement auxiliary shares its role's fixed slot: the one it replaces serves on.
        state = "ok" if replaces is not None and not kind.numbered else "starting"
        slot = self._shm(lambda c: c.claim(role, number, 0, state))
        if slot is None:  # the segment is being rebuilt: start it afterwards
            self.pending[(role, number)] = time.monotonic()
            return None
        ready_r, ready_w = os.pipe()
        inherited = [self.wake_r, self.wake_w, ready_r]
        inherited += [c.ready_fd for c in self.children.values() if c.ready_fd is not None]
        config = self.config

        def ready() -> None:
            os.write(ready_w, b"R")
            os.close(ready_w)

        def body() -> int:
            for fd in inherited:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if role in self.placement.groups:
                isolation.confine(self.placement.groups[role].cpus)
            catalog = self.catalog
            listener = self._listener()
            if not kind.attaches_control:
                control.close()  # message-only: no writable shared memory in this process
            if not kind.accepts_connections:
                listener.close()
                for sock in self.ipc_listeners.values():
                    sock.close()
            if catalog is not None and not kind.attaches_catalog:
                catalog.close()
            return kind.main(
                Launch(
                    role=role,
                    number=number,
                    slot=slot,
                    postmaster_pid=os.getppid(),
                    listener=listener if kind.accepts_connections else None,
                    ipc_listeners=self.ipc_listeners if kind.accepts_connections else {},
                    catalog=catalog.map if catalog is not None and kind.attaches_catalog else None,
                    control=control if kind.attaches_control else None,
                    placement=self.placement,
                    endpoints=self.endpoints,
                    state_dir=self.state_dir,
                    config=config,
                    shop=self.options.shop,
                    ready=ready,
                    ready_fd=ready_w,
                )
            )

        own_role = f"{role}-master" if kind.master else role
        pid = process.fork(
            own_role,
            kind.title(number),
            body,
            block=kind.blocked_signals,
            telemetry=not kind.native,
            fork_gc=self.options.fork_gc,
        )
        os.close(ready_w)
        self._shm(lambda c: c.set_pid(slot, pid))
        child = Child(
            pid=pid,
            role=role,
            number=number,
            kind=kind,
            slot=slot,
            generation=control.generation,
            started=time.monotonic(),
            ready_fd=ready_r,
            replaces=replaces,
        )
        self.children[pid] = child
        self.record("start", **self._child_fields(child), slot=slot, replaces=replaces)
        return child

    # -- reload and shutdown ---------------------------------------------------------------

    def _reload(self) -> None:
        try:
            new = self.options.config.overlaid(self.options.config_path, self.roles)
            placement = self.options.placement.with_engines(new.engines)
        except Exception as exc:
            self.record("reload-failed", error=f"{type(exc).__name__}: {exc}")
            return
        old, self.config = self.config, new
        logging.getLogger().setLevel(new.log_level.upper())
        self.record("reload", config=json.loads(new.describe()))
        swapped = [
            g
            for g in self.auxiliaries
            if placement.groups[g].engine != self.placement.groups[g].engine
        ]
        self.placement = placement
        self.kinds = child_kinds(placement)
        if self.phase is not PMState.RUNNING:
            return
        for role in swapped:
            self._swap(role)
        for child in list(self.children.values()):
            if child.kind.numbered and child.number > new.backends and not child.stopping:
                self._terminate(child, signal.SIGTERM, BACKEND_STOP_S)
        for number in range(old.backends + 1, new.backends + 1):
            self.pending[(self.edge, number)] = time.monotonic()
        kept = min(old.backends, new.backends)
        self.replace_queue = [
            c.pid
            for c in self.children.values()
            if c.kind.numbered and not c.stopping and c.number <= kept
        ]

    def _swap(self, role: str) -> None:
        """Start the role's process on its new engine; once it is ready (it has taken over the
        socket), the old one is asked to finish its calls and stop (`_read_ready`)."""
        old = self._aux(role)
        engine = self.placement.groups[role].engine
        self.record("engine-swap", role=role, engine=engine, replaces=old.pid if old else None)
        if old is None:
            self.pending[(role, 0)] = time.monotonic()
            return
        self._spawn(role, 0, replaces=old.pid)

    def _shutdown(self, reason: str, exit_code: int = 0) -> None:
        if self.phase.stopping or self.phase is PMState.DONE:
            return
        self.exit_code = exit_code
        self.record("shutdown", reason=reason)
        self.pending.clear()
        self.replace_queue.clear()
        self.recovery = None
        if self.listener is not None:
            self.listener.close()  # the backends stop accepting on SIGTERM
        for child in self.children.values():
            if child.kind.accepts_connections:
                self._terminate(child, signal.SIGTERM, BACKEND_STOP_S)
        self.phase = PMState.STOP_BACKENDS
        self._advance()

    def _advance_stop_aux(self) -> None:
        for role in reversed(self.auxiliaries):
            running = [c for c in self.children.values() if c.role == role]
            if not running:
                continue
            for child in running:
                if child.kill_at is None and not child.stopping:
                    self._shm(lambda c, slot=child.slot: c.set_state(slot, "stopping"))
                    # One not ready yet has nothing in flight and may be loading for minutes.
                    sig = child.kind.stop_signal if child.ready_at is not None else signal.SIGKILL
                    self._terminate(child, sig, AUX_STOP_S)
            return
        self.phase = PMState.DONE

    def _quit(self) -> None:
        self.record("quit")
        self.exit_code = 2
        self.pending.clear()
        for child in self.children.values():
            self._terminate(child, signal.SIGQUIT, QUIT_S)
        self.phase = PMState.STOP_NOW if self.children else PMState.DONE

    def _cleanup(self) -> None:
        for child in self.children.values():  # only after a failed start
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        if self.listener is not None:
            self.listener.close()
        for sock in self.ipc_listeners.values():
            sock.close()
        if self.control is not None:
            self.control.close()
        if self.catalog is not None:
            self.catalog.close()
        if self.own_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        else:
            for path in self.socket_dir.glob("*.sock"):
                path.unlink(missing_ok=True)
