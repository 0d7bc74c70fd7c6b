"""Per-process fault injection shared by every variant: the same faults, injected the same way.

Every process that hosts bounded contexts calls `arm(role, components)` where it builds them
(next to `telemetry.install`) and passes each context through the wrapper it gets back (the
shop's one wiring does), so a fault is on the callee's side of every call. When the harness
sets `ARCHLAB_FAULTS_DIR`, the process starts a controller; without it the wrapper returns
each context unchanged and nothing starts.

Control plane (local, file + signal, no network; an HTTP admin endpoint is a later step):

- the controller declares itself in `<dir>/armed/<pid>` (its role, then the components it
  hosts, one per line). The harness signals only armed pids, so a process that has not
  installed the handler is never hit by a signal whose default action would kill it;
- the harness writes `<dir>/<component>.json`: `{"id", "kind", "params", "active", "pids"}`
  (atomically, by rename) and sends `SIGNAL` (SIGRTMIN+3) to every armed pid hosting the
  component. SIGUSR2 is not used: it is the multiprocess auxiliaries' stop signal and gunicorn
  master's re-exec signal;
- the signal handler only sets an event; the controller's daemon thread wakes up (it also
  re-reads the files every `POLL_S`, in case a signal is lost), and starts or stops the fault
  when the file's (id, active) changed. `pids` (empty: every process hosting the component)
  keeps a process restarted after the fault from inheriting it.

Fault kinds (all real, in the process itself):

- `crash`: `os.abort()` (SIGABRT). The harness usually SIGKILLs the hosting processes itself
  instead; both are real deaths that the variant's supervisor (or the harness) must handle.
- `leak`: a thread keeps GC-tracked lists at `rate_mb_s` MB/s; when it has kept `limit_mb`
  the process is SIGKILLed by itself, as an OOM killer or a cgroup memory limit would
  (`on_limit: "keep"` stops growing instead).
- `hog`: a thread runs C-level CPU work (`sum(range(n))`, which never releases the GIL) in
  ~5 ms slices for `duty` of every `period_s`: the GIL is held that share of the time.
- `gc`: a thread churns cyclic container garbage (`objects_per_s`) and runs a full
  (generation 2) collection every `collect_every_s`, with the collection thresholds lowered
  (restored when the fault ends), so the other threads pay real full-collection pauses.
- `slow`: every call into the component's object takes `delay_ms` more (the wrapper sleeps
  first: the fault *is* added latency).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from workloads.scenarios import FAULT_KINDS

ENV_DIR = "ARCHLAB_FAULTS_DIR"
ARMED_DIR = "armed"
SIGNAL = signal.SIGRTMIN + 3
POLL_S = 1.0
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "crash": {"mode": "kill"},
    "leak": {"rate_mb_s": 20.0, "limit_mb": 200.0, "on_limit": "kill"},
    "hog": {"duty": 0.8, "period_s": 0.1},
    "gc": {"objects_per_s": 200_000, "collect_every_s": 0.1},
    "slow": {"delay_ms": 100.0},
}
assert tuple(DEFAULT_PARAMS) == FAULT_KINDS, "every kind of the catalogue, and no other"


def fault_path(folder: Path, component: str) -> Path:
    return folder / f"{component}.json"


def write_fault(folder: Path, component: str, spec: Mapping[str, Any]) -> Path:
    """Write `<folder>/<component>.json` atomically (the harness's side)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = fault_path(folder, component)
    tmp = folder / f".{component}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(dict(spec)))
    tmp.replace(path)
    return path


def armed(folder: Path) -> dict[int, tuple[str, tuple[str, ...]]]:
    """pid -> (role, components) of every controller that declared itself (alive or not)."""
    found: dict[int, tuple[str, tuple[str, ...]]] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in (folder / ARMED_DIR).iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                lines = entry.read_text().split()
                if lines:
                    found[int(entry.name)] = (lines[0], tuple(lines[1:]))
    return found


class _Slowed:
    """A context whose every method call first sleeps the component's current delay."""

    def __init__(self, target: object, delay: Callable[[], float]) -> None:
        self._target = target
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value) or name.startswith("_"):
            return value
        delay = self._delay

        def call(*args: Any, **kwargs: Any) -> Any:
            seconds = delay()
            if seconds > 0:
                time.sleep(seconds)
            return value(*args, **kwargs)

        self.__dict__[name] = call  # cached: __getattr__ runs once per method
        return call


class _Running:
    """One started fault: a thread that runs until `stop`."""

    def __init__(self, name: str, body: Callable[[threading.Event], None]) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=body, args=(self.stopped,), name=f"fault-{name}", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()


def _leak(params: Mapping[str, Any], keep: list[Any]) -> Callable[[threading.Event], None]:
    rate = float(params.get("rate_mb_s", 20.0))
    limit = float(params.get("limit_mb", 200.0))
    on_limit = params.get("on_limit", "kill")
    per_mb = 1_850  # lists of 64 slots: ~568 bytes each, ~1 MB per 1850

    def body(stopped: threading.Event) -> None:
        kept_mb, started = 0.0, time.monotonic()
        while not stopped.wait(0.05):
            if kept_mb >= limit:
                if on_limit == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                return
            # keep up with the set rate, whatever the allocations (and their GC) cost
            mb = min(limit, rate * (time.monotonic() - started)) - kept_mb
            keep.append([[0] * 64 for _ in range(int(per_mb * mb))])
            kept_mb += mb

    return body


