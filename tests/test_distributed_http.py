"""Calls between the distributed variant's services: retries, deadlines, the circuit breaker.

Each test serves a WSGI app from a thread of this process on a free loopback port and calls
it through `HttpTransport`, so the client policy is checked against a real socket.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import msgspec
import pytest
from support import request

from archlab.host import procs
from archlab.host.procs import free_port
from variants import rpc
from variants.distributed.http import (
    IDEMPOTENT,
    CallPolicy,
    CircuitBreaker,
    HttpTransport,
    proxy,
    service_app,
)
from workloads.shop import dataset
from workloads.shop.catalog import Catalog
from workloads.shop.contracts import Health, Product
from workloads.shop.errors import NotFound, Unavailable


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    servers: list[WSGIServer] = []

    def start(app: Any) -> str:
        server = make_server("127.0.0.1", 0, app, _Server, _Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class Counting:
    """A misbehaving service: counts calls per method, answers `status` (not the protocol).

    With `hold`, every call is held until that event is set (or a minute passed).
    """

    def __init__(
        self, status: str = "502 Bad Gateway", hold: threading.Event | None = None
    ) -> None:
        self.calls: dict[str, int] = {}
        self.status = status
        self.hold = hold
        self.held = 0  # calls being held right now
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        method = environ["PATH_INFO"].rsplit("/", 1)[-1]
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
        if self.hold is not None:
            with self.lock:
                self.held += 1
            self.hold.wait(60)
            with self.lock:
                self.held -= 1
        start_response(self.status, [("Content-Type", "text/html")])
        return [b"<html>bad gateway</html>"]


def test_a_context_round_trips_and_domain_errors_cross_unchanged(serve: Any) -> None:
    catalog = Catalog(dataset.ensure("tiny") / "catalog.db")
    url = serve(service_app("catalog", catalog))
    remote, transport = proxy("catalog", url, CallPolicy(idempotent=IDEMPOTENT["catalog"]))
    assert remote.get(1) == catalog.get(1)
    assert remote.get_many([2, 1]) == catalog.get_many([2, 1])
    assert isinstance(remote.search("", 1, 5).items[0], Product)
    with pytest.raises(NotFound):
        remote.get(10**9)
    assert transport.breaker.state == "closed"  # a domain error is not a failure
    assert transport.health() == "ok"


def test_the_service_app_answers_health_and_rejects_other_requests(serve: Any) -> None:
    catalog = Catalog(dataset.ensure("tiny") / "catalog.db")
    url = serve(service_app("catalog", catalog, lambda: {"catalog": "starting"}))
    assert HttpTransport("catalog", url, CallPolicy()).health() == "starting"

    status, body = request(url, "GET", "/healthz")
    assert status == 503 and msgspec.convert(body, type=Health).status == "starting"
    assert request(url, "GET", "/rpc/get")[0] == 405
    assert request(url, "GET", "/nowhere")[0] == 404


def test_only_idempotent_methods_are_retried(serve: Any) -> None:
    app = Counting()
    url = serve(app)
    policy = CallPolicy(timeout_s=5, attempts=3, backoff_s=0.001, idempotent=frozenset({"get"}))
    transport = HttpTransport("catalog", url, policy, CircuitBreaker("catalog", failures=100))
    with pytest.raises(rpc.TransportError, match="HTTP 502"):
        transport("get", b"[1]")
    with pytest.raises(rpc.TransportError):
        transport("rebuild", b"[]")
    assert app.calls == {"get": 3, "rebuild": 1}


def test_every_call_has_a_deadline_and_a_timed_out_call_is_not_retried(serve: Any) -> None:
    answer = threading.Event()
    app = Counting(status="200 OK", hold=answer)
    url = serve(app)
    # every other timeout is far longer than the deadline, so none can pass for it below
    policy = CallPolicy(
        timeout_s=0.2, connect_timeout_s=5.0, attempts=3, idempotent=frozenset({"get"})
    )
    assert policy.timeout_s * 10 < min(policy.connect_timeout_s, CallPolicy().timeout_s)
    transport = HttpTransport("catalog", url, policy)
    try:
        started = time.monotonic()
        with pytest.raises(rpc.TransportError, match="[Tt]imeout|timed out"):
            transport("get", b"[1]")
        took = time.monotonic() - started
        # the caller gave up at its deadline while the service still held the call: the
        # deadline, not an answer, ended it; not before it, nor only at some other timeout
        assert app.held == 1
        assert policy.timeout_s * 0.9 <= took < policy.timeout_s * 10
        assert app.calls == {"get": 1}  # the deadline is spent: no retry
    finally:
        answer.set()


def test_an_unreachable_service_opens_the_breaker_then_calls_fail_fast() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    breaker = CircuitBreaker("recommendations", failures=3, reset_s=30.0)
    remote, transport = proxy(
        "recommendations",
        url,
        CallPolicy(attempts=3, backoff_s=0.001, idempotent=IDEMPOTENT["recommendations"]),
        breaker,
    )
    with pytest.raises(Unavailable):
        remote.related(1, 5)  # three refused connections: the breaker opens
    assert breaker.state == "open" and breaker.opened == 1
    with pytest.raises(Unavailable, match="circuit open"):
        remote.related(1, 5)
    assert transport.health() == "down"


def test_the_breaker_half_opens_for_one_trial_at_a_time() -> None:
    now = [0.0]
    breaker = CircuitBreaker("orders", failures=2, reset_s=1.0, clock=lambda: now[0])
    breaker.failure()
    assert breaker.allow() and breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 1.5
    assert breaker.state == "half-open"
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # nobody else while it runs
    breaker.failure()  # the trial failed: open again, for another reset_s
    assert breaker.state == "open" and breaker.opened == 2
    now[0] = 3.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()
    now[0] = 10.0
    breaker.failure()
    breaker.failure()
    now[0] = 11.5
    assert breaker.allow()  # a trial whose outcome never came back...
    now[0] = 12.6
    assert breaker.allow()  # ...expires after reset_s


def test_connections_are_kept_alive_and_a_dead_one_is_not_reused(tmp_path: Path) -> None:
    """Against the real service process (gunicorn, HTTP/1.1), restarted on the same port."""
    port = free_port()
    cmd = [sys.executable, "-m", "variants.distributed.service", "catalog", "--port", str(port)]
    cmd += ["--state-dir", str(tmp_path), "--size", "tiny", "--threads", "2"]
    url = f"http://127.0.0.1:{port}"
    remote, transport = proxy("catalog", url, CallPolicy(attempts=1))  # no retry: no masking
    for _ in range(2):
        with procs.running(cmd, name="catalog", log_path=tmp_path / "catalog.log") as proc:
            procs.wait_healthy(proc, f"{url}/healthz", 30)
            remote.get(1)
            (first,) = [c.sock for c in transport.pool._idle]
            local = first.getsockname()
            for _ in range(5):
                remote.get(2)
            (again,) = [c.sock for c in transport.pool._idle]
            assert again is first and again.getsockname() == local  # one connection, reused
            os.killpg(proc.pid, signal.SIGKILL)  # a crash: the idle connection is dead now
            proc.popen.wait(10)
    assert transport.breaker.state == "closed" and transport.breaker.opened == 0
