"""The distributed deployer runs placements: a service per group, and one-line refusals.

A launcher placement becomes a Topology (the edge group the gateway), the launcher hands each
service the resolved placement file and its peers by group, a service is any `http` group
(of a launcher placement or, run by the postmaster through `service.serve`, of a family),
and every bad placement or group is one line on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from support import wait_until

from archlab.host.procs import free_port
from variants import placement, rpc, telemetry
from variants.distributed import service, topology
from variants.distributed.http import CallPolicy, healthy, proxy
from variants.distributed.launcher import Launcher
from variants.distributed.topology import TopologyError, from_placement
from variants.multiprocess.ipc import IpcServer
from variants.peers import Endpoints
from variants.placement import Placement
from workloads.shop import dataset, wiring
from workloads.shop.config import ShopConfig

DISTRIBUTED = placement.load("distributed")
STOP_S = 20.0


def _variant(name: str, change: dict[str, dict[str, Any]]) -> Placement:
    """The named placement with some groups' fields changed, as a placement of its own."""
    path = placement.PLACEMENTS_DIR / f"{name}.toml"
    doc = tomllib.loads(path.read_text())
    for group, fields in change.items():
        doc["groups"][group].update(fields)
    return placement.parse(doc, f"{name}-changed", path)


def test_each_group_is_a_service_and_the_edge_is_the_gateway() -> None:
    topo = from_placement(DISTRIBUTED)
    assert list(topo.services) == [*DISTRIBUTED.start_order, DISTRIBUTED.edge]
    assert topo.gateway.name == DISTRIBUTED.edge and topo.gateway.public
    assert topo.levels()[-1] == [topo.gateway.name]
    for name, svc in topo.services.items():
        group = DISTRIBUTED.groups[name]
        assert svc.context == ("" if group.edge else group.contexts[0])
        assert svc.depends_on == DISTRIBUTED.depends_on(name)
        assert svc.public == group.edge
        for key in ("replicas", "scalable", "stateful", "cpu_m", "memory_limit_mib"):
            assert getattr(svc, key) == getattr(group, key), (name, key)
        for key in ("timeout_s", "connect_timeout_s", "attempts", "breaker_failures"):
            assert getattr(svc, key) == getattr(group, key), (name, key)
    assert topo.services["orders"].timeout_s == 10.0
    assert topo.deployment == DISTRIBUTED.deployment


@pytest.mark.parametrize("name", ["monolith", "recs-process", "multiprocess", "recs-service"])
def test_a_placement_the_launcher_does_not_run_is_refused(name: str) -> None:
    with pytest.raises(TopologyError, match=f"placement {name} is run by the") as info:
        from_placement(placement.load(name))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"orders": {"timeout_s": 0.0}}, "groups.orders.timeout_s must be positive"),
        ({"catalog": {"attempts": 0}}, "groups.catalog.attempts must be positive"),
        ({"inventory": {"backoff_s": -1.0}}, "groups.inventory.backoff_s must not be negative"),
        ({"gateway": {"replicas": "cpus"}}, 'groups.gateway.replicas: "cpus"'),
    ],
)
def test_what_a_service_cannot_run_is_refused_naming_the_field(
    change: dict[str, dict[str, Any]], field: str
) -> None:
    with pytest.raises(TopologyError, match=field):
        from_placement(_variant("distributed", change))


def test_the_launcher_hands_each_service_the_resolved_placement_and_its_peers(
    tmp_path: Path,
) -> None:
    topo = topology.load()
    launcher = Launcher(
        topo,
        port=free_port(),
        state_dir=tmp_path,
        size="tiny",
        seed=1,
        threads=2,
        replicas=1,
        config=ShopConfig(),
    )
    launcher._plan()
    for name, child in launcher.children.items():
        program, cmd = launcher._command(child)
        assert program is None
        assert cmd[cmd.index("variants.distributed.service") + 1] == name
        assert cmd[cmd.index("--placement") + 1] == str(DISTRIBUTED.path)
        assert DISTRIBUTED.path.is_absolute()
        peers = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--peer")
        assert peers == {g: launcher.children[g].url for g in DISTRIBUTED.depends_on(name)}


