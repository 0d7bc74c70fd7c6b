"""The process family end to end: titles, crash policies under load, shutdown, orphans, memory.

Every server runs in its own process group through `archlab.host.procs` (always stopped), on
loopback, with two backends; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from archlab.deployers import get_variant
from archlab.host import procs
from variants.multiprocess.backend import socket_path
from variants.multiprocess.ipc import UdsTransport
from variants.rpc import Codec, make_proxy

AUX = ("inventory", "orders", "recommendations", "notifications")
NEEDS = {  # endpoint -> the auxiliaries it calls
    "search": set(),
    "product": {"inventory"},
    "recs": {"recommendations"},
    "order": {"orders"},
    "place": {"orders", "inventory"},
}
WAIT_S = 20.0


@dataclass
class Server:
    proc: procs.Proc
    port: int
    state_dir: Path

    @property
    def lifecycle(self) -> list[dict[str, Any]]:
        path = self.state_dir / "lifecycle.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def family(self) -> dict[str, psutil.Process]:
        """Title -> process, for the postmaster and its live children."""
        root = psutil.Process(self.proc.pid)
        found = {}
        for p in [root, *root.children()]:
            with contextlib.suppress(psutil.Error):
                if p.status() != psutil.STATUS_ZOMBIE:
                    found[" ".join(p.cmdline()).strip()] = p
        return found

    def pid(self, title: str) -> int:
        return self.family()[f"archlab: {title}"].pid

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def post_order(self, pid: int) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = {"customer_id": 3, "items": [{"product_id": pid, "qty": 1}]}
        body["idempotency_key"] = f"t-{uuid.uuid4().hex}"  # type: ignore[assignment]
        try:
            conn.request("POST", "/orders", json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def healthy(self, role: str | None = None) -> bool:
        with contextlib.suppress(OSError):
            status, body = self.get("/healthz")
            if role is None:
                return status == 200
            return body["components"].get(role) == "ok"
        return False


@contextlib.contextmanager
def family_server(
    tmp: Path, size: str = "tiny", env: dict[str, str] | None = None, **knobs: Any
) -> Iterator[Server]:
    spec = get_variant("multiprocess")
    tmp.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    state_dir = tmp / "state"
    cmd = spec.command(
        port=port,
        size=size,
        seed=1,
        state_dir=state_dir,
        knobs=spec.resolve_knobs({"backends": 2, "threads": 4, **knobs}),
    )
    cmd += ["--rebuild-interval", "0"]
    environ = {**os.environ, **(env or {})}
    with procs.running(cmd, name="multiprocess", log_path=tmp / "server.log", env=environ) as proc:
        procs.wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", 180)
        yield Server(proc, port, state_dir)


def wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> float:
    """Poll `check` until true; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


@dataclass
class Load:
    """A few threads replaying every endpoint over keep-alive connections, recording statuses."""

    server: Server
    order_id: int
    threads: int = 3
    records: list[tuple[float, str, int, bool]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, args=(i,)) for i in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for w in self._workers:
            w.join(15)

    def _run(self, seed: int) -> None:
        conn: http.client.HTTPConnection | None = None
        i = seed
        requests = [
            ("search", "GET", "/products?q=lamp"),
            ("product", "GET", "/products/{pid}"),
            ("recs", "GET", "/products/{pid}/recommendations?k=3"),
            ("order", "GET", f"/orders/{self.order_id}"),
            ("place", "POST", "/orders"),
        ]
        deadline = time.monotonic() + 120
        while not self.stopping.is_set() and time.monotonic() < deadline:
            i += 1
            name, method, path = requests[i % len(requests)]
            path = path.replace("{pid}", str(1 + i % 150))
            body = headers = None
            if method == "POST":
                body = json.dumps(
                    {
                        "customer_id": 1 + i % 50,
                        "items": [{"product_id": 1 + i % 150, "qty": 1}],
                        "idempotency_key": f"load-{seed}-{i}-{uuid.uuid4().hex[:8]}",
                    }
                )
                headers = {"Content-Type": "application/json"}
            started = time.time()
            status, degraded = 0, False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
                conn.request(method, path, body, headers or {})
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                degraded = name == "recs" and status == 200 and json.loads(data)["degraded"]
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            self.records.append((started, name, status, degraded))
            time.sleep(0.005)
        if conn is not None:
            conn.close()

    def between(self, start: float, end: float) -> list[tuple[float, str, int, bool]]:
        return [r for r in self.records if start <= r[0] <= end]


