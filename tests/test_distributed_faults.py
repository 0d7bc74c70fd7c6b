"""The distributed variant under faults: services really SIGKILLed while load runs.

One deployment (tiny dataset) serves the module, started through the variant registry as the
harness starts it, in its own process group, always stopped. Load is light (a few threads
of `http.client`) and every request is recorded, so each test asserts on what clients saw.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from archlab.deployers import get_variant
from archlab.host import procs

READY_S = 60.0


@dataclass
class Deployment:
    base_url: str
    port: int
    state_dir: Path
    proc: procs.Proc

    def lifecycle(self) -> list[dict]:
        path = self.state_dir / "lifecycle.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def pid(self, role: str) -> int:
        events = self.lifecycle()
        starts = [e for e in events if e["role"] == role and e["event"] in ("start", "restart")]
        return int(starts[-1]["pid"])

    def kill(self, role: str) -> int:
        """SIGKILL the service's whole process tree (its gunicorn master and workers)."""
        pid = self.pid(role)
        os.killpg(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, role: str, old_pid: int, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.lifecycle():
                if (
                    event["role"] == role
                    and event["event"] == "restart"
                    and event["pid"] != old_pid
                ):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"{role} was not restarted; lifecycle: {self.lifecycle()}")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    spec = get_variant("distributed")
    root = tmp_path_factory.mktemp("distributed-faults")
    state_dir = root / "state"
    port = procs.free_port()
    cmd = spec.command(
        port=port, size="tiny", seed=1, state_dir=state_dir, knobs=spec.resolve_knobs({})
    )
    with procs.running(cmd, name="distributed", log_path=root / "server.log") as proc:
        base_url = f"http://127.0.0.1:{port}"
        procs.wait_healthy(proc, f"{base_url}/healthz", READY_S)
        yield Deployment(base_url, port, state_dir, proc)


def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, payload, headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    except OSError:
        return 0, None  # connection refused/reset: recorded as a failure, not raised
    finally:
        conn.close()


def place(port: int, product_id: int) -> tuple[int, dict | None]:
    """One order of one unit (spread over products: tiny stocks can run out)."""
    order = {
        "customer_id": 1,
        "items": [{"product_id": product_id, "qty": 1}],
        "idempotency_key": f"fault-{uuid.uuid4().hex}",
    }
    return request(port, "POST", "/orders", order)


