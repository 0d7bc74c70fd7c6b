"""Reliability (issue 6): SIGKILL random processes of a variant under order load; lose nothing.

For each variant, four client threads place orders while the test SIGKILLs a randomly chosen
process of the variant about every 0.7 s, chosen by role among *all* its processes (supervisors
included, a few times). What the variant supervises restarts itself (gunicorn masters restart
workers, the postmaster its backends and auxiliaries, the launcher its services); when the top
process dies, the harness restarts the whole command from the same state directory and port,
as `archlab.run.restart.Restarter` does in a run. Clients behave like real ones: on a connection
error, timeout or 5xx they retry with the same idempotency key until answered or a bounded time
passes; every 201 (and every 200, an idempotent replay) goes into the test's own ledger.
Afterwards, with the outbox drained, `invariants.check` must find 0 acknowledged orders
missing, 0 duplicates, no negative stock and stock conserved.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from archlab.deployers import get_variant
from archlab.host import procs
from archlab.run import fault_schedule, restart
from variants import telemetry
from variants.distributed.launcher import healthy
from workloads.shop import invariants
from workloads.shop.dataset import state_paths
from workloads.shop.db import connect

VARIANTS = ["monolith", "multiprocess", "distributed"]
# the top process of each variant: nothing of the variant restarts it, the harness does
TOP_ROLE = {"monolith": "monolith-master", "multiprocess": "postmaster", "distributed": "launcher"}
SEED = 6
CLIENTS = 4
KILL_EVERY_S = 0.7
LOAD_MIN_S = 12.0
LOAD_MAX_S = 20.0
TARGET_KILLS = 14
MAX_SUPERVISOR_KILLS = 3
MAX_TOP_KILLS = 2
MAX_ORDERS_PER_CLIENT = 2_000
RETRY_FOR_S = 30.0  # a client gives up on one order after this long
REQUEST_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 30.0
PRODUCTS = 200  # the tiny dataset's product ids are 1..200


def _is_supervisor(role: str) -> bool:
    return role in TOP_ROLE.values() or role.endswith("-master")


@dataclass
class Ledger:
    """The clients' record: idempotency key -> order id, for every 201 or 200 answered."""

    acknowledged: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    given_up: int = 0
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _post_order(port: int, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("POST", "/orders", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _client(n: int, port: int, ledger: Ledger, halt: threading.Event) -> None:
    rng = random.Random(SEED * 1000 + n)
    for i in range(MAX_ORDERS_PER_CLIENT):
        if halt.is_set():
            return
        key = f"rel-{n}-{i}"
        item = {"product_id": rng.randint(1, PRODUCTS), "qty": 1}
        body = json.dumps({"customer_id": 1, "items": [item], "idempotency_key": key}).encode()
        give_up = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                status, payload = _post_order(port, body)
            except (OSError, http.client.HTTPException):
                status, payload = 0, b""
            if status in (200, 201):
                with ledger.lock:
                    ledger.acknowledged[key] = int(json.loads(payload)["id"])
                break
            if 0 < status < 500:
                with ledger.lock:
                    ledger.rejected += 1  # e.g. out of stock: answered, not acknowledged
                break
            if time.monotonic() >= give_up:
                with ledger.lock:
                    ledger.given_up += 1
                break
            with ledger.lock:
                ledger.retries += 1
            time.sleep(0.1)


def _healthy(port: int) -> bool:
    return healthy(f"http://127.0.0.1:{port}")


def _live_roles(roles_dir: Path) -> dict[int, str]:
    found: dict[int, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in roles_dir.iterdir():
            if entry.name.isdigit() and fault_schedule.alive(int(entry.name)):
                with contextlib.suppress(OSError):
                    found[int(entry.name)] = entry.read_text().strip()
    return found


def _outbox_pending(state_dir: Path) -> int:
    conn = connect(state_paths(state_dir)["orders"], readonly=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL").fetchone()[0])
    finally:
        conn.close()


def _wait_drained(state_dir: Path, port: int) -> int:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    pending = -1
    while time.monotonic() < deadline:
        if _healthy(port):
            with contextlib.suppress(Exception):
                pending = _outbox_pending(state_dir)
                if pending == 0:
                    return 0
        time.sleep(0.25)
    return pending


@pytest.mark.parametrize("variant", VARIANTS)
def test_sigkill_anything_loses_nothing(variant: str, tmp_path: Path) -> None:
    spec = get_variant(variant)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    telemetry_dir = tmp_path / "telemetry"
    roles_dir = telemetry_dir / telemetry.ROLES_DIR
    port = procs.free_port()
    health_url = f"http://127.0.0.1:{port}/healthz"
    cmd = spec.command(
        port=port, size="tiny", seed=1, state_dir=state_dir, knobs=spec.resolve_knobs({})
    )
    env = {**os.environ, telemetry.ENV_DIR: str(telemetry_dir), telemetry.ENV_SWITCH: "0"}
    log_path = tmp_path / "server.log"
    rng = random.Random(SEED)
    ledger = Ledger()
    kills: list[str] = []
    supervisor_kills = top_kills = 0

    with procs.running(cmd, name=f"{variant} server", log_path=log_path, env=env) as first:
        procs.wait_healthy(first, health_url, READY_TIMEOUT_S)
        restarter = restart.Restarter(
            first,
            cmd,
            role=TOP_ROLE[variant],
            health_url=health_url,
            lifecycle=state_dir / "lifecycle.jsonl",
            log_path=log_path,
            env=env,
            ready_timeout_s=READY_TIMEOUT_S,
        )
        restarter.start()
        halt = threading.Event()
        clients = [
            threading.Thread(target=_client, args=(n, port, ledger, halt), daemon=True)
            for n in range(CLIENTS)
        ]
        try:
            for thread in clients:
                thread.start()
            t0 = time.monotonic()
            while time.monotonic() - t0 < LOAD_MAX_S and not (
                len(kills) >= TARGET_KILLS and time.monotonic() - t0 >= LOAD_MIN_S
            ):
                time.sleep(KILL_EVERY_S)
                if not (restarter.alive() and restarter.ready and _healthy(port)):
                    continue  # recovering: the next kill waits until it answers again
                candidates = [
                    (pid, role)
                    for pid, role in sorted(_live_roles(roles_dir).items())
                    if not _is_supervisor(role)
                    or (
                        supervisor_kills < MAX_SUPERVISOR_KILLS
                        and (role != TOP_ROLE[variant] or top_kills < MAX_TOP_KILLS)
                    )
                ]
                if not candidates:
                    continue
                pid, role = rng.choice(candidates)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    kills.append(role)
                    supervisor_kills += _is_supervisor(role)
                    top_kills += role == TOP_ROLE[variant]
            halt.set()
            for thread in clients:
                thread.join(timeout=RETRY_FOR_S + REQUEST_TIMEOUT_S + 5)
            assert not any(t.is_alive() for t in clients), "a client thread did not finish"
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not (restarter.alive() and _healthy(port)) and time.monotonic() < deadline:
                time.sleep(0.2)
            pending = _wait_drained(state_dir, port)
        finally:
            halt.set()
            restarter.stop()
            restarter.stop_started()
    restarted = restarter.restarts

    report = invariants.check(state_dir, ledger.acknowledged)
    summary = (
        f"{variant}: {len(kills)} kills survived ({supervisor_kills} of supervisors, "
        f"{restarted} harness restarts; by role {sorted(kills)}), "
        f"{len(ledger.acknowledged)} acknowledged, {ledger.retries} retries, "
        f"{ledger.given_up} given up, {ledger.rejected} rejected, outbox pending {pending}; "
        f"invariants {report['counts']}"
    )
    print(summary)
    assert not restarter.errors, f"{summary}\nrestart errors: {restarter.errors}"
    assert report["ok"], (
        f"{summary}\nchecks {report['checks']}\nviolations {report['violations']}\n"
        f"--- server log ---\n{procs.log_tail(log_path)}"
    )
    assert len(kills) >= 10, summary
    assert len(ledger.acknowledged) >= 50, summary
    assert pending == 0, summary
