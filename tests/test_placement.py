"""Placement as data: the named placements, the file's validation, and a placement no code knows.

The migration path is five named placements, each a small diff of the one before; a bad
placement file is refused with one line that names the field; a placement written by a user
(inventory and orders sharing one process, the rest in the backends) runs without any code
knowing it; and a fault sits on the callee's side of every call, in-process calls included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import deployment, order_body, request, wait_until

from variants import faults, placement
from variants.multiprocess import config
from variants.multiprocess.config import FamilyConfig
from variants.placement import PATH, PlacementError
from workloads.shop.dataset import CONTEXTS

REPO = Path(__file__).resolve().parents[1]

CUSTOM = """
description = "inventory and orders share one process; the rest stays in the backends"

[groups.backend]
edge = true
contexts = ["catalog", "recommendations", "notifications"]

[groups.stock]
contexts = ["inventory", "orders"]
transport = "ipc"
"""


def _write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _groups(p: placement.Placement) -> dict[str, tuple[str, str]]:
    return {name: (p.transport(name), ",".join(g.contexts)) for name, g in p.groups.items()}


def test_the_migration_path_is_five_named_placements_each_a_small_step() -> None:
    assert list(placement.named())[: len(PATH)] == list(PATH)
    steps = [placement.load(name) for name in PATH]
    assert [p.supervisor for p in steps] == ["monolith", "family", "family", "family", "launcher"]
    monolith, recs_process, multiprocess, recs_service, distributed = steps
    assert _groups(monolith) == {"monolith": ("inproc", ",".join(CONTEXTS))}
    assert _groups(recs_process)["recommendations"] == ("ipc", "recommendations")
    assert set(recs_process.groups["backend"].contexts) == set(CONTEXTS) - {"recommendations"}
    # multiprocess -> recs-service: only the recommendation engine's transport changes
    changed = {
        n for n in multiprocess.groups if _groups(multiprocess)[n] != _groups(recs_service)[n]
    }
    assert changed == {"recommendations"}
    assert recs_service.transport("recommendations") == "http"
    assert all(distributed.transport(n) == "http" for n in distributed.groups if n != "gateway")
    assert multiprocess.shared_catalog and not recs_process.shared_catalog


def test_the_family_starts_each_group_after_the_groups_it_calls() -> None:
    multiprocess = placement.load("multiprocess")
    assert multiprocess.start_order == ("inventory", "orders", "recommendations", "notifications")
    # orders stays in the backends, which serve it over IPC to the recommendation engine
    recs_process = placement.load("recs-process")
    assert recs_process.peers("recommendations") == {"orders": "backend"}
    assert recs_process.edge_serves == ("orders",)


BAD = {
    "unknown context": (
        'description = "x"\n[groups.a]\nedge = true\ncontexts = ["catalog", "inventory", '
        '"orders", "recommendations", "notifications", "payments"]\n',
        "groups.a.contexts: unknown context 'payments'",
    ),
    "placed twice": (
        'description = "x"\n[groups.a]\nedge = true\ncontexts = ["catalog", "inventory", '
        '"orders", "recommendations", "notifications"]\n[groups.b]\ncontexts = ["orders"]\n'
        'transport = "ipc"\n',
        "context 'orders' is placed twice: groups.a and groups.b",
    ),
    "placed nowhere": (
        'description = "x"\n[groups.a]\nedge = true\ncontexts = ["catalog", "inventory", '
        '"orders", "recommendations"]\n',
        "context(s) notifications placed in no group",
    ),
    "a start-order cycle": (
        'description = "x"\n[groups.web]\nedge = true\ncontexts = ["catalog", '
        '"recommendations"]\n[groups.a]\ncontexts = ["orders"]\ntransport = "ipc"\n'
        '[groups.b]\ncontexts = ["inventory", "notifications"]\ntransport = "ipc"\n',
        "groups a, b need each other",
    ),
    "an unknown transport": (
        'description = "x"\n[groups.a]\nedge = true\ncontexts = ["catalog", "inventory", '
        '"orders", "recommendations"]\n[groups.b]\ncontexts = ["notifications"]\n'
        'transport = "grpc"\n',
        "groups.b.transport",
    ),
    "no edge": (
        'description = "x"\n[groups.a]\ncontexts = ["catalog", "inventory", "orders", '
        '"recommendations", "notifications"]\ntransport = "ipc"\n',
        "exactly one group must have edge = true",
    ),
    "an unknown engine": (
        'description = "x"\n[groups.a]\nedge = true\ncontexts = ["catalog", "inventory", '
        '"orders", "notifications"]\n[groups.r]\ncontexts = ["recommendations"]\n'
        'transport = "ipc"\nengine = "go"\n',
        "groups.r.engine: unknown engine 'go'",
    ),
    "a native engine for a context it does not serve": (
        'description = "x"\n[groups.a]\nedge = true\ncontexts = ["catalog", "inventory", '
        '"recommendations", "notifications"]\n[groups.o]\ncontexts = ["orders"]\n'
        'transport = "ipc"\nengine = "rust"\n',
        "groups.o.engine: the rust engine serves one context",
    ),
    "an unknown field": (
        'description = "x"\n[groups.a]\nedge = true\nreplicaz = 2\ncontexts = ["catalog", '
        '"inventory", "orders", "recommendations", "notifications"]\n',
        "replicaz",
    ),
}


@pytest.mark.parametrize("case", list(BAD.values()), ids=list(BAD))
def test_a_bad_placement_file_is_refused_in_one_line_naming_the_field(
    tmp_path: Path, case: tuple[str, str]
) -> None:
    text, expected = case
    path = _write(tmp_path, text)
    with pytest.raises(PlacementError) as err:
        placement.load(path)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message and message.startswith(str(path))


def test_a_deployer_refuses_a_bad_placement_in_one_line_without_a_traceback(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, BAD["a start-order cycle"][0])
    for module in ("variants.monolith", "variants.multiprocess"):
        proc = subprocess.run(
            [sys.executable, "-m", module, "--placement", str(path), "--port", "1"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
        assert "need each other" in proc.stderr and "Traceback" not in proc.stderr


def test_a_placement_no_code_knows_serves_the_whole_shop(tmp_path: Path) -> None:
    """Inventory and orders in one process of their own; the rest in the backends."""
    path = _write(tmp_path, CUSTOM)
    mine = placement.load(path)
    assert mine.supervisor == "family" and mine.shared_catalog
    with deployment(str(path), tmp_path / "run") as running:
        status, health = request(running.base_url, "GET", "/healthz")
        assert status == 200 and set(health["components"]) == set(CONTEXTS)
        status, placed = request(running.base_url, "POST", "/orders", order_body(3, 2))
        assert status == 201
        status, read = request(running.base_url, "GET", f"/orders/{placed['id']}")
        assert status == 200 and read["lines"][0]["product_id"] == 3
        status, recs = request(running.base_url, "GET", "/products/3/recommendations?k=3")
        assert status == 200 and not recs.get("degraded")
        titles = subprocess.run(
            ["ps", "-o", "args=", "-g", str(running.proc.pgid)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "archlab: stock" in titles and "archlab: backend 1" in titles


def test_a_slow_fault_on_inventory_slows_orders_in_process_calls_too(tmp_path: Path) -> None:
    """The monolith's orders call inventory by a method call: the fault is still on that call."""
    folder = tmp_path / "faults"
    folder.mkdir()
    env = {faults.ENV_DIR: str(folder)}
    with deployment("monolith", tmp_path / "run", env=env) as running:
        wait_until(lambda: faults.armed(folder), 30.0, "the monolith's fault controller")

        def place() -> float:
            started = time.perf_counter()
            status, _ = request(running.base_url, "POST", "/orders", order_body(5, 1))
            assert status == 201
            return time.perf_counter() - started

        assert place() < 0.4
        faults.write_fault(
            folder,
            "inventory",
            {"id": 1, "kind": "slow", "params": {"delay_ms": 400}, "active": True},
        )
        for pid in faults.armed(folder):
            os.kill(pid, faults.SIGNAL)
        wait_until(lambda: place() >= 0.4, 10.0, "the slow inventory on POST /orders")


