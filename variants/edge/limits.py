"""The public API's input limits, shared by the app and the OpenAPI document."""

from __future__ import annotations

from workloads.shop.contracts import MAX_ORDER_LINES

MAX_BODY_BYTES = 64 * 1024
MAX_ID = 2**31 - 1
MAX_PAGE = 2**31 - 1
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
DEFAULT_K = 5
MAX_K = 50
MAX_QUERY_CHARS = 200

__all__ = [
    "DEFAULT_K",
    "DEFAULT_PAGE_SIZE",
    "MAX_BODY_BYTES",
    "MAX_ID",
    "MAX_K",
    "MAX_ORDER_LINES",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "MAX_QUERY_CHARS",
]
