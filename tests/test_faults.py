"""Fault injection: the control protocol, each fault kind taking effect, crash in every variant.

The run tests are short `tiny` runs through the real harness (`archlab.run.runner.execute`), so
the faults go through the same path as `archlab run --scenario ...`: the scheduler, the fault
files and signals, the per-process controller. Every process is stopped by the runner.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from archlab.analysis import blast
from archlab.analysis.validate import validate_run
from archlab.deployers import VARIANTS
from archlab.run import fault_schedule as harness
from archlab.run.plan import RunPlan
from archlab.run.runner import execute
from variants import faults
from workloads import scenarios
from workloads.scenarios import FaultSpec, Scenario


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# --- the protocol, in this process -------------------------------------------------------


def test_fault_spec_validation() -> None:
    with pytest.raises(ValueError):
        FaultSpec("melt", "orders", at=0.1, duration=0.2)
    with pytest.raises(ValueError):
        FaultSpec("crash", "orders", at=0.1, duration=0.2)
    with pytest.raises(ValueError):
        FaultSpec("slow", "orders", at=0.1)
    with pytest.raises(ValueError):
        FaultSpec("slow", "orders", at=1.5, duration=0.1)


def test_every_variant_hosts_every_component() -> None:
    for spec in VARIANTS.values():
        for component in ("catalog", "inventory", "orders", "recommendations", "notifications"):
            assert spec.host_role(component)
    assert VARIANTS["monolith"].host_role("orders") == "monolith"
    assert VARIANTS["multiprocess"].host_role("catalog") == "backend"
    assert VARIANTS["distributed"].host_role("orders") == "orders"


def test_catalogue_has_the_fault_scenarios() -> None:
    for name in (
        "gc-pressure",
        "cpu-hog",
        "crash-recommendations",
        "crash-orders",
        "leak-recommendations",
        "slow-notifications",
    ):
        assert scenarios.get_scenario(name).faults, name


def test_controller_applies_slow_by_file_and_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Thing:
        def ping(self) -> str:
            return "pong"

    monkeypatch.setenv(faults.ENV_DIR, str(tmp_path))
    served = faults.install("tester", {"thing": Thing()})["thing"]
    assert faults.armed(tmp_path)[os.getpid()] == ("tester", ("thing",))
    t = time.perf_counter()
    assert served.ping() == "pong"
    assert time.perf_counter() - t < 0.05

    def call_ms() -> float:
        t = time.perf_counter()
        served.ping()
        return (time.perf_counter() - t) * 1000

    spec = {"id": 1, "kind": "slow", "params": {"delay_ms": 80}, "active": True, "pids": []}
    faults.write_fault(tmp_path, "thing", spec)
    os.kill(os.getpid(), faults.SIGNAL)
    deadline = time.monotonic() + 3
    while call_ms() < 70 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert call_ms() >= 70
    faults.write_fault(tmp_path, "thing", {**spec, "active": False})
    os.kill(os.getpid(), faults.SIGNAL)
    deadline = time.monotonic() + 3
    while call_ms() > 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert call_ms() < 50


CHILD = """
import sys, time
from variants import faults
faults.install("child", {"thing": object()})
print("armed", flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize(
    ("kind", "params", "dies_of"),
    [
        ("crash", {"mode": "abort"}, signal.SIGABRT),
        ("leak", {"rate_mb_s": 200.0, "limit_mb": 40.0}, signal.SIGKILL),
    ],
)
def test_controller_kills_its_process(
    kind: str, params: dict[str, object], dies_of: int, tmp_path: Path
) -> None:
    """abort, and a leak reaching its limit: the process really dies (as an OOM kill would)."""
    env = {**os.environ, faults.ENV_DIR: str(tmp_path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"armed"
        spec = {"id": 0, "kind": kind, "params": params, "active": True, "pids": [child.pid]}
        faults.write_fault(tmp_path, "thing", spec)
        os.kill(child.pid, faults.SIGNAL)
        assert child.wait(timeout=10) == -dies_of
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# --- every kind takes effect in a real run (multiprocess: one role per fault) -------------

KINDS_RUN_S = 12
KINDS = Scenario(
    name="test-fault-kinds",
    description="one fault of each non-crash kind, each in its own auxiliary process",
    weights=scenarios.STEADY_MIX,
    users=10,
    spawn_rate=10.0,
    wait_time=(0.02, 0.1),
    faults=(
        FaultSpec(
            "leak",
            "inventory",
            at=0.3,
            duration=0.6,
            params={"rate_mb_s": 30.0, "limit_mb": 150.0, "on_limit": "keep"},
        ),
        FaultSpec("hog", "orders", at=0.3, duration=0.6),
        FaultSpec("gc", "notifications", at=0.3, duration=0.6),
        FaultSpec("slow", "recommendations", at=0.3, duration=0.6, params={"delay_ms": 150}),
    ),
)


@pytest.fixture(scope="module")
def kinds_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("fault-kinds")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(scenarios.SCENARIOS, KINDS.name, KINDS)
        plan = RunPlan(
            variant="multiprocess",
            scenario=KINDS.name,
            duration_s=KINDS_RUN_S,
            size="tiny",
            knobs={"backends": 1},
        )
        result = execute(plan, results, echo=lambda line: None)
    assert result.status == "completed"
    return result.run_dir


def _window(run_dir: Path, kind: str) -> tuple[float, float]:
    row = next(f for f in blast.read_faults(run_dir / "faults.csv") if f.kind == kind)
    assert row.end is not None and row.pids, row
    return row.start, row.end


def test_faults_csv_records_every_fault(kinds_run: Path) -> None:
    rows = blast.read_faults(kinds_run / "faults.csv")
    assert [(r.kind, r.component, r.role) for r in rows] == [
        ("leak", "inventory", "inventory"),
        ("hog", "orders", "orders"),
        ("gc", "notifications", "notifications"),
        ("slow", "recommendations", "recommendations"),
    ]
    for r in rows:
        assert r.end is not None and 3 < r.end - r.start < 9
    meta = json.loads((kinds_run / "meta.json").read_text())
    assert len(meta["faults"]) == 4


def _samples(run_dir: Path, role: str) -> list[dict[str, str]]:
    return [r for r in _rows(run_dir / "processes.csv") if r["role"] == role]


def test_leak_grows_memory(kinds_run: Path) -> None:
    start, _ = _window(kinds_run, "leak")
    rss = [(float(r["time"]), int(r["rss_bytes"])) for r in _samples(kinds_run, "inventory")]
    before = max(b for t, b in rss if t <= start)
    peak = max(b for t, b in rss)
    print(f"leak: inventory RSS {before / 2**20:.0f} MiB -> {peak / 2**20:.0f} MiB")
    assert peak - before > 80 * 2**20


def test_hog_raises_cpu(kinds_run: Path) -> None:
    start, end = _window(kinds_run, "hog")
    cpu = [(float(r["time"]), float(r["cpu_user_s"]) + float(r["cpu_system_s"])) for r in
           _samples(kinds_run, "orders")]  # fmt: skip
    at = [c for t, c in cpu if t <= start]
    during = [(t, c) for t, c in cpu if start + 1 <= t <= end]
    assert at and len(during) >= 2
    share = (during[-1][1] - during[0][1]) / (during[-1][0] - during[0][0])
    rate_before = at[-1] / max(1e-9, start - float(_samples(kinds_run, "orders")[0]["time"]))
    print(f"hog: orders CPU {rate_before:.2f} cores before, {share:.2f} cores during")
    assert share > 0.4
    assert share > 3 * rate_before


def test_gc_fault_forces_full_collections(kinds_run: Path) -> None:
    start, end = _window(kinds_run, "gc")
    rows = [r for r in _rows(kinds_run / "gc.csv") if r["role"] == "notifications"]
    full = [float(r["start"]) for r in rows if r["generation"] == "2"]
    during = sum(start <= t <= end for t in full)
    before = sum(t < start for t in full)
    print(f"gc: notifications full collections {before} before, {during} during")
    assert during >= 10 * (end - start) / 2
    assert during > 5 * max(1, before)


def test_slow_adds_latency(kinds_run: Path) -> None:
    start, end = _window(kinds_run, "slow")
    recs = [
        (float(r["start_time"]), float(r["latency_ms"]))
        for r in _rows(kinds_run / "requests.csv")
        if r["endpoint"] == "/products/{id}/recommendations" and r["status"] == "200"
    ]
    before = [ms for t, ms in recs if t < start]
    during = [ms for t, ms in recs if start + 0.5 <= t <= end]
    print(
        f"slow: recommendations p50 {statistics.median(before):.1f} ms before, "
        f"{statistics.median(during):.1f} ms during"
    )
    assert statistics.median(during) >= 150
    assert statistics.median(before) < 100


# --- crash-recommendations, for every variant, through the catalogue scenario ------------


@pytest.mark.parametrize("variant", ["monolith", "multiprocess", "distributed"])
def test_crash_recommendations(variant: str, tmp_path: Path) -> None:
    knobs = {"backends": 1} if variant == "multiprocess" else {}
    plan = RunPlan(
        variant=variant,
        scenario="crash-recommendations",
        duration_s=10,
        size="tiny",
        knobs=knobs,
    )
    result = execute(plan, tmp_path, echo=lambda line: None)
    run = result.run_dir
    assert (run / "requests.csv").exists()
    assert validate_run(run) == []  # faults.csv included
    (fault,) = blast.read_faults(run / "faults.csv")
    role = VARIANTS[variant].host_role("recommendations")
    assert (fault.kind, fault.component, fault.role) == ("crash", "recommendations", role)
    assert fault.pids and fault.end is None
    events = [json.loads(line) for line in (run / "lifecycle.jsonl").read_text().splitlines()]
    deaths = [e for e in events if e.get("event") == "exit" and e.get("pid") in fault.pids]
    assert deaths and not deaths[0]["expected"]
    assert deaths[0]["time"] >= fault.start - 0.01
    # it came back: a process of that role first sampled after the kill
    samples = [r for r in _rows(run / "processes.csv") if r["role"] == role]
    seen_before = {int(r["pid"]) for r in samples if float(r["time"]) <= fault.start}
    back = {int(r["pid"]) for r in samples} - seen_before - set(fault.pids)
    assert back, f"no new {role} process after the crash"


# --- the harness restarts the monolith when its master dies --------------------------------


def test_harness_restarts_a_dead_monolith(tmp_path: Path) -> None:
    plan = RunPlan(
        variant="monolith", scenario="steady", duration_s=10, size="tiny", run_id="master-kill"
    )
    results: list[object] = []
    runner = threading.Thread(
        target=lambda: results.append(execute(plan, tmp_path, echo=lambda line: None))
    )
    runner.start()
    roles = tmp_path / "master-kill" / "telemetry" / "roles"
    deadline = time.monotonic() + 60
    masters: list[int] = []
    while not masters and time.monotonic() < deadline:
        masters = harness.pids_of_role(roles, "monolith-master")
        time.sleep(0.2)
    assert masters
    time.sleep(3)  # under load
    killed = time.time()
    os.kill(masters[0], signal.SIGKILL)
    runner.join(timeout=120)
    assert not runner.is_alive()
    (result,) = results
    run = tmp_path / "master-kill"
    assert result.status != "failed", json.loads((run / "meta.json").read_text()).get("error")
    meta = json.loads((run / "meta.json").read_text())
    assert meta["harness_restarts"] == 1
    events = [json.loads(line) for line in (run / "lifecycle.jsonl").read_text().splitlines()]
    kinds = [(e["event"], e["role"]) for e in events if e["role"] == "monolith-master"]
    assert kinds == [("exit", "monolith-master"), ("restart", "monolith-master"),
                     ("ready", "monolith-master")]  # fmt: skip
    ready = next(e for e in events if e["event"] == "ready" and e["role"] == "monolith-master")
    print(f"monolith master killed: back after {ready['downtime_s']:.2f} s")
    ok_after = [
        r
        for r in _rows(run / "requests.csv")
        if float(r["start_time"]) > ready["time"] and r["status"] in ("200", "201")
    ]
    assert ok_after and ready["time"] > killed