@dataclass
class Load:
    """A few client threads, each looping over its endpoints until stopped."""

    port: int
    orders: bool = True
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
            pid = 1 + i % 50
            status, _ = request(self.port, "GET", f"/products/{pid}")
            self._record("product", status)
            status, _ = request(self.port, "GET", "/products?q=steel")
            self._record("search", status)
            time.sleep(0.01)

    def _recommend(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            status, body = request(self.port, "GET", f"/products/{1 + i % 50}/recommendations")
            self._record("recommendations", status, bool(body and body.get("degraded")))
            time.sleep(0.01)

    def _order(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            status, body = place(self.port, 1 + (i * 7 + threading.get_ident()) % 200)
            self._record("order", status)
            if status == 201 and body:
                with self.lock:
                    self.placed.append(body["id"])
                status, _ = request(self.port, "GET", f"/orders/{body['id']}")
                self._record("order_read", status)
            time.sleep(0.01)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        targets = [self._browse, self._recommend] + (
            [self._order, self._order] if self.orders else []
        )
        threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in threads:
                t.join(20)

    def statuses(self, endpoint: str) -> list[int]:
        with self.lock:
            return [s for _, e, s, _ in self.seen if e == endpoint]

    def recommendations_since(self, t0: float) -> list[tuple[int, bool]]:
        with self.lock:
            return [(s, d) for t, e, s, d in self.seen if e == "recommendations" and t >= t0]


def test_killing_recommendations_degrades_only_recommendations(deployment: Deployment) -> None:
    with Load(deployment.port).running() as load:
        time.sleep(0.5)
        killed_at = time.monotonic()
        old = deployment.kill("recommendations")
        deployment.wait_restarted("recommendations", old)
        deadline = time.monotonic() + 30
        recovered = False
        while time.monotonic() < deadline and not recovered:
            time.sleep(0.1)
            after = load.recommendations_since(killed_at)
            recovered = any(d for _, d in after) and not after[-1][1]
        time.sleep(0.5)
    after = load.recommendations_since(killed_at)
    assert any(degraded for _, degraded in after), "the outage was never seen as degraded"
    assert recovered, f"recommendations never recovered: {after[-5:]}"
    assert set(load.statuses("recommendations")) == {200}  # degraded, never a 5xx
    for endpoint, ok in (("product", {200}), ("search", {200}), ("order", {201})):
        statuses = load.statuses(endpoint)
        assert statuses and set(statuses) == ok, f"{endpoint}: {sorted(set(statuses))}"
    assert set(load.statuses("order_read")) == {200}


def _sink(state_dir: Path) -> tuple[list[int], int, int]:
    """Order ids in the notification sink, stored orders, and outbox events not yet acked."""
    with contextlib.closing(
        sqlite3.connect(f"file:{state_dir / 'notifications.db'}?mode=ro", uri=True)
    ) as notes:
        sent = [r[0] for r in notes.execute("SELECT order_id FROM sink")]
    with contextlib.closing(
        sqlite3.connect(f"file:{state_dir / 'orders.db'}?mode=ro", uri=True)
    ) as orders:
        (stored,) = orders.execute("SELECT COUNT(*) FROM orders").fetchone()
        (pending,) = orders.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL").fetchone()
    return sent, stored, pending


def test_killing_notifications_loses_and_repeats_nothing(deployment: Deployment) -> None:
    load = Load(deployment.port)
    with load.running():
        time.sleep(0.7)
        old = deployment.kill("notifications")
        time.sleep(0.7)  # orders keep coming while notifications is down
        deployment.wait_restarted("notifications", old)
        time.sleep(0.5)
    assert load.placed and set(load.statuses("order")) == {201}
    deadline = time.monotonic() + 30
    while True:
        sent, stored, pending = _sink(deployment.state_dir)
        if (len(sent) == stored and pending == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(sent) == len(set(sent)), "a notification was sent twice"
    with contextlib.closing(
        sqlite3.connect(f"file:{deployment.state_dir / 'orders.db'}?mode=ro", uri=True)
    ) as orders:
        ids = {r[0] for r in orders.execute("SELECT id FROM orders")}
    assert set(sent) == ids, f"{len(ids - set(sent))} orders never notified"
    assert set(load.placed) <= ids and pending == 0


def test_a_killed_worker_is_replaced_by_its_master_and_recorded(deployment: Deployment) -> None:
    master = psutil.Process(deployment.pid("catalog"))
    (worker,) = master.children()
    worker.kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alive = [w for w in master.children() if w.pid != worker.pid]
        if alive and request(deployment.port, "GET", "/products/2")[0] == 200:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("catalog's worker was not replaced")
    deaths = [e for e in deployment.lifecycle() if e["event"] == "exit" and e["pid"] == worker.pid]
    assert deaths == [{**deaths[0], "role": "catalog", "process": "worker", "expected": False}], (
        deaths
    )
    assert master.is_running()  # the service itself did not restart


def test_a_sigkilled_launcher_leaves_no_orphans(deployment: Deployment) -> None:
    launcher = psutil.Process(deployment.proc.pid)
    family = launcher.children(recursive=True)
    assert len(family) >= 12  # six services, each a gunicorn master and a worker
    launcher.kill()
    gone, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, f"orphans: {[(p.pid, p.name()) for p in alive]}"


def test_sigterm_stops_every_service_in_order(tmp_path: Path) -> None:
    port = procs.free_port()
    state_dir = tmp_path / "state"
    cmd = [sys.executable, "-m", "variants.distributed", "--port", str(port)]
    cmd += ["--state-dir", str(state_dir)]
    proc = procs.start(cmd, name="distributed", log_path=tmp_path / "server.log")
    try:
        procs.wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", READY_S)
        # The gateway can answer before the launcher's own probe has logged it ready.
        lifecycle = state_dir / "lifecycle.jsonl"
        deadline = time.monotonic() + READY_S
        while lifecycle.read_text().count('"event": "ready"') < 6:
            assert time.monotonic() < deadline, lifecycle.read_text()
            time.sleep(0.05)
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(30) == 0
        _, alive = psutil.wait_procs(family, timeout=5)
        assert not alive
    except subprocess.TimeoutExpired:
        pytest.fail(f"the launcher did not stop:\n{proc.log_tail()}")
    finally:
        procs.stop(proc)
    events = [json.loads(line) for line in (state_dir / "lifecycle.jsonl").read_text().splitlines()]
    exits = [e for e in events if e["event"] == "exit"]
    assert all(e["expected"] and e["exit_code"] == 0 for e in exits), exits
    assert exits[0]["role"] == "gateway" and len(exits) == 6
    assert {e["role"] for e in events if e["event"] == "ready"} == {e["role"] for e in exits}
    runtime = json.loads((state_dir / "topology.json").read_text())
    assert runtime["services"]["gateway"]["url"] == f"http://127.0.0.1:{port}"
