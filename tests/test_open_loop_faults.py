"""Fault scenarios under an open loop: every intended request of an outage is measured.

A closed loop's users wait with a restarting server, so the seconds after a kill can hold no
request at all and the error rate reads lower than it was (coordinated omission). The fault
scenarios are therefore open loops with a client timeout and a pool that cannot fill during an
outage; their closed-loop forms stay available as `<name>-closed`. What this file holds: the
scenario data, a real locust against a server that never answers (every request ends as an
error row within the timeout, on schedule), and the recovery timeline drawing a bucket without
requests as a gap.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from support import synthetic_manifest, write_csv

from archlab.analysis.runset import load_runset
from archlab.analysis.summary import summarize_run
from archlab.figures import isolation
from archlab.run.generator import locust_command, locust_env
from archlab.rundir import (
    FAULT_COLUMNS,
    FAULTS,
    META,
    RECORD_COLUMNS,
    REQUESTS,
    SUMMARY,
    write_json,
)
from workloads import scenarios
from workloads.scenarios import (
    CLOSED_SUFFIX,
    FAULT_RATE,
    FAULT_SCENARIOS,
    FAULT_TIMEOUT_S,
    LOCUST_TIMEOUT_S,
    LoadSpec,
    get_scenario,
    resolve_load,
)

# --- the scenario data -------------------------------------------------------------------


def test_the_catalogue_names_every_fault_scenario() -> None:
    assert set(FAULT_SCENARIOS) == {
        "gc-pressure",
        "cpu-hog",
        "crash-recommendations",
        "crash-orders",
        "leak-recommendations",
        "slow-notifications",
    }


@pytest.mark.parametrize("name", FAULT_SCENARIOS)
def test_a_fault_scenario_is_an_open_loop_with_a_client_timeout(name: str) -> None:
    scenario = get_scenario(name)
    assert scenario.faults and scenario.loop == "open"
    assert scenario.timeout_s == FAULT_TIMEOUT_S < LOCUST_TIMEOUT_S
    load = resolve_load(scenario)
    assert load.loop == "open" and load.offered_rps == pytest.approx(FAULT_RATE)
    assert load.timeout_s == FAULT_TIMEOUT_S


@pytest.mark.parametrize("name", FAULT_SCENARIOS)
def test_each_fault_scenario_has_a_closed_loop_twin_with_the_same_faults(name: str) -> None:
    scenario, twin = get_scenario(name), get_scenario(name + CLOSED_SUFFIX)
    assert twin.loop == "closed" and twin.users == 20 and twin.wait_time == (0.05, 0.2)
    assert (twin.faults, twin.shop, twin.weights) == (
        scenario.faults,
        scenario.shop,
        scenario.weights,
    )
    load = resolve_load(twin)
    assert load.loop == "closed" and load.timeout_s == LOCUST_TIMEOUT_S  # as before
    assert "closed loop" in twin.description and "open loop" in scenario.description


@pytest.mark.parametrize(
    ("rate", "processes"), [(None, 1), (None, 2), (100.0, 1), (100.0, 4), (400.0, 1)]
)
def test_the_pool_of_a_fault_load_outlasts_its_timeout(rate: float | None, processes: int) -> None:
    """Every stream's pool holds more than its rate x timeout: during an outage each request
    times out before the pool could fill, so the schedule never waits on it."""
    load = resolve_load(get_scenario("crash-orders"), rate=rate, generator_processes=processes)
    assert load.users * load.rate_per_user == pytest.approx(rate or FAULT_RATE)
    assert load.max_in_flight >= 2 * load.rate_per_user * load.timeout_s


def test_an_explicit_pool_and_other_scenarios_keep_what_they_had() -> None:
    assert resolve_load(get_scenario("crash-orders"), max_in_flight=7).max_in_flight == 7
    for name in ("steady", "open", "ramp"):
        load = resolve_load(get_scenario(name))
        assert load.timeout_s == LOCUST_TIMEOUT_S and load.max_in_flight == 100, name
    # --rate turns a closed twin open with locust's timeout, as it did the old fault scenarios
    load = resolve_load(get_scenario("crash-orders-closed"), rate=100.0)
    assert (load.loop, load.timeout_s, load.max_in_flight) == ("open", LOCUST_TIMEOUT_S, 100)


def test_the_timeout_travels_to_the_locustfile_and_old_loads_read_as_before() -> None:
    load = resolve_load(get_scenario("crash-orders"))
    assert LoadSpec.from_json(load.to_json()) == load
    old = json.loads(load.to_json())
    del old["timeout_s"]  # a meta.json written before the field existed
    assert LoadSpec.from_json(json.dumps(old)).timeout_s == LOCUST_TIMEOUT_S


def test_the_shoppers_use_the_loads_timeout() -> None:
    load = resolve_load(get_scenario("crash-orders"))
    code = (
        "import workloads.locustfile as f\n"
        "print(f.OpenLoopShopper.network_timeout, f.OpenLoopShopper.connection_timeout,"
        " f.Shopper.network_timeout)"
    )
    env = {**os.environ, scenarios.ENV_LOAD: load.to_json()}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(FAULT_TIMEOUT_S)] * 3


# --- a real locust against a server that accepts and never answers -------------------------

SILENT_TIMEOUT_S = 0.5
SILENT_RATE = 40.0
SILENT_RUN_S = 4
CATALOG = {"items": [{"id": i, "name": f"sturdy widget {i}"} for i in range(1, 11)]}


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Answers the shoppers' catalogue fetch, then holds every other request unanswered (an
    outage whose connections are accepted, like a restarting server's listen backlog)."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/products?page=1&page_size="):
                body = json.dumps(CATALOG).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            release.wait(60)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    thread = threading.Thread(target=server.serve_forever, name="silent", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_every_request_of_an_outage_is_an_error_row_within_the_timeout(
    silent_server: str, tmp_path: Path
) -> None:
    load = LoadSpec(
        scenario="silent",
        loop="open",
        users=1,
        spawn_rate=10.0,
        rate_per_user=SILENT_RATE,
        max_in_flight=math.ceil(2 * SILENT_RATE * SILENT_TIMEOUT_S),
        timeout_s=SILENT_TIMEOUT_S,
    )
    records = tmp_path / "requests.csv"
    cmd = locust_command(silent_server, load, SILENT_RUN_S)
    out = subprocess.run(
        cmd,
        env=locust_env(records, load, seed=1),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    with records.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["endpoint"] != "/products (setup)"]
    assert rows, out.stderr[-3000:]
    errors = sorted({r["error"] for r in rows})
    print(f"silent server: {len(rows)} requests, status 0, errors {errors}")
    # each one failed without an answer, after the timeout and not much later, and says why
    assert {r["status"] for r in rows} == {"0"}
    assert all("timed out" in r["error"].lower() or "timeout" in r["error"] for r in rows), {
        r["error"] for r in rows
    }
    latency_s = [float(r["latency_ms"]) / 1000 for r in rows]
    assert min(latency_s) >= 0.9 * SILENT_TIMEOUT_S and max(latency_s) < 3 * SILENT_TIMEOUT_S
    # and the schedule kept its pace throughout: no second of the run without requests
    intended = sorted(float(r["intended_time"]) for r in rows)
    span = intended[-1] - intended[0]
    assert len(rows) >= 0.9 * SILENT_RATE * span
    assert max(b - a for a, b in zip(intended, intended[1:], strict=False)) < 2 / SILENT_RATE


# --- the recovery timeline draws an empty bucket as a gap ----------------------------------

T0 = 1_800_000_000.0
RATE = 20  # requests per second
SECONDS = 20
KILL_AT, SILENT = 8.0, (9.0, 12.0)  # a closed loop's stalled seconds: no request at all


def _fault_run(root: Path, tag: str, *, open_loop: bool) -> str:
    """A crash at KILL_AT; the closed loop sends nothing in SILENT, the open loop's requests
    of those seconds all fail (sent on time, by their intended start)."""
    run = root / "runs" / tag
    run.mkdir(parents=True)
    rows = []
    for i in range(SECONDS * RATE):
        t = i / RATE
        down = KILL_AT <= t < SILENT[1]
        if not open_loop and SILENT[0] <= t < SILENT[1]:
            continue
        status, error, ms = (0, "ConnectionRefusedError: refused", 1.0) if down else (200, "", 2.0)
        intended = f"{T0 + t:.6f}" if open_loop else ""
        rows.append((f"{T0 + t + 0.0001:.6f}", "/products/{id}", ms, status, error, intended))
    write_csv(run / REQUESTS, RECORD_COLUMNS, rows)
    fault = (0, "crash", "orders", "monolith", "100", T0 + KILL_AT, "", "{}")
    write_csv(run / FAULTS, FAULT_COLUMNS, [fault])
    loop = {"loop": "open", "offered_rps": float(RATE)} if open_loop else {"loop": "closed"}
    meta = {
        "schema_version": 3,
        "run_id": tag,
        "status": "completed",
        "variant": "monolith" if open_loop else "multiprocess",
        "scenario": {"name": "crash-orders"},
        "warmup_s": 0,
        "duration_s": SECONDS,
        "load": loop,
    }
    write_json(run / META, meta)
    write_json(run / SUMMARY, summarize_run(run))
    return tag


@pytest.fixture(scope="module")
def fault_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault-set")
    tags = [_fault_run(root, "open", open_loop=True), _fault_run(root, "closed", open_loop=False)]
    return synthetic_manifest(root, tags, "fault")


def test_a_bucket_without_requests_is_nan_in_the_timeline(fault_set: Path) -> None:
    runs = {r.path.name: r for r in load_runset(fault_set).of("fault")}
    closed = isolation.timeline(runs["closed"], T0 + KILL_AT)
    silent = [b for b in closed.index if SILENT[0] - KILL_AT <= b < SILENT[1] - KILL_AT]
    assert silent == [1.0, 2.0, 3.0]
    assert closed.loc[silent].isna().all().all()
    assert closed.drop(index=silent).notna().all().all()
    assert closed.index.min() == -KILL_AT and closed.loc[0.0, "error_rate"] == 1.0
    # the open loop's schedule leaves no bucket empty: the outage reads as errors throughout
    opened = isolation.timeline(runs["open"], T0 + KILL_AT)
    assert opened.notna().all().all()
    assert (opened.loc[0.0:3.0, "error_rate"] == 1.0).all()
    assert (opened.loc[4.0:, "error_rate"] == 0.0).all()


def test_the_figure_draws_the_gap_instead_of_a_line_across_it(fault_set: Path) -> None:
    rs = load_runset(fault_set)
    fig = isolation.fig_recovery_timelines(rs)
    assert fig is not None
    error_axis = fig.axes[0]
    lines = {line.get_label(): line for line in error_axis.lines if line.get_label() in
             ("monolith", "multiprocess")}  # fmt: skip
    x = np.asarray(lines["multiprocess"].get_xdata(), dtype=float)
    y = np.asarray(lines["multiprocess"].get_ydata(), dtype=float)
    gap = (x >= SILENT[0] - KILL_AT) & (x < SILENT[1] - KILL_AT)
    assert gap.sum() == 3 and np.isnan(y[gap]).all()  # matplotlib breaks a line at NaN
    assert not np.isnan(np.asarray(lines["monolith"].get_ydata(), dtype=float)).any()


def test_the_summary_flags_the_closed_loops_silent_seconds(fault_set: Path) -> None:
    closed = json.loads((fault_set / "runs" / "closed" / SUMMARY).read_text())
    assert closed["load"]["empty_buckets"]["count"] == 3
    assert closed["load"]["empty_buckets"]["offsets_s"] == [9.0, 10.0, 11.0]
    opened = json.loads((fault_set / "runs" / "open" / SUMMARY).read_text())
    assert opened["load"]["empty_buckets"]["count"] == 0
