"""The edge API on granian's Rust HTTP/1 server, as a gunicorn worker class.

granian parses HTTP, keeps connections alive and schedules the WSGI calls onto Python threads in
Rust; here it serves the socket a gunicorn worker inherited. gunicorn's arbiter (or the process
family's postmaster, which runs the worker itself) still forks, restarts, signals and times out
the worker, so every variant keeps its process model, hooks and lifecycle records and only the
per-request HTTP work changes (the same arrangement as uvicorn's gunicorn worker for ASGI).

The worker drives granian's worker object directly, a private API, so the version is pinned in
pyproject.toml. What gunicorn refuses before the app sees a request, granian's parser (hyper)
lets through when it is within its own buffer: `refuse_as_gunicorn` answers those requests in
the app with the same statuses and `ErrorBody` codes, and a body the app answered before reading
is drained within the same bounds as under gthread (`drain`). hyper itself refuses a few
requests with an empty body (more than 100 header fields: 431; a malformed header line or an
unknown transfer coding: 400): `BODYLESS_REFUSALS` says which; the conformance tests hold it
to that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import msgspec
from granian._futures import _new_cbscheduler
from granian._granian import SocketHolder, WorkerSignal, WSGIWorker
from granian._loops import loops
from granian.http import HTTP1Settings
from granian.wsgi import _callback_wrapper
from gunicorn.workers.base import Worker

from variants.edge.limits import (
    DRAIN_MAX_BYTES,
    DRAIN_TIMEOUT_S,
    MAX_HEADER_FIELD_BYTES,
    MAX_HEADER_FIELDS,
    MAX_REQUEST_LINE_BYTES,
)
from variants.edge.openapi import TRANSPORT_ERRORS
from variants.edge.worker import DRAIN_STEP_BYTES
from workloads.shop.contracts import ErrorBody

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

BODYLESS_REFUSALS = {
    "too_many_headers": 431,
    "malformed_header": 400,
    "unknown_transfer_coding": 400,
}
"""Requests hyper refuses itself, before the app, with an empty body: case -> status."""

# hyper reads the request line and every header into one buffer: room for the largest request
# the edge accepts, so that the edge's limits, not hyper's, decide.
_MAX_HEAD_BYTES = MAX_REQUEST_LINE_BYTES + MAX_HEADER_FIELDS * (MAX_HEADER_FIELD_BYTES + 2) + 4096
_HEARTBEAT_S = 1.0
_RUST_THREADS = 1  # granian's I/O threads: one per worker, as gthread's one poller thread
_IDLE_THREAD_S = 30
_TLS_OFF = (False, None, None, None, "tls1.3", None, [], False)


def _refused(status: int, detail: str, start_response: Callable[..., Any]) -> list[bytes]:
    (code,) = TRANSPORT_ERRORS[status]  # the one code the document gives each refusal
    body = msgspec.json.encode(ErrorBody(code, detail))
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
    )
    return [body]


def _has_body(environ: dict[str, Any]) -> bool:
    length = environ.get("CONTENT_LENGTH")
    return bool(length and length != "0") or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "")


def drain(environ: dict[str, Any]) -> bool:
    """Read and discard what the app left of the body, within the edge's bounds (see
    `variants.edge.worker`): whether it all came. A body declared over the bound is not read."""
    length = environ.get("CONTENT_LENGTH")
    if length and length.isdigit() and int(length) > DRAIN_MAX_BYTES:
        return False
    stream = environ["wsgi.input"]
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    drained = 0
    try:
        while drained <= DRAIN_MAX_BYTES and time.monotonic() < deadline:
            data = stream.read(DRAIN_STEP_BYTES)
            if not data:
                return True
            drained += len(data)
    except Exception:  # a reset, a malformed chunk: the connection is done
        return False
    return False


def _closing(start_response: Callable[..., Any]) -> Callable[..., Any]:
    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, ("Connection", "close")], exc_info)

    return start


def refuse_as_gunicorn(app: WSGI) -> WSGI:
    """`app` behind the request-line, header and `Expect` checks gunicorn makes before an app,
    with what the app left unread of a body drained after it answered."""

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        target = len(environ.get("PATH_INFO", "")) + (len(query) + 1 if query else 0)
        line = len(environ.get("REQUEST_METHOD", "")) + target + len(" HTTP/1.1") + 1
        if line > MAX_REQUEST_LINE_BYTES:
            return _refused(
                414, f"request line over {MAX_REQUEST_LINE_BYTES} bytes", start_response
            )
        fields = [(k, v) for k, v in environ.items() if k.startswith("HTTP_")]
        fields += [(k, environ[k]) for k in ("CONTENT_TYPE", "CONTENT_LENGTH") if k in environ]
        if len(fields) > MAX_HEADER_FIELDS:
            return _refused(431, f"more than {MAX_HEADER_FIELDS} header fields", start_response)
        if any(len(k) - 5 + len(v) + 2 > MAX_HEADER_FIELD_BYTES for k, v in fields):
            return _refused(
                431, f"a header field over {MAX_HEADER_FIELD_BYTES} bytes", start_response
            )
        expect = environ.get("HTTP_EXPECT")
        if expect is not None and expect.lower() != "100-continue":
            return _refused(417, f"unknown expectation {expect[:100]!r}", start_response)
        if not _has_body(environ):
            return app(environ, start_response)
        answered: list[tuple[str, list[tuple[str, str]], Any]] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answered.append((status, headers, exc_info))

        result = app(environ, hold)
        body = b"".join(result)  # the edge's answers are whole bodies
        if hasattr(result, "close"):
            result.close()
        status, headers, exc_info = answered[-1]
        respond = start_response if drain(environ) else _closing(start_response)
        respond(status, headers, exc_info)
        return [body]

    return checked


class GranianWorker(Worker):
    """A gunicorn worker whose requests granian serves: SIGTERM finishes the requests in
    flight and exits, SIGQUIT and SIGINT exit at once (gunicorn's worker signals)."""

    def init_signals(self) -> None:
        super().init_signals()
        self._stop = WorkerSignal()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.alive = False
        self._stop.set()

    def run(self) -> None:
        (listener,) = self.sockets
        stopped = threading.Event()
        self._stop.add_cb(stopped.set)
        threading.Thread(
            target=self._heartbeat, args=(stopped,), name="heartbeat", daemon=True
        ).start()
        threads = self.cfg.threads
        server = WSGIWorker(
            self.age,
            (None, SocketHolder(listener.fileno(), False, self.cfg.backlog)),
            None,  # no metrics pipe
            _RUST_THREADS,
            threads,
            threads,  # Python threads running the app, as gthread's `threads`
            _IDLE_THREAD_S,
            self.cfg.worker_connections,  # requests admitted at once, as gthread queues them
            "1",
            HTTP1Settings(max_buffer_size=_MAX_HEAD_BYTES),
            None,
            None,
            *_TLS_OFF,
            (None, None),
        )
        loop = loops.get("auto")
        app = _callback_wrapper(refuse_as_gunicorn(self.wsgi), {}, None)
        server.serve_str(_new_cbscheduler(loop, app, impl_asyncio=False), loop, self._stop)
        while not stopped.wait(_HEARTBEAT_S):  # a timed wait lets Python run signal handlers
            pass

    def _heartbeat(self, stopped: threading.Event) -> None:
        """Tell the master this worker is alive while granian's threads serve."""
        while not stopped.wait(_HEARTBEAT_S):
            self.notify()
