"""Domain errors.

Each carries a stable `code` so that any transport (a method call, msgpack over IPC,
JSON over HTTP) can carry it and the edge API can map it to the same HTTP status.
"""

from __future__ import annotations


class ShopError(Exception):
    code = "shop_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ShopError):
    code = "not_found"


class OutOfStock(ShopError):
    code = "out_of_stock"


class IdempotencyConflict(ShopError):
    """The idempotency key was already used for a different order."""

    code = "idempotency_conflict"


class InvalidRequest(ShopError):
    code = "invalid_request"


class Unavailable(ShopError):
    """A component is not ready (still loading) or unreachable."""

    code = "unavailable"


ERRORS: dict[str, type[ShopError]] = {
    cls.code: cls
    for cls in (ShopError, NotFound, OutOfStock, IdempotencyConflict, InvalidRequest, Unavailable)
}


def error_from_code(code: str, detail: str) -> ShopError:
    """Rebuild a domain error received over a transport."""
    return ERRORS.get(code, ShopError)(detail)
