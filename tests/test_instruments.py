"""The instruments: open-loop correction, ramps, telemetry, samplers, profiles, CPUs, validate.

The live tests drive the real locustfile against a test double (an HTTP server in this test
process, loopback only) rather than a variant, so the server's behaviour is known exactly: the
open-loop test stalls it once for a known time and checks that the corrected latency shows the
stall while the observed latency hides it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import wait_until

from archlab.analysis import validate
from archlab.analysis.compare import compare_rows, format_csv, format_markdown, format_text, headers
from archlab.analysis.records import RECORD_COLUMNS, Record, read_records
from archlab.analysis.summary import ALL, load_stats, summarize, summarize_processes
from archlab.analysis.summary import ProcSample as PS
from archlab.host import procs
from archlab.host.cpus import format_cpu_list, parse_cpu_list, plan_cpus
from archlab.measure import gcdata
from archlab.measure import profiler as profiler_module
from archlab.measure.profiler import ProfilePlan, Profiler, find_py_spy, parse_window, top_frames
from archlab.measure.sampler import ROOT_ROLE, UNLABELLED_ROLE, ParentMap, ProcessSampler
from archlab.run.generator import locust_command, locust_env
from archlab.rundir import (
    ENV_LEDGER,
    ENV_RECORDS,
    PROFILE_DIR,
    SAMPLED_DECLARED,
    SAMPLED_TICK,
    read_meta,
    start_csv,
    write_meta,
)
from variants import telemetry
from workloads.scenarios import SCENARIOS, LoadSpec, get_scenario, resolve_load

# --- a test double: a tiny shop that answers at once, and can stall once --------------------

CATALOG = {"items": [{"id": i, "name": f"red lamp {i}"} for i in range(1, 21)]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no delayed-ACK stalls between header and body writes
    server: StallServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.maybe_stall()
        if self.path.startswith("/products?page=1&page_size="):
            self._send(200, CATALOG)
        else:
            self._send(200, {"id": 1, "name": "red lamp"})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.maybe_stall()
        self._send(201, {"id": 1})


class StallServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.first: float | None = None
        self.stall_after_s: float | None = None
        self.stall_s = 0.0
        self.stalled_at: float | None = None

    def arm(self, after_s: float | None, stall_s: float = 0.0) -> None:
        """Stall the first request that arrives `after_s` after the first one, once."""
        with self.lock:
            self.first, self.stall_after_s, self.stall_s, self.stalled_at = (
                None,
                after_s,
                stall_s,
                None,
            )

    def maybe_stall(self) -> None:
        with self.lock:
            now = time.monotonic()
            if self.first is None:
                self.first = now
            if (
                self.stall_after_s is None
                or self.stalled_at is not None
                or now - self.first < self.stall_after_s
            ):
                return
            self.stalled_at = time.time()
        time.sleep(self.stall_s)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def double() -> Iterator[StallServer]:
    server = StallServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def drive(url: str, load: LoadSpec, duration_s: int, tmp_path: Path) -> list[Record]:
    """Run the real locustfile (headless, its own process group) and return its records."""
    records = tmp_path / "requests.csv"
    start_csv(records)
    cmd = locust_command(url, load, duration_s)
    log = tmp_path / "locust.log"
    with procs.running(
        cmd, name="locust", log_path=log, env=locust_env(records, load, 1), cwd=tmp_path
    ) as loc:
        try:
            code = loc.popen.wait(timeout=duration_s + 60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"locust did not finish:\n{loc.log_tail()}")
    assert code == 0, procs.log_tail(log)
    return read_records(records)


# --- open loop: the coordinated-omission correction ------------------------------------------

STALL_S = 1.0
RATE = 100.0


def test_corrected_latency_reflects_a_stall_that_observed_latency_hides(
    double: StallServer, tmp_path: Path
) -> None:
    # One arrival stream, one request in flight at a time (like a client with one connection):
    # while the server stalls, the schedule's next ~100 requests cannot be sent. Observed latency
    # sees one slow request; corrected latency (from the intended start) sees them all.
    double.arm(after_s=1.5, stall_s=STALL_S)
    load = LoadSpec(
        scenario="open",
        loop="open",
        users=1,
        spawn_rate=10,
        weights={"view": 1},
        rate_per_user=RATE,
        max_in_flight=1,
    )
    records = drive(double.url, load, 5, tmp_path)
    assert double.stalled_at is not None, "the double never stalled"
    scheduled = [r for r in records if r.intended_time is not None]
    assert all(r.endpoint == "/products/{id}" for r in scheduled)
    assert len(scheduled) > 2 * RATE
    stall_ms = STALL_S * 1000
    summary = summarize(scheduled)
    assert summary["corrected"] is True
    observed = summary["endpoints"][ALL]["latency_ms"]
    corrected = summary["endpoints"][ALL]["latency_corrected_ms"]
    # the stall is real: the one request that met it waited the whole stall
    met = max(scheduled, key=lambda r: r.latency_ms)
    assert observed["max"] >= stall_ms and met.latency_ms >= stall_ms
    # observed percentiles hide it: only one request in hundreds was slow
    assert observed["p99"] < stall_ms / 2
    assert sum(r.latency_ms >= stall_ms / 2 for r in scheduled) <= 2
    # the schedule kept its pace through the stall: every arrival due while the server stalled
    # was still sent and recorded, and none of them could be sent before the stall ended, so
    # each one's corrected latency covers at least the rest of the stall after it was due
    stall_end = double.stalled_at + STALL_S
    due = [r for r in scheduled if double.stalled_at <= r.intended_time < stall_end]
    assert abs(len(due) - RATE * STALL_S) <= 2
    for r in due:
        assert r.corrected_ms >= (stall_end - r.intended_time) * 1000 - 1, r
    # corrected percentiles show it: ~RATE x STALL_S requests were held back, up to STALL_S
    assert corrected["p99"] >= 0.8 * stall_ms
    assert corrected["p90"] >= 0.3 * stall_ms
    held_back = [r for r in scheduled if r.corrected_ms >= stall_ms / 2]
    assert len(held_back) >= 0.3 * RATE * STALL_S
    # and only the stall held requests back: none was due before the request that met it
    assert min(r.intended_time for r in held_back) >= met.intended_time
    # the generator's schedule, not the server, lagged: the send lag is the stall
    lag = load_stats(scheduled, load.to_dict(), summary["window"]["seconds"])["send_lag_ms"]
    assert lag["max"] >= 0.8 * stall_ms
    # and the per-window view puts the stall where it happened
    rows = summary["windows"]["rows"]
    worst = max(rows, key=lambda w: w["endpoints"][ALL]["latency_corrected_ms"]["p99"])
    assert worst["start"] <= double.stalled_at < worst["start"] + worst["seconds"] + 1


def test_step_ramp_steps_the_arrival_rate(double: StallServer, tmp_path: Path) -> None:
    double.arm(after_s=None)
    load = LoadSpec(
        scenario="ramp",
        loop="open",
        users=1,
        spawn_rate=10,
        weights={"view": 1},
        rate_per_user=20.0,
        steps=(1, 3),
        step_s=2.0,
        max_in_flight=5,
    )
    assert load.ramp_s == 4
    records = drive(double.url, load, load.ramp_s or 0, tmp_path)
    summary = summarize(records, window_s=load.step_s, steps=load.step_offered())
    rows = summary["windows"]["rows"]
    assert [r.get("offered_rps") for r in rows[:2]] == [20.0, 60.0]
    first, second = (r["endpoints"][ALL]["throughput_rps"] for r in rows[:2])
    print(f"step ramp: {first:.1f} rps offered 20, {second:.1f} rps offered 60")
    # the double answers at once, so each step's throughput follows the rate offered in it
    # (within 30 %: the second step's users spawn during its first window), and the step up
    # in load is the step up in users
    for row in rows[:2]:
        offered = row["offered_rps"]
        assert 0.7 * offered <= row["endpoints"][ALL]["throughput_rps"] <= 1.3 * offered, row
    assert 2 <= second / first <= 4


# --- load shapes ----------------------------------------------------------------------------


def test_scenarios_resolve_to_load_specs() -> None:
    for scenario in SCENARIOS.values():
        spec = resolve_load(scenario)
        assert LoadSpec.from_json(spec.to_json()) == spec
    steady = resolve_load(get_scenario("steady"))
    assert steady.loop == "closed" and steady.offered_rps is None
    opened = resolve_load(get_scenario("steady"), rate=300.0, generator_processes=3)
    assert (opened.loop, opened.users, opened.rate_per_user, opened.offered_rps) == (
        "open",
        3,
        100.0,
        300.0,
    )
    assert resolve_load(get_scenario("open")).offered_rps == 100.0
    assert resolve_load(get_scenario("open"), generator_processes=4).users == 4
    ramp = resolve_load(get_scenario("ramp"))
    assert ramp.ramp_s == len(ramp.steps) * ramp.step_s
    assert [s["offered_rps"] for s in ramp.step_offered()][:2] == [50.0, 100.0]
    closed_ramp = resolve_load(get_scenario("busy"), steps=(5, 10), step_s=3)
    assert closed_ramp.loop == "closed" and closed_ramp.users == 5
    with pytest.raises(ValueError):
        resolve_load(get_scenario("ramp"), rate=10.0)
    with pytest.raises(ValueError):
        resolve_load(get_scenario("steady"), rate=-1.0)


def test_locust_command_uses_the_shape_for_ramps() -> None:
    ramp = resolve_load(get_scenario("ramp"))
    cmd = locust_command("http://127.0.0.1:1", ramp, 80, processes=3)
    assert "-u" not in cmd and "-t" not in cmd
    assert cmd[cmd.index("--processes") + 1] == "3"
    steady = locust_command("http://127.0.0.1:1", resolve_load(get_scenario("steady")), 30)
    assert steady[steady.index("-t") + 1] == "30s" and "--processes" not in steady


# --- records and summaries ------------------------------------------------------------------


def test_old_and_new_request_files_are_readable(tmp_path: Path) -> None:
    old = tmp_path / "v1.csv"
    old.write_text("start_time,endpoint,latency_ms,status,error\n1.0,/a,2.0,200,\n")
    assert read_records(old) == [Record(1.0, "/a", 2.0, 200, "")]
    new = tmp_path / "v2.csv"
    new.write_text(",".join(RECORD_COLUMNS) + "\n1.5,/a,2.0,200,,1.25\n2.0,/b,1.0,200,,\n")
    first, second = read_records(new)
    assert first.intended_time == 1.25 and first.corrected_ms == pytest.approx(252.0)
    assert second.intended_time is None and second.corrected_ms == 1.0
    new.write_text(",".join(RECORD_COLUMNS) + "\n1.5,/a,2.0,200,,1.25\n2.0,/b,1.0,200,,1.9")
    assert len(read_records(new)) == 1  # the last line was cut mid-write


def test_corrected_latency_on_synthetic_records() -> None:
    # 100 requests scheduled every 10 ms; the 50th took 500 ms and held the next ones back.
    records, t = [], 0.0
    for i in range(100):
        intended = i * 0.01
        start = max(intended, t)
        latency = 500.0 if i == 50 else 1.0
        records.append(Record(start, "/x", latency, 200, "", intended))
        t = start + latency / 1000
    summary = summarize(records)
    obs = summary["endpoints"]["/x"]["latency_ms"]
    cor = summary["endpoints"]["/x"]["latency_corrected_ms"]
    assert obs["p90"] == 1.0 and obs["max"] == 500.0
    assert cor["p90"] > 100 and cor["max"] == pytest.approx(500.0, abs=0.01)


def test_windows_cover_every_request() -> None:
    records = [
        Record(100 + i * 0.1, "/a" if i % 2 else "/b", 1.0 + i % 7, 200, "") for i in range(95)
    ]
    summary = summarize(records, window_s=2.0)
    rows = summary["windows"]["rows"]
    assert len(rows) == 5 and rows[-1]["seconds"] < 2.0 + 1e-9
    assert sum(r["endpoints"][ALL]["count"] for r in rows) == 95
    assert sum(r["endpoints"]["/a"]["count"] for r in rows) == summary["endpoints"]["/a"]["count"]


def _sample(t: float, pid: int, role: str, cpu: float, mem: int, created: float = 0.0) -> PS:
    return PS(t, pid, role, created, cpu, cpu / 10, mem * 2, mem, mem + 10, 4, int(t * 10))


def test_process_summary_cpu_per_request_and_memory() -> None:
    # pid 1 uses 0.5 CPU-s/s user + 0.05 sys; pid 2 (another role) starts at t=5.
    samples = [_sample(t, 1, "a", 0.5 * t, 100) for t in range(0, 11)]
    samples += [_sample(t, 2, "b", 0.2 * (t - 5), 50, created=5.0) for t in range(6, 11)]
    out = summarize_processes(samples, start=2.0, end=10.0, requests=80)
    a, b, total = out["roles"]["a"], out["roles"]["b"], out["total"]
    assert a["cpu_s"] == pytest.approx(0.55 * 8, abs=1e-3)
    assert b["cpu_s"] == pytest.approx(0.22 * 5, abs=1e-3)  # counted from its start (t=5)
    assert total["cpu_ms_per_request"] == pytest.approx(1000 * (4.4 + 1.1) / 80, rel=1e-3)
    assert a["uss_peak_bytes"] == 100 and total["uss_peak_bytes"] == 150
    assert total["pss_peak_bytes"] == 170 and total["processes"] == 2


def test_memory_is_summed_over_the_ticks_that_read_it() -> None:
    """USS and PSS come only on memory ticks: a tick without them is not a tick of zero."""
    samples = [_sample(t, 1, "a", 0.1 * t, 100 + t) for t in range(0, 11)]
    samples = [s if s.time % 5 == 0 else s._replace(uss=None, pss=None) for s in samples]
    out = summarize_processes(samples, start=0.0, end=10.0, requests=10)["total"]
    assert out["uss_mean_bytes"] == (100 + 105 + 110) // 3  # t = 0, 5, 10
    assert out["pss_peak_bytes"] == 120 and out["uss_peak_bytes"] == 110
    assert out["rss_mean_bytes"] == 2 * 105  # every tick


def test_a_row_read_between_ticks_is_no_tick_of_its_own() -> None:
    """A process caught just after it declared its role is read alone, between two ticks: its
    CPU counts, but a sum over that one row is no reading of the variant's memory."""
    samples = [_sample(t, 1, "a", 0.1 * t, 100) for t in range(0, 11)]
    samples += [_sample(t, 2, "b", 0.1 * (t - 4), 50, created=4.0) for t in range(5, 11)]
    samples.append(_sample(4.5, 2, "b", 0.05, 40, created=4.0)._replace(tick=False))
    out = summarize_processes(samples, start=0.0, end=10.0, requests=10)
    total = out["total"]
    assert total["uss_mean_bytes"] == (5 * 100 + 6 * 150) // 11  # 11 ticks, not 12
    assert total["rss_mean_bytes"] == 2 * total["uss_mean_bytes"]
    assert out["roles"]["b"]["cpu_s"] == pytest.approx(0.6 * 1.1, abs=1e-3)


