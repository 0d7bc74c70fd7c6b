"""Calls between services over HTTP: the client transport and the service's WSGI app.

Both halves plug into the shared RPC layer (`variants.rpc`): the service side wraps a
`Dispatcher` (JSON codec) in a WSGI app that answers `POST /rpc/<method>` and `GET /healthz`;
the client side is a `Transport` for `make_proxy`. They can be used on their own (the
per-hop micro-benchmark does):

    app = service_app("catalog", Catalog(path))              # any WSGI server
    transport = HttpTransport("catalog", "http://127.0.0.1:8101", CallPolicy())
    catalog = rpc.make_proxy("catalog", transport, rpc.Codec("json"))

What a competent team would put between services, and no more:
- keep-alive connection pools, one per downstream service per process;
- a deadline on every call, retries included;
- retries with exponential backoff and jitter, only for idempotent methods (`IDEMPOTENT`),
  and only while the deadline allows: a timed-out call is not retried, because the
  deadline is spent and a slow service should not get more load;
- a circuit breaker per downstream service, so a dead service costs callers nothing
  while it is down and is probed by one call at a time when it may be back.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httptools
import msgspec

from variants import rpc
from workloads.shop.contracts import ErrorBody, Health

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Methods that may be sent again after a failure that left their outcome unknown: reads,
# and writes that carry a key making a repeat a no-op (orders.place: the client's idempotency
# key; inventory.reserve/release: the order's key; orders.outbox_ack: marks acked once).
# recommendations.rebuild and notifications.drain are heavy commands: never retried.
IDEMPOTENT: dict[str, frozenset[str]] = {
    "catalog": frozenset({"search", "get", "get_many"}),
    "inventory": frozenset({"stock", "levels", "reserve", "release"}),
    "orders": frozenset({"place", "get", "since", "outbox_pending", "outbox_ack"}),
    "recommendations": frozenset({"related"}),
    "notifications": frozenset({"sent_count"}),
}

MAX_RPC_BODY = 4 * 1024 * 1024
_JSON = "application/json"

# Domain error code -> the HTTP status a service answers with. A caller treats any of these
# (with a JSON ErrorBody) as the service working as designed; only 500 and non-JSON answers
# (a crashed worker, a proxy's error page) count against the service.
ERROR_STATUS: dict[str, str] = {
    "not_found": "404 Not Found",
    "invalid_request": "422 Unprocessable Entity",
    "out_of_stock": "409 Conflict",
    "idempotency_conflict": "409 Conflict",
    "unavailable": "503 Service Unavailable",
}
_INTERNAL = "500 Internal Server Error"


class CircuitBreaker:
    """Closed; open after `failures` failures in a row; after `reset_s`, half-open.

    Half-open lets one trial call through at a time (a trial whose outcome never comes back
    expires after another `reset_s`); its success closes the breaker, its failure reopens
    it. While open, calls fail at once without touching the network.
    """

    def __init__(
        self,
        name: str,
        failures: int = 5,
        reset_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_at: float | None = None
        self.opened = 0  # how many times it opened, for stats

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._clock() - self._opened_at < self.reset_s:
                return "open"
            return "half-open"

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            now = self._clock()
            if now - self._opened_at < self.reset_s:
                return False
            if self._trial_at is not None and now - self._trial_at < self.reset_s:
                return False
            self._trial_at = now
            return True

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_at = None

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_at is not None or self._failures >= self.threshold:
                if self._opened_at is None or self._trial_at is not None:
                    self.opened += 1
                self._opened_at = self._clock()
                self._trial_at = None


@dataclass(frozen=True)
class CallPolicy:
    """How one process calls one downstream service."""

    timeout_s: float = 5.0
    """Deadline of a whole call, retries and backoff included."""
    connect_timeout_s: float = 0.5
    attempts: int = 3
    """Tries per call for idempotent methods; every other method is tried once."""
    backoff_s: float = 0.02
    """First retry waits about this long (jittered); each further retry twice as long."""
    idempotent: frozenset[str] = field(default_factory=frozenset)


_TIMEOUT_SLACK_S = 0.01
"""How far a connection's kernel timeout may lie below a call's remaining deadline before it is
set again: a call overruns its deadline by at most this much, and the first try of a call (the
common case) makes no syscall for it."""


class _Answer:
    """What the parser reports of one HTTP answer (httptools' callback protocol); one per
    connection, reset for each answer, like its parser (llhttp reads keep-alive answers one
    after another)."""

    __slots__ = ("body", "complete", "content_type", "keep_alive", "parser")

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.complete = False
        self.content_type = ""
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def reset(self) -> None:
        self.body = []
        self.complete = False
        self.content_type = ""
        self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once complete

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    """One keep-alive connection: a blocking socket whose deadline the kernel enforces
    (`SO_RCVTIMEO`/`SO_SNDTIMEO`: a Python-level timeout polls before every send and recv),
    and the parser of its answers."""

    __slots__ = ("answer", "sock", "timeout_s")

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        sock.settimeout(None)
        self.sock = sock
        self.answer = _Answer()
        self.timeout_s = 0.0
        self.set_timeout(timeout_s)

    def set_timeout(self, seconds: float) -> None:
        rpc.kernel_timeouts(self.sock, seconds)
        self.timeout_s = seconds

    def fit_timeout(self, remaining_s: float) -> None:
        """The kernel timeout within `_TIMEOUT_SLACK_S` below the remaining deadline."""
        if not remaining_s - _TIMEOUT_SLACK_S <= self.timeout_s <= remaining_s:
            self.set_timeout(remaining_s)

    def idle_and_open(self) -> bool:
        """Whether the server left it open with nothing unasked waiting: one non-blocking peek."""
        try:
            self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # b"": closed; else stray
        except BlockingIOError:
            return True
        except OSError:
            pass
        return False

    def close(self) -> None:
        self.answer.parser = None  # no cycle left for the collector: the lab measures its pauses
        self.sock.close()


class ConnectionPool:
    """Idle keep-alive connections to one host:port, shared by a process's threads.

    LIFO, so the warmest connection is reused first; a connection the server has closed
    meanwhile (idle timeout, restart) is noticed before reuse and dropped. A burst beyond
    `maxsize` opens extra connections and closes them afterwards instead of waiting.
    """

    def __init__(self, host: str, port: int, maxsize: int) -> None:
        self.host = host
        self.port = port
        self.maxsize = maxsize
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def get(self, connect_timeout_s: float, timeout_s: float) -> _Connection:
        """An open connection whose calls time out after about `timeout_s`."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                sock = socket.create_connection((self.host, self.port), connect_timeout_s)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return _Connection(sock, timeout_s)
            if conn.idle_and_open():
                conn.fit_timeout(timeout_s)
                return conn
            conn.close()

    def put(self, conn: _Connection) -> None:
        with self._lock:
            if len(self._idle) < self.maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class HttpTransport:
    """`rpc.Transport` over HTTP/1.1 keep-alive connections to one service.

    Raises `rpc.TransportError` when the service cannot be reached in time, its breaker is
    open, or it answers something that is not the RPC protocol.

    A request goes out in one write (head and body together) and the answer is parsed by
    httptools (llhttp, the parser under uvicorn). Measured on this machine with `archlab bench
    hop` against the same service: parsing with the standard library's `http.client` cost
    about 150 µs of client CPU per call, httptools 20-60 µs, and urllib3 2.x about 345 µs (it
    wraps each call in several layers and sends head and body in two writes); a lean client
    keeps the comparison about the architecture, not about one library. A reused connection
    costs three syscalls per call (the peek that checks it, the send, the recv), not seven:
    its deadline is the kernel's and its parser is kept.
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        policy: CallPolicy,
        breaker: CircuitBreaker | None = None,
        pool_size: int = 8,
    ) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"{service}: expected http://host:port, got {base_url!r}")
        self.service = service
        self.base_url = base_url
        self.policy = policy
        self.breaker = breaker or CircuitBreaker(service)
        self.pool = ConnectionPool(url.hostname, url.port, pool_size)
        self._head = (
            f"HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
            f"Content-Type: {_JSON}\r\nContent-Length: "
        ).encode()

    def _exchange(self, method: str, args: bytes, deadline: float) -> tuple[int, str, bytes]:
        """One request/response on a pooled connection: (status, content type, body)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        conn = self.pool.get(min(self.policy.connect_timeout_s, remaining), remaining)
        sock, answer = conn.sock, conn.answer
        try:
            sock.sendall(
                b"POST /rpc/%s %s%d\r\n\r\n%s" % (method.encode(), self._head, len(args), args)
            )
            answer.reset()
            parser = answer.parser
            while True:
                data = sock.recv(rpc.RECV_CHUNK)
                if not data:
                    raise ConnectionResetError("the service closed the connection mid-answer")
                parser.feed_data(data)
                if answer.complete:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("timed out mid-answer")
                conn.fit_timeout(remaining)
            status, keep = parser.get_status_code(), answer.keep_alive
        except httptools.HttpParserError as exc:
            conn.close()
            raise http.client.HTTPException(f"unparsable answer: {exc}") from None
        except BlockingIOError:  # the kernel's timeout: EAGAIN
            conn.close()
            raise TimeoutError("timed out") from None
        except BaseException:
            conn.close()
            raise
        body = b"".join(answer.body)
        if keep:
            self.pool.put(conn)
        else:
            conn.close()
        return status, answer.content_type, body

    def __call__(self, method: str, args: bytes) -> tuple[bool, bytes]:
        policy = self.policy
        breaker = self.breaker
        deadline = time.monotonic() + policy.timeout_s
        attempts = policy.attempts if method in policy.idempotent else 1
        last = "not tried"
        for attempt in range(attempts):
            if not breaker.allow():
                raise rpc.TransportError(f"{self.service}: circuit open (last: {last})")
            try:
                status, content_type, body = self._exchange(method, args, deadline)
            except (OSError, http.client.HTTPException) as exc:
                breaker.failure()
                last = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    breaker.success()
                    return True, body
                is_rpc = content_type.startswith(_JSON)
                if is_rpc and status != 500:
                    breaker.success()  # a domain error: the service works as designed
                    return False, body
                breaker.failure()
                last = f"HTTP {status}"
                if is_rpc and attempt + 1 == attempts:
                    return False, body  # the service's own error report, as the monolith's
            delay = policy.backoff_s * (2**attempt)
            delay = delay / 2 + random.uniform(0, delay / 2)  # "equal jitter"
            if attempt + 1 == attempts or time.monotonic() + delay >= deadline:
                break
            time.sleep(delay)
        raise rpc.TransportError(f"{self.service}.{method}: {last}")

    def health(self, timeout_s: float = 1.0) -> str:
        """The service's own view ("ok", "starting", ...), or "down" if it does not answer.

        A probe does not feed the breaker: only real calls decide whether callers back off.
        """
        conn = http.client.HTTPConnection(self.pool.host, self.pool.port, timeout=timeout_s)
        try:
            conn.request("GET", "/healthz")
            data = conn.getresponse().read()
            return msgspec.json.decode(data, type=Health).status
        except (OSError, http.client.HTTPException, msgspec.DecodeError):
            return "down"
        finally:
            conn.close()

    def close(self) -> None:
        self.pool.close()


def healthy(url: str, timeout_s: float = 1.0) -> bool:
    """True when the server at `url` answers /healthz with 200 (no proxy, unlike urllib)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def proxy(
    context: str,
    base_url: str,
    policy: CallPolicy,
    breaker: CircuitBreaker | None = None,
    pool_size: int = 8,
) -> tuple[Any, HttpTransport]:
    """A JSON-over-HTTP proxy with `context`'s interface, and its transport."""
    transport = HttpTransport(context, base_url, policy, breaker, pool_size)
    return rpc.make_proxy(context, transport, rpc.Codec("json")), transport


def _respond(start_response: Callable[..., Any], status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", _JSON), ("Content-Length", str(len(body)))])
    return [body]


def service_app(
    context: str, impl: object, health: Callable[[], dict[str, str]] | None = None
) -> WsgiApp:
    """A WSGI app serving `impl` (the context's real class) as `POST /rpc/<method>`.

    `GET /healthz` answers 200 while every component `health()` reports is "ok", else 503;
    the body is the same `Health` document the public API uses.
    """
    dispatcher = rpc.Dispatcher(context, impl, rpc.Codec("json"))
    encode = msgspec.json.encode
    decode_error = msgspec.json.Decoder(ErrorBody).decode
    report = health or (lambda: {context: "ok"})

    def bad(start_response: Callable[..., Any], status: str, code: str, detail: str) -> list[bytes]:
        return _respond(start_response, status, encode(ErrorBody(code, detail)))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        verb: str = environ.get("REQUEST_METHOD", "GET")
        if path.startswith("/rpc/"):
            if verb != "POST":
                return bad(start_response, "405 Method Not Allowed", "method_not_allowed", verb)
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return bad(start_response, "400 Bad Request", "bad_request", "Content-Length")
            if length < 0 or length > MAX_RPC_BODY:
                return bad(start_response, "413 Content Too Large", "payload_too_large", "")
            args = environ["wsgi.input"].read(length) if length else b""
            ok, body = dispatcher.handle(path[5:], args)
            status = "200 OK" if ok else ERROR_STATUS.get(decode_error(body).error, _INTERNAL)
            return _respond(start_response, status, body)
        if path == "/healthz" and verb in ("GET", "HEAD"):
            try:
                components = dict(report())
            except Exception as exc:
                components = {context: f"down: {type(exc).__name__}"}
            states = set(components.values())
            ok = states <= {"ok"}
            state = "ok" if ok else ("starting" if states <= {"ok", "starting"} else "down")
            body = encode(Health("distributed", state, components))
            return _respond(start_response, "200 OK" if ok else "503 Service Unavailable", body)
        return bad(start_response, "404 Not Found", "not_found", f"no route {path[:100]!r}")

    return app
