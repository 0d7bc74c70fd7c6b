"""The distributed variant under faults: services really SIGKILLed while load runs.

Deployments come from `support.deployment` (tiny dataset, started through the variant registry
as the harness starts it): whatever happens, it kills every process it ever saw below the
launcher, services in their own sessions included. One deployment serves the tests that leave
it running; a test that stops or kills the launcher starts its own, so any order works. The load
is `support.Load` (a few threads of `http.client`) and records every answer, so each test
asserts on what clients saw. Where a test needs the outage to last until the load has seen it,
it freezes the launcher (SIGSTOP) so the killed service stays dead until it is let go.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import support
from support import Deployment, Load, held, request, wait_until

from variants.distributed.launcher import STOP_GRACE_S

SERVICES = 6  # gateway, catalog, inventory, orders, recommendations, notifications
WAIT_S = 30.0  # a restart, a health check, a drain: far longer than any of them takes


@pytest.fixture(scope="module")
def distributed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One deployment for the tests that kill services, never the launcher."""
    with support.deployment("distributed", tmp_path_factory.mktemp("distributed-faults")) as dep:
        yield dep


def kill_service(dep: Deployment, role: str) -> int:
    """SIGKILL the service's whole process group (its gunicorn master and workers)."""
    pid = dep.pid(role)
    os.killpg(pid, signal.SIGKILL)
    return pid


def dead(pid: int) -> bool:
    """Gone, or a zombie its (perhaps frozen) parent has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def all_ready(dep: Deployment) -> bool:
    """The launcher logged every service ready (the gateway can answer before it does)."""
    return sum(e["event"] == "ready" for e in dep.lifecycle()) >= SERVICES


def test_killing_recommendations_degrades_only_recommendations(distributed: Deployment) -> None:
    load = Load(distributed.base_url)
    with load.running():
        wait_until(lambda: load.count("order_read"), WAIT_S, "the load to place and read an order")
        with held(distributed.proc.pid):
            old = kill_service(distributed, "recommendations")
            wait_until(lambda: dead(old), WAIT_S, "recommendations to die")
            down_at = time.monotonic()
            wait_until(
                lambda: any(degraded for _, degraded in load.recommendations_since(down_at)),
                WAIT_S,
                "a degraded answer while recommendations is down",
            )
        distributed.restarted("recommendations", old)

        def recovered() -> bool:
            after = load.recommendations_since(down_at)
            return bool(after) and not after[-1][1]

        wait_until(recovered, WAIT_S, "recommendations to answer undegraded again")
    assert set(load.statuses("recommendations")) == {200}  # degraded, never a 5xx
    for endpoint, ok in (("product", {200}), ("search", {200}), ("order", {201})):
        statuses = load.statuses(endpoint)
        assert statuses and set(statuses) == ok, f"{endpoint}: {sorted(set(statuses))}"
    assert set(load.statuses("order_read")) == {200}


def _sink(state_dir: Path) -> tuple[list[int], set[int], int]:
    """Order ids in the notification sink, stored order ids, and outbox events not yet acked."""
    with contextlib.closing(
        sqlite3.connect(f"file:{state_dir / 'notifications.db'}?mode=ro", uri=True)
    ) as notes:
        sent = [r[0] for r in notes.execute("SELECT order_id FROM sink")]
    with contextlib.closing(
        sqlite3.connect(f"file:{state_dir / 'orders.db'}?mode=ro", uri=True)
    ) as orders:
        stored = {r[0] for r in orders.execute("SELECT id FROM orders")}
        (pending,) = orders.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL").fetchone()
    return sent, stored, pending


def test_killing_notifications_loses_and_repeats_nothing(distributed: Deployment) -> None:
    load = Load(distributed.base_url)
    with load.running():
        wait_until(lambda: load.placed, WAIT_S, "the load to place an order")
        with held(distributed.proc.pid):
            old = kill_service(distributed, "notifications")
            wait_until(lambda: dead(old), WAIT_S, "notifications to die")
            with load.lock:
                before = len(load.placed)
            wait_until(
                lambda: len(load.placed) >= before + 3,
                WAIT_S,
                "orders placed while notifications is down",
            )
            with load.lock:
                during = set(load.placed[before:])
        distributed.restarted("notifications", old)
    assert load.placed and set(load.statuses("order")) == {201}

    def caught_up() -> bool:
        sent, stored, pending = _sink(distributed.state_dir)
        return set(sent) == stored and pending == 0

    wait_until(caught_up, WAIT_S, "every stored order notified and the outbox drained")
    sent, stored, pending = _sink(distributed.state_dir)
    assert len(sent) == len(set(sent)), "a notification was sent twice"
    assert during <= set(sent), "orders placed during the outage were never notified"
    assert set(load.placed) <= stored and pending == 0


def test_a_killed_worker_is_replaced_by_its_master_and_recorded(distributed: Deployment) -> None:
    master = psutil.Process(distributed.pid("catalog"))
    (worker,) = master.children()
    worker.kill()

    def replaced() -> bool:
        fresh = [w for w in master.children() if w.pid != worker.pid]
        return bool(fresh) and request(distributed.base_url, "GET", "/products/2")[0] == 200

    wait_until(replaced, WAIT_S, "catalog's master to replace its worker")
    deaths = wait_until(
        lambda: [
            e for e in distributed.lifecycle() if e["event"] == "exit" and e["pid"] == worker.pid
        ],
        WAIT_S,
        "the worker's death recorded",
    )
    assert deaths == [{**deaths[0], "role": "catalog", "process": "worker", "expected": False}], (
        deaths
    )
    assert master.is_running()  # the service itself did not restart


def test_a_sigkilled_launcher_leaves_no_orphans(tmp_path: Path) -> None:
    with support.deployment("distributed", tmp_path) as dep:
        wait_until(lambda: all_ready(dep), WAIT_S, "every service ready")
        dep.tree.look()
        assert len(dep.tree.alive()) >= 2 * SERVICES  # each a gunicorn master and a worker
        os.kill(dep.proc.pid, signal.SIGKILL)
        dep.proc.popen.wait(WAIT_S)
        # A service gets SIGTERM when the launcher dies; it has STOP_GRACE_S, as on a stop.
        wait_until(
            lambda: not dep.tree.alive(),
            2 * STOP_GRACE_S,
            "every service and worker to die with the launcher",
        )


def test_sigterm_stops_every_service_in_order(tmp_path: Path) -> None:
    with support.deployment("distributed", tmp_path) as dep:
        wait_until(lambda: all_ready(dep), WAIT_S, "every service ready")
        dep.tree.look()
        os.kill(dep.proc.pid, signal.SIGTERM)
        # level by level, each within the launcher's grace: at most one grace per service
        assert dep.proc.popen.wait(SERVICES * STOP_GRACE_S) == 0
        assert not dep.tree.alive()
        events = dep.lifecycle()
        runtime = json.loads((dep.state_dir / "topology.json").read_text())
    exits = [e for e in events if e["event"] == "exit"]
    assert all(e["expected"] and e["exit_code"] == 0 for e in exits), exits
    assert exits[0]["role"] == "gateway" and len(exits) == SERVICES
    assert {e["role"] for e in events if e["event"] == "ready"} == {e["role"] for e in exits}
    assert runtime["services"]["gateway"]["url"] == dep.base_url
