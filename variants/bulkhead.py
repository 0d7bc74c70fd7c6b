"""A bulkhead: at most N calls in flight from one process to one downstream context.

Without it a stalled dependency (a process paused in a full collection, a service starved of
CPU) holds every request thread that calls it until the caller's deadline, and the requests
that never needed it queue behind them: head-of-line blocking at the front. With it, the
calls over the limit fail at once with the error an unreachable peer raises
(`rpc.TransportError`, which the proxy turns into `Unavailable`: a fast 503, or the degraded
recommendations answer), so the stall occupies at most `limit` of the caller's threads. This
is Hystrix's and resilience4j's semaphore bulkhead, or Envoy's per-cluster `max_requests`.

It wraps a transport (`rpc.Transport`), so it works the same over the family's Unix sockets
and over HTTP. A slot is taken before the call and given back in `finally`: on an answer, a
domain error, a transport error and a timeout alike.
"""

from __future__ import annotations

import threading

from variants.rpc import Transport, TransportError

OFF = 0
"""The `bulkhead` knob's value for no limit (the callers' thread pool is the only bound)."""


class BulkheadFull(TransportError):
    """The call was refused without being sent: `limit` calls to the context are in flight."""


class Bulkhead:
    """`rpc.Transport` admitting at most `limit` concurrent calls through `inner`."""

    def __init__(self, inner: Transport, context: str, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a bulkhead needs a limit of at least 1, got {limit}")
        self.inner = inner
        self.context = context
        self.limit = limit
        self._lock = threading.Lock()
        self.in_flight = 0
        self.refused = 0

    def __call__(self, method: str, args: bytes) -> tuple[bool, bytes]:
        with self._lock:
            if self.in_flight >= self.limit:
                self.refused += 1
                raise BulkheadFull(f"{self.context}: {self.limit} calls already in flight")
            self.in_flight += 1
        try:
            return self.inner(method, args)
        finally:
            with self._lock:
                self.in_flight -= 1


def guard(inner: Transport, context: str, limit: int) -> Transport:
    """`inner` behind a bulkhead of `limit` calls, or `inner` itself when `limit` is OFF."""
    return inner if limit == OFF else Bulkhead(inner, context, limit)
