"""Orders: transactional, idempotent on the client's key, with a transactional outbox.

Placing an order prices it from the catalog, reserves stock in inventory (keyed by
the idempotency key), then stores the order and its outbox event in one transaction.
The order is acknowledged only after that commit (synchronous=FULL), so an
acknowledged order is durable; a failed store gives the reservation back.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgspec

from workloads.shop.contracts import Order, OrderLine, OutboxEvent, PlaceOrder, PlaceResult
from workloads.shop.db import Database
from workloads.shop.errors import IdempotencyConflict, InvalidRequest, NotFound
from workloads.shop.interfaces import CatalogApi, InventoryApi
from workloads.shop.inventory import merge_items

SCHEMA = """
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint BLOB NOT NULL,
    lines BLOB NOT NULL,
    total_cents INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    acked_at REAL
);
CREATE INDEX outbox_pending ON outbox (id) WHERE acked_at IS NULL;
"""

_ORDER_COLUMNS = "id, customer_id, idempotency_key, lines, total_cents, created_at"
_msgpack = msgspec.msgpack.Encoder()
_decode_lines = msgspec.msgpack.Decoder(list[OrderLine]).decode


def fingerprint(request: PlaceOrder) -> bytes:
    """What must match for a replayed idempotency key to be the same order."""
    return _msgpack.encode((request.customer_id, merge_items(request.items)))


def _order(row: tuple) -> Order:
    return Order(
        id=row[0],
        customer_id=row[1],
        idempotency_key=row[2],
        lines=_decode_lines(row[3]),
        total_cents=row[4],
        created_at=row[5],
    )


class Orders:
    def __init__(self, path: Path, catalog: CatalogApi, inventory: InventoryApi) -> None:
        self.db = Database(path, synchronous="FULL")
        self.catalog = catalog
        self.inventory = inventory

    def _by_key(self, key: str) -> tuple[Order, bytes] | None:
        row = self.db.conn.execute(
            f"SELECT {_ORDER_COLUMNS}, fingerprint FROM orders WHERE idempotency_key = ?", (key,)
        ).fetchone()
        return None if row is None else (_order(row), row[6])

    def _replay(self, request: PlaceOrder, fp: bytes) -> PlaceResult | None:
        found = self._by_key(request.idempotency_key)
        if found is None:
            return None
        order, stored_fp = found
        if stored_fp != fp:
            raise IdempotencyConflict(
                f"idempotency key {request.idempotency_key!r} was used for a different order"
            )
        return PlaceResult(order=order, created=False)

    def place(self, request: PlaceOrder) -> PlaceResult:
        fp = fingerprint(request)
        replay = self._replay(request, fp)
        if replay is not None:
            return replay
        items = merge_items(request.items)
        products = {p.id: p for p in self.catalog.get_many([i.product_id for i in items])}
        unknown = [i.product_id for i in items if i.product_id not in products]
        if unknown:
            raise InvalidRequest(f"unknown product id(s): {unknown}")
        lines = [
            OrderLine(
                product_id=i.product_id,
                qty=i.qty,
                unit_price_cents=products[i.product_id].price_cents,
            )
            for i in items
        ]
        total = sum(line.qty * line.unit_price_cents for line in lines)
        try:
            reserved_now = self.inventory.reserve(request.idempotency_key, items)
        except NotFound as exc:
            raise InvalidRequest(exc.detail) from exc
        except IdempotencyConflict:
            replay = self._replay(request, fp)
            if replay is not None:
                return replay
            raise
        now = time.time()
        try:
            with self.db.write() as conn:
                cur = conn.execute(
                    "INSERT INTO orders (customer_id, idempotency_key, fingerprint, lines, "
                    "total_cents, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        request.customer_id,
                        request.idempotency_key,
                        fp,
                        _msgpack.encode(lines),
                        total,
                        now,
                    ),
                )
                order = Order(
                    id=cur.lastrowid,
                    customer_id=request.customer_id,
                    idempotency_key=request.idempotency_key,
                    lines=lines,
                    total_cents=total,
                    created_at=now,
                )
                conn.execute(
                    "INSERT INTO outbox (order_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                    (order.id, "order_placed", _msgpack.encode(order), now),
                )
        except sqlite3.IntegrityError:
            # A concurrent request with the same key stored the order first.
            replay = self._replay(request, fp)
            if replay is not None:
                return replay
            raise
        except BaseException:
            if reserved_now:
                self.inventory.release(request.idempotency_key)
            raise
        return PlaceResult(order=order, created=True)

    def get(self, order_id: int) -> Order:
        row = self.db.conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ?", (order_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"order {order_id} does not exist")
        return _order(row)

    def since(self, after_id: int, limit: int) -> list[Order]:
        rows = self.db.conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [_order(r) for r in rows]

    def outbox_pending(self, limit: int) -> list[OutboxEvent]:
        rows = self.db.conn.execute(
            "SELECT id, order_id, kind, payload, created_at FROM outbox "
            "WHERE acked_at IS NULL ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [OutboxEvent(*r) for r in rows]

    def outbox_ack(self, event_ids: list[int]) -> int:
        if not event_ids:
            return 0
        marks = ",".join("?" * len(event_ids))
        with self.db.write() as conn:
            cur = conn.execute(
                f"UPDATE outbox SET acked_at = ? WHERE acked_at IS NULL AND id IN ({marks})",
                (time.time(), *event_ids),
            )
        return cur.rowcount

    def close(self) -> None:
        self.db.close()
