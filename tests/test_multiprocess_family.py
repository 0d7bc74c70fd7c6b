"""The process family end to end: titles, crash policies under load, shutdown, orphans, memory.

Every family is started with `support.deployment` (its own process group, on loopback, two
backends), which kills every process it ever saw below the postmaster whatever happens, even
when parent-death signalling fails; every wait polls the condition itself, bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import support
from support import Deployment, Load, held, request, wait_until

from archlab.host import procs
from variants import telemetry
from variants.multiprocess.backend import socket_path
from variants.multiprocess.ipc import UdsTransport
from variants.multiprocess.postmaster import AUX_STOP_S, BACKEND_STOP_S, QUIT_S
from variants.rpc import Codec, make_proxy

AUX = ("inventory", "orders", "recommendations", "notifications")
NEEDS = {  # what `support.Load` asks -> the auxiliaries it calls
    "search": set(),
    "product": {"inventory"},
    "recommendations": {"recommendations"},
    "order": {"orders", "inventory"},
    "order_read": {"orders"},
}
ASKED_ALWAYS = ("search", "product", "recommendations", "order")  # order_read follows a 201
WAIT_S = 30.0  # a restart, a health check: far longer than either takes
# the postmaster gives an immediate stop (SIGQUIT) QUIT_S before it SIGKILLs; nothing about an
# immediate death may take longer than a few times that
IMMEDIATE_S = 4 * QUIT_S
# a graceful stop: the backends, then each auxiliary in turn, each within its grace
GRACEFUL_S = BACKEND_STOP_S + len(AUX) * AUX_STOP_S


@contextlib.contextmanager
def family(
    root: Path,
    *,
    size: str = "tiny",
    env: dict[str, str] | None = None,
    log_level: str = "info",
    **knobs: Any,
) -> Iterator[Deployment]:
    """The family with two backends of four threads (no model rebuilds), healthy."""
    with support.deployment(
        "multiprocess",
        root,
        knobs={"backends": 2, "threads": 4, **knobs},
        size=size,
        env=env,
        extra_args=["--rebuild-interval", "0", "--log-level", log_level],
        ready_timeout_s=180.0,
    ) as dep:
        yield dep


def members(dep: Deployment) -> dict[str, psutil.Process]:
    """Title -> process, for the postmaster and its live children."""
    root = psutil.Process(dep.proc.pid)
    found = {}
    for p in [root, *root.children()]:
        with contextlib.suppress(psutil.Error):
            if p.status() != psutil.STATUS_ZOMBIE:
                found[" ".join(p.cmdline()).strip()] = p
    return found


def titled(dep: Deployment, title: str) -> int:
    return members(dep)[telemetry.process_title(title)].pid


def healthy(dep: Deployment, component: str | None = None) -> bool:
    status, body = request(dep.base_url, "GET", "/healthz", timeout_s=5)
    if component is None:
        return status == 200
    return isinstance(body, dict) and body.get("components", {}).get(component) == "ok"


def exits(dep: Deployment, pid: int) -> list[dict[str, Any]]:
    return [e for e in dep.lifecycle() if e["event"] == "exit" and e["pid"] == pid]


def answers(load: Load, since: float, until: float) -> list[tuple[float, str, int, bool]]:
    with load.lock:
        return [r for r in load.seen if since <= r[0] <= until]


# --------------------------------------------------------------------------- the family


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One family for the tests that leave its configuration as they found it."""
    with family(tmp_path_factory.mktemp("family")) as dep:
        yield dep


def test_ps_shows_the_titled_family(server: Deployment) -> None:
    titles = set(members(server))
    expected = {f"archlab: {t}" for t in ("postmaster", *AUX, "backend 1", "backend 2")}
    assert titles == expected
    events = [e["event"] for e in server.lifecycle()]
    assert events[:2] == ["postmaster-start", "catalog-segment"]
    wait_until(
        lambda: sum(e["event"] == "ready" for e in server.lifecycle()) >= 6, WAIT_S, "both backends"
    )
    started = [e["role"] for e in server.lifecycle() if e["event"] == "ready"]
    assert started[:6] == [*AUX, "backend", "backend"]  # each ready before the next starts