def _hog(params: Mapping[str, Any]) -> Callable[[threading.Event], None]:
    duty = min(max(float(params.get("duty", 0.8)), 0.0), 1.0)
    period = float(params.get("period_s", 0.1))

    def body(stopped: threading.Event) -> None:
        n = 10_000
        while True:  # calibrate one slice to ~5 ms of GIL-holding C work
            t = time.perf_counter()
            sum(range(n))
            if time.perf_counter() - t >= 0.005 or n > 10**8:
                break
            n *= 2
        while not stopped.is_set():
            start = time.perf_counter()
            busy_until = start + duty * period
            while time.perf_counter() < busy_until:
                sum(range(n))
            rest = period - (time.perf_counter() - start)
            if rest > 0:
                stopped.wait(rest)

    return body


def _gc(params: Mapping[str, Any]) -> Callable[[threading.Event], None]:
    per_s = int(params.get("objects_per_s", 200_000))
    every = float(params.get("collect_every_s", 0.1))

    def body(stopped: threading.Event) -> None:
        before = gc.get_threshold()
        gc.set_threshold(100, 1, 1)
        try:
            while not stopped.is_set():
                garbage = []
                for _ in range(max(1, int(per_s * every))):
                    node: list[Any] = []
                    node.append(node)  # a cycle: only the collector frees it
                    garbage.append(node)
                del garbage
                gc.collect()  # a full (generation 2) collection
                stopped.wait(every)
        finally:
            gc.set_threshold(*before)

    return body


class Controller:
    """Applies the fault files of the components this process hosts."""

    def __init__(self, folder: Path, role: str, components: tuple[str, ...]) -> None:
        self.folder = folder
        self.role = role
        self.components = components
        self.pid = os.getpid()
        self.delays: dict[str, float] = {c: 0.0 for c in components}
        self.applied: dict[str, tuple[Any, bool]] = {}
        self.running: dict[str, _Running] = {}
        self.leaked: list[Any] = []
        self.wake = threading.Event()

    def delay_of(self, component: str) -> Callable[[], float]:
        return lambda: self.delays[component]

    def poke(self, signum: int, frame: Any) -> None:
        self.wake.set()  # all a signal handler should do

    def arm(self) -> None:
        armed_dir = self.folder / ARMED_DIR
        armed_dir.mkdir(parents=True, exist_ok=True)
        tmp = armed_dir / f".{self.pid}.tmp"
        tmp.write_text("\n".join((self.role, *self.components)) + "\n")
        tmp.replace(armed_dir / str(self.pid))

    def loop(self) -> None:
        while True:
            self.wake.wait(POLL_S)
            self.wake.clear()
            if os.getpid() != self.pid:
                return
            for component in self.components:
                try:
                    self.apply(component)
                except Exception:  # noqa: BLE001 - a bad file must not kill the controller
                    continue

    def apply(self, component: str) -> None:
        try:
            spec = json.loads(fault_path(self.folder, component).read_text())
        except FileNotFoundError:
            return
        pids = spec.get("pids") or []
        if pids and self.pid not in pids:
            return
        key = (spec.get("id"), bool(spec.get("active")))
        if self.applied.get(component) == key:
            return
        self.applied[component] = key
        self.stop(component)
        if not spec.get("active"):
            return
        kind = spec.get("kind")
        params = {**DEFAULT_PARAMS.get(kind, {}), **(spec.get("params") or {})}
        if kind == "crash":
            os.abort()
        elif kind == "slow":
            self.delays[component] = float(params["delay_ms"]) / 1000
        elif kind == "leak":
            self.running[component] = _Running(component, _leak(params, self.leaked))
        elif kind == "hog":
            self.running[component] = _Running(component, _hog(params))
        elif kind == "gc":
            self.running[component] = _Running(component, _gc(params))

    def stop(self, component: str) -> None:
        self.delays[component] = 0.0
        running = self.running.pop(component, None)
        if running is not None:
            running.stop()


_controller: Controller | None = None


def arm(role: str, components: Iterable[str]) -> Callable[[str, Any], Any]:
    """Arm this process for faults in `components`; returns the wrapper for each one served.

    The wrapper is what `workloads.shop.wiring.build` passes every hosted context through.
    Without `ARCHLAB_FAULTS_DIR` it returns the object unchanged and nothing starts. Call from
    the main thread (it installs a signal handler), in the process that serves them (after
    fork).
    """
    global _controller
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return lambda name, obj: obj
    controller = Controller(Path(folder), role, tuple(components))
    _controller = controller
    signal.signal(SIGNAL, controller.poke)
    controller.arm()
    threading.Thread(target=controller.loop, name="fault-controller", daemon=True).start()
    return lambda name, obj: _Slowed(obj, controller.delay_of(name))


def install(role: str, contexts: Mapping[str, object]) -> dict[str, object]:
    """`arm` for `contexts` (component -> object), and the wrapped objects to serve."""
    wrap = arm(role, tuple(contexts))
    return {name: wrap(name, obj) for name, obj in contexts.items()}