def exits(server: Server, pid: int) -> list[dict[str, Any]]:
    return [e for e in server.lifecycle if e["event"] == "exit" and e["pid"] == pid]


# --------------------------------------------------------------------------- the family


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with family_server(tmp_path_factory.mktemp("family")) as srv:
        yield srv


def test_ps_shows_the_titled_family(server: Server) -> None:
    titles = set(server.family())
    expected = {f"archlab: {t}" for t in ("postmaster", *AUX, "backend 1", "backend 2")}
    assert titles == expected
    events = [e["event"] for e in server.lifecycle]
    assert events[:2] == ["postmaster-start", "catalog-segment"]
    wait_for("both backends", lambda: sum(e["event"] == "ready" for e in server.lifecycle) >= 6)
    started = [e["role"] for e in server.lifecycle if e["event"] == "ready"]
    assert started[:6] == [*AUX, "backend", "backend"]  # each ready before the next starts


def test_killing_each_auxiliary_hurts_only_its_own_endpoints(server: Server) -> None:
    status, order = server.post_order(7)
    assert status == 201
    notes = make_proxy(
        "notifications",
        UdsTransport(socket_path(server.state_dir / "sockets", "notifications")),
        Codec("msgpack"),
    )
    with Load(server, order["id"]) as load:
        time.sleep(0.5)
        for role in ("recommendations", "notifications", "inventory", "orders"):
            old = server.pid(role)
            killed_at = time.time()
            os.kill(old, signal.SIGKILL)
            wait_for(f"{role} to come back", lambda r=role, o=old: _back(server, r, o))
            time.sleep(0.3)
            window = load.between(killed_at, time.time())
            assert len(window) > 20, f"too little load while {role} was down"
            for _, endpoint, code, degraded in window:
                if role not in NEEDS[endpoint]:
                    assert 200 <= code < 300 and not degraded, (role, endpoint, code)
                else:
                    assert code in (200, 201, 503), (role, endpoint, code)
            # its endpoints answer again
            status, placed = server.post_order(9)
            assert status == 201, placed
            assert server.get(f"/orders/{placed['id']}")[0] == 200
            assert server.get("/products/9")[0] == 200
            status, recs = server.get("/products/9/recommendations")
            assert status == 200 and not recs["degraded"]
            (death,) = exits(server, old)
            assert death["signal"] == "SIGKILL" and death["expected"] is False
        sent = notes.sent_count()
        wait_for("the new notifications process to send", lambda: notes.sent_count() > sent)
    assert sum(1 for r in load.records if r[2] == 0) == 0  # no connection ever failed


def _back(server: Server, role: str, old: int) -> bool:
    with contextlib.suppress(KeyError, psutil.Error):
        component = None if role.startswith("backend") else role
        return server.pid(role) != old and server.healthy(component)
    return False