def test_a_groups_engine_is_chosen_by_name_and_recorded_in_full() -> None:
    mp = placement.load("multiprocess")
    assert mp.native_capable == ("recommendations",)
    rust = mp.with_engines({"recommendations": "rust"})
    assert rust.groups["recommendations"].engine == "rust"
    assert mp.groups["recommendations"].engine == "python"  # the original is unchanged
    assert rust.describe()["groups"]["recommendations"]["engine"] == "rust"
    assert placement.load("monolith").native_capable == ()  # in-process: no program to run
    with pytest.raises(PlacementError, match="no group nowhere"):
        mp.with_engines({"nowhere": "rust"})
    with pytest.raises(PlacementError, match="groups.orders.engine"):
        mp.with_engines({"orders": "rust"})


def test_the_server_knob_reaches_every_group_that_serves_http_and_no_other() -> None:
    mp = placement.load("multiprocess").with_engines({"recommendations": "rust"})
    fast = mp.with_server("granian")
    served = {n: g.server for n, g in fast.groups.items()}
    assert fast.server == "granian" and served["backend"] == "granian"
    assert all(s == "gunicorn-gthread" for n, s in served.items() if n != "backend")  # ipc groups
    dist = placement.load("distributed").with_server("granian")
    assert {g.server for g in dist.groups.values()} == {"granian"}
    assert dist.describe()["groups"]["gateway"]["server"] == "granian"
    assert placement.load("distributed").server == "gunicorn-gthread"  # unchanged original
    with pytest.raises(PlacementError, match=r"groups.gateway.server: unknown server 'nginx'"):
        placement.load("distributed").with_server("nginx")


def test_the_familys_config_file_names_engines_by_role() -> None:
    base = FamilyConfig(backends=2)
    roles = config.roles(placement.load("multiprocess"))
    FamilyConfig(backends=2, engines={"recommendations": "rust"}).validate(roles)
    with pytest.raises(ValueError, match="unknown role"):
        FamilyConfig(backends=2, engines={"engine": "rust"}).validate(roles)
    with pytest.raises(ValueError, match="engine of recommendations"):
        FamilyConfig(backends=2, engines={"recommendations": "cobol"}).validate(roles)
    assert base.engines == {}
