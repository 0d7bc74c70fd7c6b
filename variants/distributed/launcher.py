"""The local launcher: every service of a launcher placement on one machine, supervised.

It does on one machine what compose or Kubernetes do on many: starts the services in
dependency order and waits for each /healthz before starting what depends on it; restarts
a service that dies (a container restart policy: exponential backoff, reset after a service
has stayed up a while); and on SIGTERM/SIGINT/SIGHUP stops everything, the gateway first.
Each service runs in its own session (its own process group) and dies with the launcher
even if the launcher is SIGKILLed (PR_SET_PDEATHSIG, set by the service itself), so nothing
is orphaned. All processes are started from the main thread: PR_SET_PDEATHSIG fires when
the *thread* that forked a child exits, so a helper thread must never spawn one.

`<state-dir>/lifecycle.jsonl` gets one JSON object per line, with the fields the
multiprocess supervisor uses too (`time` is epoch seconds, `role` the service):
- `start` (role, pid, url[, attempt]) and `ready` (role, pid, seconds) at launch;
- `exit` (role, pid, process "service"|"worker", exit_code, signal, expected, and for a
  service uptime_s): `expected` is false for a death, true when the launcher stopped it; a
  worker's exit is written by its gunicorn master, which restarts the worker itself;
- `restart` (role, pid, attempt, delay_s, url) when the launcher brings a dead service back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from variants import cli, isolation, native
from variants.distributed.http import healthy
from variants.distributed.netns import NetnsUnavailable, Network
from variants.distributed.topology import Service, Topology
from variants.lifecycle import LIFECYCLE_FILE
from variants.lifecycle import record as record_lifecycle
from variants.ports import free_port
from workloads.shop import dataset
from workloads.shop.config import ShopConfig

log = logging.getLogger("archlab.distributed")

RUNTIME_FILE = "topology.json"
POLL_S = 0.1
STOP_GRACE_S = 15.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0  # a service up this long has its backoff reset
START_TRIES = 3  # tries to bring a service up during the initial start (a port race)


class LaunchError(RuntimeError):
    """A service could not be started."""


@dataclass
class Child:
    """One service as the launcher tracks it."""

    service: Service
    host: str
    port: int
    workers: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    crashes: int = 0  # deaths in a row, each soon after its start: the backoff's exponent
    restarts: int = 0
    restart_at: float | None = None
    delay_s: float = 0.0

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _exit_fields(returncode: int) -> dict[str, object]:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return {"exit_code": None, "signal": name}
    return {"exit_code": returncode, "signal": None}


def _exit_event(child: Child, proc: subprocess.Popen[bytes], expected: bool) -> dict[str, object]:
    """An `exit` line, as the multiprocess supervisor writes it (`expected`: we stopped it)."""
    return {
        "event": "exit",
        "role": child.name,
        "pid": proc.pid,
        "process": "service",
        **_exit_fields(proc.returncode),
        "uptime_s": round(time.monotonic() - child.started_at, 3),
        "expected": expected,
    }


class Launcher:
    def __init__(
        self,
        topology: Topology,
        *,
        port: int,
        state_dir: Path,
        size: str,
        seed: int,
        threads: int,
        replicas: int,
        config: ShopConfig,
        netns: bool = False,
        ready_timeout_s: float = 600.0,
    ) -> None:
        self.topology = topology
        self.port = port
        self.state_dir = state_dir
        self.size = size
        self.seed = seed
        self.threads = threads
        self.replicas = replicas
        self.config = config
        self.want_netns = netns
        self.ready_timeout_s = ready_timeout_s
        self.lifecycle = state_dir / LIFECYCLE_FILE
        self.network: Network | None = None
        self.netns_error: str | None = None
        self.children: dict[str, Child] = {}
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("launcher: %s, stopping every service", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        """Start everything, supervise until signalled, stop everything. Returns an exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._plan()
            self._write_runtime()  # before any service answers, so whoever sees one can read it
            for level in self.topology.levels():
                self._start_level(level)
                if self._stopping:
                    return 0
            self._write_runtime()  # again: a port may have changed on a retried start
            log.info("launcher: ready at http://127.0.0.1:%d", self.port)
            self._supervise()
            return 0
        except LaunchError as exc:
            log.error("launcher: %s", exc)
            return 1
        finally:
            self._stop_all()
            if self.network is not None:
                self.network.teardown()

    def _plan(self) -> None:
        """Where each service listens: loopback free ports, or its namespace's address."""
        names = [n for n, s in self.topology.services.items() if not s.is_gateway]
        addresses: dict[str, str] = {}
        if self.want_netns:
            try:
                self.network = Network(names)
                addresses = self.network.setup()
            except NetnsUnavailable as exc:
                self.network = None
                self.netns_error = str(exc)
                log.warning("launcher: %s; falling back to loopback (127.0.0.1)", exc)
        for name, svc in self.topology.services.items():
            workers = self.replicas if svc.scalable else 1
            if svc.is_gateway:
                child = Child(svc, "127.0.0.1", self.port, workers)
            elif self.network is not None:
                child = Child(svc, addresses[name], self.topology.deployment.port, workers)
            else:
                child = Child(svc, "127.0.0.1", free_port(exclude=[self.port]), workers)
            self.children[name] = child

    def _command(self, child: Child) -> tuple[str | None, list[str]]:
        """(the program to exec if not argv[0], argv): a native program's argv[0] is its title."""
        svc = child.service
        engine = self.topology.placement.groups[svc.name].engine
        program = None
        if engine != "python":
            program = str(native.binary(engine, svc.context))
            cmd = self._native_command(child, engine)
        else:
            cmd = [sys.executable, "-m", "variants.distributed.service", svc.name]
            cmd += self._service_args(child)
        if self.network is not None and not svc.is_gateway:
            cmd = self.network.exec_prefix(svc.name) + ([program, *cmd[1:]] if program else cmd)
            program = None
        return program, cmd

    def _native_command(self, child: Child, engine: str) -> list[str]:
        """The group's native program: its title as argv[0] (see `_spawn`), its store prepared."""
        svc = child.service
        dataset.prepare_state(dataset.ensure(self.size, self.seed), self.state_dir, [svc.context])
        return native.argv(
            engine,
            svc.context,
            role=svc.name,
            state_dir=self.state_dir,
            rebuild_interval_s=self.config.rebuild_interval_s,
            serve={"host": child.host, "port": str(child.port)},
            peers=native.peer_args(
                self.topology.placement,
                svc.name,
                None,
                {dep: self.children[dep].url for dep in svc.depends_on},
            ),
            threads=self.threads,
            parent_pid=os.getpid(),
        )

    def _service_args(self, child: Child) -> list[str]:
        svc = child.service
        cmd: list[str] = []
        cmd += ["--host", child.host, "--port", str(child.port)]
        cmd += ["--state-dir", str(self.state_dir), "--size", self.size, "--seed", str(self.seed)]
        cmd += ["--threads", str(self.threads), "--workers", str(child.workers)]
        cmd += ["--placement", str(self.topology.placement.path)]
        cmd += ["--server", self.topology.placement.groups[svc.name].server]
        cmd += ["--bulkhead", str(self.topology.placement.groups[svc.name].bulkhead)]
        cmd += ["--lifecycle", str(self.lifecycle)]
        cmd += ["--parent-pid", str(os.getpid())]
        cmd += cli.shop_args(self.config)
        for dep in svc.depends_on:
            cmd += ["--peer", f"{dep}={self.children[dep].url}"]
        return cmd

    def _spawn(self, child: Child, event: str, **extra: object) -> None:
        program, cmd = self._command(child)
        cpus = self.topology.placement.groups[child.name].cpus
        child.proc = subprocess.Popen(
            cmd,
            executable=program,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=(lambda: isolation.confine(cpus)) if cpus else None,  # before exec
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        record_lifecycle(self.lifecycle, event=event, role=child.name, pid=child.proc.pid, **extra)

    def _reap(self, child: Child) -> int | None:
        """Record and forget the child's process if it has exited; its return code."""
        if child.proc is None:
            return None
        code = child.proc.poll()
        if code is None:
            return None
        record_lifecycle(self.lifecycle, **_exit_event(child, child.proc, expected=False))
        log.warning("launcher: %s (pid %d) exited: %s", child.name, child.proc.pid, code)
        child.proc = None
        return code

    def _start_level(self, level: list[str]) -> None:
        """Start a group of services and wait until each answers /healthz with 200."""
        for name in level:
            self._spawn(self.children[name], "start", url=self.children[name].url)
        pending = set(level)
        tries = dict.fromkeys(level, 1)
        deadline = time.monotonic() + self.ready_timeout_s
        while pending and not self._stopping:
            for name in sorted(pending):
                child = self.children[name]
                if self._reap(child) is not None:
                    if tries[name] >= START_TRIES:
                        raise LaunchError(f"{name} exited {tries[name]} times while starting")
                    tries[name] += 1
                    if self.network is None and not child.service.is_gateway:
                        child.port = free_port(exclude=[self.port])  # taken meanwhile?
                    self._spawn(child, "start", url=child.url, attempt=tries[name])
                elif healthy(child.url):
                    log.info("launcher: %s healthy at %s", name, child.url)
                    seconds = round(time.monotonic() - child.started_at, 3)
                    pid = child.proc.pid if child.proc else None
                    record_lifecycle(
                        self.lifecycle, event="ready", role=name, pid=pid, seconds=seconds
                    )
                    pending.discard(name)
            if time.monotonic() > deadline:
                raise LaunchError(f"not healthy after {self.ready_timeout_s:.0f} s: {pending}")
            time.sleep(POLL_S)

    def _supervise(self) -> None:
        """Restart what dies, with backoff, until asked to stop."""
        while not self._stopping:
            now = time.monotonic()
            for child in self.children.values():
                uptime = now - child.started_at
                if self._reap(child) is not None:
                    child.crashes = 1 if uptime >= STABLE_AFTER_S else child.crashes + 1
                    child.delay_s = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (child.crashes - 1))
                    child.restart_at = now + child.delay_s
                    log.warning("launcher: restarting %s in %.1f s", child.name, child.delay_s)
                elif child.proc is None and now >= (child.restart_at or float("inf")):
                    child.restarts += 1
                    extra = {"attempt": child.restarts, "delay_s": child.delay_s, "url": child.url}
                    self._spawn(child, "restart", **extra)
            time.sleep(POLL_S)

    def _stop_all(self) -> None:
        """SIGTERM each level's process groups, the gateway first; SIGKILL what lingers."""
        self._stopping = True
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for level in reversed(self.topology.levels()):
                live = [c for n in level if (c := self.children.get(n)) and c.proc is not None]
                for child in live:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
                deadline = time.monotonic() + STOP_GRACE_S
                for child in live:
                    proc = child.proc
                    assert proc is not None
                    try:
                        proc.wait(max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived their master
                    record_lifecycle(self.lifecycle, **_exit_event(child, proc, expected=True))
                    child.proc = None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _write_runtime(self) -> None:
        """Where everything runs, for the harness and tests (`<state-dir>/topology.json`)."""
        doc = {
            "variant": "distributed",
            "placement": self.topology.placement.name,
            "placement_file": str(self.topology.placement.path),
            "netns": self.network is not None,
            "netns_error": self.netns_error,
            "threads": self.threads,
            "lifecycle": str(self.lifecycle),
            "services": {
                name: {
                    "context": c.service.context or None,
                    "url": c.url,
                    "workers": c.workers,
                    "depends_on": list(c.service.depends_on),
                    "namespace": self.network.namespace(name)
                    if self.network is not None and not c.service.is_gateway
                    else None,
                }
                for name, c in self.children.items()
            },
        }
        path = self.state_dir / RUNTIME_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(path)