def test_backend_crash_restarts_all_backends_then_sighup_switches_to_restart_one(
    server: Server,
) -> None:
    aux_before = {role: server.pid(role) for role in AUX}
    backends = {server.pid("backend 1"), server.pid("backend 2")}
    os.kill(server.pid("backend 1"), signal.SIGKILL)

    def all_replaced() -> bool:
        fam = server.family()
        now = {p.pid for t, p in fam.items() if t.startswith("archlab: backend")}
        return len(now) == 2 and not now & backends and server.healthy()

    wait_for("every backend to be restarted", all_replaced)
    assert {role: server.pid(role) for role in AUX} == aux_before  # message-only: untouched
    events = [e["event"] for e in server.lifecycle]
    assert "crash-restart-all" in events and "reinit" in events

    (server.state_dir / "multiprocess.json").write_text('{"policies": {"backend": "restart-one"}}')
    reloaded_at = len(server.lifecycle)
    os.kill(server.proc.pid, signal.SIGHUP)

    def rolled() -> bool:
        log = server.lifecycle[reloaded_at:]
        return sum(1 for e in log if e["event"] == "exit" and e["role"] == "backend") >= 2

    wait_for("the backends to be replaced after SIGHUP", rolled)
    assert server.lifecycle[reloaded_at]["event"] == "reload"
    survivor = server.pid("backend 2")
    victim = server.pid("backend 1")
    os.kill(victim, signal.SIGKILL)
    wait_for("backend 1 to return", lambda: _back(server, "backend 1", victim))
    assert server.pid("backend 2") == survivor  # restart-one: the other backend kept serving
    assert sum(1 for e in server.lifecycle if e["event"] == "reinit") == 1


def test_crash_restart_all_for_an_auxiliary_then_sigquit(tmp_path: Path) -> None:
    with family_server(tmp_path, policy_inventory="crash-restart-all") as server:
        backends = {server.pid("backend 1"), server.pid("backend 2")}
        orders = server.pid("orders")
        victim = server.pid("inventory")
        os.kill(victim, signal.SIGKILL)

        def recovered() -> bool:
            fam = server.family()
            now = {p.pid for t, p in fam.items() if t.startswith("archlab: backend")}
            return len(now) == 2 and not now & backends and _back(server, "inventory", victim)

        wait_for("inventory and every backend to be restarted", recovered)
        assert server.pid("orders") == orders
        (crash,) = [e for e in server.lifecycle if e["event"] == "crash-restart-all"]
        assert crash["role"] == "inventory" and sorted(crash["terminating"]) == sorted(backends)
        assert server.get("/products/3")[0] == 200

        members = [p for p in server.family().values() if p.pid != server.proc.pid]
        os.kill(server.proc.pid, signal.SIGQUIT)  # immediate shutdown
        assert server.proc.popen.wait(10) == 2
        assert not any(_alive(p) for p in members)


# --------------------------------------------------------------------------- stopping


def test_sigterm_stops_backends_then_auxiliaries_in_reverse_order(tmp_path: Path) -> None:
    telemetry = tmp_path / "telemetry"  # every process then runs a telemetry thread too
    with family_server(tmp_path, env={"ARCHLAB_TELEMETRY_DIR": str(telemetry)}) as server:
        members = [p for p in server.family().values() if p.pid != server.proc.pid]
        orders = server.family()["archlab: orders"]
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # the postmaster's business
            orders.send_signal(sig)
        time.sleep(0.3)
        assert _alive(orders) and server.healthy()
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.popen.wait(20) == 0
        log = server.lifecycle
    order = [e["role"] for e in log if e["event"] == "exit"]
    assert order[:2] == ["backend", "backend"]
    assert order[2:] == list(reversed(AUX))
    assert all(e["expected"] for e in log if e["event"] == "exit")
    assert log[-1] == {**log[-1], "event": "postmaster-exit", "exit_code": 0}
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in members)
    roles = {f.name.split("-")[1] for f in telemetry.glob("gc-*.csv")}
    assert {"postmaster", "catalog", "backend", *AUX} <= roles  # telemetry in every process


def test_sigkill_of_the_postmaster_leaves_no_orphans(tmp_path: Path) -> None:
    with family_server(tmp_path) as server:
        members = [p for p in server.family().values() if p.pid != server.proc.pid]
        assert len(members) == 6
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.popen.wait(5)
        took = wait_for(
            "every child to die with the postmaster",
            lambda: not any(_alive(p) for p in members),
            timeout=5,
        )
        assert took < 3
        assert not procs.port_in_use(server.port)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --------------------------------------------------------------------------- shared memory


