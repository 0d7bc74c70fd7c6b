"""Recommendations: an item-to-item co-purchase model, scored in pure Python.

This context is the lab's GC and GIL stressor, on purpose and for real: the model is
a large graph of small Python objects (one `Edge` per co-purchased pair and
direction, one list per basket), all tracked by the cyclic garbage collector, so a
full collection in the process that hosts it walks millions of objects. Scoring a
request walks two hops of that graph under the GIL.

The model is rebuilt periodically from the basket history plus new orders; a rebuild
allocates a whole new graph, then swaps it in, so requests never see a half-built model.
The first model can be built apart from the context (`train`, no connection kept), so a
prefork parent builds it once and its children share its pages copy-on-write until their
first rebuild.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from workloads.shop.contracts import ModelStats, ScoredProduct
from workloads.shop.db import Database, connect
from workloads.shop.interfaces import OrdersApi

SCHEMA = """
CREATE TABLE baskets (
    id INTEGER PRIMARY KEY,
    order_id INTEGER UNIQUE,
    items BLOB NOT NULL
);
CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

FIRST_HOP = 20
SECOND_HOP = 40
SECOND_HOP_DAMPING = 0.5
POPULAR_KEPT = 100
INGEST_BATCH = 2000

_encode = msgspec.msgpack.Encoder().encode
_decode_basket = msgspec.msgpack.Decoder(list[int]).decode


class Edge:
    """One direction of a co-purchased pair: how often, and how strongly (cosine)."""

    __slots__ = ("product_id", "count", "weight")

    def __init__(self, product_id: int) -> None:
        self.product_id = product_id
        self.count = 0
        self.weight = 0.0


class Model:
    def __init__(self, baskets: list[list[int]]) -> None:
        started = time.perf_counter()
        popularity: dict[int, int] = {}
        graph: dict[int, dict[int, Edge]] = {}
        for basket in baskets:
            for a in basket:
                popularity[a] = popularity.get(a, 0) + 1
                row = graph.get(a)
                if row is None:
                    row = graph[a] = {}
                for b in basket:
                    if b != a:
                        edge = row.get(b)
                        if edge is None:
                            edge = row[b] = Edge(b)
                        edge.count += 1
        self.neighbours: dict[int, list[Edge]] = {}
        pairs = 0
        for a, row in graph.items():
            pa = popularity[a]
            edges = list(row.values())
            for edge in edges:
                edge.weight = edge.count / math.sqrt(pa * popularity[edge.product_id])
            edges.sort(key=lambda e: (-e.weight, e.product_id))
            self.neighbours[a] = edges
            pairs += len(edges)
        self.popular = [
            p for p, _ in sorted(popularity.items(), key=lambda kv: (-kv[1], kv[0]))[:POPULAR_KEPT]
        ]
        self.baskets = len(baskets)
        self.pairs = pairs
        self.build_seconds = time.perf_counter() - started

    def related(self, product_id: int, k: int) -> list[ScoredProduct]:
        scores: dict[int, float] = {}
        first = self.neighbours.get(product_id, ())
        for edge in first:
            scores[edge.product_id] = edge.weight
        for edge in first[:FIRST_HOP]:
            for second in self.neighbours.get(edge.product_id, ())[:SECOND_HOP]:
                q = second.product_id
                if q != product_id:
                    scores[q] = (
                        scores.get(q, 0.0) + SECOND_HOP_DAMPING * edge.weight * second.weight
                    )
        best = heapq.nsmallest(k, scores.items(), key=lambda kv: (-kv[1], kv[0]))
        result = [ScoredProduct(product_id=p, score=round(s, 6)) for p, s in best]
        if len(result) < k:
            seen = {p for p, _ in best}
            seen.add(product_id)
            for p in self.popular:
                if len(result) >= k:
                    break
                if p not in seen:
                    result.append(ScoredProduct(product_id=p, score=0.0))
        return result


@dataclass(frozen=True)
class Trained:
    """The stored basket history and the model built from it: never changed after `train`,
    so any number of `Recommendations` (in one process, or in children forked after it was
    built) can start from the same one."""

    baskets: list[list[int]]
    model: Model


def train(path: Path) -> Trained:
    """Read the basket history of the store at `path` and build the model, closing the
    connection: nothing of it may cross a fork."""
    conn = connect(path, readonly=True)
    try:
        rows = conn.execute("SELECT items FROM baskets ORDER BY id").fetchall()
    finally:
        conn.close()
    baskets = [_decode_basket(r[0]) for r in rows]
    return Trained(baskets, Model(baskets))


class Recommendations:
    def __init__(self, path: Path, orders: OrdersApi, trained: Trained | None = None) -> None:
        """The context over its store at `path`; `trained`: its first model, already built
        from that store (default: built here)."""
        self.db = Database(path)
        self.orders = orders
        self._rebuild_lock = threading.Lock()
        trained = trained or train(path)
        self._history = trained.baskets  # shared with `trained`: never appended to
        self._new: list[list[int]] = []  # baskets ingested since
        self._model = trained.model
        self.stats = self._stats(self._model)

    @staticmethod
    def _stats(model: Model) -> ModelStats:
        return ModelStats(
            baskets=model.baskets,
            products=len(model.neighbours),
            pairs=model.pairs,
            build_seconds=round(model.build_seconds, 3),
            built_at=time.time(),
        )

    def related(self, product_id: int, k: int) -> list[ScoredProduct]:
        return self._model.related(product_id, k)

    def _ingest(self) -> int:
        """Append the baskets of orders placed since the last ingest."""
        conn = self.db.conn
        row = conn.execute("SELECT value FROM state WHERE key = 'last_order_id'").fetchone()
        last = row[0] if row else 0
        added = 0
        while True:
            orders = self.orders.since(last, INGEST_BATCH)
            if not orders:
                return added
            baskets = [[line.product_id for line in o.lines] for o in orders]
            last = orders[-1].id
            with self.db.write() as w:
                w.executemany(
                    "INSERT OR IGNORE INTO baskets (order_id, items) VALUES (?, ?)",
                    [(o.id, _encode(b)) for o, b in zip(orders, baskets, strict=True)],
                )
                w.execute(
                    "INSERT INTO state (key, value) VALUES ('last_order_id', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (last,),
                )
            self._new.extend(baskets)
            added += len(baskets)

    def rebuild(self) -> ModelStats:
        with self._rebuild_lock:
            self._ingest()
            model = Model(self._history + self._new)
            self._model = model
            self.stats = self._stats(model)
            return self.stats

    def close(self) -> None:
        self.db.close()
