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
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import wait_until

from archlab.analysis import blast
from archlab.analysis.runset import VARIANT_ORDER
from archlab.deployers import VARIANTS
from archlab.host import procs
from archlab.run import fault_schedule as harness
from archlab.run.plan import RunPlan
from archlab.run.runner import execute
from archlab.rundir import read_jsonl, read_meta
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
    for name in scenarios.FAULT_SCENARIOS:  # the names: tests/test_open_loop_faults.py
        assert scenarios.get_scenario(name).faults, name
        # and its closed-loop form, for comparison (tests/test_open_loop_faults.py)
        twin = scenarios.get_scenario(name + scenarios.CLOSED_SUFFIX)
        assert twin.faults == scenarios.get_scenario(name).faults, name


@pytest.fixture
def controller_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, dict[str, object]], dict[str, object]]]:
    """`faults.install` in this process, undone afterwards: its handler, thread and global.

    variants.faults has no uninstall (a variant's process installs once and dies with it), so
    the teardown undoes by hand what `install` did: the signal handler is restored, the
    controller's faults are stopped and its loop is ended (it returns when it finds itself in
    another process than the one it was made in), and its thread is joined.
    """
    monkeypatch.setenv(faults.ENV_DIR, str(tmp_path))
    monkeypatch.setattr(faults, "_controller", None)
    previous = signal.getsignal(faults.SIGNAL)
    before = set(threading.enumerate())
    try:
        yield faults.install
    finally:
        signal.signal(faults.SIGNAL, previous)
        controller = faults._controller
        if controller is not None:
            for component in controller.components:
                controller.stop(component)
            controller.pid = -1  # the loop's "forked away" exit
            controller.wake.set()
        started = [
            t for t in threading.enumerate() if t not in before and t.name.startswith("fault")
        ]
        for thread in started:
            thread.join(10)
        assert not [t.name for t in started if t.is_alive()], "the controller outlived the test"


def test_controller_applies_slow_by_file_and_signal(
    tmp_path: Path, controller_here: Callable[[str, dict[str, object]], dict[str, object]]
) -> None:
    class Thing:
        def ping(self) -> str:
            return "pong"

    delay_ms = 80.0
    served = controller_here("tester", {"thing": Thing()})["thing"]
    assert faults.armed(tmp_path)[os.getpid()] == ("tester", ("thing",))
    assert served.ping() == "pong"

    def call_ms() -> float:
        started = time.perf_counter()
        assert served.ping() == "pong"
        return (time.perf_counter() - started) * 1000

    # not slowed before any fault; every call takes the delay once the fault is on; not slowed
    # again once it is off (a sleep never ends early, so ">= delay" is exact; "< delay / 2" is
    # waited for, so one call held up by a busy machine cannot fail it)
    wait_until(lambda: call_ms() < delay_ms / 2, 10, "an unfaulted call is not slowed")
    spec = {"id": 1, "kind": "slow", "params": {"delay_ms": delay_ms}, "active": True, "pids": []}
    faults.write_fault(tmp_path, "thing", spec)
    os.kill(os.getpid(), faults.SIGNAL)
    wait_until(lambda: call_ms() >= delay_ms, 10, "the slow fault delays every call")
    assert min(call_ms() for _ in range(3)) >= delay_ms
    faults.write_fault(tmp_path, "thing", {**spec, "active": False})
    os.kill(os.getpid(), faults.SIGNAL)
    wait_until(lambda: call_ms() < delay_ms / 2, 10, "the ended fault no longer delays calls")


