"""`--netns`: each service in its own network namespace, joined by a bridge (needs root).

Skipped where namespaces cannot be created; the fallback message is checked everywhere. The
deployment comes from `support.deployment`, so nothing it started outlives the test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import support
from support import order_body, request

from variants.distributed import netns


def _netns_works() -> bool:
    if os.geteuid() != 0 or subprocess.run(["which", "ip"], capture_output=True).returncode:
        return False
    name = f"alabprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    return made


needs_netns = pytest.mark.skipif(not _netns_works(), reason="needs root and `ip netns`")


def _ours() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.startswith("alab")}


def test_without_root_netns_is_refused_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(netns.NetnsUnavailable, match="needs root"):
        netns.Network(["catalog"])


@needs_netns
def test_each_service_gets_its_own_namespace_and_address(tmp_path: Path) -> None:
    with support.deployment("distributed", tmp_path, knobs={"netns": "on"}) as dep:
        runtime = json.loads((dep.state_dir / "topology.json").read_text())
        assert runtime["netns"] is True
        services = {n: s for n, s in runtime["services"].items() if n != "gateway"}
        hosts = {n: urlsplit(s["url"]).hostname for n, s in services.items()}
        assert len(set(hosts.values())) == len(services)  # a distinct address each
        assert all(ipaddress.ip_address(h).is_private for h in hosts.values())
        assert all(not ipaddress.ip_address(h).is_loopback for h in hosts.values())
        namespaces = {s["namespace"] for s in services.values()}
        assert namespaces <= _ours()
        # gateway -> bridge -> catalog's and inventory's namespaces
        assert request(dep.base_url, "GET", "/products/3")[0] == 200
        # orders' namespace -> catalog's and inventory's
        status, order = request(dep.base_url, "POST", "/orders", order_body(3))
        assert status == 201, order
    assert not namespaces & _ours(), "namespaces left behind after stop"


@needs_netns
def test_leftovers_of_a_dead_launcher_are_removed() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"alab{dead.pid}-catalog"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        netns.remove_stale()
        assert name not in _ours()
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