def test_killing_each_auxiliary_hurts_only_its_own_endpoints(server: Deployment) -> None:
    """While an auxiliary is dead (its restart held back by freezing the postmaster until the
    load has asked every endpoint twice), the endpoints that do not call it answer normally and
    those that do answer 503 (or a degraded 200); once it is restarted everything answers."""
    notes = make_proxy(
        "notifications",
        UdsTransport(socket_path(server.state_dir / "sockets", "notifications")),
        Codec("msgpack"),
    )
    load = Load(server.base_url)
    with load.running():
        wait_until(lambda: all(load.count(e) for e in NEEDS), WAIT_S, "the load on every endpoint")
        for role in ("recommendations", "notifications", "inventory", "orders"):
            old = psutil.Process(server.pid(role))
            asked = [*ASKED_ALWAYS, *(["order_read"] if role not in NEEDS["order"] else [])]
            with held(server.proc.pid):
                old.kill()
                wait_until(lambda o=old: not procs.live(o), WAIT_S, f"{role} to die")
                down_at = time.monotonic()
                wait_until(
                    lambda t=down_at, a=asked: all(load.count(e, t) >= 2 for e in a),
                    WAIT_S,
                    f"the load to ask {asked} twice each while {role} is down",
                )
                outage = answers(load, down_at, time.monotonic())
            for _, endpoint, code, degraded in outage:
                if role not in NEEDS[endpoint]:
                    assert 200 <= code < 300 and not degraded, (role, endpoint, code)
                else:  # 2xx only for a call that was through before the kill
                    assert code in (200, 201, 503), (role, endpoint, code)
            for endpoint in (e for e in asked if role in NEEDS[e]):
                assert any(
                    code == 503 or degraded for _, e, code, degraded in outage if e == endpoint
                ), f"{endpoint} never showed that {role} was down: {outage}"
            wait_until(lambda r=role, o=old.pid: _back(server, r, o), WAIT_S, f"{role} back")
            # its endpoints answer again
            status, placed = request(server.base_url, "POST", "/orders", support.order_body(9))
            assert status == 201, placed
            assert request(server.base_url, "GET", f"/orders/{placed['id']}")[0] == 200
            assert request(server.base_url, "GET", "/products/9")[0] == 200
            status, recs = request(server.base_url, "GET", "/products/9/recommendations")
            assert status == 200 and not recs["degraded"]
            (death,) = exits(server, old.pid)
            assert death["signal"] == "SIGKILL" and death["expected"] is False
        sent = notes.sent_count()
        wait_until(lambda: notes.sent_count() > sent, WAIT_S, "the new notifications to send")
    assert 0 not in {status for _, _, status, _ in load.seen}  # no connection ever failed


def _back(server: Deployment, role: str, old: int) -> bool:
    with contextlib.suppress(KeyError, psutil.Error):
        component = None if role.startswith("backend") else role
        pid = titled(server, role)
        return pid != old and healthy(server, component)
    return False


def test_backend_crash_restarts_all_backends_then_sighup_switches_to_restart_one(
    tmp_path: Path,
) -> None:
    with family(tmp_path) as server:  # its own: SIGHUP changes the backends' policy
        aux_before = {role: titled(server, role) for role in AUX}
        backends = {titled(server, "backend 1"), titled(server, "backend 2")}
        os.kill(titled(server, "backend 1"), signal.SIGKILL)

        def all_replaced() -> bool:
            now = {p.pid for t, p in members(server).items() if t.startswith("archlab: backend")}
            return len(now) == 2 and not now & backends and healthy(server)

        wait_until(all_replaced, WAIT_S, "every backend to be restarted")
        assert {role: titled(server, role) for role in AUX} == aux_before  # message-only
        events = [e["event"] for e in server.lifecycle()]
        assert "crash-restart-all" in events and "reinit" in events

        (server.state_dir / "multiprocess.json").write_text(
            '{"policies": {"backend": "restart-one"}}'
        )
        reloaded_at = len(server.lifecycle())
        os.kill(server.proc.pid, signal.SIGHUP)

        def rolled() -> bool:
            log = server.lifecycle()[reloaded_at:]
            return sum(1 for e in log if e["event"] == "exit" and e["role"] == "backend") >= 2

        wait_until(rolled, WAIT_S, "the backends to be replaced after SIGHUP")
        assert server.lifecycle()[reloaded_at]["event"] == "reload"
        survivor = titled(server, "backend 2")
        victim = titled(server, "backend 1")
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: _back(server, "backend 1", victim), WAIT_S, "backend 1 to return")
        assert titled(server, "backend 2") == survivor  # restart-one: the other kept serving
        assert sum(1 for e in server.lifecycle() if e["event"] == "reinit") == 1


