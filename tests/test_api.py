"""The public API's specification, run unchanged against every variant.

Needs a fixture `api` (from tests/conftest.py) whose `.base_url` ("http://host:port")
is a running server of some variant over the `tiny` dataset. Requests go through a
small `http.client` helper so that malformed requests can be sent byte for byte.

Every response any test receives is checked against the server's own
`/openapi.json`: its status must be documented for that operation (or, for a path or
method no operation has, as `RouteNotFound`/`MethodNotAllowed`), and an error must be
a JSON `ErrorBody` whose `error` is one the document lists for that status.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from variants.edge.limits import DEFAULT_K
from workloads.shop.contracts import (
    MAX_ORDER_LINES,
    ErrorBody,
    Health,
    Order,
    PlaceOrder,
    ProductView,
    Recommendations,
    SearchPage,
)

MAX_BODY_BYTES = 64 * 1024
MAX_ID = 2**31 - 1
ABSENT_ID = MAX_ID  # a valid id that the tiny dataset does not have
JSON_CT = {"Content-Type": "application/json"}
METHODS = ("get", "put", "post", "delete", "patch")

# --------------------------------------------------------------------------- client


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def decode(self, type_: type) -> Any:
        return msgspec.json.decode(self.body, type=type_)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def _send(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> Response:
    """One request on a fresh connection, headers and body sent exactly as given.

    A Content-Length is added for a body unless `headers` has one or `chunked` is set.
    """
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        payload = body or b""
        if chunked:
            hdrs["Transfer-Encoding"] = "chunked"
            step = 8192
            parts = [
                b"%x\r\n%s\r\n" % (len(payload[i : i + step]), payload[i : i + step])
                for i in range(0, len(payload), step)
            ]
            payload = b"".join(parts) + b"0\r\n\r\n"
        elif body is not None and not any(k.lower() == "content-length" for k in hdrs):
            hdrs["Content-Length"] = str(len(body))
        for name, value in hdrs.items():
            conn.putheader(name, value)
        # The server may answer (413) before reading everything sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.endheaders(payload or None)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{[^}/]+\}", template)
    return re.compile("[^/]+".join(re.escape(p) for p in parts))


def _error_codes(response_spec: dict[str, Any]) -> set[str] | None:
    """The `error` codes a documented error response lists, None if it lists none."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            error = node.get("properties", {}).get("error")
            if isinstance(error, dict) and "enum" in error:
                found.update(error["enum"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(response_spec.get("content", {}))
    return found or None


def _is_error_body(response_spec: dict[str, Any]) -> bool:
    return "ErrorBody" in json.dumps(response_spec)


def _assert_error_body(resp: Response, codes: set[str] | None = None) -> dict[str, Any]:
    assert (resp.header("Content-Type") or "").startswith("application/json"), resp
    body = resp.decode(ErrorBody)
    assert body.error and isinstance(body.error, str)
    assert body.detail and isinstance(body.detail, str)
    if codes is not None:
        assert body.error in codes, (body, codes)
    return resp.json()


class Client:
    def __init__(self, base_url: str, spec: dict[str, Any]) -> None:
        self.base_url = base_url
        self.spec = spec
        self._routes = [(_template_regex(t), ops) for t, ops in spec["paths"].items()]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        chunked: bool = False,
    ) -> Response:
        resp = _send(self.base_url, method, path, body, headers, chunked)
        self.check_documented(method, path, resp)
        return resp

    def get(self, path: str, **params: Any) -> Response:
        if params:
            path = f"{path}?{urllib.parse.urlencode(params)}"
        return self.request("GET", path)

    def post_json(self, path: str, obj: Any) -> Response:
        return self.request("POST", path, json.dumps(obj).encode(), JSON_CT)

    def check_documented(self, method: str, path: str, resp: Response) -> None:
        """Assert that `resp` is an answer the OpenAPI document allows for this request."""
        route = urllib.parse.urlsplit(path).path
        ops = next((ops for rx, ops in self._routes if rx.fullmatch(route)), None)
        where = f"{method} {path} -> {resp.status}"
        if ops is None:
            assert resp.status == 404, where
            documented = self.spec["components"]["responses"]["RouteNotFound"]
        elif method.lower() not in ops:
            assert resp.status == 405, where
            documented = self.spec["components"]["responses"]["MethodNotAllowed"]
            allowed = {m.strip().upper() for m in (resp.header("Allow") or "").split(",")}
            assert {m.upper() for m in ops if m in METHODS} <= allowed, (where, allowed)
        else:
            responses = ops[method.lower()]["responses"]
            assert str(resp.status) in responses, f"{where} is not documented"
            documented = responses[str(resp.status)]
        if _is_error_body(documented):
            _assert_error_body(resp, _error_codes(documented))
        else:
            assert (resp.header("Content-Type") or "").startswith("application/json"), where


_spec_cache: dict[str, dict[str, Any]] = {}
_catalog_cache: dict[str, list[dict[str, Any]]] = {}


@pytest.fixture
def client(api: Any) -> Client:
    base_url = api.base_url.rstrip("/")
    if base_url not in _spec_cache:
        resp = _send(base_url, "GET", "/openapi.json")
        assert resp.status == 200, resp
        _spec_cache[base_url] = resp.json()
    return Client(base_url, _spec_cache[base_url])


@pytest.fixture
def catalog(client: Client) -> list[dict[str, Any]]:
    """Every product, listed through the API."""
    if client.base_url not in _catalog_cache:
        products: list[dict[str, Any]] = []
        page = 1
        while True:
            resp = client.get("/products", page=page, page_size=100)
            assert resp.status == 200
            data = resp.json()
            products.extend(data["items"])
            if not data["items"] or len(products) >= data["total"]:
                break
            page += 1
        assert len(products) == data["total"] > 0
        _catalog_cache[client.base_url] = products
    return _catalog_cache[client.base_url]


@pytest.fixture
def product(catalog: list[dict[str, Any]]) -> dict[str, Any]:
    return catalog[0]


def _key() -> str:
    return f"test-{uuid.uuid4().hex}"


def _order(pid: int, qty: int = 1, key: str | None = None, customer: int = 7) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "items": [{"product_id": pid, "qty": qty}],
        "idempotency_key": key or _key(),
    }


