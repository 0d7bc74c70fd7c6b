"""The bulkhead: a stalled dependency holds at most `limit` of a caller's threads.

The calls over the limit are answered at once with the error an unreachable peer gives
(`Unavailable` on the caller's side), and a slot is given back on every outcome: an answer, a
domain error, a transport error, a timeout.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from variants import bulkhead, peers
from variants import placement as placements
from variants.bulkhead import Bulkhead, BulkheadFull
from variants.multiprocess.ipc import IpcServer
from variants.rpc import Codec, TransportError, make_proxy
from workloads.shop.errors import NotFound, Unavailable


class Stalled:
    """A transport whose calls wait until released (a peer paused in a full collection)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.outcome: str = "answer"

    def __call__(self, method: str, args: bytes) -> tuple[bool, bytes]:
        self.entered.release()
        self.release.wait(30)
        if self.outcome == "transport-error":
            raise TransportError("peer went away")
        if self.outcome == "crash":
            raise RuntimeError("the transport itself failed")
        return self.outcome == "answer", args


@pytest.fixture
def stalled() -> Iterator[Stalled]:
    peer = Stalled()
    yield peer
    peer.release.set()


def _occupy(guarded: Bulkhead, n: int, peer: Stalled) -> list[threading.Thread]:
    """n calls in flight through `guarded`, each waiting inside the peer."""
    threads = [
        threading.Thread(target=_call_ignoring_errors, args=(guarded,), daemon=True)
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    for _ in range(n):
        assert peer.entered.acquire(timeout=10)
    return threads


def _call_ignoring_errors(guarded: Bulkhead) -> None:
    with contextlib.suppress(Exception):  # the outcome under test is the slot, not the call
        guarded("related", b"x")


def test_a_call_over_the_limit_is_refused_without_reaching_the_peer(stalled: Stalled) -> None:
    guarded = Bulkhead(stalled, "recommendations", limit=2)
    threads = _occupy(guarded, 2, stalled)
    with pytest.raises(BulkheadFull, match="recommendations: 2 calls already in flight"):
        guarded("related", b"x")
    assert guarded.in_flight == 2 and guarded.refused == 1
    assert not stalled.entered.acquire(timeout=0.2)  # the refused call never reached the peer
    assert all(t.is_alive() for t in threads)  # refused while the two were still waiting
    stalled.release.set()
    for t in threads:
        t.join(10)
    assert guarded.in_flight == 0


@pytest.mark.parametrize("outcome", ["answer", "domain-error", "transport-error", "crash"])
def test_the_slot_is_given_back_on_every_outcome(stalled: Stalled, outcome: str) -> None:
    stalled.outcome = outcome
    guarded = Bulkhead(stalled, "recommendations", limit=1)
    threads = _occupy(guarded, 1, stalled)
    with pytest.raises(BulkheadFull):
        guarded("related", b"x")
    stalled.release.set()
    threads[0].join(10)
    assert guarded.in_flight == 0
    stalled.entered = threading.Semaphore(0)
    _call_ignoring_errors(guarded)  # the slot is free again: this call reaches the peer
    assert stalled.entered.acquire(timeout=0)
    assert guarded.refused == 1


def test_a_refused_call_reaches_the_caller_as_unavailable(stalled: Stalled) -> None:
    guarded = Bulkhead(stalled, "recommendations", limit=1)
    proxy = make_proxy("recommendations", guarded, Codec("msgpack"))
    threads = _occupy(guarded, 1, stalled)
    with pytest.raises(Unavailable, match="in flight") as caught:
        proxy.related(1, 4)
    assert isinstance(caught.value.__cause__, BulkheadFull)
    stalled.release.set()
    threads[0].join(10)


def test_off_means_no_bulkhead_and_a_limit_below_one_is_refused(stalled: Stalled) -> None:
    assert bulkhead.guard(stalled, "recommendations", bulkhead.OFF) is stalled
    assert isinstance(bulkhead.guard(stalled, "recommendations", 3), Bulkhead)
    with pytest.raises(ValueError, match="at least 1"):
        Bulkhead(stalled, "recommendations", 0)


def test_a_timed_out_ipc_call_frees_its_slot(tmp_path: Path) -> None:
    """Over a real Unix socket to a peer that does not answer in time: the call times out at
    the caller's deadline, and its slot is free for the next call."""
    entered, gate = threading.Event(), threading.Event()
    answer = Codec("msgpack").encode([])

    def stalls_once(method: str, args: bytes) -> tuple[bool, bytes]:
        if not entered.is_set():
            entered.set()
            gate.wait(30)
        return True, answer

    found = placements.load("multiprocess").with_bulkhead(1)
    server = IpcServer(peers.socket_path(tmp_path, "recommendations"), stalls_once)
    server.start()
    try:
        recs = peers.connect(found, found.edge, peers.Endpoints(socket_dir=tmp_path))
        proxy = recs.proxies["recommendations"]
        first: list[BaseException] = []
        t = threading.Thread(target=_catch, args=(first, proxy.related, 1, 4), daemon=True)
        t.start()
        assert entered.wait(10)
        with pytest.raises(Unavailable) as refused:
            proxy.related(1, 4)
        assert isinstance(refused.value.__cause__, BulkheadFull)
        t.join(10)  # past the recommendations call's deadline (1 s)
        assert len(first) == 1 and isinstance(first[0], Unavailable)
        assert not isinstance(first[0].__cause__, BulkheadFull)  # it was sent, and timed out
        assert proxy.related(1, 4) == []  # the slot is free again: this call is answered
    finally:
        gate.set()
        server.stop(5.0)


def _catch(into: list[BaseException], fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - recorded for the test to judge
        into.append(exc)


def test_the_knob_reaches_every_calling_group_and_only_those() -> None:
    found = placements.load("distributed").with_bulkhead(4)
    assert {"gateway", "orders"} <= set(found.callers)
    assert not {"catalog", "inventory"} & set(found.callers)  # they call no other process
    assert all(g.bulkhead == (4 if n in found.callers else 0) for n, g in found.groups.items())
    assert found.bulkhead == 4
    assert placements.load("monolith").callers == ()
    named = placements.load("distributed")  # `[defaults] bulkhead = 4`: callers only
    assert named.groups["gateway"].bulkhead == 4 and named.groups["catalog"].bulkhead == 0
    with pytest.raises(placements.PlacementError, match="bulkhead"):
        placements.load("multiprocess").with_bulkhead(-1)


def test_a_domain_error_passes_through_the_bulkhead() -> None:
    def not_found(method: str, args: bytes) -> tuple[bool, bytes]:
        return False, Codec("msgpack").encode({"error": "not_found", "detail": "no product 9"})

    proxy = make_proxy(
        "recommendations", Bulkhead(not_found, "recommendations", 1), Codec("msgpack")
    )
    with pytest.raises(NotFound, match="no product 9"):
        proxy.related(9, 4)
