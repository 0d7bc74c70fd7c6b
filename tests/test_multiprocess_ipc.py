"""The UDS channel and the shared process table, without the rest of the family."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import wait_until

from variants.multiprocess.ipc import PING, IpcServer, UdsTransport, recv_frame, request_frame
from variants.multiprocess.shmem import ControlSegment
from variants.rpc import Codec, Dispatcher, TransportError, make_proxy
from workloads.shop import dataset
from workloads.shop.contracts import OrderItem
from workloads.shop.errors import NotFound, Unavailable
from workloads.shop.inventory import Inventory


def echo(method: str, args: bytes) -> tuple[bool, bytes]:
    if method == "fail":
        return False, b"no"
    return True, args


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "t.sock"


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds every "wait" call in the server until set (at the end of the test at the latest)."""
    released = threading.Event()
    yield released
    released.set()


@pytest.fixture
def server(sock_path: Path, gate: threading.Event) -> Iterator[IpcServer]:
    def handler(method: str, args: bytes) -> tuple[bool, bytes]:
        if method == "wait":
            gate.wait(60)
        return echo(method, args)

    srv = IpcServer(sock_path, handler)
    srv.start()
    yield srv
    gate.set()  # before the server fixture stops: no call left waiting
    srv.stop(5.0)


def test_calls_round_trip_on_one_pooled_connection_per_thread(
    server: IpcServer, sock_path: Path
) -> None:
    transport = UdsTransport(sock_path, call_timeout_s=2)
    assert transport("echo", b"hello") == (True, b"hello")
    assert transport("fail", b"") == (False, b"no")
    big = os.urandom(3 * 1024 * 1024)  # spans many recv() calls
    assert transport("echo", big) == (True, big)
    assert transport(PING, b"") == (True, b"pong")  # answered by the server, not the handler
    assert transport.ping() > 0
    seen: list[bool] = []

    def worker() -> None:
        for i in range(50):
            seen.append(transport("echo", str(i).encode()) == (True, str(i).encode()))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 400 and all(seen)
    assert server.accepted == 9  # this thread's connection and one per worker thread


def test_dead_server_fails_fast_then_a_restarted_one_is_reached(sock_path: Path) -> None:
    """No server, or a stopped one: the call fails at once, without waiting for any timeout."""
    timeout_s = 10.0
    transport = UdsTransport(sock_path, connect_timeout_s=timeout_s, call_timeout_s=timeout_s)

    def fails_fast(payload: bytes, match: str) -> None:
        started = time.monotonic()
        with pytest.raises(TransportError, match=match):
            transport("echo", payload)
        assert time.monotonic() - started < timeout_s / 2

    fails_fast(b"x", "cannot connect")  # nothing there yet
    first = IpcServer(sock_path, echo)
    first.start()
    assert transport("echo", b"1") == (True, b"1")
    first.stop(0.5)
    fails_fast(b"2", "cannot connect")  # its socket file is gone with it
    second = IpcServer(sock_path, echo)  # a restart: the stale socket file is replaced
    second.start()
    try:
        assert transport("echo", b"3") == (True, b"3")
    finally:
        second.stop(0.5)


def test_a_pooled_connection_to_a_restarted_server_is_replaced_silently(sock_path: Path) -> None:
    """The old server vanished between calls (as after SIGKILL): the call is resent once."""
    transport = UdsTransport(sock_path, call_timeout_s=2)
    first = IpcServer(sock_path, echo)
    first.start()
    assert transport("echo", b"a") == (True, b"a")
    assert first.stop(0.5)  # shuts every connection down, like a process that died
    second = IpcServer(sock_path, echo)
    second.start()
    try:
        assert transport("echo", b"b") == (True, b"b")
        assert second.accepted == 1  # sent once more, on one new connection
    finally:
        second.stop(0.5)


def test_slow_server_times_out_and_the_connection_is_not_reused(
    server: IpcServer, sock_path: Path, gate: threading.Event
) -> None:
    timeout_s = 0.2
    transport = UdsTransport(sock_path, call_timeout_s=timeout_s)
    started = time.monotonic()
    with pytest.raises(TransportError, match="did not answer wait within 0.2 s"):
        transport("wait", b"late")
    took = time.monotonic() - started
    # the caller gave up while the server still held the call (it never answered in time),
    # after its own timeout: not at once, and well before anything else would have ended it
    assert server.inflight == 1
    assert timeout_s * 0.9 <= took < timeout_s * 10
    gate.set()  # the late answer goes out now, on the connection the caller dropped
    wait_until(lambda: server.inflight == 0, 10, "the late answer is sent")
    assert transport("echo", b"next") == (True, b"next")  # not the late answer
    assert server.accepted == 2


