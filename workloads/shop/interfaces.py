"""The bounded contexts' interfaces.

A variant binds each interface to an implementation: the in-process class
(`workloads.shop.catalog.Catalog`, ...), an IPC proxy or an HTTP client. Every
argument and return value is a contract from `contracts.py` or a plain value, so any
transport can carry it. Errors are `workloads.shop.errors.ShopError` subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from workloads.shop.contracts import (
    DrainStats,
    ModelStats,
    Order,
    OrderItem,
    OutboxEvent,
    PlaceOrder,
    PlaceResult,
    Product,
    ScoredProduct,
    SearchPage,
    StockLevel,
)


class CatalogApi(Protocol):
    def search(self, q: str, page: int, page_size: int) -> SearchPage: ...
    def get(self, product_id: int) -> Product: ...
    def get_many(self, product_ids: list[int]) -> list[Product]: ...


class InventoryApi(Protocol):
    def stock(self, product_id: int) -> int: ...
    def reserve(self, key: str, items: list[OrderItem]) -> bool: ...
    def release(self, key: str) -> bool: ...
    def levels(self) -> list[StockLevel]: ...


class OrdersApi(Protocol):
    def place(self, request: PlaceOrder) -> PlaceResult: ...
    def get(self, order_id: int) -> Order: ...
    def since(self, after_id: int, limit: int) -> list[Order]: ...
    def outbox_pending(self, limit: int) -> list[OutboxEvent]: ...
    def outbox_ack(self, event_ids: list[int]) -> int: ...


class RecommendationsApi(Protocol):
    def related(self, product_id: int, k: int) -> list[ScoredProduct]:
        """The k products most often bought with `product_id`, best first.

        Every engine answers alike (tests/test_engine_rust.py): a candidate's score is its
        cosine co-purchase weight plus 0.5 x the two-hop weights (the first 20 neighbours'
        first 40 each), ranked by score descending, then product id ascending; each score is
        rounded to 6 decimals as Python's `round` does (correctly rounded, ties to even).
        Fewer than k candidates are filled with the most popular products (by basket count
        descending, then id), score 0.0, skipping `product_id` and those already listed; an
        unknown product gets only those; k <= 0 gets none.
        """
        ...

    def rebuild(self) -> ModelStats:
        """Ingest the orders placed since the last rebuild (`OrdersApi.since`), then swap in a
        model built from every basket; requests in the meantime use the old model."""
        ...


class NotificationsApi(Protocol):
    def drain(self, limit: int) -> DrainStats: ...
    def sent_count(self) -> int: ...


@dataclass
class Shop:
    """The five contexts as the edge API sees them, however they are deployed."""

    catalog: CatalogApi
    inventory: InventoryApi
    orders: OrdersApi
    recommendations: RecommendationsApi
    notifications: NotificationsApi
