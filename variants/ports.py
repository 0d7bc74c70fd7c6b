"""Ports for servers that must be able to bind the same port again after a restart."""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
PORT_TRIES = 200


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_GIVEN: set[int] = set()  # ports this process handed out: two servers never get the same one


def free_port(host: str = "127.0.0.1", exclude: Collection[int] = ()) -> int:
    """A free port *below* the kernel's ephemeral range.

    A restarted service binds its old port again. A port from the ephemeral range can be
    handed, in the restart's half second, to any outgoing connection on the machine (the pooled
    clients open new ones all the time), which then holds it for as long as it stays open and
    the service cannot come back. Ports below the range are never given out that way. A port
    is returned once per process (its server may not have bound it yet), never one in `exclude`.
    """
    top = _ephemeral_low()
    for _ in range(PORT_TRIES):
        port = random.randrange(max(1024, top - 16384), top)
        if port in _GIVEN or port in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