CHILD = """
import sys, time
from variants import faults
faults.install("child", {"thing": object()})
time.sleep(60)
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
    cmd = [sys.executable, "-c", CHILD]
    with procs.running(cmd, name="child", log_path=tmp_path / "child.log", env=env) as child:
        # armed: its handler is installed (install arms after setting it), so the signal is safe
        wait_until(lambda: child.pid in faults.armed(tmp_path), 30, "the child arms")
        spec = {"id": 0, "kind": kind, "params": params, "active": True, "pids": [child.pid]}
        faults.write_fault(tmp_path, "thing", spec)
        os.kill(child.pid, faults.SIGNAL)
        assert child.popen.wait(timeout=30) == -dies_of, child.log_tail()


# --- every kind takes effect in a real run (multiprocess: one role per fault) -------------

KINDS_RUN_S = 16
# One fault of each non-crash kind, one after the other (in the monolith they share a process,
# so overlapping windows would blur which fault did what); each test's "before" sees only the
# faults that cannot disturb what it measures (slow first: the hog would slow requests too).
KINDS = Scenario(
    name="test-fault-kinds",
    description="one fault of each non-crash kind, in turn, each in the component's process",
    weights=scenarios.STEADY_MIX,
    users=10,
    spawn_rate=10.0,
    wait_time=(0.02, 0.1),
    faults=(
        FaultSpec("slow", "recommendations", at=0.15, duration=0.15, params={"delay_ms": 150}),
        FaultSpec("hog", "orders", at=0.3, duration=0.2),
        FaultSpec("gc", "notifications", at=0.5, duration=0.2),
        FaultSpec(
            "leak",
            "inventory",
            at=0.7,
            duration=0.2,
            params={"rate_mb_s": 60.0, "limit_mb": 150.0, "on_limit": "keep"},
        ),
    ),
)


@pytest.fixture(scope="module", params=list(VARIANT_ORDER), ids=str)
def kinds_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of each kind of deployer (the three ends of the migration path) under the four
    non-crash faults (the same plan for each). That every placement puts the fault on the
    callee's side is tests/test_placement.py's; the crash of each placement, test_blast_shape's."""
    variant: str = request.param
    results = tmp_path_factory.mktemp(f"fault-kinds-{variant}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(scenarios.SCENARIOS, KINDS.name, KINDS)
        plan = RunPlan(
            variant=variant,
            scenario=KINDS.name,
            duration_s=KINDS_RUN_S,
            size="tiny",
            knobs={"backends": 1} if variant == "multiprocess" else {},
            sample_interval_s=0.5,
        )
        result = execute(plan, results, echo=lambda line: None)
    assert result.status == "completed"
    return result.run_dir


def _role(run_dir: Path, component: str) -> str:
    """The role whose processes host `component` in the run's variant."""
    return VARIANTS[read_meta(run_dir)["variant"]].host_role(component)


def _fault(run_dir: Path, kind: str) -> tuple[float, float, dict[str, float]]:
    """The run's fault of `kind`: its window (epoch seconds) and the parameters it applied."""
    row = next(f for f in blast.read_faults(run_dir / "faults.csv") if f.kind == kind)
    assert row.end is not None and row.pids, row
    return row.start, row.end, json.loads(row.params)


def test_faults_csv_records_every_fault(kinds_run: Path) -> None:
    rows = blast.read_faults(kinds_run / "faults.csv")
    assert [(r.kind, r.component, r.role) for r in rows] == [
        (f.kind, f.component, _role(kinds_run, f.component)) for f in KINDS.faults
    ]
    for r, spec in zip(rows, KINDS.faults, strict=True):
        planned_s = spec.duration * KINDS_RUN_S
        assert r.end is not None and 0.5 * planned_s < r.end - r.start < 1.25 * planned_s
        assert json.loads(r.params) == {**faults.DEFAULT_PARAMS[r.kind], **spec.params}
    meta = read_meta(kinds_run)
    assert len(meta["faults"]) == 4


def _samples(run_dir: Path, role: str) -> list[dict[str, str]]:
    return [r for r in _rows(run_dir / "processes.csv") if r["role"] == role]


def test_leak_grows_memory(kinds_run: Path) -> None:
    start, _, params = _fault(kinds_run, "leak")
    rss = [
        (float(r["time"]), int(r["rss_bytes"]))
        for r in _samples(kinds_run, _role(kinds_run, "inventory"))
    ]
    before = max(b for t, b in rss if t <= start)
    peak = max(b for t, b in rss)
    print(f"leak: inventory RSS {before / 2**20:.0f} MiB -> {peak / 2**20:.0f} MiB")
    # it kept (at least half of) what it was told to keep before stopping at its limit
    assert peak - before > 0.5 * params["limit_mb"] * 2**20


def _cpu_rate(samples: list[tuple[float, float]]) -> float:
    """Cores used between the first and the last of (time, cumulative CPU seconds) samples."""
    (t0, c0), (t1, c1) = samples[0], samples[-1]
    return (c1 - c0) / (t1 - t0)


def test_hog_raises_cpu(kinds_run: Path) -> None:
    start, end, params = _fault(kinds_run, "hog")
    cpu = [(float(r["time"]), float(r["cpu_user_s"]) + float(r["cpu_system_s"])) for r in
           _samples(kinds_run, _role(kinds_run, "orders"))]  # fmt: skip
    before = [(t, c) for t, c in cpu if t <= start]
    during = [(t, c) for t, c in cpu if start + 1 <= t <= end]
    assert len(before) >= 2 and len(during) >= 2
    # both rates measured in this run, from sample to sample (the start-up's CPU left out)
    baseline, share = _cpu_rate(before), _cpu_rate(during)
    print(f"hog: orders CPU {baseline:.2f} cores before, {share:.2f} cores during")
    # the hog, not the load, is what burns the CPU: several times the process's own baseline,
    # and a good part of the duty it was told to hold (a quarter: a busy 2-CPU machine shares)
    assert share > 3 * baseline
    assert share > params["duty"] / 4


def test_gc_fault_forces_full_collections(kinds_run: Path) -> None:
    start, end, params = _fault(kinds_run, "gc")
    role = _role(kinds_run, "notifications")
    rows = [r for r in _rows(kinds_run / "gc.csv") if r["role"] == role]
    full = [float(r["start"]) for r in rows if r["generation"] == "2"]
    during = sum(start <= t <= end for t in full)
    before = sum(t < start for t in full)
    print(f"gc: notifications full collections {before} before, {during} during")
    # at least half the collections it was told to force, and far more than without it
    assert during >= 0.5 * (end - start) / params["collect_every_s"]
    assert during > 5 * max(1, before)


def test_slow_adds_latency(kinds_run: Path) -> None:
    start, end, params = _fault(kinds_run, "slow")
    recs = [
        (float(r["start_time"]), float(r["latency_ms"]))
        for r in _rows(kinds_run / "requests.csv")
        if r["endpoint"] == "/products/{id}/recommendations" and r["status"] == "200"
    ]
    before = [ms for t, ms in recs if t < start]
    during = [ms for t, ms in recs if start + 0.5 <= t <= end]
    # the load starts with the run, so a loaded machine can leave the first seconds thin
    assert len(before) >= 3 and len(during) >= 3, (len(before), len(during))
    print(
        f"slow: recommendations p50 {statistics.median(before):.1f} ms before, "
        f"{statistics.median(during):.1f} ms during"
    )
    delay_ms = params["delay_ms"]
    # each call during the fault sleeps the delay first: the median cannot be below it; before
    # the fault the typical call took less than half of it, so the jump is the fault's
    assert statistics.median(during) >= delay_ms
    assert statistics.median(before) < delay_ms / 2


# --- the harness restarts the monolith when its master dies --------------------------------


def test_harness_restarts_a_dead_monolith(tmp_path: Path) -> None:
    plan = RunPlan(
        variant="monolith", scenario="steady", duration_s=10, size="tiny", run_id="master-kill"
    )
    run = tmp_path / "master-kill"
    outcome: list[object] = []  # the RunResult, or what execute raised

    def run_it() -> None:
        try:
            outcome.append(execute(plan, tmp_path, echo=lambda line: None))
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not the thread
            outcome.append(exc)

    runner = threading.Thread(target=run_it, name="run")
    runner.start()
    try:
        roles = run / "telemetry" / "roles"
        masters = wait_until(
            lambda: harness.pids_of_role(roles, "monolith-master"), 60, "the master declares"
        )

        def answered() -> bool:
            requests = run / "requests.csv"
            return requests.exists() and any(r["status"] == "200" for r in _rows(requests))

        wait_until(answered, 60, "the load is answered")  # killed under load
        killed = time.time()
        os.kill(masters[0], signal.SIGKILL)
    finally:
        runner.join(timeout=180)  # the run ends by itself: a 10 s load, then its cleanup
    assert not runner.is_alive(), "the run did not end"
    (result,) = outcome
    assert not isinstance(result, BaseException), repr(result)
    meta = read_meta(run)
    assert result.status != "failed", meta.get("error")
    assert meta["harness_restarts"] == 1
    events = read_jsonl(run / "lifecycle.jsonl")
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
