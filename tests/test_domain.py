"""The shop domain, in process: the rules every variant inherits."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from workloads.shop import dataset
from workloads.shop.contracts import OrderItem, PlaceOrder
from workloads.shop.db import connect
from workloads.shop.errors import IdempotencyConflict, InvalidRequest, NotFound, OutOfStock
from workloads.shop.local import LocalShop
from workloads.shop.recommendations import Recommendations


@pytest.fixture
def local(tmp_path: Path):
    dataset.prepare_state(dataset.ensure("tiny"), tmp_path)
    shop = LocalShop(tmp_path)
    yield shop
    shop.close()


def order(key: str, *items: tuple[int, int], customer: int = 7) -> PlaceOrder:
    return PlaceOrder(
        customer_id=customer,
        items=[OrderItem(product_id=p, qty=q) for p, q in items],
        idempotency_key=key,
    )


def invariant_holds(shop: LocalShop) -> None:
    for level in shop.shop.inventory.levels():
        assert level.available >= 0
        assert level.available + level.sold == level.initial


def test_dataset_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    tables = {"catalog": "products", "inventory": "stock", "recommendations": "baskets"}

    def digest(folder: Path) -> str:
        h = hashlib.sha256()
        for context, table in tables.items():
            conn = connect(folder / f"{context}.db", readonly=True)
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1"):
                h.update(repr(row).encode())
            conn.close()
        return h.hexdigest()

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((a, 5), (b, 5), (c, 6)):
        folder.mkdir()
        dataset.generate("tiny", seed, folder)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_placing_an_order_takes_stock_and_stores_it(local: LocalShop) -> None:
    shop = local.shop
    before = shop.inventory.stock(1)
    result = shop.orders.place(order("k1", (1, 2), (2, 1)))
    assert result.created
    assert shop.inventory.stock(1) == before - 2
    assert shop.orders.get(result.order.id) == result.order
    assert result.order.total_cents == sum(
        line.qty * line.unit_price_cents for line in result.order.lines
    )
    invariant_holds(local)


def test_an_idempotency_key_replays_the_same_order_once(local: LocalShop) -> None:
    shop = local.shop
    before = shop.inventory.stock(3)
    first = shop.orders.place(order("same", (3, 1)))
    again = shop.orders.place(order("same", (3, 1)))
    assert first.created and not again.created
    assert again.order == first.order
    assert shop.inventory.stock(3) == before - 1
    assert len(shop.orders.since(0, 100)) == 1


def test_a_reused_key_with_another_body_is_a_conflict(local: LocalShop) -> None:
    local.shop.orders.place(order("dup", (3, 1)))
    with pytest.raises(IdempotencyConflict):
        local.shop.orders.place(order("dup", (4, 1)))
    with pytest.raises(IdempotencyConflict):
        local.shop.orders.place(order("dup", (3, 1), customer=8))


def test_unknown_products_and_orders(local: LocalShop) -> None:
    with pytest.raises(InvalidRequest):
        local.shop.orders.place(order("ghost", (99_999, 1)))
    with pytest.raises(NotFound):
        local.shop.orders.get(12345)
    with pytest.raises(NotFound):
        local.shop.catalog.get(99_999)
    invariant_holds(local)


def test_out_of_stock_takes_nothing(local: LocalShop) -> None:
    shop = local.shop
    available = shop.inventory.stock(5)
    with pytest.raises(OutOfStock):
        shop.orders.place(order("big", (6, 1), (5, available + 1)))
    assert shop.inventory.stock(5) == available
    assert shop.orders.since(0, 10) == []
    invariant_holds(local)


def test_concurrent_orders_from_many_threads_never_oversell(local: LocalShop) -> None:
    shop = local.shop
    product = 9
    available = shop.inventory.stock(product)
    attempts = available + 40
    outcomes: list[str] = []
    lock = threading.Lock()

    def buy(i: int) -> None:
        try:
            shop.orders.place(order(f"race-{i}", (product, 1)))
            outcome = "ok"
        except OutOfStock:
            outcome = "out"
        with lock:
            outcomes.append(outcome)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(buy, range(attempts)))
    assert outcomes.count("ok") == available
    assert outcomes.count("out") == attempts - available
    assert shop.inventory.stock(product) == 0
    invariant_holds(local)


def test_concurrent_replays_of_one_key_store_one_order(local: LocalShop) -> None:
    shop = local.shop
    before = shop.inventory.stock(11)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: shop.orders.place(order("once", (11, 1))), range(16)))
    assert len({r.order.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert shop.inventory.stock(11) == before - 1


def test_the_outbox_is_drained_exactly_once_even_by_concurrent_drainers(local: LocalShop) -> None:
    shop = local.shop
    placed = [shop.orders.place(order(f"n{i}", (1 + i % 20, 1))).order.id for i in range(30)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        stats = list(pool.map(lambda _: shop.notifications.drain(100), range(3)))
    while shop.orders.outbox_pending(100):
        shop.notifications.drain(100)
    assert sum(s.sent for s in stats) == len(placed)
    assert shop.notifications.sent_count() == len(placed)
    sent = local.shop.notifications.db.conn.execute("SELECT order_id FROM sink ORDER BY order_id")
    assert [r[0] for r in sent] == sorted(placed)
    assert shop.notifications.drain(100).sent == 0


def test_recommendations_are_deterministic_for_a_seed(tmp_path: Path) -> None:
    def top(folder: Path) -> list:
        dataset.generate("tiny", 3, folder)
        recs = Recommendations(folder / "recommendations.db", orders=None)
        return [recs.related(p, 5) for p in range(1, 60)]

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = top(tmp_path / "a"), top(tmp_path / "b")
    assert a == b
    assert all(len(r) == 5 for r in a)
    assert all(p not in {s.product_id for s in r} for p, r in zip(range(1, 60), a, strict=True))
    scores = [s.score for s in a[0]]
    assert scores == sorted(scores, reverse=True)


def test_recommendations_learn_from_new_orders(local: LocalShop) -> None:
    shop = local.shop
    pair = (150, 7)
    for i in range(25):
        shop.orders.place(order(f"co{i}", (pair[0], 1), (pair[1], 1)))
    stats_before = shop.recommendations.rebuild()
    assert stats_before.baskets == 3_000 + 25
    top = shop.recommendations.related(pair[0], 3)
    assert top[0].product_id == pair[1]
