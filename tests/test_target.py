"""`archlab run --target URL`: driving and checking a deployment the harness did not start.

The target is a monolith this test starts in its own process group, as a user would start a
placement on a cluster; the CLI gets only its URL. The run must record the load (requests,
ledger), check the invariants through the API, mark the server-side telemetry as not
collected, leave the target running, and stay valid for `validate`, `summarize` and `report`.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from support import CliRun, run_cli, watching

from archlab.analysis import validate
from archlab.host import procs
from archlab.host.cpus import CpuPlan
from archlab.measure import integrity
from archlab.run import target
from archlab.rundir import (
    LEDGER,
    SERVER_SIDE,
    SERVER_TELEMETRY_NOT_COLLECTED,
    STATE_DIR,
    TELEMETRY_DIR,
    read_meta,
    start_csv,
)
from workloads.shop import invariants


def _cli(tmp_path: Path, *args: str) -> CliRun:
    out = run_cli(args, timeout_s=180, log_path=tmp_path / f"cli-{uuid.uuid4().hex[:8]}.log")
    assert out.killed == [], f"left behind: {out.killed}\n{out.output[-3000:]}"
    return out


def _ledger(run_dir: Path) -> dict[str, int]:
    with (run_dir / LEDGER).open(newline="") as fh:
        return {row["idempotency_key"]: int(row["order_id"]) for row in csv.DictReader(fh)}


def test_a_target_run_records_the_load_and_checks_through_the_api(tmp_path: Path) -> None:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    state = tmp_path / "target-state"
    state.mkdir()
    cmd = [sys.executable, "-m", "variants.monolith", "--port", str(port), "--size", "tiny"]
    cmd += ["--state-dir", str(state)]
    runs = tmp_path / "runs"
    with (
        procs.running(cmd, name="target", log_path=tmp_path / "target.log") as server,
        watching(server.pid),
    ):
        procs.wait_healthy(server, f"{url}/healthz", 120)
        args = f"run --target {url} --placement monolith --scenario open --rate 40 --duration 4s"
        out = _cli(tmp_path, *args.split(), "--run-id", "t", "--results-dir", str(runs))
        assert out.returncode == 0, out.output[-4000:]
        assert server.alive(), "the harness must leave a target alone"
        run_dir = runs / "t"

        # a lost order and an order read back under another key are both caught
        broken = tmp_path / "broken"
        broken.mkdir()
        start_csv(broken / LEDGER)
        key, oid = next(iter(_ledger(run_dir).items()))
        with (broken / LEDGER).open("a") as fh:
            fh.write(f"1.0,{key},{oid}\n1.0,never-stored,999999\n1.0,someone-else,{oid}\n")
        report = integrity.check_through_api(broken, url)
        assert not report["ok"] and not report["checks"]["acknowledged_orders_read_back"]
        assert set(report["violations"]["missing_acknowledged"]) == {"never-stored", "someone-else"}
    assert "invariants (through the API): ok" in out.output

    meta = read_meta(run_dir)
    assert meta["status"] == "completed"
    assert meta["target"] == url and meta["base_url"] == url
    assert meta["server_telemetry"] == SERVER_TELEMETRY_NOT_COLLECTED
    assert meta["variant"] == "monolith" and meta["placement"]["name"] == "monolith"
    assert meta["variant_module"] is None and meta["knobs"] == {}
    assert set(meta["processes"]) == {"locust"}  # the harness started nothing else
    assert meta["health"]["status"] == "ok"
    assert any("--target" in note for note in meta["notes"])
    for name in ("requests.csv", "ledger.csv", "invariants.json", "summary.json"):
        assert (run_dir / name).is_file(), name
    for name in (*SERVER_SIDE, STATE_DIR, TELEMETRY_DIR):
        assert not (run_dir / name).exists(), name

    ledger = _ledger(run_dir)
    assert ledger, "no order was acknowledged"
    report = json.loads((run_dir / "invariants.json").read_text())
    assert report["method"] == integrity.METHOD_API and report["ok"], report
    assert report["counts"]["acknowledged"] == report["counts"]["read_back"] == len(ledger)
    assert report["counts"]["products_checked"] > 0
    assert set(report["not_checked"]) == {"stock_conserved", "notifications_sent_exactly_once"}
    # the databases behind the API agree (the target is stopped now: they are quiescent)
    assert invariants.check(state, ledger)["checks"]["acknowledged_orders_stored_once"]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["endpoints"]["ALL"]["count"] > 0
    assert "server" not in summary and "gc" not in summary
    assert summary["invariants"]["method"] == "api"
    assert validate.validate_run(run_dir) == []
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy / "t")
    (copy / "t" / "ledger.csv").unlink()
    assert any("ledger.csv" in p for p in validate.validate_run(copy / "t"))

    assert _cli(tmp_path, "summarize", str(run_dir)).returncode == 0
    html = tmp_path / "report.html"
    out = _cli(tmp_path, "report", str(run_dir), "-o", str(html))
    assert out.returncode == 0 and html.is_file(), out.output[-3000:]


@pytest.mark.parametrize(
    "text",
    ["localhost:8000", "ftp://127.0.0.1:1", "http://127.0.0.1:1/shop", "http://u:p@127.0.0.1:1"],
)
def test_a_target_must_be_an_explicit_url_at_the_root(text: str) -> None:
    with pytest.raises(ValueError, match="--target"):
        target.target_url(text)


def test_a_target_url_is_normalised_and_its_locality_known() -> None:
    assert target.target_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert target.is_loopback("http://localhost:1") and target.is_loopback("http://[::1]:1")
    assert not target.is_loopback("http://shop.example.org")


def test_only_the_generator_is_pinned_for_a_target() -> None:
    plan = target.plan_generator_cpus(
        [0, 1, 2, 3], "http://127.0.0.1:1", generator=[2, 3], processes=None, pin=True
    )
    assert plan == CpuPlan(sut=None, generator=[2, 3], processes=2, shared=False, notes=plan.notes)
    shared = target.plan_generator_cpus(
        [0, 1], "http://127.0.0.1:1", generator=None, processes=None, pin=True
    )
    assert shared.sut is None and shared.generator is None and shared.shared
    remote = target.plan_generator_cpus(
        [0, 1], "http://10.1.2.3:80", generator=None, processes=None, pin=True
    )
    assert not remote.shared


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ("--profile", "--profile"),
        ("--scenario crash-recommendations", "injects faults"),
        ("--workers 2", "knobs"),
        ("--sut-cpus 0", "--sut-cpus"),
    ],
)
def test_what_needs_the_deployments_processes_is_refused(
    tmp_path: Path, extra: str, refused: str
) -> None:
    out = _cli(tmp_path, "run", "--target", "http://127.0.0.1:9", *extra.split())
    assert out.returncode == 2
    lines = out.output.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("archlab: error: --target") and refused in lines[0]
    )
    assert not (tmp_path / "runs").exists()
