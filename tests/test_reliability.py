"""Reliability (issue 6): SIGKILL random processes of a variant under order load; lose nothing.

For each placement of the migration path (and the process family with its recommendation
engine in Rust), four client threads place orders while the test
SIGKILLs a randomly chosen process of the variant about every 0.7 s, chosen by role among *all*
its processes (supervisors included, a few times), until it has made 6 kills or 90 s have
passed (a busy machine recovers more slowly, so fewer kills fit: the test asserts only that a
few happened). What the variant
supervises restarts itself (gunicorn masters restart workers, the postmaster its backends and
auxiliaries, the launcher its services); when the top process dies, the harness restarts the
whole command from the same state directory and port, as `archlab.run.restart.Restarter` does
in a run. Clients behave like real ones: on a connection error, timeout or 5xx they retry with
the same idempotency key until answered or a bounded time passes; every 201 (and every 200, an
idempotent replay) goes into the test's own ledger. After the last kill the variant must answer
and acknowledge orders again; then, with the outbox drained, `invariants.check` must find 0
acknowledged orders missing, 0 duplicates, no negative stock and stock conserved. The first
process comes from `support.deployment`, and every one the harness restarts is watched the same
way, so nothing any of them started outlives the test.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import support
from support import request, wait_until

from archlab.deployers import get_variant
from archlab.host import procs
from archlab.run import fault_schedule, restart
from archlab.rundir import LIFECYCLE
from variants import native, telemetry
from variants.distributed.launcher import healthy
from variants.placement import PATH
from workloads.shop import invariants
from workloads.shop.dataset import state_paths
from workloads.shop.db import connect

NO_RUST = native.unavailable_reason()
VARIANTS = [
    *(pytest.param(v, {}, id=v) for v in PATH),
    *(
        pytest.param(v, {"server": "granian"}, id=f"{v}-granian")
        for v in ("monolith", "multiprocess", "distributed")
    ),
    pytest.param(
        "multiprocess",
        {"engine_recommendations": "rust"},
        id="multiprocess-rust",
        marks=pytest.mark.skipif(NO_RUST is not None, reason=NO_RUST or ""),
    ),
]
SEED = 6
CLIENTS = 4
KILL_EVERY_S = 0.7
TARGET_KILLS = 6  # the run stops after this many kills...
LOAD_MAX_S = 90.0  # ...or after this long, whichever comes first
MIN_KILLS = 3  # however slow the machine: a few kills happened, and each was survived
MAX_SUPERVISOR_KILLS = 3
MAX_TOP_KILLS = 2
MAX_ORDERS_PER_CLIENT = 2_000
RETRY_FOR_S = 30.0  # a client gives up on one order after this long
REQUEST_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 30.0
PRODUCTS = 200  # the tiny dataset's product ids are 1..200


def _is_supervisor(role: str, top: str) -> bool:
    return role == top or role.endswith("-master")


@dataclass
class Ledger:
    """The clients' record: idempotency key -> order id, for every 201 or 200 answered."""

    acknowledged: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    given_up: int = 0
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _order(base_url: str, ledger: Ledger, key: str, product_id: int) -> int:
    """Place one order as a real client does: the same key again on a connection error, a
    timeout or a 5xx, until answered or RETRY_FOR_S passes. The last status (0: none)."""
    body = {
        "customer_id": 1,
        "items": [{"product_id": product_id, "qty": 1}],
        "idempotency_key": key,
    }
    give_up = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            status, answer = request(base_url, "POST", "/orders", body, timeout_s=REQUEST_TIMEOUT_S)
        except http.client.HTTPException:  # an answer cut short by a kill
            status, answer = 0, None
        if status in (200, 201):
            with ledger.lock:
                ledger.acknowledged[key] = int(answer["id"])
            return status
        if 0 < status < 500:
            with ledger.lock:
                ledger.rejected += 1  # e.g. out of stock: answered, not acknowledged
            return status
        if time.monotonic() >= give_up:
            with ledger.lock:
                ledger.given_up += 1
            return status
        with ledger.lock:
            ledger.retries += 1
        time.sleep(0.1)


def _client(n: int, base_url: str, ledger: Ledger, halt: threading.Event) -> None:
    rng = random.Random(SEED * 1000 + n)
    for i in range(MAX_ORDERS_PER_CLIENT):
        if halt.is_set():
            return
        _order(base_url, ledger, f"rel-{n}-{i}", rng.randint(1, PRODUCTS))


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


