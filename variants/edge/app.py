"""The public HTTP API as a WSGI app, shared by every variant.

`create_app(shop, variant, health)` binds the endpoints to a `Shop` however its
contexts are deployed (method calls, IPC proxies, HTTP clients). The app holds no
domain logic: it parses and validates input, calls the contexts, encodes contracts as
JSON with msgspec and maps every error to a JSON `ErrorBody` with a fixed status. It
sits on the hot path of every measured request, so it does no per-request reflection
and no work a handler does not need.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import falcon
import msgspec

from variants.edge.limits import (
    DEFAULT_K,
    DEFAULT_PAGE_SIZE,
    MAX_BODY_BYTES,
    MAX_ID,
    MAX_K,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
)
from variants.edge.openapi import build_openapi
from workloads.shop.contracts import (
    ErrorBody,
    Health,
    PlaceOrder,
    ProductView,
    Recommendations,
    RecommendedProduct,
)
from workloads.shop.errors import InvalidRequest, NotFound, ShopError, Unavailable
from workloads.shop.interfaces import Shop

log = logging.getLogger(__name__)

_encode = msgspec.json.encode
_decode_place_order_strictly = msgspec.json.Decoder(PlaceOrder).decode
_decode_any = msgspec.json.decode

# Domain error code -> (HTTP status, `ErrorBody.error`). Anything else is a 500.
_SHOP_ERRORS: dict[str, tuple[str, str]] = {
    "not_found": (falcon.HTTP_404, "not_found"),
    "out_of_stock": (falcon.HTTP_409, "out_of_stock"),
    "idempotency_conflict": (falcon.HTTP_409, "idempotency_conflict"),
    "invalid_request": (falcon.HTTP_422, "invalid_request"),
    "unavailable": (falcon.HTTP_503, "unavailable"),
}

# falcon's own errors (unknown route, wrong method, bad header) -> `ErrorBody.error`.
_HTTP_ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer: raised by handlers, turned into `ErrorBody` JSON."""

    def __init__(self, status: str, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def _bad_param(name: str, raw: object, lo: int, hi: int) -> ApiError:
    if isinstance(raw, list):
        return ApiError(falcon.HTTP_400, "invalid_parameter", f"{name} is given more than once")
    return ApiError(
        falcon.HTTP_400,
        "invalid_parameter",
        f"{name} must be an integer from {lo} to {hi}, got {str(raw)[:40]!r}",
    )


def _int_param(params: dict[str, Any], name: str, default: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if type(raw) is str and 0 < len(raw) <= 10 and raw.isascii() and raw.isdigit():
        value = int(raw)
        if 1 <= value <= hi:
            return value
    raise _bad_param(name, raw, 1, hi)


def _path_id(raw: str, what: str) -> int:
    if 0 < len(raw) <= 10 and raw.isascii() and raw.isdigit():
        value = int(raw)
        if 1 <= value <= MAX_ID:
            return value
    raise ApiError(falcon.HTTP_404, "not_found", f"no {what} {raw[:40]!r}")


def _read_body(req: falcon.Request) -> bytes:
    """The request body, never more than MAX_BODY_BYTES read into memory."""
    length = req.content_length  # raises HTTPInvalidHeader (400) when malformed
    if length is not None:
        if length > MAX_BODY_BYTES:
            raise ApiError(
                falcon.HTTP_413,
                "payload_too_large",
                f"the body is {length} bytes; at most {MAX_BODY_BYTES} are accepted",
            )
        return req.bounded_stream.read(length) if length else b""
    if "chunked" not in (req.get_header("Transfer-Encoding") or "").lower():
        return b""
    if not req.env.get("wsgi.input_terminated"):
        raise ApiError(
            falcon.HTTP_411,
            "length_required",
            "this server cannot read a chunked body; send a Content-Length",
        )
    stream = req.stream
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(
                falcon.HTTP_413,
                "payload_too_large",
                f"the body is over {MAX_BODY_BYTES} bytes",
            )
        chunks.append(chunk)


def _integral_floats_to_ints(tree: Any) -> bool:
    """Replace, in place, every float with a zero fractional part by its int; whether any was."""
    changed = False
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            entries: Any = node.items()
        elif isinstance(node, list):
            entries = enumerate(node)
        else:
            continue
        for key, value in list(entries):
            if type(value) is float and value.is_integer():
                node[key] = int(value)
                changed = True
            elif isinstance(value, dict | list):
                stack.append(value)
    return changed


def _decode_place_order(body: bytes) -> PlaceOrder:
    """The body as a `PlaceOrder`, integer fields taking integral floats as JSON Schema does.

    JSON Schema (and so the OpenAPI document) counts `393.0` as an integer; msgspec's typed
    decoder does not. The typed decoder stays the only cost of a valid body: only a body it
    refused for a float where an int belongs is decoded again, untyped, with its integral floats
    turned into ints and checked against the contract once more (`393.5` is still refused).
    """
    try:
        return _decode_place_order_strictly(body)
    except msgspec.ValidationError as e:
        if "got `float`" not in str(e):
            raise
        try:
            tree = _decode_any(body)
        except (msgspec.DecodeError, RecursionError):
            raise e from None
        if not _integral_floats_to_ints(tree):
            raise
        return msgspec.convert(tree, PlaceOrder)


class _Health:
    def __init__(self, variant: str, health: Callable[[], dict[str, str]]) -> None:
        self._variant = variant
        self._health = health

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            components = dict(self._health())
        except Exception:
            log.exception("health check failed")
            components = {"health": "down"}
        states = set(components.values())
        if states <= {"ok"}:
            status = "ok"
        else:
            status = "starting" if states <= {"ok", "starting"} else "degraded"
            resp.status = falcon.HTTP_503
        resp.data = _encode(Health(self._variant, status, components))


class _OpenApi:
    def __init__(self, document: bytes) -> None:
        self._document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self._document


class _Products:
    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = req.params
        q = params.get("q", "")
        if type(q) is not str:
            raise _bad_param("q", q, 0, 0)
        if len(q) > MAX_QUERY_CHARS:
            raise ApiError(
                falcon.HTTP_400,
                "invalid_parameter",
                f"q is {len(q)} characters; at most {MAX_QUERY_CHARS} are accepted",
            )
        page = _int_param(params, "page", 1, MAX_PAGE)
        page_size = _int_param(params, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        resp.data = _encode(self._shop.catalog.search(q, page, page_size))


class _Product:
    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    def on_get(self, req: falcon.Request, resp: falcon.Response, product_id: str) -> None:
        pid = _path_id(product_id, "product")
        shop = self._shop
        product = shop.catalog.get(pid)
        resp.data = _encode(ProductView(product, shop.inventory.stock(pid)))


class _Recommendations:
    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    def on_get(self, req: falcon.Request, resp: falcon.Response, product_id: str) -> None:
        pid = _path_id(product_id, "product")
        k = _int_param(req.params, "k", DEFAULT_K, MAX_K)
        shop = self._shop
        shop.catalog.get(pid)  # NotFound -> 404 before asking the engine
        try:
            scored = shop.recommendations.related(pid, k)[:k]
        except Unavailable:
            # The engine is down or slow: answer without it, flagged, rather than fail the page.
            resp.data = _encode(Recommendations(pid, [], degraded=True))
            return
        items: list[RecommendedProduct] = []
        if scored:
            by_id = {p.id: p for p in shop.catalog.get_many([s.product_id for s in scored])}
            for s in scored:
                product = by_id.get(s.product_id)
                if product is not None:
                    items.append(RecommendedProduct(product, s.score))
        resp.data = _encode(Recommendations(pid, items))


class _Orders:
    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        content_type = req.content_type
        if (
            content_type is None
            or content_type.partition(";")[0].strip().lower() != "application/json"
        ):
            raise ApiError(
                falcon.HTTP_415,
                "unsupported_media_type",
                f"Content-Type must be application/json, got {str(content_type)[:60]!r}",
            )
        body = _read_body(req)
        if not body:
            raise ApiError(falcon.HTTP_400, "empty_body", "the body is empty")
        try:
            request = _decode_place_order(body)
        except msgspec.ValidationError as e:
            raise ApiError(falcon.HTTP_422, "validation_error", str(e)) from None
        except msgspec.DecodeError as e:
            raise ApiError(falcon.HTTP_400, "malformed_json", str(e)) from None
        except UnicodeDecodeError as e:  # msgspec lets invalid UTF-8 in strings through
            raise ApiError(falcon.HTTP_400, "malformed_json", f"invalid UTF-8: {e}") from None
        try:
            result = self._shop.orders.place(request)
        except (NotFound, InvalidRequest) as e:
            raise ApiError(falcon.HTTP_422, "invalid_request", e.detail) from None
        order = result.order
        resp.status = falcon.HTTP_201 if result.created else falcon.HTTP_200
        resp.set_header("Location", f"/orders/{order.id}")
        resp.data = _encode(order)


class _Order:
    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    def on_get(self, req: falcon.Request, resp: falcon.Response, order_id: str) -> None:
        resp.data = _encode(self._shop.orders.get(_path_id(order_id, "order")))


def _error(resp: falcon.Response, status: str, code: str, detail: str) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encode(ErrorBody(code, detail))


def _on_api_error(req: falcon.Request, resp: falcon.Response, ex: ApiError, params: Any) -> None:
    _error(resp, ex.status, ex.code, ex.detail)


def _on_shop_error(req: falcon.Request, resp: falcon.Response, ex: ShopError, params: Any) -> None:
    mapped = _SHOP_ERRORS.get(ex.code)
    if mapped is None:
        log.error("unmapped domain error on %s %s", req.method, req.path, exc_info=ex)
        _error(resp, falcon.HTTP_500, "internal_error", f"{ex.code}: {ex.detail}")
    else:
        _error(resp, mapped[0], mapped[1], ex.detail)


def _on_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    log.error("unexpected error on %s %s", req.method, req.path, exc_info=ex)
    _error(resp, falcon.HTTP_500, "internal_error", f"unexpected {type(ex).__name__}")


def _serialize_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError) -> None:
    status = ex.status_code
    code = _HTTP_ERROR_CODES.get(status, f"http_{status}")
    if isinstance(ex, falcon.HTTPRouteNotFound):
        detail = f"no endpoint has the path {req.path[:100]!r}"
    elif isinstance(ex, falcon.HTTPMethodNotAllowed):
        allowed = (ex.headers or {}).get("Allow", "")
        detail = f"{req.method} is not allowed on {req.path[:100]!r}; allowed: {allowed}"
    else:
        detail = ex.description or ex.title or code
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encode(ErrorBody(code, detail))


def create_app(shop: Shop, variant: str, health: Callable[[], dict[str, str]]) -> falcon.App:
    """The public API over `shop`, as a WSGI app.

    `health()` returns each component's state ("ok", "starting", "down", ...);
    `/healthz` answers 200 only when every one is "ok".
    """
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    app.add_route("/healthz", _Health(variant, health))
    app.add_route("/openapi.json", _OpenApi(_encode(build_openapi(variant))))
    app.add_route("/products", _Products(shop))
    app.add_route("/products/{product_id}", _Product(shop))
    app.add_route("/products/{product_id}/recommendations", _Recommendations(shop))
    app.add_route("/orders", _Orders(shop))
    app.add_route("/orders/{order_id}", _Order(shop))
    app.set_error_serializer(_serialize_http_error)
    # Most specific first in effect: falcon picks the handler nearest in the MRO.
    app.add_error_handler(Exception, _on_unexpected)
    app.add_error_handler(ShopError, _on_shop_error)
    app.add_error_handler(ApiError, _on_api_error)
    return app
