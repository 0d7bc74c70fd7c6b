"""Inventory: stock levels and reservations. Small writes that must never oversell.

A reservation is keyed by the order's idempotency key, so reserving twice for the
same order (a retry, a replayed request, a crash between reserving and storing the
order) holds stock once.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from workloads.shop.contracts import OrderItem, StockLevel
from workloads.shop.db import Database
from workloads.shop.errors import IdempotencyConflict, NotFound, OutOfStock

SCHEMA = """
CREATE TABLE stock (
    product_id INTEGER PRIMARY KEY,
    available INTEGER NOT NULL CHECK (available >= 0),
    sold INTEGER NOT NULL DEFAULT 0 CHECK (sold >= 0),
    initial INTEGER NOT NULL
);
CREATE TABLE reservations (
    key TEXT PRIMARY KEY,
    items BLOB NOT NULL,
    created_at REAL NOT NULL,
    released_at REAL
);
"""

_encode_items = msgspec.msgpack.Encoder().encode


def merge_items(items: list[OrderItem]) -> list[OrderItem]:
    """One line per product, quantities summed, sorted: the canonical form of a basket."""
    qty: dict[int, int] = {}
    for item in items:
        qty[item.product_id] = qty.get(item.product_id, 0) + item.qty
    return [OrderItem(product_id=p, qty=q) for p, q in sorted(qty.items())]


class Inventory:
    def __init__(self, path: Path) -> None:
        self.db = Database(path)

    def stock(self, product_id: int) -> int:
        row = self.db.conn.execute(
            "SELECT available FROM stock WHERE product_id = ?", (product_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"product {product_id} has no stock record")
        return row[0]

    def reserve(self, key: str, items: list[OrderItem]) -> bool:
        """Take stock for every line or for none. False if `key` already holds it."""
        lines = merge_items(items)
        blob = _encode_items(lines)
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT items, released_at FROM reservations WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                if row[0] != blob:
                    raise IdempotencyConflict(f"key {key!r} already reserved other items")
                if row[1] is None:
                    return False
            for line in lines:
                cur = conn.execute(
                    "UPDATE stock SET available = available - ?1, sold = sold + ?1 "
                    "WHERE product_id = ?2 AND available >= ?1",
                    (line.qty, line.product_id),
                )
                if cur.rowcount == 0:
                    left = conn.execute(
                        "SELECT available FROM stock WHERE product_id = ?", (line.product_id,)
                    ).fetchone()
                    if left is None:
                        raise NotFound(f"product {line.product_id} does not exist")
                    raise OutOfStock(
                        f"product {line.product_id}: {line.qty} asked, {left[0]} available"
                    )
            conn.execute(
                "INSERT INTO reservations (key, items, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE "
                "SET released_at = NULL, created_at = excluded.created_at",
                (key, blob, time.time()),
            )
        return True

    def release(self, key: str) -> bool:
        """Give a reservation's stock back (compensation when the order is not stored)."""
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT items FROM reservations WHERE key = ? AND released_at IS NULL", (key,)
            ).fetchone()
            if row is None:
                return False
            for line in msgspec.msgpack.decode(row[0], type=list[OrderItem]):
                conn.execute(
                    "UPDATE stock SET available = available + ?1, sold = sold - ?1 "
                    "WHERE product_id = ?2",
                    (line.qty, line.product_id),
                )
            conn.execute(
                "UPDATE reservations SET released_at = ? WHERE key = ?", (time.time(), key)
            )
        return True

    def levels(self) -> list[StockLevel]:
        rows = self.db.conn.execute(
            "SELECT product_id, available, sold, initial FROM stock ORDER BY product_id"
        ).fetchall()
        return [StockLevel(*r) for r in rows]

    def close(self) -> None:
        self.db.close()
