"""The shop's message contracts, defined once.

The same msgspec Structs are passed as in-process objects (monolith), encoded as
msgpack over IPC (multiprocess) and as JSON over HTTP (distributed, and the public
API). Validation constraints live here too, so every transport rejects the same input.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

ProductId = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
CustomerId = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=1000)]
IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
]

MAX_ORDER_LINES = 50


class Product(msgspec.Struct, frozen=True):
    id: int
    name: str
    category: str
    price_cents: int
    description: str


class ProductView(msgspec.Struct, frozen=True):
    """A product page: catalog data joined with the current stock level."""

    product: Product
    stock: int


class SearchPage(msgspec.Struct, frozen=True):
    items: list[Product]
    page: int
    page_size: int
    total: int


class OrderItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    product_id: ProductId
    qty: Quantity


class PlaceOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of `POST /orders`."""

    customer_id: CustomerId
    items: Annotated[list[OrderItem], msgspec.Meta(min_length=1, max_length=MAX_ORDER_LINES)]
    idempotency_key: IdempotencyKey


class OrderLine(msgspec.Struct, frozen=True):
    product_id: int
    qty: int
    unit_price_cents: int


class Order(msgspec.Struct, frozen=True):
    id: int
    customer_id: int
    idempotency_key: str
    lines: list[OrderLine]
    total_cents: int
    created_at: float


class PlaceResult(msgspec.Struct, frozen=True):
    """`created` is False when the idempotency key replayed an existing order."""

    order: Order
    created: bool


class StockLevel(msgspec.Struct, frozen=True):
    product_id: int
    available: int
    sold: int
    initial: int


class ScoredProduct(msgspec.Struct, frozen=True):
    product_id: int
    score: float


class RecommendedProduct(msgspec.Struct, frozen=True):
    product: Product
    score: float


class Recommendations(msgspec.Struct, frozen=True):
    """`degraded` is True when a variant answered without the recommendation engine."""

    product_id: int
    items: list[RecommendedProduct]
    degraded: bool = False


class OutboxEvent(msgspec.Struct, frozen=True):
    id: int
    order_id: int
    kind: str
    payload: bytes
    created_at: float


class ModelStats(msgspec.Struct, frozen=True):
    """What a recommendation-model build did, for logs and run metadata."""

    baskets: int
    products: int
    pairs: int
    build_seconds: float
    built_at: float


class DrainStats(msgspec.Struct, frozen=True):
    sent: int
    duplicates_skipped: int


class Health(msgspec.Struct, frozen=True):
    variant: str
    status: str
    components: dict[str, str]


class ErrorBody(msgspec.Struct, frozen=True):
    error: str
    detail: str