def test_stop_waits_for_calls_in_flight(
    server: IpcServer, sock_path: Path, gate: threading.Event
) -> None:
    grace_s = 30.0
    transport = UdsTransport(sock_path, call_timeout_s=grace_s)
    results: list[tuple[bool, bytes]] = []
    caller = threading.Thread(target=lambda: results.append(transport("wait", b"done")))
    caller.start()
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(server.stop(grace_s)))
    try:
        wait_until(lambda: server.inflight == 1, 10, "the call reaches the server")
        stopper.start()
        # stopping has begun (no new connections: the socket file is gone) while the call is
        # held, so stop must still be waiting for it, and the caller for its answer
        wait_until(lambda: not sock_path.exists(), 10, "stop removes the socket file")
        assert stopper.is_alive() and caller.is_alive() and not results
    finally:
        gate.set()  # the call ends: stop may return, and the caller gets its answer
        for thread in (stopper, caller):
            if thread.ident is not None:  # started
                thread.join(grace_s + 10)
    assert stopped == [True]  # drained within the grace period
    assert results == [(True, b"done")]  # the call in flight got its answer


def test_a_malformed_frame_closes_only_that_connection(server: IpcServer, sock_path: Path) -> None:
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(str(sock_path))
    raw.sendall(b"\xff\xff\xff\xff\x00")  # claims 4 GiB
    raw.settimeout(2)
    assert raw.recv(10) == b""
    raw.close()
    good = socket.socket(socket.AF_UNIX)
    good.connect(str(sock_path))
    good.sendall(request_frame("echo", b"ok"))
    assert recv_frame(good) == (1, b"ok")
    good.close()


def test_domain_contracts_and_errors_cross_the_channel(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dataset.prepare_state(dataset.ensure("tiny", 1), state)
    inventory = Inventory(state / "inventory.db")
    codec = Codec("msgpack")
    srv = IpcServer(tmp_path / "inv.sock", Dispatcher("inventory", inventory, codec).handle)
    srv.start()
    remote = make_proxy("inventory", UdsTransport(tmp_path / "inv.sock"), codec)
    try:
        before = remote.stock(1)
        assert remote.reserve("k1", [OrderItem(product_id=1, qty=2)]) is True
        assert remote.stock(1) == before - 2
        with pytest.raises(NotFound):
            remote.stock(10**9)
    finally:
        srv.stop(0.5)
        inventory.close()
    with pytest.raises(Unavailable, match="inventory unavailable"):
        remote.stock(1)


def test_control_segment_slots_lock_and_recovery() -> None:
    auxiliaries = ("inventory", "orders", "recommendations", "notifications")
    control = ControlSegment(slots=10, generation=3, numbered="backend", fixed=auxiliaries)
    try:
        assert control.aux_states() == dict.fromkeys(auxiliaries, "starting")
        inv = control.claim("inventory", 0, 111)
        control.set_state(inv, "ok")
        b1 = control.claim("backend", 1, 222)
        b2 = control.claim("backend", 2, 333)
        assert (inv, b1, b2) == (0, 4, 5)
        for _ in range(3):
            control.count_request(b2)
        slots = {s.index: s for s in control.read()}
        assert slots[b2].requests == 3 and slots[b2].number == 2 and slots[b2].pid == 333
        assert control.aux_states()["inventory"] == "ok"
        assert control.release(b2) == 3
        assert control.claim("backend", 3, 444) == b2  # slots are reused

        # A child killed while holding the lock leaves it held ...
        pid = os.fork()
        if pid == 0:
            control.lock.acquire()
            control.map[12:16] = os.getpid().to_bytes(4, "little")
            time.sleep(30)
            os._exit(0)
        try:
            wait_until(lambda: control.holder() == pid, 10, "the child holds the lock")
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert not control.lock.acquire(timeout=0.1)
        # ... which restart-one repairs by releasing it on the dead process's behalf.
        assert control.recover_lock(pid)
        assert not control.recover_lock(pid)
        control.count_request(b1)
    finally:
        control.close()
