"""The recommendation engine in Rust keeps the Python engine's contract: the same answers from
the same baskets, the same store, the same error frames, the same signals and readiness.

Each test starts the native program itself (in its own process group, on loopback or a Unix
socket under tmp_path) against a Python orders context served over the same IPC, so the two
engines differ only in their language. They skip, saying why, only where the engine is not
built (`make setup` builds it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest
from support import order_body, request, wait_until

from archlab.host import procs
from variants import native
from variants.multiprocess.ipc import HEADER, IpcServer, UdsTransport, recv_frame, request_frame
from variants.rpc import Codec, Dispatcher, make_proxy
from variants.telemetry import ENV_DIR, NO_COLLECTOR_DIR, ROLES_DIR
from workloads.shop import dataset
from workloads.shop.config import ShopConfig
from workloads.shop.contracts import ErrorBody, PlaceOrder
from workloads.shop.recommendations import Recommendations
from workloads.shop.wiring import Hosted, build, unwrapped

NO_RUST = native.unavailable_reason()
pytestmark = pytest.mark.skipif(NO_RUST is not None, reason=NO_RUST or "")

MSGPACK = Codec("msgpack")
ORDERS_PLACED = 60


def _prepare(folder: Path, size: str = "tiny") -> Path:
    dataset.prepare_state(dataset.ensure(size, 1), folder)
    return folder


def _ordering(state_dir: Path) -> Hosted:
    """The contexts an order needs, as the monolith builds them (no engine: it is under test)."""
    return build(("catalog", "inventory", "orders"), state_dir, {}, ShopConfig(), unwrapped)


@contextlib.contextmanager
def orders_over_ipc(state_dir: Path) -> Iterator[Path]:
    """The shop's Python orders context on a Unix socket, as the family's orders process."""
    shop = _ordering(state_dir)
    path = state_dir / "orders.sock"
    server = IpcServer(path, Dispatcher("orders", shop.served["orders"], MSGPACK).handle)
    server.start()
    try:
        yield path
    finally:
        server.stop(1.0)
        shop.close()


@contextlib.contextmanager
def rust_engine(
    state_dir: Path,
    *,
    orders: Path | None = None,
    env: dict[str, str] | None = None,
    http_port: int | None = None,
) -> Iterator[tuple[procs.Proc, Path]]:
    """The native engine serving `state_dir`'s store, ready (it answers a ping or /healthz)."""
    sock = state_dir / "recommendations.sock"
    serve = {"port": str(http_port)} if http_port else {"socket": str(sock)}
    cmd = native.standalone(
        "rust",
        "recommendations",
        state_dir,
        serve=serve,
        peers={"orders-socket": str(orders or state_dir / "no-orders.sock")},
        parent_pid=os.getpid(),  # it dies with the test, however the test ends
    )
    with procs.running(
        cmd,
        name="rust engine",
        log_path=state_dir / "engine.log",
        env={**os.environ, **(env or {})},
        grace_s=3.0,
    ) as proc:
        if http_port:
            wait_until(
                lambda: request(f"http://127.0.0.1:{http_port}", "GET", "/healthz")[0] == 200,
                30,
                "the engine answers /healthz",
            )
        else:
            wait_until(lambda: _pings(sock), 30, "the engine answers a ping")
        try:
            yield proc, sock
        finally:
            if proc.alive():  # its own stop signal (SIGTERM is the family's, and ignored)
                os.kill(proc.pid, signal.SIGTERM if http_port else signal.SIGUSR2)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(5)


def _pings(path: Path) -> bool:
    try:
        UdsTransport(path, call_timeout_s=1.0).ping()
    except Exception:
        return False
    return True


