"""The HTTP servers a variant's processes can put under the same WSGI app: the `server` knob.

Each is a gunicorn worker class, so gunicorn's arbiter (the monolith, each distributed service)
or the postmaster (the family's backends) runs it the same way; the settings are the edge's
limits. `gunicorn-gthread` is gunicorn's threaded worker with the edge's two changes at the wire
(`variants.edge.worker`); `granian` is granian's Rust HTTP/1 server on the same socket
(`variants.edge.granian_worker`), chosen by measurement over gunicorn's other workers (see
docs/architecture.md, "The HTTP server").
"""

from __future__ import annotations

from typing import Any

SERVERS: tuple[str, ...] = ("gunicorn-gthread", "granian")
DEFAULT_SERVER = "gunicorn-gthread"


class UnknownServer(ValueError):
    pass


def check(server: str) -> str:
    if server not in SERVERS:
        raise UnknownServer(f"unknown server {server!r} (choose {', '.join(SERVERS)})")
    return server


def worker_class(server: str) -> type[Any]:
    """The gunicorn worker class that serves requests with `server`."""
    if check(server) == "granian":
        from variants.edge.granian_worker import GranianWorker

        return GranianWorker
    from variants.edge.worker import EdgeWorker

    return EdgeWorker


def settings(server: str) -> dict[str, Any]:
    """gunicorn settings for a process serving the edge (or a service) with `server`."""
    from variants.edge.worker import SERVER_SETTINGS

    return {**SERVER_SETTINGS, "worker_class": worker_class(server)}