def _stock(client: Client, pid: int) -> int:
    resp = client.get(f"/products/{pid}")
    assert resp.status == 200
    return resp.decode(ProductView).stock


# --------------------------------------------------------------------------- health, spec


def test_healthz_reports_variant_and_components(client: Client) -> None:
    resp = client.get("/healthz")
    assert resp.status == 200
    health = resp.decode(Health)
    assert health.variant
    assert health.status == "ok"
    assert health.components
    assert set(health.components.values()) == {"ok"}


def test_openapi_documents_the_public_api(client: Client) -> None:
    spec = client.spec
    assert spec["openapi"].startswith("3.1")
    operations = {(m, p) for p, ops in spec["paths"].items() for m in ops if m in METHODS}
    assert operations == {
        ("get", "/healthz"),
        ("get", "/openapi.json"),
        ("get", "/products"),
        ("get", "/products/{product_id}"),
        ("get", "/products/{product_id}/recommendations"),
        ("post", "/orders"),
        ("get", "/orders/{order_id}"),
    }
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            statuses = {int(s) for s in op["responses"]}
            assert any(200 <= s < 300 for s in statuses), (method, path)
            assert 500 in statuses, (method, path)
            for status in statuses:
                if status >= 400 and path != "/healthz":
                    assert _is_error_body(op["responses"][str(status)]), (method, path, status)
            for name in re.findall(r"\{([^}]+)\}", path):
                params = {(p["in"], p["name"]) for p in op.get("parameters", [])}
                assert ("path", name) in params, (method, path, name)
    for name in ("RouteNotFound", "MethodNotAllowed"):
        assert _is_error_body(spec["components"]["responses"][name])


def test_openapi_schemas_are_the_contracts(client: Client) -> None:
    types = [ErrorBody, Health, Order, PlaceOrder, ProductView, Recommendations, SearchPage]
    _, expected = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    schemas = client.spec["components"]["schemas"]
    for name, schema in expected.items():
        assert schemas.get(name) == schema, name
    post = client.spec["paths"]["/orders"]["post"]
    body_schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/PlaceOrder"}