def _one_line_exit_2(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    return result.stderr


def test_bad_placements_stop_the_launcher_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('description = "x"\n[groups.gateway]\nedge = true\n')
    launcher = "variants.distributed"
    assert "no placement 'nope'" in _one_line_exit_2(launcher, "--placement", "nope")
    assert "placed in no group" in _one_line_exit_2(launcher, "--placement", str(bad))
    assert "run by the family" in _one_line_exit_2(launcher, "--placement", "multiprocess")
    slow = tmp_path / "zero.toml"
    text = DISTRIBUTED.path.read_text().replace("timeout_s = 10.0", "timeout_s = 0.0")
    slow.write_text(text)
    assert "groups.orders.timeout_s" in _one_line_exit_2(launcher, "--placement", str(slow))


def test_a_service_refuses_a_bad_placement_or_group_with_one_line() -> None:
    svc = "variants.distributed.service"
    assert "no placement 'nope'" in _one_line_exit_2(svc, "catalog", "--placement", "nope")
    assert "has no group 'shipping'" in _one_line_exit_2(svc, "shipping")
    assert "reached over ipc" in _one_line_exit_2(svc, "orders", "--placement", "multiprocess")
    assert "needs the URL of catalog, inventory" in _one_line_exit_2(svc, "orders")
    family_edge = _one_line_exit_2(svc, "backend", "--placement", "recs-service")
    assert "reached over inproc" in family_edge


def _options(p: Placement, group: str, tmp_path: Path, **extra: Any) -> service.Options:
    return service.Options(placement=p, group=group, port=1, state_dir=tmp_path, **extra)


def test_a_family_http_group_reaches_ipc_peers_through_the_socket_folder(tmp_path: Path) -> None:
    recs = placement.load("recs-service")
    with pytest.raises(service.ServiceError, match="socket folder"):
        _options(recs, "recommendations", tmp_path)
    _options(recs, "recommendations", tmp_path, endpoints=Endpoints(socket_dir=tmp_path))
    # an http orders in a family whose edge hosts the catalog: the catalog is its caller's to give
    orders_http = _variant("recs-service", {"orders": {"transport": "http"}})
    assert orders_http.shared_catalog
    sockets = Endpoints(socket_dir=tmp_path)
    with pytest.raises(service.ServiceError, match="catalog from shared memory"):
        _options(orders_http, "orders", tmp_path, endpoints=sockets)
    _options(orders_http, "orders", tmp_path, endpoints=sockets, local_peers={"catalog": object()})


@contextlib.contextmanager
def _forked_service(opts: service.Options) -> Iterator[tuple[int, int]]:
    """`service.serve(opts, ready)` in a forked child, as the postmaster runs an http group:
    (its pid, the pipe `ready` writes one byte to). Killed, workers too, if still running."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            code = service.serve(opts, lambda: os.write(w, b"r"))
        finally:
            os._exit(code)
    os.close(w)
    try:
        yield pid, r
    finally:
        os.close(r)
        workers: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            workers = psutil.Process(pid).children(recursive=True)
        for proc in workers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _wait_exit(pid: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still running after {timeout_s} s")


@pytest.mark.parametrize(
    ("sig", "within_s"), [(signal.SIGTERM, STOP_S), (signal.SIGQUIT, 5.0)], ids=["TERM", "QUIT"]
)
def test_serve_runs_a_group_as_a_forked_child_and_says_when_it_is_ready(
    tmp_path: Path, sig: int, within_s: float
) -> None:
    port = free_port()
    opts = service.Options(
        placement=DISTRIBUTED,
        group="catalog",
        port=port,
        state_dir=tmp_path,
        threads=2,
        title="service",
        size="tiny",
        parent_pid=os.getpid(),
    )
    url = f"http://127.0.0.1:{port}"
    with _forked_service(opts) as (pid, ready):
        readable, _, _ = select.select([ready], [], [], 120)
        assert readable, "ready() was not called"
        assert os.read(ready, 16) == b"r"
        assert healthy(url)
        remote, transport = proxy("catalog", url, CallPolicy(attempts=1))
        assert remote.get(1).id == 1
        transport.close()
        title = telemetry.process_title("service catalog")
        master = psutil.Process(pid)
        assert title in " ".join(master.cmdline())
        workers = wait_until(master.children, 10, "a worker")
        assert all(title in " ".join(w.cmdline()) for w in workers)
        assert not select.select([ready], [], [], 0.3)[0], "ready() more than once"
        started = time.monotonic()
        os.kill(pid, sig)
        assert _wait_exit(pid, within_s) == 0
        assert time.monotonic() - started < within_s
        wait_until(lambda: not any(w.is_running() for w in workers), 10, "its workers gone")


def test_a_family_http_group_calls_its_ipc_peer_through_the_socket_folder(tmp_path: Path) -> None:
    """recs-service's recommendations, as the postmaster runs it: over an orders on a socket."""
    state, sockets = tmp_path / "state", tmp_path / "sockets"
    dataset.prepare_state(dataset.ensure("tiny"), state)
    sockets.mkdir()
    local = wiring.build(("catalog", "inventory", "orders"), state, {}, ShopConfig())
    dispatcher = rpc.Dispatcher("orders", local.served["orders"], rpc.Codec("msgpack"))
    orders = IpcServer(sockets / "orders.sock", dispatcher.handle)
    orders.start()
    port = free_port()
    opts = service.Options(
        placement=placement.load("recs-service"),
        group="recommendations",
        port=port,
        state_dir=state,  # prepared by the caller: no dataset named
        endpoints=Endpoints(socket_dir=sockets),
        threads=2,
        title="service",
        parent_pid=os.getpid(),
    )
    try:
        with _forked_service(opts) as (pid, ready):
            assert select.select([ready], [], [], 120)[0], "ready() was not called"
            remote, transport = proxy("recommendations", f"http://127.0.0.1:{port}", CallPolicy())
            assert remote.rebuild().baskets > 0  # ingests orders.since over IPC
            assert orders.accepted >= 1
            transport.close()
            os.kill(pid, signal.SIGTERM)
            assert _wait_exit(pid, STOP_S) == 0
    finally:
        orders.stop()
        local.close()