def _outbox_pending(state_dir: Path) -> int | None:
    """Outbox events not yet acknowledged; None while orders.db cannot be read."""
    try:
        conn = connect(state_paths(state_dir)["orders"], readonly=True)
        try:
            row = conn.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL").fetchone()
            return int(row[0])
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - mid-restart: asked again
        return None


@pytest.mark.parametrize(("variant", "knobs"), VARIANTS)
def test_sigkill_anything_loses_nothing(
    variant: str, knobs: dict[str, int | str], tmp_path: Path
) -> None:
    spec = get_variant(variant)
    top = spec.restarted_by_harness
    assert top is not None, f"{variant}: nothing restarts its top process"
    telemetry_dir = tmp_path / "telemetry"
    roles_dir = telemetry_dir / telemetry.ROLES_DIR
    env = {telemetry.ENV_DIR: str(telemetry_dir), telemetry.ENV_SWITCH: "0"}
    rng = random.Random(SEED)
    ledger = Ledger()
    kills: list[str] = []
    last_killed = 0
    supervisor_kills = top_kills = 0

    with (
        support.deployment(
            variant, tmp_path, knobs=knobs, env=env, ready_timeout_s=READY_TIMEOUT_S
        ) as first,
        contextlib.ExitStack() as restarted_trees,
    ):
        port, state_dir = first.port, first.state_dir
        # the same command the deployment ran, as a process manager would run it again
        cmd = spec.command(port=port, size="tiny", seed=1, state_dir=state_dir, knobs=first.knobs)
        restarter = restart.Restarter(
            first.proc,
            cmd,
            role=top,
            health_url=f"{first.base_url}/healthz",
            lifecycle=state_dir / LIFECYCLE,
            log_path=first.log_path,
            env={**os.environ, **env},
            ready_timeout_s=READY_TIMEOUT_S,
            # each restarted top process is watched like the first: its descendants die too
            on_restart=lambda proc: restarted_trees.enter_context(support.watching(proc.pid)),
        )
        restarter.start()
        halt = threading.Event()
        clients = [
            threading.Thread(target=_client, args=(n, first.base_url, ledger, halt), daemon=True)
            for n in range(CLIENTS)
        ]
        try:
            for thread in clients:
                thread.start()
            t0 = time.monotonic()
            while len(kills) < TARGET_KILLS and time.monotonic() - t0 < LOAD_MAX_S:
                time.sleep(KILL_EVERY_S)  # the pace of the kills, not a wait for anything
                if not (restarter.alive() and restarter.ready and _healthy(port)):
                    continue  # recovering: the next kill waits until it answers again
                candidates = [
                    (pid, role)
                    for pid, role in sorted(_live_roles(roles_dir).items())
                    if not _is_supervisor(role, top)
                    or (
                        supervisor_kills < MAX_SUPERVISOR_KILLS
                        and (role != top or top_kills < MAX_TOP_KILLS)
                    )
                ]
                if not candidates:
                    continue
                pid, role = rng.choice(candidates)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    kills.append(role)
                    last_killed = pid
                    supervisor_kills += _is_supervisor(role, top)
                    top_kills += role == top
            wait_until(
                lambda: (
                    not fault_schedule.alive(last_killed)
                    and restarter.alive()
                    and restarter.ready
                    and _healthy(port)
                ),
                READY_TIMEOUT_S,
                f"{variant} to answer again after the last kill",
            )
            # and it takes orders again (the clients may have placed all theirs by now)
            after_last_kill = _order(first.base_url, ledger, "rel-after-last-kill", 1)
            halt.set()
            for thread in clients:
                thread.join(timeout=RETRY_FOR_S + REQUEST_TIMEOUT_S + 5)
            assert not any(t.is_alive() for t in clients), "a client thread did not finish"
            with contextlib.suppress(AssertionError):  # reported below, with the counts
                wait_until(
                    lambda: _healthy(port) and _outbox_pending(state_dir) == 0,
                    DRAIN_TIMEOUT_S,
                    "the outbox drained",
                    interval_s=0.25,
                )
            pending = _outbox_pending(state_dir)
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
        f"--- server log ---\n{procs.log_tail(first.log_path)}"
    )
    assert len(kills) >= MIN_KILLS, summary
    assert after_last_kill == 201, f"{summary}\nan order after the last kill: {after_last_kill}"
    assert pending == 0, summary