def test_crash_restart_all_for_an_auxiliary_then_sigquit(tmp_path: Path) -> None:
    with family(tmp_path, policy_inventory="crash-restart-all") as server:
        backends = {titled(server, "backend 1"), titled(server, "backend 2")}
        orders = titled(server, "orders")
        victim = titled(server, "inventory")
        os.kill(victim, signal.SIGKILL)

        def recovered() -> bool:
            now = {p.pid for t, p in members(server).items() if t.startswith("archlab: backend")}
            return len(now) == 2 and not now & backends and _back(server, "inventory", victim)

        wait_until(recovered, WAIT_S, "inventory and every backend to be restarted")
        assert titled(server, "orders") == orders
        (crash,) = [e for e in server.lifecycle() if e["event"] == "crash-restart-all"]
        assert crash["role"] == "inventory" and sorted(crash["terminating"]) == sorted(backends)
        assert request(server.base_url, "GET", "/products/3")[0] == 200

        server.tree.look()  # every member it ever had, the killed ones included
        os.kill(server.proc.pid, signal.SIGQUIT)  # immediate shutdown
        assert server.proc.popen.wait(IMMEDIATE_S) == 2
        assert not server.tree.alive()  # it waited for them all


# --------------------------------------------------------------------------- stopping


def test_sigterm_stops_backends_then_auxiliaries_in_reverse_order(tmp_path: Path) -> None:
    telemetry = tmp_path / "telemetry"  # every process then runs a telemetry thread too
    env = {"ARCHLAB_TELEMETRY_DIR": str(telemetry)}
    with family(tmp_path, env=env, log_level="debug") as server:  # debug: ignored signals
        server.tree.look()
        orders = members(server)["archlab: orders"]
        ignored = ("SIGTERM", "SIGINT", "SIGHUP")  # the postmaster's business
        for name in ignored:
            orders.send_signal(signal.Signals[name])

        def logged_ignoring() -> bool:
            log = server.log_path.read_text(errors="replace")
            return all(
                re.search(rf"\[{orders.pid}\] orders .*ignoring {name} from pid {os.getpid()}", log)
                for name in ignored
            )

        wait_until(logged_ignoring, WAIT_S, f"orders to take {ignored} and say it ignores them")
        assert procs.live(orders) and healthy(server, "orders")
        status, _ = request(server.base_url, "POST", "/orders", support.order_body(5))
        assert status == 201  # and it still serves
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.popen.wait(GRACEFUL_S) == 0
        log = server.lifecycle()
        assert not server.tree.alive()
    order = [e["role"] for e in log if e["event"] == "exit"]
    assert order[:2] == ["backend", "backend"]
    assert order[2:] == list(reversed(AUX))
    assert all(e["expected"] for e in log if e["event"] == "exit")
    assert log[-1] == {**log[-1], "event": "postmaster-exit", "exit_code": 0}
    roles = {f.name.split("-")[1] for f in telemetry.glob("gc-*.csv")}
    assert {"postmaster", "catalog", "backend", *AUX} <= roles  # telemetry in every process


def test_sigkill_of_the_postmaster_leaves_no_orphans(tmp_path: Path) -> None:
    with family(tmp_path) as server:
        server.tree.look()
        assert len(server.tree.alive()) == 6  # four auxiliaries, two backends
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.popen.wait(IMMEDIATE_S)
        wait_until(
            lambda: not server.tree.alive(),
            IMMEDIATE_S,
            "every child to die with the postmaster (PR_SET_PDEATHSIG)",
        )
        # A threaded backend whose main thread has exited reads as a zombie while its other
        # threads still close their files: the port is free a moment later, not at once.
        wait_until(
            lambda: not procs.port_in_use(server.port), IMMEDIATE_S, "the port to be released"
        )


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


def exercise_catalog(server: Deployment, products: int) -> None:
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


def measure(server: Deployment) -> dict[str, Any]:
    fam = members(server)
    backends = [p for t, p in fam.items() if t.startswith("archlab: backend")]
    maps = {t: catalog_mapping(p.pid) for t, p in fam.items()}
    segment = next(e["bytes"] for e in server.lifecycle() if e["event"] == "catalog-segment")
    return {
        "segment_kb": segment // 1024,
        "uss_kb": [p.memory_full_info().uss // 1024 for p in backends],
        "maps": maps,
        "backend_maps": [maps[t] for t, p in fam.items() if p in backends],
    }


def test_the_catalog_is_one_shared_segment_counted_once(tmp_path: Path) -> None:
    measured = {}
    for size, products in (("tiny", 200), ("small", 20_000)):
        with family(tmp_path / size, size=size) as server:
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
