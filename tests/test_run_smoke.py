"""The harness end to end: a short real run, interruption, and process cleanup."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from archlab import procs
from archlab.records import read_records
from archlab.runner import make_run_dir, parse_duration
from archlab.summary import ALL
from archlab.variants import VARIANTS
from workloads.scenarios import SCENARIOS, TASKS

ENDPOINTS = {
    "/products (setup)",
    "/products?q",
    "/products/{id}",
    "/products/{id}/recommendations",
    "POST /orders",
    "/orders/{id}",
}


def archlab(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archlab.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        **kwargs,  # type: ignore[arg-type]
    )


def assert_nothing_left(meta: dict) -> None:
    """No process of the run's groups survives and nothing listens on its port."""
    for name, info in meta["processes"].items():
        assert procs.group_members(info["pgid"]) == [], f"{name} group still has processes"
        if psutil.pid_exists(info["pid"]):
            assert psutil.Process(info["pid"]).status() == psutil.STATUS_ZOMBIE, name
    assert not procs.port_in_use(urlsplit(meta["base_url"]).port)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    results = tmp_path_factory.mktemp("runs")
    args = "run --variant monolith --scenario steady --duration 10s --users 10 --size tiny"
    out = archlab(*args.split(), "--run-id", "smoke", "--results-dir", str(results))
    assert out.returncode == 0, out.stdout + out.stderr
    return results / "smoke", out.stdout


def test_run_writes_every_file(smoke_run: tuple[Path, str]) -> None:
    run_dir, stdout = smoke_run
    for name in (
        "meta.json",
        "requests.csv",
        "summary.json",
        "server.log",
        "locust.log",
        "generator_cpu.csv",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "state").is_dir()
    assert "ALL" in stdout and str(run_dir) in stdout


def test_meta(smoke_run: tuple[Path, str]) -> None:
    meta = json.loads((smoke_run[0] / "meta.json").read_text())
    assert meta["schema_version"] == 1
    assert meta["run_id"] == "smoke"
    assert meta["status"] == "completed"
    assert meta["variant"] == "monolith"
    assert set(meta["knobs"]) == set(VARIANTS["monolith"].knobs)
    assert meta["scenario"]["name"] == "steady"
    assert set(meta["scenario"]["weights"]) <= set(TASKS)
    assert (meta["seed"], meta["dataset_size"], meta["duration_s"], meta["users"]) == (
        1,
        "tiny",
        10,
        10,
    )
    machine = meta["machine"]
    assert machine["cpu_count_logical"] >= 1 and machine["memory_total_bytes"] > 0
    assert machine["cpu_model"] and machine["kernel"] and machine["python_version"]
    assert machine["packages"]["locust"]
    assert {"commit", "dirty"} <= set(meta["git"])
    assert meta["started_at"] < meta["ended_at"]
    assert "run" in meta["command"]
    assert meta["health"]["status"] == "ok"
    assert meta["locust_exit_code"] == 0


def test_numbers_are_sane(smoke_run: tuple[Path, str]) -> None:
    run_dir = smoke_run[0]
    records = read_records(run_dir / "requests.csv")
    assert records
    summary = json.loads((run_dir / "summary.json").read_text())
    endpoints = summary["endpoints"]
    assert set(endpoints) - {ALL} <= ENDPOINTS
    assert {"/products?q", "/products/{id}"} <= set(endpoints)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert summary["warmup_s"] == meta["warmup_s"] == 1  # 10 users spawned at 10/s
    measured_from = min(r.start_time for r in records) + meta["warmup_s"]
    assert endpoints[ALL]["count"] == sum(r.start_time >= measured_from for r in records)
    for name, st in endpoints.items():
        lat = st["latency_ms"]
        assert st["count"] > 0 and st["throughput_rps"] > 0, name
        assert st["errors"] == 0, (name, st["top_errors"])
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"], name
        assert lat["p99"] <= lat["p99_9"] <= lat["max"], name
        assert lat["min"] <= lat["mean"] <= lat["max"], name
    assert summary["generator"]["samples"] > 0


