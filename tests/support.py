"""What the tests share: deployments nothing outlives, one HTTP client, a background load, waits.

- `deployment(variant, root, knobs=...)` starts any variant the harness knows, waits for its
  health and, whatever happens, stops its process group and kills every descendant it ever saw
  (services in their own sessions, restarted children, orphans of a killed supervisor).
- `request(url, method, path, body)`: one HTTP exchange; (0, None) when no answer came.
- `Load`: a few client threads browsing, asking for recommendations and ordering until stopped.
- `wait_until(condition, timeout_s, what)`: poll a condition instead of sleeping as proof.
- `run_cli(args, ...)`: `python -m archlab.cli ...` in its own process group, bounded in time;
  every process it started is killed if it outlives its time or the test.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psutil

from archlab.deployers import get_variant
from archlab.host import procs
from archlab.rundir import LIFECYCLE, MANIFEST, read_jsonl, write_json

READY_TIMEOUT_S = 120.0
T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.05
) -> T:
    """The condition's first truthy value; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(interval_s)


class Descendants:
    """Every process seen below a root pid, remembered so it can be killed after the root died."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.seen: dict[int, psutil.Process] = {}

    def look(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.root_pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)

    def alive(self) -> list[psutil.Process]:
        return [proc for proc in self.seen.values() if procs.live(proc)]

    def kill_all(self) -> list[int]:
        """SIGKILL whatever is still alive; the pids it had to kill."""
        left = self.alive()
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(left, timeout=5)
        return [p.pid for p in left]


@contextlib.contextmanager
def watching(root_pid: int, every_s: float = 0.2) -> Iterator[Descendants]:
    """Record the root's descendants in the background for the block, then kill the leftovers."""
    tree = Descendants(root_pid)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            tree.look()

    thread = threading.Thread(target=loop, name="descendants", daemon=True)
    tree.look()
    thread.start()
    try:
        yield tree
    finally:
        stop.set()
        thread.join(5)
        tree.kill_all()


@contextlib.contextmanager
def held(pid: int) -> Iterator[None]:
    """A supervisor frozen (SIGSTOP) for the block: what dies meanwhile stays dead, so a test
    can watch the outage for as long as it needs; it carries on (SIGCONT) whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@dataclass
class Deployment:
    """A variant that answered its health check: where it is and what it wrote."""

    variant: str
    knobs: dict[str, int | str]
    port: int
    root: Path
    proc: procs.Proc
    tree: Descendants

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def lifecycle(self) -> list[dict[str, Any]]:
        return read_jsonl(self.state_dir / LIFECYCLE)

    def pid(self, role: str) -> int:
        """The newest pid the variant recorded for `role` (started or restarted)."""
        starts = [
            e
            for e in self.lifecycle()
            if e.get("role") == role and e["event"] in ("start", "restart")
        ]
        assert starts, f"no start of {role} in {self.lifecycle()}"
        return int(starts[-1]["pid"])

    def restarted(self, role: str, old_pid: int, timeout_s: float = 30.0) -> dict[str, Any]:
        """The lifecycle event of `role` restarted under a new pid (waits for it)."""
        return wait_until(
            lambda: next(
                (
                    e
                    for e in self.lifecycle()
                    if e.get("role") == role and e["event"] == "restart" and e["pid"] != old_pid
                ),
                None,
            ),
            timeout_s,
            f"{self.variant} restarts {role}",
        )


@contextlib.contextmanager
def deployment(
    variant: str,
    root: Path,
    *,
    knobs: Mapping[str, int | str | None] | None = None,
    size: str = "tiny",
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> Iterator[Deployment]:
    """Start `variant` like the harness does; nothing it started survives the block."""
    spec = get_variant(variant)
    resolved = spec.resolve_knobs(knobs or {})
    root.mkdir(parents=True, exist_ok=True)
    (root / "state").mkdir(exist_ok=True)
    port = procs.free_port()
    cmd = [
        *spec.command(port=port, size=size, seed=1, state_dir=root / "state", knobs=resolved),
        *extra_args,
    ]
    full_env = {**os.environ, **(env or {})}
    with (
        procs.running(
            cmd, name=f"{variant} server", log_path=root / "server.log", env=full_env
        ) as proc,
        watching(proc.pid) as tree,
    ):
        procs.wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", ready_timeout_s)
        yield Deployment(variant, resolved, port, root, proc, tree)


def request(
    url: str, method: str, path: str, body: Any = None, timeout_s: float = 15.0
) -> tuple[int, Any]:
    """One HTTP exchange with a JSON body; (status, parsed body), (0, None) without an answer."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, payload, headers)
        resp = conn.getresponse()
        data = resp.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode("utf-8", errors="replace")
        return resp.status, parsed
    except (OSError, http.client.HTTPException):
        return 0, None  # refused, reset or cut off: a failure to record, not to raise
    finally:
        conn.close()


def order_body(product_id: int, qty: int = 1, customer_id: int = 1) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "items": [{"product_id": product_id, "qty": qty}],
        "idempotency_key": f"test-{uuid.uuid4().hex}",
    }