def test_the_sampler_marks_the_rows_it_reads_between_ticks(tmp_path: Path) -> None:
    roles_dir = tmp_path / "tele" / "roles"
    env = {**os.environ, telemetry.ENV_DIR: str(tmp_path / "tele")}
    path = tmp_path / "processes.csv"
    late = TREE.replace("kid = ", "time.sleep(2)\nkid = ")  # after the sampler's first tick
    with procs.running([sys.executable, "-c", late], name="tree", env=env) as tree:
        sampler = ProcessSampler(tree.pid, path, interval_s=20.0, roles_dir=roles_dir)
        sampler.start()
        try:  # one tick at the start, then discovery: the helper declares after it
            wait_until(lambda: "helper" in _last_roles(path).values(), 30, "the helper is seen")
        finally:
            sampler.stop()
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert validate.validate_csv(path) == []
    by_time: dict[str, set[str]] = {}
    for r in rows:
        by_time.setdefault(r["time"], set()).add(r["sampled"])
    assert all(len(kinds) == 1 for kinds in by_time.values())  # a time is one tick or none
    assert rows[0]["sampled"] == SAMPLED_TICK and rows[0]["pid"] == str(tree.pid)
    helper = [r for r in rows if r["role"] == "helper"]
    assert helper[0]["sampled"] == SAMPLED_DECLARED
    ticks = {r["time"] for r in rows if r["sampled"] == SAMPLED_TICK}
    assert len(ticks) == 1 and helper[0]["time"] not in ticks


