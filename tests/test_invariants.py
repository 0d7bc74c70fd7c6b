"""The invariant checker finds each kind of violation, and passes a healthy shop."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from workloads.shop import dataset, invariants
from workloads.shop.contracts import OrderItem, PlaceOrder
from workloads.shop.local import LocalShop


@pytest.fixture
def shop_with_orders(tmp_path: Path):
    dataset.prepare_state(dataset.ensure("tiny"), tmp_path)
    local = LocalShop(tmp_path)
    ledger = {}
    for i in range(12):
        request = PlaceOrder(
            customer_id=1,
            items=[OrderItem(product_id=1 + i % 5, qty=2)],
            idempotency_key=f"inv-{i}",
        )
        ledger[request.idempotency_key] = local.shop.orders.place(request).order.id
    while local.shop.orders.outbox_pending(100):
        local.shop.notifications.drain(100)
    local.close()
    return tmp_path, ledger


def test_a_healthy_shop_passes(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    report = invariants.check(state, ledger)
    assert report["ok"], report
    assert report["counts"]["stored_orders"] == 12
    assert report["counts"]["units_sold"] == 24
    assert report["counts"]["notifications_sent"] == 12


def test_a_lost_acknowledged_order_is_found(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    report = invariants.check(state, {**ledger, "never-stored": 999})
    assert not report["checks"]["acknowledged_orders_stored_once"]
    assert report["violations"]["missing_acknowledged"] == ["never-stored"]


def test_stock_that_vanished_is_not_conserved(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    with sqlite3.connect(state / "inventory.db") as conn:
        conn.execute("UPDATE stock SET available = available - 1 WHERE product_id = 3")
    report = invariants.check(state, ledger)
    assert not report["checks"]["stock_conserved"]
    assert report["checks"]["no_negative_stock"]
    assert report["violations"]["not_conserved"] == [3]


def test_a_reservation_without_an_order_still_conserves_stock(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    local = LocalShop(state)
    local.shop.inventory.reserve("crashed-before-storing", [OrderItem(product_id=7, qty=3)])
    local.close()
    report = invariants.check(state, ledger)
    assert report["checks"]["stock_conserved"]
    assert report["counts"]["orphaned_units"] == 3


def test_a_duplicate_notification_is_found(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    with sqlite3.connect(state / "notifications.db") as conn:
        conn.execute(
            "INSERT INTO sink (event_id, order_id, channel, body, sent_at) "
            "SELECT event_id + 1000, order_id, channel, body, sent_at FROM sink LIMIT 1"
        )
    report = invariants.check(state, ledger)
    assert not report["checks"]["notifications_sent_exactly_once"]
    assert len(report["violations"]["notifications_duplicated"]) == 1
