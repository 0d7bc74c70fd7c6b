"""The HTTP server under the edge API: gunicorn's threaded worker, with two changes at the wire.

Every variant serves the edge app with `EdgeWorker` and `SERVER_SETTINGS` (the monolith and the
distributed services through gunicorn's arbiter, the process family's backends directly):

- **A body answered before it was read is drained, within bounds.** The app answers 413 to an
  oversized body without reading it (and any early answer leaves a body unread). A client that
  writes the whole body before reading (urllib, http.client, most scripts) would then be writing
  into a socket the server closes with unread data: the kernel resets the connection and the
  client sees a broken pipe, never the answer. So after the answer the rest of the body is read
  and discarded, at most `DRAIN_MAX_BYTES` within `DRAIN_TIMEOUT_S`; a body declared larger than
  the bound is not drained at all, and past either bound the connection is closed. A request
  whose body the app read (every valid request) costs one attribute check.
- **gunicorn's own refusals are JSON.** What gunicorn answers before the app sees the request
  (414 request line too long, 431 headers too large, 400 malformed, ...) is an HTML page by
  default; here it is the API's `ErrorBody`, with the status, code and logging gunicorn chose,
  as `variants.edge.openapi.TRANSPORT_ERRORS` documents on every operation.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import msgspec
from gunicorn import util
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers.gthread import ThreadWorker

from variants.edge.limits import (
    DRAIN_MAX_BYTES,
    DRAIN_TIMEOUT_S,
    MAX_HEADER_FIELD_BYTES,
    MAX_HEADER_FIELDS,
    MAX_REQUEST_LINE_BYTES,
)
from variants.edge.openapi import ERROR_CODES, TRANSPORT_ERRORS
from workloads.shop.contracts import ErrorBody

DRAIN_STEP_BYTES = 1024 * 1024


def _unread_bytes(req: Any) -> int | None:
    """How much of the request body is still on the wire: a count, or None when unknown."""
    body = getattr(req, "body", None)
    reader = getattr(body, "reader", None)
    if reader is None:
        return 0
    if isinstance(reader, LengthReader):
        return reader.length
    if isinstance(reader, ChunkedReader) and reader.parser is None:
        return 0  # the last chunk was read
    return None


def drain_body(req: Any, sock: socket.socket) -> bool:
    """Read and discard the rest of `req`'s body, within the bounds; whether it all came."""
    remaining = _unread_bytes(req)
    if remaining == 0:
        return True
    if remaining is not None and remaining > DRAIN_MAX_BYTES:
        return False  # would be cut off anyway: do not read any of it
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    drained = 0
    prior = sock.gettimeout()
    try:
        while drained <= DRAIN_MAX_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            data = req.body.read(DRAIN_STEP_BYTES)
            if not data:
                return True
            drained += len(data)
        return False
    except Exception:  # a timeout, a reset, a malformed chunk: the connection is done
        return False
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(prior)


class _ErrorPage:
    """Stands in for the client socket while gunicorn writes one of its HTML error pages."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.data = bytearray()

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _as_json(page: bytes, exc: BaseException) -> bytes | None:
    """gunicorn's HTML error answer as the same status with an `ErrorBody`; None if unparsable."""
    status_line = page.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    codes = TRANSPORT_ERRORS.get(status) or dict.fromkeys(ERROR_CODES.get(status, ()))
    code = next(iter(codes), f"http_{status}")
    if status >= 500:
        detail = f"unexpected {type(exc).__name__}"
    else:
        detail = (str(exc) or reason or code)[:300]
    body = msgspec.json.encode(ErrorBody(code, detail))
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


class EdgeWorker(ThreadWorker):
    """gunicorn's `gthread` worker that drains unread bodies and answers its errors in JSON."""

    def handle_request(self, req: Any, conn: Any) -> bool:
        keepalive = super().handle_request(req, conn)
        if _unread_bytes(req) == 0:
            return keepalive
        return drain_body(req, conn.sock) and keepalive

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        page = _ErrorPage(client)
        super().handle_error(req, page, addr, exc)  # gunicorn's status, logging and access log
        answer = _as_json(bytes(page.data), exc) if page.data else None
        if answer is None:
            return
        with contextlib.suppress(Exception):
            util.write_nonblock(client, answer)


# gunicorn settings every variant's server uses for the edge (and the distributed services).
SERVER_SETTINGS: dict[str, Any] = {
    "worker_class": EdgeWorker,
    "limit_request_line": MAX_REQUEST_LINE_BYTES,
    "limit_request_fields": MAX_HEADER_FIELDS,
    "limit_request_field_size": MAX_HEADER_FIELD_BYTES,
}