@dataclass
class Load:
    """Client threads looping over the shop until stopped; every answer recorded with its time.

    Endpoints recorded: product, search, recommendations (with its `degraded` flag), order and
    order_read. Products are spread over the first 200 ids so tiny stocks do not run out.
    """

    base_url: str
    orders: bool = True
    pause_s: float = 0.01
    seen: list[tuple[float, str, int, bool]] = field(default_factory=list)
    placed: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, endpoint: str, status: int, degraded: bool = False) -> None:
        with self.lock:
            self.seen.append((time.monotonic(), endpoint, status, degraded))

    def _browse(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            status, _ = request(self.base_url, "GET", f"/products/{1 + i % 50}")
            self._record("product", status)
            status, _ = request(self.base_url, "GET", "/products?q=steel")
            self._record("search", status)
            self.stop.wait(self.pause_s)

    def _recommend(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            status, body = request(self.base_url, "GET", f"/products/{1 + i % 50}/recommendations")
            degraded = isinstance(body, dict) and bool(body.get("degraded"))
            self._record("recommendations", status, degraded)
            self.stop.wait(self.pause_s)

    def _order(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            product = 1 + (i * 7 + threading.get_ident()) % 200
            status, body = request(self.base_url, "POST", "/orders", order_body(product))
            self._record("order", status)
            if status == 201 and isinstance(body, dict):
                with self.lock:
                    self.placed.append(body["id"])
                status, _ = request(self.base_url, "GET", f"/orders/{body['id']}")
                self._record("order_read", status)
            self.stop.wait(self.pause_s)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        targets = [self._browse, self._recommend] + ([self._order] * 2 if self.orders else [])
        threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in threads:
                t.join(20)

    def count(self, endpoint: str, since: float = 0.0) -> int:
        with self.lock:
            return sum(1 for t, e, _, _ in self.seen if e == endpoint and t >= since)

    def statuses(self, endpoint: str, since: float = 0.0) -> list[int]:
        with self.lock:
            return [s for t, e, s, _ in self.seen if e == endpoint and t >= since]

    def recommendations_since(self, t0: float) -> list[tuple[int, bool]]:
        with self.lock:
            return [(s, d) for t, e, s, d in self.seen if e == "recommendations" and t >= t0]


@dataclass
class CliRun:
    returncode: int | None  # None: killed for outliving its time
    output: str
    killed: list[int]  # pids of processes it left behind that had to be killed


def run_cli(
    args: Sequence[str],
    *,
    timeout_s: float,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> CliRun:
    """`python -m archlab.cli ARGS` in its own group; stopped with everything it started.

    On timeout the CLI gets SIGINT (its own cleanup), then its group is stopped; any descendant
    still alive afterwards (it should be none) is killed and reported in `killed`.
    """
    cmd = [sys.executable, "-m", "archlab.cli", *args]
    proc = procs.start(
        cmd, name="archlab", log_path=log_path, env={**os.environ, **(env or {})}, cwd=cwd
    )
    code: int | None = None
    with watching(proc.pid) as tree:
        try:
            code = proc.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=30)
        finally:
            procs.stop(proc, grace_s=10)
            killed = [p.pid for p in tree.alive()]
    return CliRun(code, log_path.read_text(errors="replace") if log_path.exists() else "", killed)


def synthetic_manifest(root: Path, tags: Sequence[str], kind: str, **extra: Any) -> Path:
    """A run set's manifest over the runs `tags` (already under root/runs) of one figure kind,
    on a synthetic 2-CPU machine: how the figure tests load their hand-made runs."""
    steps = [
        {"tag": t, "kinds": [kind], "run": f"runs/{t}", "cpus": None, "status": "completed"}
        for t in tags
    ]
    machine = {"usable_cpus": [0, 1], "cpu_model": "synthetic", "memory_total_bytes": 2**34}
    write_json(
        root / MANIFEST,
        {"scale": {"name": "synthetic"}, "machine": machine, "steps": steps, **extra},
    )
    return root


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A CSV file with a header row, as the harness writes them: how the figure tests write the
    raw records of their hand-made runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)


def ramp_windows(
    steps: Iterable[tuple[float, float, float]], step_s: float = 10.0, cpu_percent: float = 0.0
) -> list[dict[str, Any]]:
    """summary.json's windows of a ramp, one per (offered req/s, achieved req/s, p99 ms) step,
    the server busy `cpu_percent` x offered / 100: how the figure tests write a ramp's summary."""
    return [
        {
            "index": i,
            "seconds": step_s,
            "offered_rps": float(offered),
            "server_cpu_percent": cpu_percent * offered / 100,
            "endpoints": {
                "ALL": {
                    "count": int(achieved * step_s),
                    "throughput_rps": achieved,
                    "errors": 0,
                    "latency_corrected_ms": {"p50": p99 / 4, "p90": p99 / 2, "p99": p99},
                }
            },
        }
        for i, (offered, achieved, p99) in enumerate(steps)
    ]