def test_every_documented_operation_is_served(client: Client, product: dict[str, Any]) -> None:
    placed = client.post_json("/orders", _order(product["id"]))
    assert placed.status == 201
    ids = {"product_id": product["id"], "order_id": placed.json()["id"]}
    for template, ops in client.spec["paths"].items():
        path = re.sub(r"\{([^}]+)\}", lambda m: str(ids[m.group(1)]), template)
        for method in ops:
            if method not in METHODS:
                continue
            if method == "post":
                resp = client.post_json(path, _order(product["id"]))
            else:
                resp = client.request(method.upper(), path)
            assert 200 <= resp.status < 300, (method, template, resp.status, resp.body)


def test_wrong_method_lists_allowed_methods(client: Client) -> None:
    resp = client.request("DELETE", "/products")
    assert resp.status == 405
    assert "GET" in (resp.header("Allow") or "")
    assert resp.json()["error"] == "method_not_allowed"


# --------------------------------------------------------------------------- products


def test_listing_is_paginated(client: Client, catalog: list[dict[str, Any]]) -> None:
    first = client.get("/products", page=1, page_size=5).decode(SearchPage)
    second = client.get("/products", page=2, page_size=5).decode(SearchPage)
    assert (first.page, first.page_size, second.page) == (1, 5, 2)
    assert len(first.items) == len(second.items) == 5
    assert first.total == second.total == len(catalog)
    assert not {p.id for p in first.items} & {p.id for p in second.items}

    default = client.get("/products").decode(SearchPage)
    assert (default.page, default.page_size) == (1, 20)
    assert len(default.items) == min(20, len(catalog))
    assert [p.id for p in default.items][:5] == [p.id for p in first.items]

    beyond = client.get("/products", page=len(catalog) + 1, page_size=100).decode(SearchPage)
    assert beyond.items == []
    assert beyond.total == len(catalog)

    assert len({p["id"] for p in catalog}) == len(catalog)