# --- GC telemetry ---------------------------------------------------------------------------

TELEMETRY_CHILD = """
import gc, os, sys, time
from variants import telemetry
telemetry.install("parent")
junk = [[i] for i in range(50_000)]
gc.collect()
pid = os.fork()
if pid == 0:  # the child records nothing until it installs, and never the parent's rows
    gc.collect()
    telemetry.install("child")
    gc.collect(1)
    telemetry.flush()
    os._exit(0)
os.waitpid(pid, 0)
print(pid)
"""


def _run_child(folder: Path, switch: str) -> int:
    """Run TELEMETRY_CHILD with telemetry into `folder`; the child's pid."""
    env = {**os.environ, telemetry.ENV_DIR: str(folder), telemetry.ENV_SWITCH: switch}
    out = subprocess.run(
        [sys.executable, "-c", TELEMETRY_CHILD], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def test_gc_telemetry_per_process_and_role(tmp_path: Path) -> None:
    child = _run_child(tmp_path / "telemetry", "1")
    info = gcdata.collect(tmp_path / "telemetry", tmp_path)
    assert not (tmp_path / "telemetry").exists()  # merged, raw files removed
    assert info["roles_declared"] == ["child", "parent"]
    events = gcdata.read_gc(tmp_path / "gc.csv")
    by_role = {e.role: e for e in events}
    assert set(by_role) == {"parent", "child"}
    assert all((e.role == "child") == (e.pid == child) for e in events)
    parent_full = [e for e in events if e.role == "parent" and e.generation == 2]
    assert parent_full and max(e.duration_ms for e in parent_full) > 0
    assert [e.generation for e in events if e.role == "child"] == [0, 1]  # install's, then ours
    starts = [e.start for e in events]
    assert starts == sorted(starts) and abs(starts[0] - time.time()) < 60
    assert gcdata.read_roles(tmp_path / "roles.csv")[child] == "child"
    summary = gcdata.summarize_gc(events)
    # the largest pauses are whichever collections took longest (on a busy machine a young
    # collection that was descheduled can outlast a full one): compare with the events
    parent = [e for e in events if e.role == "parent"]
    assert summary["roles"]["parent"]["max_pause_ms"] == max(e.duration_ms for e in parent)
    assert summary["roles"]["parent"]["by_generation"]["2"]["max_ms"] == max(
        e.duration_ms for e in parent_full
    )
    largest = max(events, key=lambda e: e.duration_ms)
    assert (summary["largest_pause"]["role"], summary["largest_pause"]["pid"]) == (
        largest.role,
        largest.pid,
    )


def test_gc_telemetry_can_be_switched_off(tmp_path: Path) -> None:
    _run_child(tmp_path, "0")
    assert not list(tmp_path.glob("gc-*.csv"))
    assert sorted(p.read_text().strip() for p in (tmp_path / "roles").iterdir()) == [
        "child",
        "parent",
    ]


# --- the process sampler --------------------------------------------------------------------

TREE = """
import os, subprocess, sys, time
from variants import telemetry
telemetry.install("boss")
kid = subprocess.Popen([sys.executable, "-c",
    "from variants import telemetry; telemetry.install('helper'); import time; time.sleep(30)"])
stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
time.sleep(30)
"""


def _last_roles(path: Path) -> dict[int, str]:
    """pid -> the role of its last row in a processes.csv (being written or not)."""
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {int(r["pid"]): r["role"] for r in csv.DictReader(fh) if r.get("role")}


def test_process_sampler_follows_the_tree_by_role(tmp_path: Path) -> None:
    roles_dir = tmp_path / "tele" / "roles"
    stale = roles_dir / str(os.getpid())  # a file left by an earlier process with a reused pid
    roles_dir.mkdir(parents=True)
    stale.write_text("ghost\n")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    env = {**os.environ, telemetry.ENV_DIR: str(tmp_path / "tele")}
    path = tmp_path / "processes.csv"
    expected = sorted(["boss", "helper", UNLABELLED_ROLE])
    with procs.running([sys.executable, "-c", TREE], name="tree", env=env) as tree:
        sampler = ProcessSampler(tree.pid, path, interval_s=0.2, roles_dir=roles_dir)
        sampler.start()
        try:
            # the helper declares its role some time after it started: wait until it is seen
            wait_until(
                lambda: sorted(_last_roles(path).values()) == expected,
                30,
                "the sampler labels the whole tree",
            )
        finally:
            sampler.stop()
    assert sampler.error is None
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    last = {int(r["pid"]): r["role"] for r in rows}
    assert last[tree.pid] == "boss"
    assert sorted(last.values()) == expected
    assert "ghost" not in last.values()
    for r in rows:
        assert int(r["rss_bytes"]) > 0 and int(r["threads"]) >= 1
    first: dict[str, dict[str, str]] = {}
    for r in rows:
        first.setdefault(r["pid"], r)
    assert all(int(r["pss_bytes"]) > 0 for r in first.values())  # a first row reads memory


def test_memory_comes_every_memory_interval_for_every_process_at_once(tmp_path: Path) -> None:
    """smaps_rollup is the sampler's dearest read: every tick has CPU and RSS, only a memory
    tick (one in three here) USS, PSS and the page split, for every process in it."""
    path = tmp_path / "p.csv"
    tree = [sys.executable, "-c", "import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "time.sleep(60)"]  # fmt: skip
    with procs.running(tree, name="pair") as pair:
        sampler = ProcessSampler(pair.pid, path, interval_s=0.1, memory_interval_s=0.3)
        sampler.start()
        try:

            def ticks() -> dict[str, list[dict[str, str]]]:
                by_time: dict[str, list[dict[str, str]]] = {}
                with path.open(newline="") as fh:
                    for row in csv.DictReader(fh):
                        by_time.setdefault(row["time"], []).append(row)
                return {t: rows for t, rows in by_time.items() if len(rows) == 2}

            wait_until(lambda: path.exists() and len(ticks()) >= 12, 30, "12 ticks of both")
        finally:
            sampler.stop()
    assert sampler.error is None
    both = ticks()
    memory = [t for t, rows in both.items() if any(r["pss_bytes"] for r in rows)]
    for t in memory:
        assert all(int(r["pss_bytes"]) > 0 and int(r["uss_bytes"]) > 0 for r in both[t])
        assert all(r["private_dirty_bytes"] and r["shared_clean_bytes"] for r in both[t])
    for t in set(both) - set(memory):
        assert all(r["uss_bytes"] == r["pss_bytes"] == r["swap_bytes"] == "" for r in both[t])
        assert all(int(r["rss_bytes"]) > 0 and r["cpu_user_s"] for r in both[t])
    assert 2 <= len(memory) <= len(both) // 2  # about one tick in three


def test_a_forked_child_in_its_parents_title_takes_the_role_it_declares(tmp_path: Path) -> None:
    """A child forked from a titled parent wears the parent's title until it declares its own
    role; a sample taken in between must not fix the child's role for good."""
    roles_dir = tmp_path / "tele" / "roles"
    go = tmp_path / "go"
    child = (
        "import os, pathlib, sys, time, setproctitle\n"
        "from variants import telemetry\n"
        "setproctitle.setproctitle(telemetry.process_title('parent'))\n"
        "if os.fork() == 0:\n"
        f"    while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.02)\n"
        "    telemetry.declare_role(pathlib.Path(os.environ[telemetry.ENV_DIR]), 'child')\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, telemetry.ENV_DIR: str(tmp_path / "tele")}
    path = tmp_path / "p.csv"
    with procs.running([sys.executable, "-c", child], name="fork", env=env) as tree:
        sampler = ProcessSampler(tree.pid, path, interval_s=0.1, roles_dir=roles_dir)
        sampler.start()
        try:
            wait_until(
                lambda: path.exists() and sorted(_last_roles(path).values()) == ["parent"] * 2,
                30,
                "both processes sampled in the parent's title",
            )
            go.touch()
            wait_until(
                lambda: sorted(_last_roles(path).values()) == ["child", "parent"],
                30,
                "the child sampled in the role it declared",
            )
        finally:
            sampler.stop()
    assert sampler.error is None


def test_root_is_labelled_root_until_it_declares(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    with procs.running([sys.executable, "-c", "import time; time.sleep(60)"], name="r") as r:
        sampler = ProcessSampler(r.pid, path, interval_s=0.1, roles_dir=tmp_path / "none")
        sampler.start()
        try:

            def root_rows() -> int:
                with path.open(newline="") as fh:
                    return sum(row["pid"] == str(r.pid) for row in csv.DictReader(fh))

            wait_until(lambda: path.exists() and root_rows() >= 3, 30, "three samples of the root")
        finally:
            sampler.stop()
    assert sampler.error is None
    with path.open(newline="") as fh:
        assert {row["role"] for row in csv.DictReader(fh)} == {ROOT_ROLE}


# --- profiles -------------------------------------------------------------------------------


def test_top_frames_per_role() -> None:
    frames = [
        {"name": "leaf", "file": "/x/site-packages/app/mod.py", "line": 3},
        {"name": "mid", "file": "/x/site-packages/app/mod.py", "line": 9},
        {"name": "main", "file": "/x/site-packages/app/mod.py", "line": 1},
        {"name": 'process 7:"python"', "file": "", "line": 0},
        {"name": "leaf", "file": "/x/site-packages/app/mod.py", "line": 4},  # same function
    ]
    speedscope = {
        "shared": {"frames": frames},
        "profiles": [
            {"name": 'Process 7 Thread 7 "Main"', "samples": [[3, 2, 1, 0], [3, 2, 1, 4], [3, 2]]},
            {"name": 'Process 8 Thread 8 ""', "samples": [[2, 1]]},
        ],
    }
    table = top_frames(speedscope, {7: "backend"})
    assert set(table) == {"backend", "pid 8"}
    rows = {r["function"]: r for r in table["backend"]}
    assert rows["leaf"]["self_share"] == pytest.approx(2 / 3, abs=1e-4)  # lines 3 and 4 merged
    assert rows["main"]["self_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert rows["main"]["total_share"] == 1.0
    assert rows["leaf"]["file"] == "app/mod.py"
    assert table["pid 8"][0]["function"] == "mid"


def test_profiling_failures_are_reported_not_raised(tmp_path: Path) -> None:
    assert parse_window("5:20") == (5.0, 20.0)
    with pytest.raises(ValueError):
        parse_window("20:5")
    if find_py_spy() is None:
        pytest.skip("py-spy is not installed: its failure on a dead target cannot be seen")
    # a target that does not exist: py-spy fails, the profiler says so and carries on
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    profiler = Profiler(ProfilePlan(), tmp_path, dead.pid, load_s=2.0)
    try:
        profiler.poll(0.0)
        assert profiler.proc is not None and profiler.info["status"] == "running"
        with contextlib.suppress(subprocess.TimeoutExpired):
            profiler.proc.popen.wait(timeout=30)  # let py-spy fail by itself
    finally:
        info = profiler.finish({})  # stops py-spy if it still runs
    assert info["status"] == "failed"
    assert info["error"].startswith("py-spy wrote no profile"), info
    late = Profiler(ProfilePlan(window=(30.0, 40.0)), tmp_path, os.getpid(), load_s=10.0)
    assert late.finish({})["status"] == "skipped"


def test_py_spy_is_found_next_to_the_interpreter_or_on_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv, on_path = tmp_path / "venv" / "bin", tmp_path / "path"
    venv.mkdir(parents=True)
    on_path.mkdir()
    monkeypatch.setattr(sys, "executable", str(venv / "python"))
    monkeypatch.setenv("PATH", str(on_path))
    assert find_py_spy() is None
    for folder in (on_path, venv):  # the interpreter's own folder wins over PATH
        spy = folder / "py-spy"
        spy.write_text("#!/bin/sh\n")
        spy.chmod(0o755)
        assert find_py_spy() == str(spy)


def test_a_run_without_py_spy_records_why_and_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profiler_module, "find_py_spy", lambda: None)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    profiler = Profiler(ProfilePlan(), run_dir, os.getpid(), load_s=2.0)
    # what the runner does: poll through the load, then finish with the roles it saw
    for elapsed in (0.0, 1.0, 2.0):
        profiler.poll(elapsed)
    assert profiler.proc is None  # nothing was started
    write_meta(run_dir, {"profile": profiler.finish({os.getpid(): "root"})})
    recorded = read_meta(run_dir)["profile"]
    assert recorded["enabled"] is True
    assert recorded["status"] == "unavailable"
    assert recorded["error"].startswith("py-spy not found")
    assert "pip install py-spy" in recorded["error"]  # the hint: how to get it
    assert not (run_dir / PROFILE_DIR).exists()  # no empty profile folder left behind


# --- CPUs -----------------------------------------------------------------------------------


def test_cpu_lists() -> None:
    assert parse_cpu_list("0-3,6, 8-9") == [0, 1, 2, 3, 6, 8, 9]
    assert format_cpu_list([0, 1, 2, 3, 6, 8, 9]) == "0-3,6,8-9"
    for bad in ("", "a", "3-1", "1-"):
        with pytest.raises(ValueError):
            parse_cpu_list(bad)


def test_small_machines_share_cpus_and_say_so() -> None:
    plan = plan_cpus([0, 1])
    assert plan.sut is None and plan.generator is None and plan.shared and plan.processes == 1
    assert "share the same 2 CPU(s)" in plan.notes[0]


def test_larger_machines_pin_disjoint_whole_cores(tmp_path: Path) -> None:
    plan = plan_cpus(list(range(8)), sysfs=tmp_path)  # no topology: each CPU its own core
    assert plan.sut == [0, 1, 2, 3, 4, 5] and plan.generator == [6, 7]
    assert plan.processes == 2 and not plan.shared
    for cpu in range(16):  # 8 cores with SMT siblings n and n+8
        topo = tmp_path / "smt" / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        topo.joinpath("thread_siblings_list").write_text(f"{cpu % 8},{cpu % 8 + 8}\n")
    smt = plan_cpus(list(range(16)), sysfs=tmp_path / "smt")
    assert smt.generator == [6, 7, 14, 15] and smt.processes == 4
    assert not set(smt.sut or []) & set(smt.generator or [])
    explicit = plan_cpus(list(range(4)), sut=[0], processes=1)
    assert explicit.generator == [1, 2, 3] and explicit.processes == 1
    with pytest.raises(ValueError, match="overlap"):
        plan_cpus(list(range(4)), sut=[0, 1], generator=[1, 2])
    with pytest.raises(ValueError, match="within"):
        plan_cpus([0, 1], sut=[5])
    assert plan_cpus(list(range(8)), pin=False).shared


def test_pin_wrapper_sets_the_affinity() -> None:
    cpu = min(os.sched_getaffinity(0))
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    out = subprocess.run(
        [sys.executable, "-m", "archlab.host.pin", str(cpu), "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"[{cpu}]"


# --- comparing runs and the schema ----------------------------------------------------------


def _fake_run(name: str, p99: float, gc_max: float) -> tuple[dict, dict]:
    meta = {"run_id": name, "variant": name.split("-")[0], "knobs": {"threads": 8}, "users": 5}
    summary = {
        "window": {"seconds": 10.0},
        "endpoints": {
            "/a": {"throughput_rps": 5.0, "latency_ms": {"p50": 1.0, "p99": p99, "p99_9": p99}},
            ALL: {
                "throughput_rps": 5.0,
                "errors": 0,
                "error_rate": 0.0,
                "latency_ms": {"p50": 1.0, "p99": p99, "p99_9": p99},
            },
        },
        "server": {"total": {"cpu_ms_per_request": 2.5, "pss_peak_bytes": 2**20}, "roles": {}},
        "gc": {
            "roles": {"backend": {"collections": 3, "total_pause_ms": 4.0, "max_pause_ms": gc_max}}
        },
    }
    return meta, summary


def test_compare_table_formats(tmp_path: Path) -> None:
    runs = [_fake_run("monolith-1", 9.5, 2.0), _fake_run("multi-1", 4.3, 0.5)]
    head, rows = headers(runs), compare_rows(runs)
    measures = dict(rows)
    assert head == ["monolith-1", "multi-1"]
    assert measures["p99 ms /a"] == measures["p99 ms ALL"] == ["9.5", "4.3"]
    assert measures["p50 ms /a"] == ["1.0", "1.0"]
    assert measures["GC pause max ms backend"] == ["2.0", "0.5"]
    assert measures["server CPU ms/request"] == ["2.500", "2.500"]
    assert measures["generator saturated"] == ["-", "-"]
    text = format_text(head, rows)
    assert "monolith-1" in text.splitlines()[0]
    parsed = list(csv.reader(format_csv(head, rows).splitlines()))
    assert parsed[0] == ["measure", *head] and len(parsed) == len(rows) + 1
    md = format_markdown(head, rows).splitlines()
    assert md[0] == "| measure | monolith-1 | multi-1 |" and md[1].startswith("|---|")


def test_schema_validator_finds_problems(tmp_path: Path) -> None:
    run = tmp_path / "r1"
    run.mkdir()
    assert validate.validate_run(run) == [f"{run}: no meta.json"]
    (run / "meta.json").write_text(
        json.dumps({"schema_version": 2, "run_id": "r1", "status": "completed"})
    )
    problems = validate.validate_run(run)
    assert any("missing field 'variant'" in p for p in problems)
    assert any("missing processes.csv" in p for p in problems)
    (run / "gc.csv").write_text("pid,role\n")
    (run / "requests.csv").write_text(",".join(RECORD_COLUMNS) + "\n1.0,/a,-2,200,,\n")
    problems = validate.validate_run(run)
    assert any(p.startswith("gc.csv: header") for p in problems)
    assert any("requests.csv:2: bad latency_ms" in p for p in problems)
    (run / "meta.json").write_text(json.dumps({"schema_version": 9, "run_id": "r1"}))
    assert "schema_version 9" in validate.validate_run(run)[0]


def test_the_recorder_is_given_absolute_paths_whatever_folder_the_harness_runs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """locust runs in the run folder, so a relative `--results-dir` must not reach it as is."""
    monkeypatch.chdir(tmp_path)
    load = LoadSpec(scenario="open", loop="open", users=1, spawn_rate=1, weights={"view": 1})
    env = locust_env(Path("rel/r1/requests.csv"), load, 1, ledger=Path("rel/r1/ledger.csv"))
    assert env[ENV_RECORDS] == str(tmp_path / "rel/r1/requests.csv")
    assert env[ENV_LEDGER] == str(tmp_path / "rel/r1/ledger.csv")


# --- the process tree, walked without reading every process of the machine each tick ------


def _fake_proc(root: Path, parents: dict[int, int]) -> None:
    for d in root.iterdir():
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    for pid, ppid in parents.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "stat").write_bytes(b"%d (a (b) c) S %d 1 1 0" % (pid, ppid))


def test_the_parent_map_finds_descendants_as_they_come_go_and_are_reparented(
    tmp_path: Path,
) -> None:
    tree = ParentMap(str(tmp_path))
    _fake_proc(tmp_path, {1: 0, 10: 1, 11: 10, 12: 11, 20: 1})
    assert tree.descendants(10) == {10, 11, 12}
    _fake_proc(tmp_path, {1: 0, 10: 1, 11: 10, 12: 11, 13: 12, 20: 1})  # a grandchild's child
    assert tree.descendants(10) == {10, 11, 12, 13}
    _fake_proc(tmp_path, {1: 0, 10: 1, 12: 1, 13: 12, 20: 1})  # 11 died: 12 goes to init
    assert tree.descendants(10) == {10}
    _fake_proc(tmp_path, {1: 0, 20: 1})
    assert tree.descendants(10) == set()


def test_the_parent_map_finds_a_reused_pid_at_its_next_full_read(tmp_path: Path) -> None:
    tree = ParentMap(str(tmp_path))
    _fake_proc(tmp_path, {1: 0, 10: 1, 30: 1})
    assert tree.descendants(10) == {10}
    _fake_proc(tmp_path, {1: 0, 10: 1, 30: 10})  # 30 died and its pid went to 10's new child
    seen = [tree.descendants(10) for _ in range(ParentMap.REFRESH_EVERY)]
    assert seen[-1] == {10, 30}


def test_the_parent_map_tells_a_member_by_its_start_so_a_reused_pid_is_another_process(
    tmp_path: Path,
) -> None:
    def stat(pid: int, ppid: int, start: int) -> bytes:
        rest = " ".join(["0"] * 17)  # pgrp ... num_threads, itrealvalue: fields 5 to 21
        return b"%d (x y) S %d %s %d 0 0" % (pid, ppid, rest.encode(), start)

    tree = ParentMap(str(tmp_path))
    for pid, ppid, start in ((1, 0, 5), (10, 1, 700), (11, 10, 900)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_bytes(stat(pid, ppid, start))
    assert tree.descendants(10) == {10, 11}
    assert (tree.start_of(10), tree.start_of(11), tree.start_of(1)) == (700, 900, None)
    (tmp_path / "11" / "stat").write_bytes(stat(11, 10, 1234))  # 11 died, its pid reused
    assert tree.descendants(10) == {10, 11} and tree.start_of(11) == 1234
