"""The OpenAPI 3.1 document of the public API, generated from the msgspec contracts.

Schemas come from `msgspec.json.schema_components`, so the document cannot drift from
the types the app actually decodes and encodes. The operation table below is the one
place that lists every endpoint, its parameters and every status it can answer (plus
`TRANSPORT_ERRORS`, what the HTTP server answers on every operation before an endpoint
sees the request); each error response names the `error` codes it can carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from variants.edge.limits import (
    DEFAULT_K,
    DEFAULT_PAGE_SIZE,
    DRAIN_MAX_BYTES,
    DRAIN_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_HEADER_FIELD_BYTES,
    MAX_HEADER_FIELDS,
    MAX_ID,
    MAX_K,
    MAX_ORDER_LINES,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
    MAX_REQUEST_LINE_BYTES,
)
from workloads.shop.contracts import (
    ErrorBody,
    Health,
    Order,
    PlaceOrder,
    ProductView,
    Recommendations,
    SearchPage,
)

REF = "#/components/schemas/{name}"
JSON = "application/json"

# Error codes the app can put in `ErrorBody.error`, by HTTP status.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_parameter", "malformed_json", "empty_body", "bad_request"),
    404: ("not_found",),
    405: ("method_not_allowed",),
    409: ("out_of_stock", "idempotency_conflict"),
    411: ("length_required",),
    413: ("payload_too_large",),
    414: ("uri_too_long",),
    415: ("unsupported_media_type",),
    417: ("expectation_failed",),
    422: ("validation_error", "invalid_request"),
    431: ("header_too_large",),
    500: ("internal_error",),
    501: ("not_implemented",),
    503: ("unavailable",),
}

# What the HTTP server itself answers, before any endpoint sees the request, on every operation
# (`variants.edge.worker` renders these as `ErrorBody` JSON; the first code of a status is the
# one it sends).
TRANSPORT_ERRORS: dict[int, dict[str, str]] = {
    400: {"bad_request": "the request line or a header is malformed"},
    414: {
        "uri_too_long": f"the request line (method, path, query string, version) is over"
        f" {MAX_REQUEST_LINE_BYTES} bytes"
    },
    417: {"expectation_failed": "an `Expect` header other than `100-continue`"},
    431: {
        "header_too_large": f"more than {MAX_HEADER_FIELDS} header fields, or one over"
        f" {MAX_HEADER_FIELD_BYTES} bytes"
    },
    500: {"internal_error": "an unexpected error; the server logged its traceback"},
    501: {"not_implemented": "a `Transfer-Encoding` the server does not know, e.g. `br`"},
}


@dataclass(frozen=True)
class Ok:
    """A success response: its body type and any headers."""

    body: type | None
    description: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    ok: dict[int, Ok]
    # status -> {error code: when}
    errors: dict[int, dict[str, str]]
    parameters: tuple[dict[str, Any], ...] = ()
    request_body: type | None = None
    description: str = ""


def _int_schema(minimum: int, maximum: int, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        schema["default"] = default
    return schema


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what} id. A non-integer or out-of-range id answers 404.",
        "schema": _int_schema(1, MAX_ID),
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_ALWAYS: dict[int, dict[str, str]] = {
    500: {"internal_error": "an unexpected error; the server logged its traceback"},
}
_DOMAIN: dict[int, dict[str, str]] = {
    **_ALWAYS,
    503: {"unavailable": "a component the request needs is starting or unreachable"},
}
_BAD_PARAM = "a query parameter is not an integer, is out of range or is given twice"

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/healthz",
        "getHealth",
        "The variant's name and each component's state",
        ok={
            200: Ok(Health, "Every component is `ok`."),
            503: Ok(Health, "Some component is not `ok`; `status` is `starting` or `degraded`."),
        },
        errors=dict(_ALWAYS),
    ),
    Operation(
        "get",
        "/openapi.json",
        "getOpenApi",
        "This document",
        ok={200: Ok(None, "The OpenAPI 3.1 document.")},
        errors=dict(_ALWAYS),
    ),
    Operation(
        "get",
        "/products",
        "searchProducts",
        "Search the catalog (an empty `q` lists every product), paginated",
        parameters=(
            _query(
                "q",
                f"Search words; empty or absent lists every product. At most {MAX_QUERY_CHARS}"
                " characters.",
                {"type": "string", "maxLength": MAX_QUERY_CHARS, "default": ""},
            ),
            _query("page", "Page number, from 1.", _int_schema(1, MAX_PAGE, 1)),
            _query(
                "page_size",
                "Products per page.",
                _int_schema(1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE),
            ),
        ),
        ok={200: Ok(SearchPage, "One page of matching products.")},
        errors={
            400: {"invalid_parameter": f"{_BAD_PARAM}, or `q` is too long"},
            **_DOMAIN,
        },
    ),
    Operation(
        "get",
        "/products/{product_id}",
        "getProduct",
        "A product with its current stock",
        parameters=(_path_id("product_id", "product"),),
        ok={200: Ok(ProductView, "The product and its available stock.")},
        errors={404: {"not_found": "no such product"}, **_DOMAIN},
    ),
    Operation(
        "get",
        "/products/{product_id}/recommendations",
        "getRecommendations",
        "The top-k products related to a product, best first",
        parameters=(
            _path_id("product_id", "product"),
            _query("k", "How many products at most.", _int_schema(1, MAX_K, DEFAULT_K)),
        ),
        ok={
            200: Ok(
                Recommendations,
                "At most `k` related products, in score order. When the recommendation engine "
                "is unavailable: no items and `degraded: true` (the page still answers).",
            )
        },
        errors={
            400: {"invalid_parameter": _BAD_PARAM},
            404: {"not_found": "no such product"},
            **_DOMAIN,
        },
    ),
    Operation(
        "post",
        "/orders",
        "placeOrder",
        "Place an order (idempotent on `idempotency_key`)",
        description=(
            f"The body is a JSON `PlaceOrder` of at most {MAX_BODY_BYTES} bytes and at most"
            f" {MAX_ORDER_LINES} lines, sent with `Content-Type: application/json`, either"
            " with a `Content-Length` or chunked. An integer field takes any JSON number with a"
            " zero fractional part (`3` or `3.0`, as JSON Schema counts integers); `3.5` answers"
            " 422. An order answered 201 is durable. Sending the same body with the same"
            " `idempotency_key` again answers 200 with the same order; the same key with a"
            " different body answers 409. A body over the limit answers 413 without being"
            f" decoded; the server reads and discards up to {DRAIN_MAX_BYTES} bytes of it (for"
            f" at most {DRAIN_TIMEOUT_S:g} s) so that a client that sends the whole body before"
            " reading still gets the answer, then closes the connection if it could not."
        ),
        request_body=PlaceOrder,
        ok={
            201: Ok(Order, "The order was created.", {"Location": "`/orders/{id}`"}),
            200: Ok(
                Order,
                "The idempotency key replayed: the order placed earlier with this key.",
                {"Location": "`/orders/{id}`"},
            ),
        },
        errors={
            400: {
                "malformed_json": "the body is not valid JSON",
                "empty_body": "the body is empty",
                "bad_request": "a malformed request header, e.g. `Content-Length`",
            },
            409: {
                "out_of_stock": "not enough stock for some line; nothing was reserved",
                "idempotency_conflict": "the key was already used for a different order",
            },
            411: {
                "length_required": "a chunked body on a server that cannot read one; send a"
                " Content-Length"
            },
            413: {"payload_too_large": f"the body is over {MAX_BODY_BYTES} bytes"},
            415: {"unsupported_media_type": "the Content-Type is not `application/json`"},
            422: {
                "validation_error": "the JSON does not match `PlaceOrder` (wrong type, missing"
                " or unknown field, quantity out of range, too many lines, bad idempotency key);"
                " `detail` names the path, e.g. `$.items[0].qty`",
                "invalid_request": "the order names a product that does not exist",
            },
            **_DOMAIN,
        },
    ),
    Operation(
        "get",
        "/orders/{order_id}",
        "getOrder",
        "An order",
        parameters=(_path_id("order_id", "order"),),
        ok={200: Ok(Order, "The order.")},
        errors={404: {"not_found": "no such order"}, **_DOMAIN},
    ),
)

# Answers that belong to no operation.
UNROUTED: dict[int, dict[str, str]] = {
    404: {"not_found": "no endpoint has this path"},
    405: {"method_not_allowed": "the path exists but not with this method; see `Allow`"},
}
_UNROUTED_NAMES = {404: "RouteNotFound", 405: "MethodNotAllowed"}

_REASONS = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    411: "Length required",
    413: "Content too large",
    414: "URI too long",
    415: "Unsupported media type",
    417: "Expectation failed",
    422: "Unprocessable content",
    431: "Request header fields too large",
    500: "Internal server error",
    501: "Not implemented",
    503: "Service unavailable",
}


def _with_transport_errors(errors: dict[int, dict[str, str]]) -> dict[int, dict[str, str]]:
    """An operation's own errors plus what the HTTP server answers on every operation."""
    merged = {status: dict(codes) for status, codes in errors.items()}
    for status, codes in TRANSPORT_ERRORS.items():
        merged.setdefault(status, {}).update(
            {code: when for code, when in codes.items() if code not in merged[status]}
        )
    return merged


