"""Notifications: drains the orders outbox and "sends" each event exactly once.

The sink stands for a slow external gateway (e-mail, SMS): each send waits
`sink_latency_s`, as the network round trip to such a gateway would. The sink is a
table in the context's own database, written in the same transaction that records
the event as sent, so a crash at any point neither loses nor repeats a send; the
outbox event is acknowledged afterwards (at-least-once delivery, idempotent consumer).
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from workloads.shop.contracts import DrainStats, Order
from workloads.shop.db import Database
from workloads.shop.interfaces import OrdersApi

SCHEMA = """
CREATE TABLE sink (
    event_id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    channel TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL
);
"""

_decode_order = msgspec.msgpack.Decoder(Order).decode


def render(order: Order) -> str:
    units = sum(line.qty for line in order.lines)
    return (
        f"Thank you! Order #{order.id} for customer {order.customer_id}: "
        f"{units} item(s), total {order.total_cents / 100:.2f}."
    )


class Notifications:
    def __init__(self, path: Path, orders: OrdersApi, sink_latency_s: float = 0.002) -> None:
        self.db = Database(path)
        self.orders = orders
        self.sink_latency_s = sink_latency_s

    def drain(self, limit: int) -> DrainStats:
        events = self.orders.outbox_pending(limit)
        sent = skipped = 0
        done: list[int] = []
        for event in events:
            with self.db.write() as conn:
                seen = conn.execute("SELECT 1 FROM sink WHERE event_id = ?", (event.id,)).fetchone()
                if seen:
                    skipped += 1
                else:
                    body = render(_decode_order(event.payload))
                    time.sleep(self.sink_latency_s)  # the gateway's round trip
                    conn.execute(
                        "INSERT INTO sink (event_id, order_id, channel, body, sent_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (event.id, event.order_id, "email", body, time.time()),
                    )
                    sent += 1
            done.append(event.id)
        self.orders.outbox_ack(done)
        return DrainStats(sent=sent, duplicates_skipped=skipped)

    def sent_count(self) -> int:
        (n,) = self.db.conn.execute("SELECT COUNT(*) FROM sink").fetchone()
        return n

    def close(self) -> None:
        self.db.close()
