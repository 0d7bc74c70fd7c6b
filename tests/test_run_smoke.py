"""The harness end to end: a short real run of every placement, interruption, process cleanup.

Each named placement (archlab.deployers.VARIANTS, so a new placement is covered by itself) gets
one short profiled run; the tests check that it wrote every file of the results schema, that
every role the variant declared has GC records and was seen by the process sampler, and that
the summary's percentiles agree with an independent computation on the same raw records.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from support import CliRun, run_cli, wait_until, watching

from archlab import cli
from archlab.analysis import validate
from archlab.analysis.records import read_records
from archlab.analysis.runset import VARIANT_ORDER
from archlab.analysis.summary import ALL, PERCENTILES
from archlab.deployers import VARIANTS
from archlab.host import procs
from archlab.measure.sampler import ROOT_ROLE, UNLABELLED_ROLE
from archlab.run.plan import parse_duration
from archlab.rundir import COMPLETED_FILES, SCHEMA_VERSION, make_run_dir, read_meta
from workloads.scenarios import SCENARIOS, TASKS

ENDPOINTS = {
    "/products (setup)",
    "/products?q",
    "/products/{id}",
    "/products/{id}/recommendations",
    "POST /orders",
    "/orders/{id}",
}


def archlab(log_dir: Path, *args: str) -> CliRun:
    """The CLI in its own group, bounded; it must leave no process behind."""
    out = run_cli(args, timeout_s=240, log_path=log_dir / f"archlab-{uuid.uuid4().hex[:8]}.log")
    assert out.killed == [], f"left behind: {out.killed}\n{out.output[-3000:]}"
    return out


def assert_nothing_left(meta: dict) -> None:
    """No process of the run's groups survives and nothing listens on its port."""
    for name, info in meta["processes"].items():
        assert procs.group_members(info["pgid"]) == [], f"{name} group still has processes"
        if psutil.pid_exists(info["pid"]):
            assert psutil.Process(info["pid"]).status() == psutil.STATUS_ZOMBIE, name
    assert not procs.port_in_use(urlsplit(meta["base_url"]).port)


SMOKE_DURATION_S = 8
LAUNCHERS = list(VARIANT_ORDER)
"""One placement per launcher (the steps between them start the same way): what a SIGKILL of
the CLI leaves behind is the launcher's, not the placement's."""


@pytest.fixture(scope="module", params=list(VARIANTS), ids=str)
def smoke_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """One short profiled run of each variant (tiny dataset, 10 users, 8 s)."""
    variant: str = request.param
    results = tmp_path_factory.mktemp(f"runs-{variant}")
    args = (
        f"run --variant {variant} --scenario steady --duration {SMOKE_DURATION_S}s --users 10 "
        "--size tiny --profile --sample-interval 0.5"
    )
    out = archlab(results, *args.split(), "--run-id", "smoke", "--results-dir", str(results))
    assert out.returncode == 0, out.output[-4000:]
    return results / "smoke", out.output


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_writes_every_file(smoke_run: tuple[Path, str]) -> None:
    run_dir, stdout = smoke_run
    for name in COMPLETED_FILES[SCHEMA_VERSION]:
        assert (run_dir / name).is_file(), name
    assert (run_dir / "state").is_dir()
    assert not (run_dir / "telemetry").exists()  # merged into gc.csv / roles.csv
    assert "ALL" in stdout and str(run_dir) in stdout
    assert validate.validate_run(run_dir) == []


