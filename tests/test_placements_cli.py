"""Placements in the harness: `archlab placements`, `--placement NAME|FILE`, and the specs.

The registry (archlab/deployers.py) is built from the placement files: each placement's shape
picks its deployer, knobs and fault hosts. The old variant names keep naming the same
deployments; a placement file works wherever a name does; a bad file is one line naming the
field, before anything starts.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from support import CliRun, run_cli

from archlab.analysis import validate
from archlab.deployers import VARIANTS, flag_name, get_variant, policy_knob, spec_for
from archlab.run.plan import RunPlan, resolve
from archlab.rundir import read_meta
from variants import placement as placements
from variants.multiprocess.config import available_cpus
from workloads.shop.dataset import CONTEXTS


def _cli(tmp_path: Path, *args: str, timeout_s: float = 60) -> CliRun:
    out = run_cli(args, timeout_s=timeout_s, log_path=tmp_path / f"cli-{uuid.uuid4().hex[:8]}.log")
    assert out.killed == [], f"left behind: {out.killed}\n{out.output[-3000:]}"
    return out


def _as_json(data: object) -> object:
    return json.loads(json.dumps(data))


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


SHARED = """
description = "inventory and orders share one process; the rest in-process"
[groups.backend]
edge = true
contexts = ["catalog", "recommendations", "notifications"]
[groups.inv-orders]
contexts = ["inventory", "orders"]
transport = "ipc"
policy = "crash-restart-all"
"""


def test_placements_lists_every_named_one_with_its_description_and_groups(
    tmp_path: Path,
) -> None:
    out = _cli(tmp_path, "placements")
    assert out.returncode == 0, out.output
    named = placements.named()
    assert len(named) >= 5 and set(placements.PATH) <= set(named)
    for name in named:
        p = placements.load(name)
        assert any(
            line.startswith(name) and p.description in line for line in out.output.splitlines()
        )
    lines = out.output.splitlines()
    assert "backend[edge x cpus: catalog] inventory[ipc] orders[ipc]" in out.output
    recs_service = lines[lines.index(next(x for x in lines if x.startswith("recs-service"))) + 1]
    assert "family:" in recs_service and "recommendations[http]" in recs_service
    assert "monolith[edge: catalog,inventory,orders,recommendations,notifications]" in out.output
    assert " -> ".join(placements.PATH) in out.output


def test_placements_shows_a_file_and_its_resolved_form(tmp_path: Path) -> None:
    path = _write(tmp_path, "shared", SHARED)
    out = _cli(tmp_path, "placements", str(path))
    assert out.returncode == 0, out.output
    assert "inv-orders[ipc: inventory,orders]" in out.output
    out = _cli(tmp_path, "placements", "--json", "recs-process")
    assert json.loads(out.output)["recs-process"] == _as_json(
        placements.load("recs-process").describe()
    )


BAD = {
    "unknown context": (
        '[groups.monolith]\nedge = true\ncontexts = ["catalog", "inventory", "orders", '
        '"recommendations", "notifications", "payments"]',
        "groups.monolith.contexts",
    ),
    "placed twice": (
        '[groups.monolith]\nedge = true\ncontexts = ["catalog", "inventory", "orders", '
        '"recommendations", "notifications"]\n[groups.orders]\ncontexts = ["orders"]\n'
        'transport = "ipc"',
        "placed twice",
    ),
    "unknown transport": (
        '[groups.backend]\nedge = true\ncontexts = ["catalog", "inventory", "orders", '
        '"notifications"]\n[groups.recommendations]\ncontexts = ["recommendations"]\n'
        'transport = "carrier-pigeon"',
        "transport",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_bad_placement_file_is_one_line_naming_the_field(
    tmp_path: Path, case: str, command: str
) -> None:
    body, field = BAD[case]
    path = _write(tmp_path, "bad", f'description = "bad"\n{body}\n')
    runs = tmp_path / "runs"
    where = ("--results-dir", str(runs)) if command == "run" else ("--port", "9")
    out = _cli(tmp_path, command, "--placement", str(path), *where)
    assert out.returncode == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1, out.output
    assert lines[0].startswith("archlab: error: ") and str(path) in lines[0] and field in lines[0]
    assert "Traceback" not in out.output and not runs.exists()


def test_an_unknown_placement_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="known: monolith, recs-process"):
        get_variant("monolit")
    out = _cli(tmp_path, "run", "--variant", "monolit")
    assert out.returncode == 2 and "known: monolith" in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_the_old_variant_names_name_the_same_deployments() -> None:
    assert {"monolith", "multiprocess", "distributed"} <= set(VARIANTS)
    assert VARIANTS["monolith"].module == "variants.monolith"
    assert VARIANTS["monolith"].restarted_by_harness == "monolith-master"
    assert VARIANTS["monolith"].hosts == {c: "monolith" for c in CONTEXTS}
    assert set(VARIANTS["monolith"].knobs) == {"threads", "workers", "fork_gc", "preload", "server"}
    mp = VARIANTS["multiprocess"]
    assert mp.module == "variants.multiprocess" and mp.restarted_by_harness == "postmaster"
    assert mp.hosts == {c: "backend" if c == "catalog" else c for c in CONTEXTS}
    assert mp.knobs["backends"].default == available_cpus()
    assert mp.knobs["backends"].default_is == "the CPUs available"
    assert mp.knobs["policy_backend"].default == "crash-restart-all"
    dist = VARIANTS["distributed"]
    assert dist.module == "variants.distributed" and dist.restarted_by_harness == "launcher"
    assert set(dist.knobs) == {"threads", "replicas", "netns", "server", "engine_recommendations",
                               "bulkhead", "cpu_isolation"}  # fmt: skip
    assert dist.hosts == {c: c for c in CONTEXTS}


def test_recs_process_spec() -> None:
    spec = spec_for("recs-process")
    assert spec.name == "recs-process" and spec.module == "variants.multiprocess"
    assert spec.restarted_by_harness == "postmaster"
    assert spec.hosts == {
        "catalog": "backend",
        "inventory": "backend",
        "orders": "backend",
        "notifications": "backend",
        "recommendations": "recommendations",
    }
    assert {k: v.default for k, v in spec.knobs.items()} == {
        "backends": 1,  # the edge group's replicas
        "threads": 8,
        "fork_gc": "freeze",  # what the postmaster does before each fork
        "policy_backend": "crash-restart-all",
        "policy_recommendations": "restart-one",
        "server": "gunicorn-gthread",  # the placement's server for its HTTP-serving groups
        "engine_recommendations": "python",  # the group could run the Rust engine
        "bulkhead": 4,  # the placement file's: half the request threads per downstream
        "cpu_isolation": "off",
    }
    assert spec.knobs["backends"].default_is == ""
    assert spec.knobs["policy_backend"].choices == ("restart-one", "crash-restart-all")


def test_recs_service_spec() -> None:
    spec = spec_for("recs-service")
    assert spec.module == "variants.multiprocess" and spec.restarted_by_harness == "postmaster"
    assert spec.hosts == {c: "backend" if c == "catalog" else c for c in CONTEXTS}
    assert spec.host_role("recommendations") == "recommendations"
    assert spec.knobs["backends"].default == available_cpus()
    assert spec.knobs["backends"].default_is == "the CPUs available"
    assert {k for k in spec.knobs if k.startswith("policy_")} == {
        f"policy_{g}"
        for g in ("backend", "inventory", "orders", "recommendations", "notifications")
    }
    assert spec.knobs["policy_recommendations"].default == "restart-one"  # an http group too
    cmd = spec.command(
        port=1, size="tiny", seed=1, state_dir=Path("/s"), knobs=spec.resolve_knobs({})
    )
    assert cmd[cmd.index("--placement") + 1] == str(placements.load("recs-service").path)
    assert cmd[cmd.index("--policy-recommendations") + 1] == "restart-one"
    with pytest.raises(ValueError, match="no knob"):
        spec.resolve_knobs({"workers": 2})


def test_a_placement_file_is_a_spec_with_its_own_knobs(tmp_path: Path) -> None:
    path = _write(tmp_path, "shared", SHARED)
    spec = get_variant(str(path))
    assert spec.name == "shared" and spec.placement is not None
    assert spec.hosts["orders"] == spec.hosts["inventory"] == "inv-orders"
    assert policy_knob("inv-orders") == "policy_inv_orders"
    assert flag_name("policy_inv_orders") == "--policy-inv-orders"
    knobs = spec.resolve_knobs({})
    assert knobs["policy_inv_orders"] == "crash-restart-all"  # from the file
    cmd = spec.command(port=1, size="tiny", seed=1, state_dir=tmp_path, knobs=knobs)
    assert cmd[cmd.index("--placement") + 1] == str(path.resolve())
    assert "--policy-inv-orders" in cmd
    setup = resolve(RunPlan(variant=str(path), pin=False))  # as reproduce's plans may
    assert setup.name == "shared" and setup.spec is not None and setup.spec.placement is not None


def test_run_with_a_placement_file_end_to_end(tmp_path: Path) -> None:
    """A file of the monolith's shape under another name: recorded as that placement."""
    path = tmp_path / "my-monolith.toml"
    shutil.copyfile(placements.load("monolith").path, path)
    runs = tmp_path / "runs"
    args = f"run --placement {path} --duration 3s --users 2 --run-id f --results-dir {runs}"
    out = _cli(tmp_path, *args.split(), timeout_s=180)
    assert out.returncode == 0, out.output[-4000:]
    meta = read_meta(runs / "f")
    assert meta["variant"] == "my-monolith" and meta["variant_module"] == "variants.monolith"
    assert meta["placement"] == _as_json(placements.load(path).describe())
    assert meta["placement_file"] == str(path.resolve())
    assert meta["server_telemetry"] == "collected"
    command = meta["processes"]["server"]["command"]
    assert command[command.index("--placement") + 1] == str(path.resolve())
    assert validate.validate_run(runs / "f") == []
