"""The shop's invariants, checked on a deployment's databases after a run.

They hold for every variant because every variant stores the same databases:
- every order acknowledged to a client (the load generator's ledger) is stored exactly
  once, under the id it was acknowledged with;
- no stock level is below zero;
- stock is conserved: available + units in stored orders + units held by reservations
  that never became an order == initial stock, per product;
- once the outbox is drained, every stored order's notification was sent exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from workloads.shop.contracts import OrderItem, OrderLine
from workloads.shop.dataset import state_paths
from workloads.shop.db import connect

_lines = msgspec.msgpack.Decoder(list[OrderLine]).decode
_items = msgspec.msgpack.Decoder(list[OrderItem]).decode
MAX_LISTED = 20


def check(state_dir: Path, acknowledged: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Check every invariant; `acknowledged` maps idempotency key -> order id answered 201."""
    paths = state_paths(Path(state_dir))
    orders_db = connect(paths["orders"], readonly=True)
    inventory_db = connect(paths["inventory"], readonly=True)
    notifications_db = connect(paths["notifications"], readonly=True)
    try:
        stored = {
            key: (oid, _lines(lines))
            for oid, key, lines in orders_db.execute(
                "SELECT id, idempotency_key, lines FROM orders"
            )
        }
        pending_outbox = orders_db.execute(
            "SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL"
        ).fetchone()[0]
        levels = inventory_db.execute("SELECT product_id, available, sold, initial FROM stock")
        levels = list(levels)
        reservations = list(
            inventory_db.execute("SELECT key, items FROM reservations WHERE released_at IS NULL")
        )
        sent = Counter(oid for (oid,) in notifications_db.execute("SELECT order_id FROM sink"))
    finally:
        for conn in (orders_db, inventory_db, notifications_db):
            conn.close()

    acknowledged = acknowledged or {}
    missing = [k for k, oid in acknowledged.items() if k not in stored or stored[k][0] != oid]

    in_orders: Counter[int] = Counter()
    for _, lines in stored.values():
        for line in lines:
            in_orders[line.product_id] += line.qty
    orphaned: Counter[int] = Counter()
    orphan_keys = [key for key, _ in reservations if key not in stored]
    for key, blob in reservations:
        if key not in stored:
            for item in _items(blob):
                orphaned[item.product_id] += item.qty
    negative = [pid for pid, available, _, _ in levels if available < 0]
    not_conserved = [
        pid
        for pid, available, sold, initial in levels
        if available + sold != initial or sold != in_orders[pid] + orphaned[pid]
    ]
    order_ids = {oid for oid, _ in stored.values()}
    duplicates_sent = [oid for oid, n in sent.items() if n > 1]
    unsent = sorted(order_ids - set(sent)) if pending_outbox == 0 else []
    sent_unknown = sorted(set(sent) - order_ids)

    checks = {
        "acknowledged_orders_stored_once": not missing,
        "no_negative_stock": not negative,
        "stock_conserved": not not_conserved,
        "notifications_sent_exactly_once": not (duplicates_sent or unsent or sent_unknown),
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "counts": {
            "acknowledged": len(acknowledged),
            "stored_orders": len(stored),
            "units_sold": sum(in_orders.values()),
            "orphaned_reservations": len(orphan_keys),
            "orphaned_units": sum(orphaned.values()),
            "notifications_sent": sum(sent.values()),
            "outbox_pending": pending_outbox,
        },
        "violations": {
            "missing_acknowledged": missing[:MAX_LISTED],
            "negative_stock": negative[:MAX_LISTED],
            "not_conserved": not_conserved[:MAX_LISTED],
            "notifications_duplicated": duplicates_sent[:MAX_LISTED],
            "notifications_unsent": unsent[:MAX_LISTED],
            "notifications_for_unknown_orders": sent_unknown[:MAX_LISTED],
        },
    }