@dataclass(frozen=True)
class Mapping:
    inode: int
    rss_kb: int
    pss_kb: int
    private_kb: int


def catalog_mapping(pid: int) -> Mapping | None:
    """The catalog segment as mapped by `pid`, from /proc/<pid>/smaps."""
    found: Mapping | None = None
    current: dict[str, int] | None = None
    inode = 0
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ (\d+)\s*(.*)$", line)
            if head:
                current = {} if "/memfd:archlab-catalog" in head.group(2) else None
                inode = int(head.group(1))
                if current is not None:
                    found = None
                    sizes = current
            elif current is not None and line.split(":")[0] in (
                "Rss",
                "Pss",
                "Private_Clean",
                "Private_Dirty",
            ):
                key, value = line.split(":")
                current[key] = int(value.split()[0])
                if key == "Private_Dirty":
                    found = Mapping(
                        inode,
                        sizes["Rss"],
                        sizes["Pss"],
                        sizes["Private_Clean"] + sizes["Private_Dirty"],
                    )
    return found


def exercise_catalog(server: Server, products: int) -> None:
    """Read every product (listing) and a sample by id, on many short keep-alive connections,
    so that both backends (which share the listening socket) read a good part of it."""

    def reader(k: int) -> None:
        paths = [f"/products?page={p}&page_size=100" for p in range(1 + k, products // 100 + 2, 8)]
        paths += [f"/products/{i}" for i in range(1 + k, products + 1, max(8, products // 400))]
        for start in range(0, len(paths), 5):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for path in paths[start : start + 5]:
                conn.request("GET", path)
                assert conn.getresponse().read()
            conn.close()

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def measure(server: Server) -> dict[str, Any]:
    fam = server.family()
    backends = [p for t, p in fam.items() if t.startswith("archlab: backend")]
    maps = {t: catalog_mapping(p.pid) for t, p in fam.items()}
    segment = next(e["bytes"] for e in server.lifecycle if e["event"] == "catalog-segment")
    return {
        "segment_kb": segment // 1024,
        "uss_kb": [p.memory_full_info().uss // 1024 for p in backends],
        "maps": maps,
        "backend_maps": [maps[t] for t, p in fam.items() if p in backends],
    }


def test_the_catalog_is_one_shared_segment_counted_once(tmp_path: Path) -> None:
    measured = {}
    for size, products in (("tiny", 200), ("small", 20_000)):
        with family_server(tmp_path / size, size=size) as server:
            exercise_catalog(server, products)
            measured[size] = measure(server)
    small, tiny = measured["small"], measured["tiny"]
    maps = small["maps"]
    # One segment: the postmaster, both backends and orders map the same memfd inode.
    mapped = {t: m for t, m in maps.items() if m is not None}
    assert set(mapped) == {
        "archlab: postmaster",
        "archlab: orders",
        "archlab: backend 1",
        "archlab: backend 2",
    }
    assert len({m.inode for m in mapped.values()}) == 1
    # Counted once: no child holds a private page of it (the postmaster maps every page, so
    # a page is private only to the postmaster, before any child reads it), and the PSS of
    # all the mappings adds up to its size.
    assert all(m.private_kb == 0 for t, m in mapped.items() if t != "archlab: postmaster"), maps
    assert mapped["archlab: postmaster"].rss_kb >= small["segment_kb"] - 4  # populated
    assert abs(sum(m.pss_kb for m in mapped.values()) - small["segment_kb"]) <= 16
    for m in small["backend_maps"]:
        assert m.rss_kb > small["segment_kb"] // 8  # each backend really read the catalog
    # A catalog 100x larger (6 MB instead of 64 kB) leaves the backends' USS where it was.
    assert small["segment_kb"] > 50 * tiny["segment_kb"]
    growth = max(small["uss_kb"]) - max(tiny["uss_kb"])
    assert growth < small["segment_kb"] // 4, (small["uss_kb"], tiny["uss_kb"])