def test_meta(smoke_run: tuple[Path, str]) -> None:
    run_dir = smoke_run[0]
    meta = json.loads((run_dir / "meta.json").read_text())
    variant = meta["variant"]
    assert meta["schema_version"] == SCHEMA_VERSION == 3
    assert meta["run_id"] == "smoke"
    assert meta["status"] == "completed"
    assert set(meta["knobs"]) == set(VARIANTS[variant].knobs)
    placement = VARIANTS[variant].placement
    assert placement is not None
    assert meta["placement"] == json.loads(json.dumps(placement.describe()))
    assert meta["placement_file"] == str(placement.path)
    assert meta["variant_module"] == VARIANTS[variant].module
    assert meta["server_telemetry"] == "collected" and "target" not in meta
    assert meta["scenario"]["name"] == "steady"
    assert set(meta["scenario"]["weights"]) <= set(TASKS)
    assert (meta["seed"], meta["dataset_size"], meta["duration_s"], meta["users"]) == (
        1,
        "tiny",
        SMOKE_DURATION_S,
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
    assert meta["load"]["loop"] == "closed" and meta["telemetry"]["gc"] is True
    pinning = meta["cpu_pinning"]
    assert {"server", "generator", "shared", "generator_processes"} <= set(pinning)
    if len(machine["usable_cpus"]) < 4:  # a small machine says plainly that CPUs are shared
        assert pinning["shared"] and any("share" in n for n in meta["notes"])


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
    assert summary["generator"]["cpu_s"] > 0
    server = summary["server"]["total"]
    assert server["cpu_s"] > 0 and server["cpu_ms_per_request"] > 0
    assert server["pss_peak_bytes"] > 0 and server["uss_peak_bytes"] > 0
    assert server["rss_peak_bytes"] >= server["pss_peak_bytes"] >= server["uss_peak_bytes"]
    windows = summary["windows"]["rows"]
    assert windows and sum(w["endpoints"][ALL]["count"] for w in windows) == endpoints[ALL]["count"]


def test_ledger_and_invariants(smoke_run: tuple[Path, str]) -> None:
    """Every acknowledged order is in the ledger, and the invariants hold after the run."""
    run_dir, stdout = smoke_run
    ledger = _csv_rows(run_dir / "ledger.csv")
    assert ledger, "no order was acknowledged"
    created = [r for r in read_records(run_dir / "requests.csv") if r.endpoint == "POST /orders"]
    assert len(ledger) == sum(r.status == 201 for r in created)
    assert len({r["idempotency_key"] for r in ledger}) == len(ledger)
    report = json.loads((run_dir / "invariants.json").read_text())
    assert report["ok"], report
    assert all(report["checks"].values())
    assert report["counts"]["acknowledged"] == len(ledger)
    assert report["counts"]["stored_orders"] >= len(ledger)
    assert report["outbox"]["drained"] and report["notifications_verified"]
    assert report["counts"]["notifications_sent"] == report["counts"]["stored_orders"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["invariants"]["ok"]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["invariants"]["ok"] and meta["outbox_drain"]["drained"]
    assert "invariants: ok" in stdout


def test_schema_3_requires_the_ledger_and_the_invariants(
    smoke_run: tuple[Path, str], tmp_path: Path
) -> None:
    run_dir = tmp_path / "smoke"
    shutil.copytree(smoke_run[0], run_dir, ignore=shutil.ignore_patterns("state"))
    (run_dir / "ledger.csv").unlink()
    (run_dir / "invariants.json").unlink()
    problems = validate.validate_run(run_dir)
    assert any("ledger.csv" in p for p in problems)
    assert any("invariants.json" in p for p in problems)
    for name in ("meta.json", "summary.json"):  # a run written before schema 3
        data = json.loads((run_dir / name).read_text())
        (run_dir / name).write_text(json.dumps({**data, "schema_version": 2}))
    assert validate.validate_run(run_dir) == []


def _declared_roles(run_dir: Path) -> dict[int, str]:
    return {int(r["pid"]): r["role"] for r in _csv_rows(run_dir / "roles.csv")}


def test_gc_records_exist_for_every_role(smoke_run: tuple[Path, str]) -> None:
    run_dir = smoke_run[0]
    declared = _declared_roles(run_dir)
    assert declared, "no process of the variant declared a role (variants.telemetry.install)"
    gc_rows = _csv_rows(run_dir / "gc.csv")
    gc_roles = {r["role"] for r in gc_rows}
    assert set(declared.values()) <= gc_roles
    for row in gc_rows:  # every record belongs to a process that declared that role
        assert declared.get(int(row["pid"])) == row["role"], row
        assert float(row["duration_ms"]) >= 0 and row["generation"] in "012"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["gc"]["roles"]) == gc_roles
    assert summary["gc"]["largest_pause"]["duration_ms"] > 0


def test_process_sampler_saw_every_role(smoke_run: tuple[Path, str]) -> None:
    run_dir = smoke_run[0]
    declared = _declared_roles(run_dir)
    samples = _csv_rows(run_dir / "processes.csv")
    last_role = {int(r["pid"]): r["role"] for r in samples}  # a role may be declared late
    meta = json.loads((run_dir / "meta.json").read_text())
    # a process that exits within ~50 ms of declaring its role (a one-shot helper) can exit
    # before the sampler's first look: it is then listed as missed, never silently dropped
    missed = {m["pid"]: m["role"] for m in meta["telemetry"]["sampler_missed"]}
    assert set(declared.values()) <= set(last_role.values()) | set(missed.values())
    for pid, role in declared.items():
        assert last_role.get(pid, missed.get(pid)) == role, pid
    for pid in missed:
        assert not psutil.pid_exists(pid) or pid not in last_role
    unnamed = {p for p, r in last_role.items() if r == UNLABELLED_ROLE}
    assert not unnamed, f"processes without a role: {unnamed}"
    assert last_role.get(meta["processes"]["server"]["pid"]) in (*declared.values(), ROOT_ROLE)
    for row in samples:
        assert int(row["rss_bytes"]) > 0 and float(row["cpu_user_s"]) >= 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(declared.values()) & set(summary["server"]["roles"])


def _nearest_rank(values: list[float], pct: float) -> tuple[float, float]:
    """The nearest-rank percentile and the value one rank below (HDR rounds the rank)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[max(0, rank - 2)], ordered[rank - 1]


def test_percentiles_agree_with_an_independent_computation(smoke_run: tuple[Path, str]) -> None:
    run_dir = smoke_run[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    start = summary["window"]["start"]
    with (run_dir / "requests.csv").open(newline="") as fh:  # parsed here, not by archlab
        rows = [r for r in csv.DictReader(fh) if float(r["start_time"]) >= start]
    by_endpoint: dict[str, list[float]] = {ALL: []}
    for r in rows:
        by_endpoint.setdefault(r["endpoint"], []).append(float(r["latency_ms"]))
        by_endpoint[ALL].append(float(r["latency_ms"]))
    assert set(by_endpoint) == set(summary["endpoints"])
    for name, values in by_endpoint.items():
        lat = summary["endpoints"][name]["latency_ms"]
        assert summary["endpoints"][name]["count"] == len(values)
        assert lat["max"] == pytest.approx(max(values), abs=1e-3)
        assert lat["min"] == pytest.approx(min(values), abs=1e-3)
        for key, pct in PERCENTILES.items():
            below, exact = _nearest_rank(values, pct)
            # HDR: 3 significant digits (0.1%), microsecond resolution, rank rounded
            assert below * (1 - 1e-3) - 2e-3 <= lat[key] <= exact * (1 + 1e-3) + 2e-3, (name, key)


def test_profile_is_written_or_its_failure_explained(smoke_run: tuple[Path, str]) -> None:
    run_dir = smoke_run[0]
    profile = json.loads((run_dir / "meta.json").read_text())["profile"]
    assert profile["enabled"] is True
    if profile["status"] != "ok":  # e.g. no ptrace permission: reported, the run still completes
        assert profile["status"] in ("failed", "unavailable") and profile["error"]
        pytest.skip(f"py-spy could not profile on this machine: {profile['error'][:200]}")
    speedscope = json.loads((run_dir / "profile" / "profile.speedscope.json").read_text())
    assert speedscope["profiles"]
    top = _csv_rows(run_dir / "profile" / "top_frames.csv")
    assert top and {r["role"] for r in top} <= set(_declared_roles(run_dir).values()) | {ROOT_ROLE}
    for row in top:
        assert 0 < float(row["self_share"]) <= float(row["total_share"]) <= 1


def test_compare_two_runs(smoke_run: tuple[Path, str], tmp_path: Path) -> None:
    run_dir = smoke_run[0]
    md, table = tmp_path / "cmp.md", tmp_path / "cmp.csv"
    args = ("compare", str(run_dir), str(run_dir), "--markdown", str(md), "--csv", str(table))
    out = archlab(tmp_path, *args)
    assert out.returncode == 0, out.output
    assert "throughput req/s" in out.output and "GC pause max ms" in out.output
    assert "GC pause total ms (collections)" in out.output
    rows = list(csv.reader(table.open()))
    assert rows[0] == ["measure", "smoke", "smoke"]
    measures = {r[0]: r[1:] for r in rows}
    assert measures["p99 ms ALL"][0] == measures["p99 ms ALL"][1] != "-"
    assert measures["server CPU ms/request"][0] != "-"
    assert md.read_text().startswith("| measure |")


def test_no_process_left_behind(smoke_run: tuple[Path, str]) -> None:
    meta = json.loads((smoke_run[0] / "meta.json").read_text())
    assert {"server", "locust"} <= set(meta["processes"])
    assert_nothing_left(meta)


def test_summarize_recomputes_the_same_summary(smoke_run: tuple[Path, str]) -> None:
    run_dir = smoke_run[0]
    before = json.loads((run_dir / "summary.json").read_text())
    out = archlab(run_dir.parent, "summarize", str(run_dir))
    assert out.returncode == 0, out.output
    assert "ALL" in out.output
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
    with watching(proc.pid):  # whatever fails below, the stubborn pair is killed
        try:
            wait_until(lambda: len(procs.group_members(proc.pgid)) >= 2, 20, "both are up")
        finally:
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
    assert cmd[cmd.index("--placement") + 1] == str(spec.placement.path)  # type: ignore[union-attr]
    assert cmd[cmd.index("--threads") + 1] == "4"
    assert cmd[cmd.index("--workers") + 1] == str(spec.knobs["workers"].default)
    with pytest.raises(ValueError, match="no knob"):
        spec.resolve_knobs({"shards": 2})


def test_scenarios_are_valid() -> None:
    assert "steady" in SCENARIOS
    for scenario in SCENARIOS.values():
        assert set(scenario.weights) <= set(TASKS)
        assert scenario.users > 0 and scenario.spawn_rate > 0


@pytest.mark.parametrize("variant", LAUNCHERS)
def test_a_killed_cli_leaves_no_process_of_the_lab_behind(tmp_path: Path, variant: str) -> None:
    """SIGKILL of `archlab run` mid-load (no cleanup can run): the kernel stops what it started.

    Everything below the CLI at the moment of the kill (the variant's whole family, locust) ends
    by itself and the variant's port is free again.
    """
    args = f"run --variant {variant} --duration 60s --users 3 --run-id killed --results-dir"
    cmd = [sys.executable, "-m", "archlab.cli", *args.split(), str(tmp_path)]
    proc = procs.start(cmd, name="archlab", log_path=tmp_path / "cli.log")
    run_dir = tmp_path / "killed"
    with watching(proc.pid) as tree:
        try:
            wait_until(
                lambda: (
                    proc.popen.poll() is not None
                    or "locust" in read_meta(run_dir).get("processes", {})
                ),
                120,
                "the load started",
            )
            assert proc.popen.poll() is None, (tmp_path / "cli.log").read_text()[-3000:]
            wait_until(lambda: (run_dir / "requests.csv").stat().st_size > 100, 60, "requests")
            tree.look()
            started = [p.pid for p in tree.alive()]
            meta = read_meta(run_dir)
            os.kill(proc.pid, signal.SIGKILL)
            proc.popen.wait(timeout=10)
            killed_at = time.monotonic()
            wait_until(lambda: not tree.alive(), 10, f"every process of {started} ends")
            print(f"{variant}: {len(started)} processes gone {time.monotonic() - killed_at:.1f} s")
        finally:
            procs.stop(proc, grace_s=1)
    assert len(started) >= 2  # at least the variant's top process and locust
    assert not procs.port_in_use(urlsplit(meta["base_url"]).port)


@pytest.mark.parametrize("variant", LAUNCHERS)
def test_a_killed_serve_leaves_nothing_but_a_folder_the_next_serve_reaps(
    tmp_path: Path, variant: str
) -> None:
    port = procs.free_port()
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "archlab.cli", "serve", variant, "--port", str(port)]
    proc = procs.start(cmd, name="serve", log_path=log)
    with watching(proc.pid) as tree:
        try:
            wait_until(
                lambda: proc.popen.poll() is not None or "is ready" in log.read_text(), 120, "ready"
            )
            assert proc.popen.poll() is None, log.read_text()[-3000:]
            text = log.read_text()
            top = int(text.split("top process: pid ")[1].split()[0])
            tree.look()
            assert top in tree.seen  # the pid it printed is its variant's top process
            folder = Path(text.split("(state in ")[1].split(")")[0]).parent
            assert folder.is_dir()
            os.kill(proc.pid, signal.SIGKILL)
            proc.popen.wait(timeout=10)
            wait_until(lambda: not tree.alive(), 10, "the variant ends with its serve")
            wait_until(lambda: not procs.port_in_use(port), 10, f"port {port} is free")
        finally:
            procs.stop(proc, grace_s=1)
    assert folder.is_dir()  # SIGKILL: nobody could remove it ...
    assert folder in cli._reap_serve_folders() and not folder.exists()  # ... the next serve does


def test_locust_keeps_its_own_report_and_stats(smoke_run: tuple[Path, str]) -> None:
    """locust's HTML report and stats CSVs (--html, --csv) are kept beside ours, for
    cross-checking: the same endpoints, never more requests than the recorder saw (locust stops
    counting when the run time is up; the recorder still writes responses that arrive then)."""
    from archlab.rundir import LOCUST_FAILURES, LOCUST_HTML, LOCUST_STATS, LOCUST_STATS_HISTORY

    run_dir = smoke_run[0]
    for name in (LOCUST_HTML, LOCUST_STATS, LOCUST_STATS_HISTORY, LOCUST_FAILURES):
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    assert "<html" in (run_dir / LOCUST_HTML).read_text()[:2000].lower()
    ours: dict[str, int] = {}
    for record in read_records(run_dir / "requests.csv"):
        ours[record.endpoint] = ours.get(record.endpoint, 0) + 1
    theirs = {  # locust names a request by its path and shows the method apart
        (row["Name"] if row["Type"] == "GET" else f"{row['Type']} {row['Name']}"): int(
            row["Request Count"]
        )
        for row in _csv_rows(run_dir / LOCUST_STATS)
        if row["Name"] != "Aggregated"
    }
    # a rare endpoint (an order read back) may have been answered only after locust stopped
    # counting, so locust's names are some of ours, and the busiest of ours is among them
    assert theirs and set(theirs) <= set(ours), (theirs, ours)
    assert max(ours, key=lambda name: ours[name]) in theirs, (theirs, ours)
    assert all(0 < theirs[name] <= ours[name] for name in theirs), (theirs, ours)


def test_locusts_own_files_are_optional() -> None:
    """Runs made before locust's report was kept (the committed reference) stay valid."""
    from archlab.rundir import LOCUST_HTML, LOCUST_STATS, SUPPORTED_VERSIONS

    for version in SUPPORTED_VERSIONS:
        assert not {LOCUST_HTML, LOCUST_STATS} & set(COMPLETED_FILES[version])
    reference = Path(__file__).resolve().parents[1] / "results/reference/runs/latency-monolith-r1"
    assert not (reference / LOCUST_HTML).exists()
    assert validate.validate_run(reference) == []


def test_the_locust_command_writes_its_report_into_the_run_dir(tmp_path: Path) -> None:
    from archlab.run.generator import locust_command
    from archlab.rundir import LOCUST_CSV_PREFIX, LOCUST_HTML
    from workloads.scenarios import get_scenario, resolve_load

    load = resolve_load(get_scenario("steady"))
    cmd = locust_command("http://127.0.0.1:1", load, 30, run_dir=tmp_path)
    assert cmd[cmd.index("--html") + 1] == str(tmp_path.resolve() / LOCUST_HTML)
    assert cmd[cmd.index("--csv") + 1] == str(tmp_path.resolve() / LOCUST_CSV_PREFIX)
    assert "--only-summary" in cmd  # no periodic stats in locust.log, only the final table
    assert "--html" not in locust_command("http://127.0.0.1:1", load, 30)
