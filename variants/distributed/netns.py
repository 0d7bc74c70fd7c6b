"""Separate hosts on one machine: a Linux network namespace per service, joined by a bridge.

Each service gets its own namespace with its own address on a private /24 behind a bridge
in the launcher's namespace, via a veth pair; so every call between services crosses two
real network stacks (veth, bridge, veth) instead of loopback. The gateway stays in the
launcher's namespace on 127.0.0.1, the way an ingress sits on the edge of a cluster; it
reaches the services over the bridge too. Nothing is routed beyond the bridge.

Names carry the launcher's pid (`alab<pid>-<service>`, bridge `alab<pid>`), so concurrent
launchers never collide and a later launcher removes what a SIGKILLed one left behind.
Needs root (CAP_NET_ADMIN) and iproute2's `ip`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence

log = logging.getLogger("archlab.distributed.netns")

_OURS = re.compile(r"^alab(\d+)")


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be used here; the message says why."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and result.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Delete namespaces and links left by launchers that no longer run (e.g. SIGKILLed)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _OURS.match(name)
        if m and not _alive(int(m.group(1))):
            _ip("netns", "delete", name, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = _OURS.match(name)
        if m and not _alive(int(m.group(1))):
            _ip("link", "delete", name, check=False)


def _free_subnet(pid: int) -> ipaddress.IPv4Network:
    used = []
    for args in (("-4", "-o", "addr", "show"), ("-4", "route", "show")):
        for token in _ip(*args, check=False).stdout.split():
            if "/" in token:
                try:
                    used.append(ipaddress.ip_network(token, strict=False))
                except ValueError:
                    continue
    for second in range(200, 255):
        net = ipaddress.ip_network(f"10.{second}.{pid % 256}.0/24")
        if not any(net.overlaps(u) for u in used if u.version == 4):
            return net
    raise NetnsUnavailable("no free 10.x.y.0/24 subnet for the bridge")


class Network:
    """The bridge and the namespaces of one launcher; `setup()` then `teardown()`."""

    def __init__(self, services: Sequence[str]) -> None:
        if os.geteuid() != 0:
            raise NetnsUnavailable("--netns needs root (CAP_NET_ADMIN) to create namespaces")
        if shutil.which("ip") is None:
            raise NetnsUnavailable("--netns needs iproute2's `ip` command")
        self.tag = f"alab{os.getpid()}"
        self.services = list(services)
        self.addresses: dict[str, str] = {}
        self.subnet: ipaddress.IPv4Network | None = None
        self._made: list[tuple[str, str]] = []  # ("netns"|"link", name), for teardown

    def namespace(self, service: str) -> str:
        return f"{self.tag}-{service}"

    def setup(self) -> dict[str, str]:
        """Create everything; returns each service's address. Undoes itself on failure."""
        remove_stale()
        try:
            self.subnet = _free_subnet(os.getpid())
            hosts = list(self.subnet.hosts())
            bridge = self.tag
            _ip("link", "add", bridge, "type", "bridge")
            self._made.append(("link", bridge))
            _ip("addr", "add", f"{hosts[0]}/{self.subnet.prefixlen}", "dev", bridge)
            _ip("link", "set", bridge, "up")
            for i, service in enumerate(self.services):
                ns = self.namespace(service)
                outside, inside = f"{self.tag}h{i}", f"{self.tag}n{i}"
                _ip("netns", "add", ns)
                self._made.append(("netns", ns))
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
                self._made.append(("link", outside))
                _ip("link", "set", outside, "master", bridge)
                _ip("link", "set", outside, "up")
                address = str(hosts[10 + i])
                _ip("-n", ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", inside)
                _ip("-n", ns, "link", "set", inside, "up")
                self.addresses[service] = address
        except BaseException:
            self.teardown()
            raise
        log.info("netns: bridge %s on %s, %s", self.tag, self.subnet, self.addresses)
        return dict(self.addresses)

    def exec_prefix(self, service: str) -> list[str]:
        """Prefix for a command to run inside the service's namespace (`ip netns exec` execs,
        so the pid stays the service's own)."""
        return ["ip", "netns", "exec", self.namespace(service)]

    def teardown(self) -> None:
        for kind, name in reversed(self._made):
            if kind == "netns":
                _ip("netns", "delete", name, check=False)
            else:
                _ip("link", "delete", name, check=False)
        self._made.clear()
