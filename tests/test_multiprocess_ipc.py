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

from variants.multiprocess.ipc import IpcServer, UdsTransport, recv_frame, request_frame
from variants.multiprocess.shmem import ControlSegment
from variants.rpc import Codec, Dispatcher, TransportError, make_proxy
from workloads.shop import dataset
from workloads.shop.contracts import OrderItem
from workloads.shop.errors import NotFound, Unavailable
from workloads.shop.inventory import Inventory


def echo(method: str, args: bytes) -> tuple[bool, bytes]:
    if method == "sleep":
        time.sleep(float(args))
    if method == "fail":
        return False, b"no"
    return True, args


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "t.sock"


@pytest.fixture
def server(sock_path: Path) -> Iterator[IpcServer]:
    srv = IpcServer(sock_path, echo)
    srv.start()
    yield srv
    srv.stop(0.5)


def test_calls_round_trip_on_one_pooled_connection_per_thread(
    server: IpcServer, sock_path: Path
) -> None:
    transport = UdsTransport(sock_path, call_timeout_s=2)
    assert transport("echo", b"hello") == (True, b"hello")
    assert transport("fail", b"") == (False, b"no")
    big = os.urandom(3 * 1024 * 1024)  # spans many recv() calls
    assert transport("echo", big) == (True, big)
    assert transport.ping() < 1.0
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
    transport = UdsTransport(sock_path, call_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(TransportError, match="cannot connect"):
        transport("echo", b"x")  # nothing there yet
    first = IpcServer(sock_path, echo)
    first.start()
    assert transport("echo", b"1") == (True, b"1")
    first.stop(0.5)
    with pytest.raises(TransportError):
        transport("echo", b"2")
    second = IpcServer(sock_path, echo)  # a restart: the stale socket file is replaced
    second.start()
    try:
        assert transport("echo", b"3") == (True, b"3")
    finally:
        second.stop(0.5)
    assert time.monotonic() - started < 3


def test_a_pooled_connection_to_a_restarted_server_is_replaced_silently(sock_path: Path) -> None:
    """The old server vanished between calls (as after SIGKILL): the call is resent once."""
    transport = UdsTransport(sock_path, call_timeout_s=2)
    first = IpcServer(sock_path, echo)
    first.start()
    assert transport("echo", b"a") == (True, b"a")
    first.stop(0.5)  # closes every connection, like a process that died
    time.sleep(0.05)
    second = IpcServer(sock_path, echo)
    second.start()
    try:
        assert transport("echo", b"b") == (True, b"b")
    finally:
        second.stop(0.5)


def test_slow_server_times_out_and_the_connection_is_not_reused(
    server: IpcServer, sock_path: Path
) -> None:
    transport = UdsTransport(sock_path, call_timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(TransportError, match="did not answer sleep within 0.2 s"):
        transport("sleep", b"0.6")
    assert time.monotonic() - started < 0.5
    assert transport("echo", b"next") == (True, b"next")  # not the late answer


def test_stop_waits_for_calls_in_flight(server: IpcServer, sock_path: Path) -> None:
    transport = UdsTransport(sock_path, call_timeout_s=2)
    results: list[tuple[bool, bytes]] = []
    caller = threading.Thread(target=lambda: results.append(transport("sleep", b"0.3")))
    caller.start()
    time.sleep(0.1)
    assert server.inflight == 1
    assert server.stop(2.0)
    caller.join()
    assert results == [(True, b"0.3")]
    assert not sock_path.exists()


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
    control = ControlSegment(slots=10, generation=3)
    try:
        assert control.aux_states() == dict.fromkeys(
            ("inventory", "orders", "recommendations", "notifications"), "starting"
        )
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
        deadline = time.monotonic() + 5
        while control.holder() != pid and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert not control.lock.acquire(timeout=0.1)
        # ... which restart-one repairs by releasing it on the dead process's behalf.
        assert control.recover_lock(pid)
        assert not control.recover_lock(pid)
        control.count_request(b1)
    finally:
        control.close()
