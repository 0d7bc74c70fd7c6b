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

# What the HTTP server (gunicorn, `variants.edge.worker.SERVER_SETTINGS`) refuses before the app
# sees the request: 414 over MAX_REQUEST_LINE_BYTES (method, path, query and version), 431 over
# MAX_HEADER_FIELDS fields or a field over MAX_HEADER_FIELD_BYTES.
MAX_REQUEST_LINE_BYTES = 4094
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD_BYTES = 8190

# A body answered before it was read (413, or any early answer) is read and discarded up to this
# many bytes within DRAIN_TIMEOUT_S, so that a client that writes the whole body before it reads
# (urllib, http.client) gets the answer instead of a reset; beyond either bound the connection
# is closed. Far above MAX_BODY_BYTES on purpose: a client sending 12 MiB must still be answered.
DRAIN_MAX_BYTES = 32 * 1024 * 1024
DRAIN_TIMEOUT_S = 5.0

__all__ = [
    "DEFAULT_K",
    "DEFAULT_PAGE_SIZE",
    "DRAIN_MAX_BYTES",
    "DRAIN_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "MAX_HEADER_FIELDS",
    "MAX_HEADER_FIELD_BYTES",
    "MAX_ID",
    "MAX_K",
    "MAX_ORDER_LINES",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "MAX_QUERY_CHARS",
    "MAX_REQUEST_LINE_BYTES",
]