def _running(pid: int) -> bool:
    try:
        return procs.live(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _proxy(sock: Path) -> Any:
    return make_proxy("recommendations", UdsTransport(sock, call_timeout_s=30.0), MSGPACK)


def _place_orders(state_dir: Path, n: int) -> None:
    shop = _ordering(state_dir)
    try:
        for i in range(n):
            body = order_body(1 + (i * 13) % 150)
            body["items"].append({"product_id": 1 + (i * 31 + 7) % 150, "qty": 1})
            shop.served["orders"].place(msgspec.convert(body, PlaceOrder))
    finally:
        shop.close()


def _baskets(state_dir: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(state_dir / "recommendations.db")) as db:
        return db.execute("SELECT order_id, items FROM baskets ORDER BY id").fetchall()


def _same(rust: list[Any], python: list[Any], where: str) -> None:
    assert [r.product_id for r in rust] == [p.product_id for p in python], where
    for r, p in zip(rust, python, strict=True):
        assert abs(r.score - p.score) <= 1e-9, where


@pytest.mark.parametrize(("size", "sample"), [("tiny", None), ("small", 300)])
def test_the_same_answers_after_the_same_rebuild(tmp_path: Path, size: str, sample: int) -> None:
    """Golden: both engines ingest the same new orders, rebuild, and rank alike, score for
    score, for every product of tiny and a spread sample of small (plus an unknown one)."""
    py_dir, rs_dir = _prepare(tmp_path / "py", size), _prepare(tmp_path / "rs", size)
    for folder in (py_dir, rs_dir):
        _place_orders(folder, ORDERS_PLACED)
    products = dataset.info(dataset.ensure(size, 1))["spec"]["products"]
    step = 1 if sample is None else max(1, products // sample)
    ids = [*range(1, products + 1, step), products + 10_000]
    py_shop = build(("catalog", "inventory", "orders", "recommendations"), py_dir, {}, ShopConfig())
    try:
        python = py_shop.served["recommendations"]
        assert isinstance(python, Recommendations)
        with orders_over_ipc(rs_dir) as orders, rust_engine(rs_dir, orders=orders) as (_, sock):
            rust = _proxy(sock)
            before = {p: rust.related(p, 10) for p in ids[:20]}
            stats_py, stats_rs = python.rebuild(), rust.rebuild()
            assert (stats_rs.baskets, stats_rs.products, stats_rs.pairs) == (
                stats_py.baskets,
                stats_py.products,
                stats_py.pairs,
            )
            for p in ids:
                for k in (5, 20):
                    _same(rust.related(p, k), python.related(p, k), f"related({p}, {k})")
            assert any(before[p] != rust.related(p, 10) for p in before)  # the orders counted
    finally:
        py_shop.close()
    assert _baskets(rs_dir) == _baskets(py_dir)  # one store, interchangeable


def _raw_call(sock: Path, frame: bytes) -> tuple[int, bytes] | None:
    """One frame sent as is; the answer, or None when the engine closed the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(frame)
        try:
            return recv_frame(s)
        except ConnectionError:
            return None


BAD_CALLS = {
    "unknown method": request_frame("recommend_everything", MSGPACK.encode((1, 5))),
    "malformed msgpack": request_frame("related", b"\xc1"),
    "wrong argument types": request_frame("related", MSGPACK.encode(("seven", 5))),
    "wrong arity": request_frame("related", MSGPACK.encode((7,))),
    "unknown product": request_frame("related", MSGPACK.encode((2**31 - 1, 5))),
    "oversized frame": HEADER.pack(2**31, 7) + b"related",
}


def test_bad_input_gets_the_python_engines_error_frames_and_never_a_crash(
    tmp_path: Path,
) -> None:
    state = _prepare(tmp_path)
    python = Dispatcher(
        "recommendations", Recommendations(state / "recommendations.db", None), MSGPACK
    )  # type: ignore[arg-type]
    decode_error = MSGPACK.decoder(ErrorBody)
    with rust_engine(state) as (proc, sock):
        for what, frame in BAD_CALLS.items():
            answer = _raw_call(sock, frame)
            if what == "oversized frame":
                assert answer is None, what  # closed, as the Python server closes it
            else:
                assert answer is not None, what
                name_len = frame[HEADER.size - 1]
                method = frame[HEADER.size : HEADER.size + name_len].decode()
                ok, body = python.handle(method, frame[HEADER.size + name_len :])
                assert answer[0] == int(ok), what
                if ok:
                    assert msgspec.msgpack.decode(answer[1]) == msgspec.msgpack.decode(body), what
                else:
                    assert decode_error(answer[1]).error == decode_error(body).error, what
            assert proc.alive() and _pings(sock), f"the engine survives {what}"
        unknown = decode_error(_raw_call(sock, BAD_CALLS["unknown method"])[1])  # type: ignore[index]
        assert unknown.detail == "recommendations has no method 'recommend_everything'"


def test_it_stops_on_the_auxiliarys_signals(tmp_path: Path) -> None:
    """SIGTERM is the family's to order (ignored), SIGUSR2 stops it cleanly and removes its
    socket, SIGQUIT exits at once with status 2."""
    state = _prepare(tmp_path)
    with rust_engine(state) as (proc, sock):
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.5)  # a signal it should ignore: give it the time to misbehave
        assert proc.alive() and _pings(sock)
        os.kill(proc.pid, signal.SIGUSR2)
        assert proc.popen.wait(15) == 0
        assert not sock.exists()
    with rust_engine(state) as (proc, sock):
        os.kill(proc.pid, signal.SIGQUIT)
        assert proc.popen.wait(15) == 2


PARENT = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[1:] + ["--parent-pid", str(__import__("os").getpid())])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_it_dies_with_its_parent_and_declares_no_collector(tmp_path: Path) -> None:
    state = _prepare(tmp_path)
    telemetry = tmp_path / "telemetry"
    sock = state / "recommendations.sock"
    engine = native.standalone(
        "rust",
        "recommendations",
        state,
        serve={"socket": str(sock)},
        peers={"orders-socket": str(state / "none.sock")},
    )
    cmd = [sys.executable, "-c", PARENT, *engine]
    parent = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, ENV_DIR: str(telemetry)},
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        wait_until(lambda: _pings(sock), 30, "the engine answers a ping")
        assert (telemetry / ROLES_DIR / str(pid)).read_text() == "recommendations\n"
        assert (telemetry / NO_COLLECTOR_DIR / str(pid)).read_text() == "recommendations\n"
        assert not list(telemetry.glob("gc-*.csv"))
        parent.kill()
        parent.wait(10)
        wait_until(lambda: not _running(pid), 10, "the engine dies with its parent")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(10)


def test_it_serves_the_services_rpc_and_errors_over_http(tmp_path: Path) -> None:
    state = _prepare(tmp_path)
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    python = Recommendations(state / "recommendations.db", None)  # type: ignore[arg-type]
    with rust_engine(state, http_port=port):
        status, health = request(url, "GET", "/healthz")
        assert (status, health["status"]) == (200, "ok")
        status, body = request(url, "POST", "/rpc/related", [7, 5])
        assert status == 200
        assert body == msgspec.to_builtins(python.related(7, 5))
        assert request(url, "POST", "/rpc/nothing", [])[0] == 422
        assert request(url, "POST", "/rpc/related", ["x", 5])[0] == 422
        assert request(url, "GET", "/rpc/related")[0] == 405
        assert request(url, "GET", "/elsewhere")[0] == 404
        status, err = request(url, "POST", "/rpc/related", [1] * (3 * 1024 * 1024))
        assert (status, err["error"]) == (413, "payload_too_large")
        assert request(url, "GET", "/healthz")[0] == 200  # still serving
    python.close()


def test_the_store_is_the_python_engines_file(tmp_path: Path) -> None:
    """Orders ingested by the Rust engine are there for the Python engine, and the other way."""
    state = _prepare(tmp_path)
    _place_orders(state, 10)
    with orders_over_ipc(state) as orders, rust_engine(state, orders=orders) as (_, sock):
        assert _proxy(sock).rebuild().baskets == len(_baskets(state))
    python = Recommendations(state / "recommendations.db", None)  # type: ignore[arg-type]
    try:
        assert python.stats.baskets == len(_baskets(state))
    finally:
        python.close()
    with contextlib.closing(sqlite3.connect(state / "orders.db")) as db:
        (newest,) = db.execute("SELECT max(id) FROM orders").fetchone()
    with contextlib.closing(sqlite3.connect(state / "recommendations.db")) as db:
        (ingested,) = db.execute("SELECT value FROM state WHERE key = 'last_order_id'").fetchone()
    assert ingested == newest
