"""The ledger of acknowledged orders and the harness's invariant verdict, without a server.

The recorder's writer (archlab/measure/recorder.py) is exercised by the real runs
(tests/test_run_smoke.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archlab.analysis import validate
from archlab.measure import integrity
from archlab.rundir import Status, start_csv
from workloads.shop import dataset
from workloads.shop.contracts import OrderItem, PlaceOrder
from workloads.shop.local import LocalShop


@pytest.fixture
def shop_state(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    state = tmp_path / "state"
    state.mkdir()
    dataset.prepare_state(dataset.ensure("tiny"), state)
    local = LocalShop(state)
    placed = {}
    for i in range(5):
        key = f"key-{i}"
        request = PlaceOrder(
            customer_id=1, items=[OrderItem(product_id=1 + i, qty=1)], idempotency_key=key
        )
        placed[key] = local.shop.orders.place(request).order.id
    assert integrity.outbox_pending(state) == 5
    while local.shop.orders.outbox_pending(100):
        local.shop.notifications.drain(100)
    local.close()
    return state, placed


def _write_ledger(path: Path, entries: list[tuple[str, int]]) -> None:
    """As the recorder's Ledger writes it (not imported here: locust monkey-patches)."""
    start_csv(path)
    with path.open("a") as fh:
        fh.writelines(f"{1.8e9 + i:.6f},{key},{oid}\n" for i, (key, oid) in enumerate(entries))


def test_the_ledger_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "ledger.csv"
    _write_ledger(path, [("a", 1), ("b", 2), ("a", 1), ("c", 3), ("c", 4)])
    with path.open("a") as fh:
        fh.write("1.0,torn")  # a writer killed mid-row
    acknowledged, conflicting = integrity.read_ledger(path)
    assert acknowledged == {"a": 1, "b": 2, "c": 3}
    assert conflicting == ["c"]
    assert validate.validate_csv(path.parent / "ledger.csv") != []  # the torn row is reported


def test_a_clean_run_passes_and_a_lost_order_fails_the_run(shop_state, tmp_path: Path) -> None:
    state, placed = shop_state
    assert integrity.wait_outbox_drained(state, 1.0)["drained"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _write_ledger(run_dir / "ledger.csv", sorted(placed.items()))
    meta = {"status": "completed"}
    report = integrity.judge_run(run_dir, meta, state)
    assert report is not None and report["ok"] and meta["status"] == "completed"
    assert json.loads((run_dir / "invariants.json").read_text())["ok"]
    assert "invariants: ok" in integrity.format_report(report)

    _write_ledger(run_dir / "ledger.csv", [*sorted(placed.items()), ("acked-but-lost", 999)])
    report = integrity.judge_run(run_dir, meta, state)
    assert report is not None and not report["ok"]
    assert meta["status"] == Status.FAILED_INVARIANTS == "failed-invariants"
    assert report["violations"]["missing_acknowledged"] == ["acked-but-lost"]
    assert "VIOLATED" in integrity.format_report(report)
    assert meta["invariants"]["checks"]["acknowledged_orders_stored_once"] is False


def test_an_undrained_outbox_is_reported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    dataset.prepare_state(dataset.ensure("tiny"), state)
    local = LocalShop(state)
    local.shop.orders.place(
        PlaceOrder(customer_id=1, items=[OrderItem(product_id=1, qty=1)], idempotency_key="k")
    )
    local.close()
    drain = integrity.wait_outbox_drained(state, 0.3)
    assert drain["drained"] is False and drain["pending"] == 1 and drain["waited_s"] >= 0.3
    report = integrity.check_run(tmp_path, state, drain)
    assert report["ok"] and not report["notifications_verified"]  # nothing lost, unverified
    assert "did not drain" in integrity.format_report(report)