def test_search_finds_a_word_from_a_product_name(
    client: Client, catalog: list[dict[str, Any]]
) -> None:
    target = catalog[len(catalog) // 2]
    word = max(re.findall(r"[A-Za-z]+", target["name"]), key=len)
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        resp = client.get("/products", q=word.lower(), page=page, page_size=100)
        assert resp.status == 200
        data = resp.decode(SearchPage)
        found.extend(msgspec.to_builtins(data.items))
        if not data.items or len(found) >= data.total or page >= 20:
            break
        page += 1
    assert 1 <= data.total <= len(catalog)
    assert target in found
    assert any(word.lower() in p["name"].lower() for p in found)


def test_search_without_match_is_empty(client: Client) -> None:
    data = client.get("/products", q="zzqxnosuchwordzz").decode(SearchPage)
    assert data.items == []
    assert data.total == 0


def test_product_page_has_product_and_stock(client: Client, product: dict[str, Any]) -> None:
    resp = client.get(f"/products/{product['id']}")
    assert resp.status == 200
    view = resp.decode(ProductView)
    assert msgspec.to_builtins(view.product) == product
    assert view.stock >= 0


def test_recommendations_are_existing_products(
    client: Client, catalog: list[dict[str, Any]]
) -> None:
    """The engine answers (not degraded), k distinct other products, best first.

    The model tops its co-purchase neighbours up with popular products, so every product of the
    tiny catalogue has k recommendations when the engine is up.
    """
    by_id = {p["id"]: p for p in catalog}
    for pid in (catalog[0]["id"], catalog[-1]["id"]):
        resp = client.get(f"/products/{pid}/recommendations", k=3)
        assert resp.status == 200
        recs = resp.decode(Recommendations)
        assert recs.product_id == pid and not recs.degraded
        ids = [item.product.id for item in recs.items]
        assert len(ids) == 3 == len(set(ids)) and pid not in ids
        for item in recs.items:
            assert msgspec.to_builtins(item.product) == by_id[item.product.id]
        scores = [item.score for item in recs.items]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0
    default = client.get(f"/products/{catalog[0]['id']}/recommendations")
    assert default.status == 200
    answer = default.decode(Recommendations)
    assert not answer.degraded and len(answer.items) == DEFAULT_K


# --------------------------------------------------------------------------- orders


def test_place_order_then_read_it_back(client: Client, catalog: list[dict[str, Any]]) -> None:
    a, b = catalog[1], catalog[2]
    request = {
        "customer_id": 42,
        "items": [{"product_id": a["id"], "qty": 2}, {"product_id": b["id"], "qty": 1}],
        "idempotency_key": _key(),
    }
    resp = client.post_json("/orders", request)
    assert resp.status == 201, resp.body
    order = resp.decode(Order)
    assert order.id >= 1
    assert order.customer_id == 42
    assert order.idempotency_key == request["idempotency_key"]
    assert sorted((line.product_id, line.qty) for line in order.lines) == sorted(
        [(a["id"], 2), (b["id"], 1)]
    )
    prices = {a["id"]: a["price_cents"], b["id"]: b["price_cents"]}
    for line in order.lines:
        assert line.unit_price_cents == prices[line.product_id]
    assert order.total_cents == sum(line.qty * line.unit_price_cents for line in order.lines)
    assert resp.header("Location") == f"/orders/{order.id}"

    again = client.get(f"/orders/{order.id}")
    assert again.status == 200
    assert again.decode(Order) == order


def test_placing_an_order_takes_stock(client: Client, catalog: list[dict[str, Any]]) -> None:
    pid = catalog[3]["id"]
    before = _stock(client, pid)
    assert client.post_json("/orders", _order(pid, qty=3)).status == 201
    assert _stock(client, pid) == before - 3


def test_replaying_an_idempotency_key_returns_the_same_order(
    client: Client, catalog: list[dict[str, Any]]
) -> None:
    pid = catalog[4]["id"]
    request = _order(pid, qty=2)
    first = client.post_json("/orders", request)
    assert first.status == 201
    stock = _stock(client, pid)
    replay = client.post_json("/orders", request)
    assert replay.status == 200
    assert replay.decode(Order) == first.decode(Order)
    assert replay.header("Location") == first.header("Location")
    assert _stock(client, pid) == stock


def test_reusing_a_key_for_a_different_order_conflicts(
    client: Client, catalog: list[dict[str, Any]]
) -> None:
    request = _order(catalog[5]["id"])
    assert client.post_json("/orders", request).status == 201
    changed = dict(request, items=[{"product_id": catalog[5]["id"], "qty": 2}])
    resp = client.post_json("/orders", changed)
    assert resp.status == 409
    assert resp.json()["error"] == "idempotency_conflict"


def test_ordering_more_than_the_stock_is_refused(
    client: Client, catalog: list[dict[str, Any]]
) -> None:
    for candidate in catalog[6:]:
        stock = _stock(client, candidate["id"])
        if stock < 1000:  # one line's qty is at most 1000
            break
    else:
        pytest.skip("no product with stock under 1000")
    resp = client.post_json("/orders", _order(candidate["id"], qty=stock + 1))
    assert resp.status == 409
    assert resp.json()["error"] == "out_of_stock"
    assert _stock(client, candidate["id"]) == stock


@pytest.mark.parametrize(
    ("content_type", "chunked"),
    [
        ("application/json; charset=utf-8", False),
        ("Application/JSON", False),
        ("application/json", True),
    ],
)
def test_order_body_variants_are_accepted(
    client: Client, product: dict[str, Any], content_type: str, chunked: bool
) -> None:
    body = json.dumps(_order(product["id"])).encode()
    resp = client.request("POST", "/orders", body, {"Content-Type": content_type}, chunked)
    assert resp.status == 201, resp.body


# --------------------------------------------------------------------------- bad input


@dataclass(frozen=True)
class Bad:
    """A bad request and the exact answer the API documents for it."""

    method: str
    path: str
    status: int
    error: str
    body: Any = None  # bytes, or a dict/list sent as JSON; "{pid}" is a real product id
    headers: dict[str, str] | None = None
    chunked: bool = False
    detail_has: str = ""


def _valid(**changes: Any) -> dict[str, Any]:
    order = {
        "customer_id": 7,
        "items": [{"product_id": "{pid}", "qty": 1}],
        "idempotency_key": "{key}",
    }
    order.update(changes)
    return order


def _line(**changes: Any) -> dict[str, Any]:
    return _valid(items=[{"product_id": "{pid}", "qty": 1, **changes}])


_BIG = b'{"customer_id": 7, "items": [], "idempotency_key": "' + b"k" * MAX_BODY_BYTES + b'"}'
V422 = ("POST", "/orders", 422, "validation_error")

BAD = {
    # malformed or missing bodies
    "malformed_json": Bad("POST", "/orders", 400, "malformed_json", b'{"customer_id": 7,'),
    "not_json": Bad("POST", "/orders", 400, "malformed_json", b"customer_id=7"),
    "not_utf8": Bad("POST", "/orders", 400, "malformed_json", b"\xff\xfe"),
    "not_utf8_in_string": Bad(
        "POST", "/orders", 400, "malformed_json", b'{"idempotency_key": "\xff\xfe"}'
    ),
    "empty_body": Bad("POST", "/orders", 400, "empty_body", b""),
    "no_body": Bad("POST", "/orders", 400, "empty_body", None),
    # wrong shape, checked against the PlaceOrder contract
    "array_body": Bad(*V422, [_valid()], detail_has="object"),
    "null_body": Bad(*V422, b"null"),
    "missing_field": Bad(
        *V422,
        {k: v for k, v in _valid().items() if k != "idempotency_key"},
        detail_has="idempotency_key",
    ),
    "unknown_field": Bad(*V422, _valid(coupon="FREE"), detail_has="coupon"),
    "unknown_line_field": Bad(*V422, _line(colour="red"), detail_has="colour"),
    "qty_wrong_type": Bad(*V422, _line(qty="two"), detail_has="$.items[0].qty"),
    "qty_float": Bad(*V422, _line(qty=1.5), detail_has="$.items[0].qty"),
    "qty_zero": Bad(*V422, _line(qty=0), detail_has="$.items[0].qty"),
    "qty_negative": Bad(*V422, _line(qty=-3), detail_has="$.items[0].qty"),
    "qty_too_big": Bad(*V422, _line(qty=1001), detail_has="$.items[0].qty"),
    "product_id_zero": Bad(*V422, _line(product_id=0), detail_has="$.items[0].product_id"),
    "customer_id_zero": Bad(*V422, _valid(customer_id=0), detail_has="$.customer_id"),
    "customer_id_bool": Bad(*V422, _valid(customer_id=True), detail_has="$.customer_id"),
    "customer_id_huge": Bad(*V422, _valid(customer_id=2**64), detail_has="$.customer_id"),
    "no_items": Bad(*V422, _valid(items=[]), detail_has="$.items"),
    "items_not_list": Bad(*V422, _valid(items={"product_id": 1}), detail_has="$.items"),
    "too_many_lines": Bad(
        *V422,
        _valid(items=[{"product_id": "{pid}", "qty": 1}] * (MAX_ORDER_LINES + 1)),
        detail_has="$.items",
    ),
    "key_empty": Bad(*V422, _valid(idempotency_key=""), detail_has="$.idempotency_key"),
    "key_bad_chars": Bad(
        *V422, _valid(idempotency_key="has space"), detail_has="$.idempotency_key"
    ),
    "key_too_long": Bad(*V422, _valid(idempotency_key="k" * 129), detail_has="$.idempotency_key"),
    "key_not_string": Bad(*V422, _valid(idempotency_key=12345), detail_has="$.idempotency_key"),
    # valid shape, refused by the domain
    "unknown_product": Bad("POST", "/orders", 422, "invalid_request", _line(product_id=ABSENT_ID)),
    # transport
    "content_type_text": Bad(
        "POST", "/orders", 415, "unsupported_media_type", _valid(), {"Content-Type": "text/plain"}
    ),
    "content_type_form": Bad(
        "POST",
        "/orders",
        415,
        "unsupported_media_type",
        _valid(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "content_type_missing": Bad("POST", "/orders", 415, "unsupported_media_type", _valid(), {}),
    "too_large": Bad("POST", "/orders", 413, "payload_too_large", _BIG),
    "too_large_chunked": Bad("POST", "/orders", 413, "payload_too_large", _BIG, chunked=True),
    # query parameters
    "page_zero": Bad("GET", "/products?page=0", 400, "invalid_parameter", detail_has="page"),
    "page_negative": Bad("GET", "/products?page=-1", 400, "invalid_parameter"),
    "page_not_int": Bad("GET", "/products?page=abc", 400, "invalid_parameter"),
    "page_empty": Bad("GET", "/products?page=", 400, "invalid_parameter"),
    "page_twice": Bad("GET", "/products?page=1&page=2", 400, "invalid_parameter"),
    "page_size_zero": Bad("GET", "/products?page_size=0", 400, "invalid_parameter"),
    "page_size_over_max": Bad(
        "GET", "/products?page_size=101", 400, "invalid_parameter", detail_has="page_size"
    ),
    "page_size_float": Bad("GET", "/products?page_size=1.5", 400, "invalid_parameter"),
    "query_too_long": Bad("GET", "/products?q=" + "a" * 201, 400, "invalid_parameter"),
    "k_zero": Bad("GET", "/products/{pid}/recommendations?k=0", 400, "invalid_parameter"),
    "k_over_max": Bad("GET", "/products/{pid}/recommendations?k=51", 400, "invalid_parameter"),
    "k_not_int": Bad("GET", "/products/{pid}/recommendations?k=two", 400, "invalid_parameter"),
    # ids in paths
    "product_id_not_int": Bad("GET", "/products/abc", 404, "not_found"),
    "product_id_zero_path": Bad("GET", "/products/0", 404, "not_found"),
    "product_id_negative": Bad("GET", "/products/-1", 404, "not_found"),
    "product_id_overflow": Bad("GET", "/products/99999999999999999999", 404, "not_found"),
    "product_id_absent": Bad("GET", f"/products/{ABSENT_ID}", 404, "not_found"),
    "recs_product_absent": Bad("GET", f"/products/{ABSENT_ID}/recommendations", 404, "not_found"),
    "recs_product_not_int": Bad("GET", "/products/x1/recommendations", 404, "not_found"),
    "order_id_not_int": Bad("GET", "/orders/abc", 404, "not_found"),
    "order_id_zero": Bad("GET", "/orders/0", 404, "not_found"),
    "order_id_absent": Bad("GET", f"/orders/{ABSENT_ID}", 404, "not_found"),
    # routing
    "unknown_path": Bad("GET", "/nope", 404, "not_found"),
    "unknown_subpath": Bad("GET", "/products/{pid}/reviews", 404, "not_found"),
    "deeper_path": Bad("GET", "/products/{pid}/recommendations/extra", 404, "not_found"),
    "trailing_slash": Bad("GET", "/products/", 404, "not_found"),
    "delete_products": Bad("DELETE", "/products", 405, "method_not_allowed"),
    "post_product": Bad("POST", "/products/{pid}", 405, "method_not_allowed", _valid()),
    "get_orders": Bad("GET", "/orders", 405, "method_not_allowed"),
    "put_order": Bad("PUT", "/orders/1", 405, "method_not_allowed", _valid()),
    "patch_healthz": Bad("PATCH", "/healthz", 405, "method_not_allowed", b"{}"),
}


def _fill(value: Any, pid: int, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, pid, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, pid, key) for v in value]
    if value == "{pid}":
        return pid
    if value == "{key}":
        return key
    return value


@pytest.mark.parametrize("case", list(BAD.values()), ids=list(BAD))
def test_bad_input_gets_a_documented_4xx_with_a_json_error(
    client: Client, product: dict[str, Any], case: Bad
) -> None:
    pid = product["id"]
    path = case.path.replace("{pid}", str(pid))
    body = case.body
    headers = case.headers
    if isinstance(body, dict | list):
        body = json.dumps(_fill(body, pid, _key())).encode()
    if headers is None:
        headers = dict(JSON_CT) if case.method == "POST" else {}
    resp = client.request(case.method, path, body, headers, case.chunked)
    assert resp.status == case.status, resp.body
    error = _assert_error_body(resp)
    assert error["error"] == case.error, error
    assert case.detail_has in error["detail"], error
    if case.status == 405:
        assert resp.header("Allow")