def test_no_process_left_behind(smoke_run: tuple[Path, str]) -> None:
    meta = json.loads((smoke_run[0] / "meta.json").read_text())
    assert {"server", "locust"} <= set(meta["processes"])
    assert_nothing_left(meta)


def test_summarize_recomputes_the_same_summary(smoke_run: tuple[Path, str]) -> None:
    run_dir = smoke_run[0]
    before = json.loads((run_dir / "summary.json").read_text())
    out = archlab("summarize", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert "ALL" in out.stdout
    assert json.loads((run_dir / "summary.json").read_text()) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_interrupt_stops_everything(tmp_path: Path, sig: signal.Signals) -> None:
    args = "run --variant monolith --duration 60s --users 3 --run-id cut --results-dir"
    cmd = [sys.executable, "-m", "archlab.cli", *args.split(), str(tmp_path)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    records = tmp_path / "cut" / "requests.csv"
    try:
        deadline = time.monotonic() + 120
        while not (records.exists() and records.stat().st_size > 100):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        proc.send_signal(sig)
        output = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            procs.stop(procs.Proc("archlab", proc, None))
    assert proc.returncode == 130, output
    meta = json.loads((tmp_path / "cut" / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    assert meta["ended_at"]
    assert_nothing_left(meta)


def test_wait_healthy_reports_a_dead_server(tmp_path: Path) -> None:
    log = tmp_path / "dead.log"
    code = "print('loading failed: no dataset', flush=True); raise SystemExit(3)"
    url = f"http://127.0.0.1:{procs.free_port()}/healthz"
    with (
        procs.running([sys.executable, "-c", code], name="dead", log_path=log) as dead,
        pytest.raises(procs.ProcessError, match=r"code 3[\s\S]*no dataset"),
    ):
        procs.wait_healthy(dead, url, 30)


def test_stop_kills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    # The leader spawns a grandchild; both ignore SIGTERM, so only the SIGKILL step ends them.
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "print('up', flush=True); time.sleep(60)\n"
    )
    log = tmp_path / "stubborn.log"
    proc = procs.start([sys.executable, "-c", code], name="stubborn", log_path=log)
    deadline = time.monotonic() + 20
    while len(procs.group_members(proc.pgid)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    procs.stop(proc, grace_s=0.5)
    assert procs.group_members(proc.pgid) == []
    assert proc.popen.returncode == -signal.SIGKILL


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "2m", "1m30s", "1h")] == [
        90,
        90,
        120,
        90,
        3600,
    ]
    with pytest.raises(ValueError):
        parse_duration("ten seconds")


def test_run_ids_are_unique(tmp_path: Path) -> None:
    first = make_run_dir(tmp_path, "monolith", "steady", None)
    second = make_run_dir(tmp_path, "monolith", "steady", None)
    assert first != second and first.name.endswith("-monolith-steady")
    with pytest.raises(FileExistsError):
        make_run_dir(tmp_path, "monolith", "steady", first.name)


def test_variant_command_passes_every_knob(tmp_path: Path) -> None:
    spec = VARIANTS["monolith"]
    knobs = spec.resolve_knobs({"threads": 4})
    cmd = spec.command(port=1234, size="tiny", seed=7, state_dir=tmp_path, knobs=knobs)
    assert cmd[1:3] == ["-m", "variants.monolith"]
    assert cmd[cmd.index("--threads") + 1] == "4"
    assert cmd[cmd.index("--workers") + 1] == str(spec.knobs["workers"].default)
    with pytest.raises(ValueError, match="no knob"):
        spec.resolve_knobs({"shards": 2})


def test_scenarios_are_valid() -> None:
    assert "steady" in SCENARIOS
    for scenario in SCENARIOS.values():
        assert set(scenario.weights) <= set(TASKS)
        assert scenario.users > 0 and scenario.spawn_rate > 0
