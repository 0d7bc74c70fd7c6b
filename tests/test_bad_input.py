"""Bad input at the wire, and a fuzz of the API from its own OpenAPI document, on every variant.

- An oversized body sent whole by a plain client (no `Expect: 100-continue`, as urllib and
  http.client send it) gets the 413 JSON answer, not a broken pipe: the server drains what it did
  not read, within bounds (`variants.edge.worker`), and past the bounds it closes.
- What the HTTP server refuses before the app sees the request (414, 431, 400, 417, 501) is a JSON
  `ErrorBody` that the document lists.
- An integer field takes an integral float (`2.0`), as JSON Schema counts integers; `2.5` is 422.
- schemathesis generates requests from the document (valid and invalid ones) and checks that the
  server answers them as the document says: no 5xx, only documented statuses, content types,
  headers and bodies, valid data never refused as invalid, invalid data refused.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import schemathesis
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import Deployment, deployment

from archlab.deployers import VARIANTS
from variants.edge import worker
from variants.edge.granian_worker import BODYLESS_REFUSALS
from variants.edge.limits import (
    DRAIN_MAX_BYTES,
    MAX_BODY_BYTES,
    MAX_HEADER_FIELD_BYTES,
    MAX_HEADER_FIELDS,
    MAX_REQUEST_LINE_BYTES,
)
from variants.edge.openapi import build_openapi
from workloads.shop.contracts import ErrorBody, Order

TWELVE_MIB = 12 * 1024 * 1024

# --------------------------------------------------------------------------- helpers


def _address(base_url: str) -> tuple[str, int]:
    url = urllib.parse.urlsplit(base_url)
    return url.hostname or "127.0.0.1", url.port or 80


def _raw(base_url: str, data: bytes, timeout_s: float = 30.0) -> http.client.HTTPResponse:
    """Write `data` whole on a fresh connection, then read one answer (already read)."""
    sock = socket.create_connection(_address(base_url), timeout=timeout_s)
    try:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        resp.body = resp.read()  # type: ignore[attr-defined]
        return resp
    finally:
        sock.close()


def _body_of(resp: http.client.HTTPResponse) -> bytes:
    return resp.body  # type: ignore[attr-defined]


def _error(resp: http.client.HTTPResponse, body: bytes) -> ErrorBody:
    assert (resp.getheader("Content-Type") or "").startswith("application/json"), body[:200]
    return msgspec.json.decode(body, type=ErrorBody)


def _documented(spec: dict[str, Any], method: str, template: str, status: int) -> set[str]:
    """The `error` codes the document lists for this answer (fails if the status is not listed)."""
    responses = spec["paths"][template][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {template} does not document {status}"
    codes: set[str] = set()
    for part in responses[str(status)]["content"]["application/json"]["schema"]["allOf"]:
        codes.update(part.get("properties", {}).get("error", {}).get("enum", []))
    return codes


def _oversized_order() -> bytes:
    key = b"k" * TWELVE_MIB
    return b'{"customer_id": 7, "items": [], "idempotency_key": "' + key + b'"}'


def _order(pid: Any, qty: Any, customer: Any = 7, key: str | None = None) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "items": [{"product_id": pid, "qty": qty}],
        "idempotency_key": key or f"bad-input-{uuid.uuid4().hex}",
    }


def _post(base_url: str, obj: Any) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*_address(base_url), timeout=30)
    try:
        conn.request("POST", "/orders", json.dumps(obj), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.fixture
def spec(api: Any) -> dict[str, Any]:
    """The document the server serves (`/openapi.json`)."""
    resp = _raw(api.base_url, b"GET /openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert resp.status == 200
    return json.loads(_body_of(resp))


@pytest.fixture
def pid(api: Any) -> int:
    resp = _raw(api.base_url, b"GET /products?page_size=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert resp.status == 200
    return int(json.loads(_body_of(resp))["items"][0]["id"])


# --------------------------------------------------------------------------- oversized bodies


def test_a_12_mib_body_sent_whole_by_http_client_gets_the_413(
    api: Any, spec: dict[str, Any]
) -> None:
    """http.client writes the whole body before it reads (no Expect header), as urllib does."""
    conn = http.client.HTTPConnection(*_address(api.base_url), timeout=30)
    try:
        conn.request("POST", "/orders", _oversized_order(), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 413, body[:200]
        assert _error(resp, body).error in _documented(spec, "post", "/orders", 413)
        assert _error(resp, body).error == "payload_too_large"
        # The body was drained to its end, so the connection still serves the next request.
        conn.request("GET", "/healthz")
        again = conn.getresponse()
        again.read()
        assert again.status == 200
    finally:
        conn.close()


def test_a_12_mib_body_sent_by_urllib_gets_the_413(api: Any) -> None:
    """The client of the report: urllib sends the body whole, then reads."""
    request = urllib.request.Request(
        f"{api.base_url}/orders",
        data=_oversized_order(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"] == "payload_too_large"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_12_mib_body_written_whole_on_a_raw_socket_gets_the_413(api: Any, chunked: bool) -> None:
    body = _oversized_order()
    if chunked:
        step = 1024 * 1024
        framing = b"Transfer-Encoding: chunked\r\n"
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + step]), body[i : i + step])
            for i in range(0, len(body), step)
        )
        payload += b"0\r\n\r\n"
    else:
        framing = b"Content-Length: %d\r\n" % len(body)
        payload = body
    head = b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + framing
    resp = _raw(api.base_url, head + b"\r\n" + payload)
    assert resp.status == 413, _body_of(resp)[:200]
    assert _error(resp, _body_of(resp)).error == "payload_too_large"


def test_a_body_over_the_drain_bound_is_not_read_to_its_end(api: Any) -> None:
    """Chunked, so the server cannot know the size: it stops reading past DRAIN_MAX_BYTES."""
    sock = socket.create_connection(_address(api.base_url), timeout=30)
    chunk = b"%x\r\n%s\r\n" % (1024 * 1024, b"k" * 1024 * 1024)
    sent = 0
    try:
        sock.sendall(
            b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        with pytest.raises(OSError):  # reset or broken pipe: the server closed the connection
            while sent < 4 * DRAIN_MAX_BYTES:
                sock.sendall(chunk)
                sent += len(chunk)
    finally:
        sock.close()
    assert DRAIN_MAX_BYTES // 2 < sent < 2 * DRAIN_MAX_BYTES, sent


def test_a_body_declared_over_the_drain_bound_is_not_read_at_all(api: Any) -> None:
    sock = socket.create_connection(_address(api.base_url), timeout=30)
    sent = 0
    try:
        sock.sendall(
            b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (4 * DRAIN_MAX_BYTES)
        )
        with pytest.raises(OSError):
            while sent < 4 * DRAIN_MAX_BYTES:
                sock.sendall(b"k" * 1024 * 1024)
                sent += 1024 * 1024
    finally:
        sock.close()
    assert sent < DRAIN_MAX_BYTES // 2, sent  # only what the socket buffers held


# The drain itself, on a socket pair: what it reads, and when it gives up.


def _pair_request(length: int) -> tuple[Any, socket.socket, socket.socket]:
    server, client = socket.socketpair()

    class Req:
        body = Body(LengthReader(SocketUnreader(server), length))

    return Req(), server, client


def test_the_drain_reads_exactly_the_unread_body() -> None:
    req, server, client = _pair_request(3 * 1024 * 1024)
    try:
        writer = threading.Thread(
            target=client.sendall, args=(b"x" * 3 * 1024 * 1024 + b"GET /next",)
        )
        writer.start()
        assert worker.drain_body(req, server)
        writer.join()
        assert server.gettimeout() is None  # blocking again, as gunicorn left it
        # The next request is intact where gunicorn's parser reads it: bytes that arrived with
        # the body's end wait in the unreader, the rest in the socket.
        server.settimeout(5.0)
        unreader = req.body.reader.unreader
        following = b""
        while len(following) < len(b"GET /next"):
            chunk = unreader.read()
            assert chunk, following
            following += chunk
        assert following == b"GET /next"
    finally:
        server.close()
        client.close()


def test_the_drain_gives_up_on_a_stalled_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "DRAIN_TIMEOUT_S", 0.3)
    req, server, client = _pair_request(MAX_BODY_BYTES * 4)
    try:
        client.sendall(b"x" * 1000)  # then nothing more
        started = time.monotonic()
        assert not worker.drain_body(req, server)
        assert time.monotonic() - started < 2.0
    finally:
        server.close()
        client.close()


def test_the_drain_does_not_start_on_a_body_declared_over_the_bound() -> None:
    req, server, client = _pair_request(DRAIN_MAX_BYTES + 1)
    try:
        client.sendall(b"x" * 1000)
        assert not worker.drain_body(req, server)
        assert len(server.recv(2000)) == 1000  # nothing was read
    finally:
        server.close()
        client.close()


# --------------------------------------------------------------------------- integral floats


def test_an_integral_float_is_the_integer(api: Any, pid: int) -> None:
    """JSON Schema: an integer is any number with a zero fractional part (`2.0`, `2e0`)."""
    request = _order(float(pid), 2.0, customer=7.0)
    status, body = _post(api.base_url, request)
    assert status == 201, body
    order = msgspec.convert(body, Order)
    assert (order.customer_id, [(x.product_id, x.qty) for x in order.lines]) == (7, [(pid, 2)])
    # The same order written with integers is the same request: a replay, not a conflict.
    status, replay = _post(api.base_url, _order(pid, 2, key=request["idempotency_key"]))
    assert status == 200, replay
    assert replay["id"] == order.id
    exponent = b'{"customer_id": 7, "items": [{"product_id": %d, "qty": 1e0}], ' % pid
    exponent += b'"idempotency_key": "%s"}' % uuid.uuid4().hex.encode()
    head = b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    resp = _raw(api.base_url, head + b"Content-Length: %d\r\n\r\n" % len(exponent) + exponent)
    assert resp.status == 201, _body_of(resp)


@pytest.mark.parametrize(
    ("field", "value"),
    [("qty", 2.5), ("qty", 393.5), ("qty", 1000.0001), ("qty", 1001.0), ("product_id", 0.0)],
)
def test_a_fractional_or_out_of_range_float_is_refused(
    api: Any, spec: dict[str, Any], pid: int, field: str, value: float
) -> None:
    line: dict[str, Any] = {"product_id": pid, "qty": 1, field: value}
    status, body = _post(api.base_url, _order(line["product_id"], line["qty"]))
    assert status == 422, body
    assert body["error"] == "validation_error"
    assert body["error"] in _documented(spec, "post", "/orders", 422)
    assert f"$.items[0].{field}" in body["detail"]


# --------------------------------------------------------------------------- refused by the server


def _request_line_over_the_limit(path: str) -> bytes:
    pad = MAX_REQUEST_LINE_BYTES + 100
    return b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % (path.encode() + b"a" * pad)


TRANSPORT = {
    # name: (raw request, operation it names, status, error code)
    "long_query": (_request_line_over_the_limit("/products?q="), "/products", 414, "uri_too_long"),
    "long_query_other_param": (
        _request_line_over_the_limit("/products?page=1&x="),
        "/products",
        414,
        "uri_too_long",
    ),
    "long_path": (
        _request_line_over_the_limit("/products/1"),
        "/products/{product_id}",
        414,
        "uri_too_long",
    ),
    "long_header": (
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n"
        % (b"v" * (MAX_HEADER_FIELD_BYTES + 10)),
        "/healthz",
        431,
        "header_too_large",
    ),
    "too_many_headers": (
        b"GET /orders/1 HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADER_FIELDS + 1))
        + b"\r\n",
        "/orders/{order_id}",
        431,
        "header_too_large",
    ),
    "malformed_header": (
        b"GET /products HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n",
        "/products",
        400,
        "bad_request",
    ),
    "unknown_expectation": (
        b"GET /products HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n",
        "/products",
        417,
        "expectation_failed",
    ),
    "unknown_transfer_coding": (
        b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: br\r\n\r\n",
        "/orders",
        501,
        "not_implemented",
    ),
}


@pytest.mark.parametrize("name", list(TRANSPORT))
def test_what_the_server_refuses_is_a_documented_json_error(
    api: Any, spec: dict[str, Any], name: str
) -> None:
    raw, template, status, code = TRANSPORT[name]
    resp = _raw(api.base_url, raw)
    body = _body_of(resp)
    if api.knobs.get("server") == "granian" and name in BODYLESS_REFUSALS:
        # hyper, granian's parser, refuses these itself, with no body (see granian_worker)
        assert (resp.status, body) == (BODYLESS_REFUSALS[name], b"")
        return
    assert resp.status == status, body[:300]
    error = _error(resp, body)
    assert error.error == code and error.detail, error
    method = raw.split(b" ", 1)[0].decode().lower()
    assert code in _documented(spec, method, template, status)


def test_a_query_within_the_documented_limits_is_under_the_request_line_limit(api: Any) -> None:
    """The longest valid `q` (200 characters of 4-byte UTF-8, 12 bytes each encoded) passes."""
    q = urllib.parse.quote("\U0001f600" * 200)
    path = f"/products?q={q}&page={2**31 - 1}&page_size=100"
    resp = _raw(api.base_url, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
    assert resp.status == 200, _body_of(resp)[:300]


# --------------------------------------------------------------------------- fuzz

FUZZ_EXAMPLES = 50  # per operation and placement, in the fuzzing phase (suite time)
# Error codes meaning "this request breaks the document": never the answer to a valid one.
SCHEMA_REFUSALS = {"validation_error", "invalid_parameter", "malformed_json", "empty_body"}

# Generated from the document the server serves: `test_the_fuzzed_document_is_the_served_one`.
# schemathesis' lazy `from_fixture` loader fails on pytest 9.2 (it sets `Node._nodeid`), so the
# schema is loaded when the module is, and each case is sent to the deployment under test.
schema = schemathesis.openapi.from_dict(build_openapi())
schema.config.seed = 20240601
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=FUZZ_EXAMPLES,
    deterministic=True,
    database="none",  # no .hypothesis/ folder in the work tree
)
# A valid order can still be refused by the domain: a product the tiny dataset does not have
# (422 `invalid_request`), not enough stock (409); a valid id can be absent (404).
schema.config.checks.positive_data_acceptance.expected_statuses = ["2xx", "404", "409", "422"]
# Refusals the server gives before any endpoint does count as refusals too.
schema.config.checks.negative_data_rejection.expected_statuses = [
    *schema.config.checks.negative_data_rejection.expected_statuses,
    "411",
    "413",
    "414",
    "417",
    "431",
    "501",
]


@schemathesis.check
def valid_data_is_not_refused_as_invalid(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request the document allows never gets an error code that says it breaks the document.

    `positive_data_acceptance` has to accept 422 (the domain's `invalid_request`); this check
    tells it apart from a 422 `validation_error`, so `393.0` refused as not an integer fails.
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code < 400:
        return None
    try:
        code = response.json().get("error")
    except (ValueError, AttributeError):
        return None  # not an ErrorBody: response_schema_conformance reports it
    if code in SCHEMA_REFUSALS:
        raise AssertionError(
            f"valid data refused with {response.status_code} {code}: {response.content[:300]!r}"
        )
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_acceptance,
    negative_data_rejection,
    valid_data_is_not_refused_as_invalid,
]


def test_the_fuzzed_document_is_the_served_one(api: Any, spec: dict[str, Any]) -> None:
    assert spec == build_openapi(api.variant)
    assert {k: v for k, v in spec.items() if k != "info"} == {
        k: v for k, v in schema.raw_schema.items() if k != "info"
    }


def _fuzzed_variants() -> list[str]:
    chosen = os.environ.get("ARCHLAB_TEST_VARIANTS", "")  # as in conftest.py
    return [v.strip() for v in chosen.split(",") if v.strip()] or list(VARIANTS)


@pytest.fixture(scope="module", params=_fuzzed_variants())
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A deployment of the variant for the fuzz alone: the orders it places take stock (up to
    1000 of a product per order) that the shared `api` deployments must keep for other tests."""
    root: Path = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with deployment(request.param, root) as running:
        yield running


@schema.parametrize()
@settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_server_answers_as_its_document_says(fuzzed: Deployment, case: Any) -> None:
    case.call_and_validate(base_url=fuzzed.base_url, checks=CHECKS)
