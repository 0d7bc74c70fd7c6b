"""How a process of a placement reaches the contexts it does not host: one proxy each.

The transport is the placement's (`Placement.reach`): `ipc` is the process family's
msgpack frames over `<sockets>/<context>.sock` (one pooled connection per calling thread),
`http` a JSON-over-HTTP proxy with one keep-alive pool and one circuit breaker per
downstream group, and the group's deadline, retries and backoff. A calling group with a
`bulkhead` puts each downstream transport behind one (`variants.bulkhead`). Every deployer
calls `connect`; none builds a proxy itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from variants import bulkhead
from variants.distributed.http import IDEMPOTENT, CallPolicy, CircuitBreaker, HttpTransport
from variants.multiprocess.ipc import UdsTransport
from variants.placement import Placement
from variants.rpc import Codec, make_proxy

CONNECT_TIMEOUT_S = 0.5
DEFAULT_CALL_TIMEOUTS_MS: dict[str, int] = {
    "catalog": 2000,
    "inventory": 2000,
    "orders": 5000,  # an order commits with an fsync and calls inventory in turn
    "recommendations": 1000,  # the edge answers without recommendations after this
    "notifications": 2000,
}
"""How long an IPC caller waits for each context (an http group's `timeout_s` is its own)."""


def socket_path(socket_dir: Path, context: str) -> Path:
    return socket_dir / f"{context}.sock"


def call_policy(placement: Placement, group: str) -> CallPolicy:
    g = placement.groups[group]
    return CallPolicy(
        timeout_s=g.timeout_s,
        connect_timeout_s=g.connect_timeout_s,
        attempts=g.attempts,
        backoff_s=g.backoff_s,
        idempotent=frozenset().union(*(IDEMPOTENT.get(c, frozenset()) for c in g.contexts)),
    )


@dataclass(frozen=True)
class Endpoints:
    """Where the groups of one running placement listen."""

    socket_dir: Path | None = None
    urls: dict[str, str] = field(default_factory=dict)
    """http group -> its base URL."""
    ipc_timeouts_ms: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_CALL_TIMEOUTS_MS))


@dataclass
class Peers:
    """The proxies of one process, and the HTTP transports to close and ask for health."""

    proxies: dict[str, Any]
    http: dict[str, HttpTransport]
    """context -> its HTTP transport (health checks ask these)."""

    def close(self) -> None:
        for transport in self.http.values():
            transport.close()


def connect(placement: Placement, group: str, endpoints: Endpoints, pool_size: int = 8) -> Peers:
    """A proxy for each context that `group` calls and does not host (shared catalog aside)."""
    proxies: dict[str, Any] = {}
    http: dict[str, HttpTransport] = {}
    breakers: dict[str, CircuitBreaker] = {}
    limit = placement.groups[group].bulkhead
    for context, host in placement.peers(group).items():
        how = placement.reach(context)
        if how == "ipc":
            if endpoints.socket_dir is None:
                raise ValueError(f"{group} calls {context} over ipc, but has no socket folder")
            transport = UdsTransport(
                socket_path(endpoints.socket_dir, context),
                name=context,
                connect_timeout_s=CONNECT_TIMEOUT_S,
                call_timeout_s=endpoints.ipc_timeouts_ms[context] / 1000,
            )
            proxies[context] = make_proxy(
                context, bulkhead.guard(transport, context, limit), Codec("msgpack")
            )
        else:
            g = placement.groups[host]
            breaker = breakers.setdefault(
                host, CircuitBreaker(host, g.breaker_failures, g.breaker_reset_s)
            )
            http[context] = transport = HttpTransport(
                context, endpoints.urls[host], call_policy(placement, host), breaker, pool_size
            )
            proxies[context] = make_proxy(
                context, bulkhead.guard(transport, context, limit), Codec("json")
            )
    return Peers(proxies, http)