def _error_response(status: int, codes: dict[str, str], error_ref: str) -> dict[str, Any]:
    for code in codes:
        if code not in ERROR_CODES[status]:
            raise ValueError(f"error code {code!r} is not registered for status {status}")
    lines = "; ".join(f"`{code}`: {when}" for code, when in codes.items())
    return {
        "description": f"{_REASONS[status]}. {lines}.",
        "content": {
            JSON: {
                "schema": {
                    "allOf": [
                        {"$ref": error_ref},
                        {"properties": {"error": {"enum": list(codes)}}},
                    ]
                }
            }
        },
    }


def build_openapi(variant: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document as a dict (encode it with `msgspec.json.encode`)."""
    body_types = {op.request_body for op in OPERATIONS if op.request_body is not None}
    for op in OPERATIONS:
        body_types.update(ok.body for ok in op.ok.values() if ok.body is not None)
    body_types.add(ErrorBody)
    ordered = sorted(body_types, key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(ordered, ref_template=REF)
    ref_of = dict(zip(ordered, refs, strict=True))
    error_ref = ref_of[ErrorBody]["$ref"]

    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {}
        for status, ok in sorted(op.ok.items()):
            response: dict[str, Any] = {"description": ok.description}
            if ok.body is not None:
                response["content"] = {JSON: {"schema": ref_of[ok.body]}}
            else:
                response["content"] = {JSON: {"schema": {"type": "object"}}}
            if ok.headers:
                response["headers"] = {
                    name: {"description": text, "schema": {"type": "string"}}
                    for name, text in ok.headers.items()
                }
            responses[str(status)] = response
        for status, codes in sorted(_with_transport_errors(op.errors).items()):
            responses[str(status)] = _error_response(status, codes, error_ref)
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "responses": responses,
        }
        if op.description:
            operation["description"] = op.description
        if op.parameters:
            operation["parameters"] = list(op.parameters)
        if op.request_body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {JSON: {"schema": ref_of[op.request_body]}},
            }
        paths.setdefault(op.path, {})[op.method] = operation

    unrouted = {
        _UNROUTED_NAMES[status]: _error_response(status, codes, error_ref)
        for status, codes in UNROUTED.items()
    }
    unrouted["MethodNotAllowed"]["headers"] = {
        "Allow": {"description": "The methods the path accepts.", "schema": {"type": "string"}}
    }
    title = "archlab shop" + (f" ({variant})" if variant else "")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1",
            "description": (
                "The public API, identical for every variant. Every error is a JSON"
                " `ErrorBody`, including those the HTTP server answers before an endpoint sees"
                " the request (400, 414, 417, 431, 501: listed on every operation). A path no"
                " endpoint has answers 404 (`RouteNotFound`); a known path with another method"
                " answers 405 with `Allow` (`MethodNotAllowed`)."
            ),
        },
        "paths": paths,
        "components": {"schemas": components, "responses": unrouted},
    }
