"""The hop micro-benchmark measures every hop against its floor, in rounds, under each server,
with the client and the servers placed on CPUs it chose, not where the scheduler put them.

One small run (50 calls after 5 warm-up, 2 rounds) serves the tests that read a report; the
documented default stays 5 rounds. Speeds are not asserted here: only what is measured, how it
is recorded, and that crossing a process costs more than a method call.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from archlab import cli
from archlab.analysis.runset import RunSet
from archlab.bench import hop
from archlab.figures import latency
from archlab.host import cpus, procs
from variants.edge import servers

ROUNDS = 2
OLD_REPORT: dict[str, Any] = {  # the shape of hop.json before floors and rounds
    "calls": 5000,
    "warmup": 500,
    "size": "small",
    "results": {
        "catalog.get": {
            "in-process": {"p50_us": 0.8, "p99_us": 1.0, "mean_us": 0.8},
            "IPC (Unix socket, msgpack)": {"p50_us": 16.7, "p99_us": 51.8, "mean_us": 20.4},
            "HTTP (loopback TCP, JSON)": {"p50_us": 212.3, "p99_us": 545.5, "mean_us": 234.8},
        }
    },
    "engines": {"skipped": "no Rust engine"},
}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return hop.measure(n=50, warmup=5, rounds=ROUNDS)


def _remote(hops: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in hops.items() if "floor" in s}


def test_every_hop_is_measured_once_per_server_and_client(report: dict[str, Any]) -> None:
    default = servers.DEFAULT_SERVER
    expected = {
        hop.IN_PROCESS,
        hop.VIA_CODEC,
        hop.IPC_HOP,
        *(hop.http_hop(s, default) for s in servers.SERVERS),
        hop.urllib3_hop(default),
    }
    assert report["servers"] == list(servers.SERVERS)
    for call, hops in report["results"].items():
        assert set(hops) == expected, call
        for stats in hops.values():
            assert 0 < stats["p50_us"] <= stats["p99_us"]
            assert stats["mean_us"] > 0
        in_process = hops[hop.IN_PROCESS]["p50_us"]
        for name, stats in _remote(hops).items():
            assert stats["p50_us"] > in_process, (call, name)
        by_client = {s["client"].split()[0]: s for s in _remote(hops).values() if "server" in s}
        assert by_client["urllib3"]["server"] == default


def test_floors_exist_for_both_transports_and_every_remote_row_is_quoted_against_one(
    report: dict[str, Any],
) -> None:
    floors = report["floors"]
    assert set(floors) == {"unix", "tcp"}
    for floor in floors.values():
        assert 0 < floor["p50_us"] <= floor["p99_us"]
        assert floor["frame_bytes"] > 5  # a header and a body: a catalog.get answer's size
        assert floor["client_cpu_us"] > 0
    for hops in report["results"].values():
        assert hops[hop.IPC_HOP]["floor"] == "unix"
        remote = _remote(hops)
        assert {n for n, s in remote.items() if s["floor"] == "tcp"} == {
            n for n, s in remote.items() if "server" in s
        }  # every HTTP row, and only those
        for name, stats in remote.items():
            assert stats["ratio_to_floor"] > 0, name
            assert stats["client_cpu_us"] > 0, name
        for name in (hop.IN_PROCESS, hop.VIA_CODEC):
            assert "floor" not in hops[name] and "client_cpu_us" not in hops[name]


def test_rounds_are_recorded_and_the_summary_is_their_median(report: dict[str, Any]) -> None:
    assert report["rounds"] == ROUNDS and report["calls"] == 50 and report["warmup"] == 5
    rows = [*report["floors"].values()]
    rows += [s for hops in report["results"].values() for s in hops.values()]
    for stats in rows:
        p50s = stats["p50_us_rounds"]
        assert len(p50s) == ROUNDS and len(stats["p99_us_rounds"]) == ROUNDS
        assert min(p50s) <= stats["p50_us"] <= max(p50s)
    assert "engines" in report  # one round, read by the polyglot analysis as before


def test_the_table_shows_the_floors_the_ratios_and_what_the_spread_is(
    report: dict[str, Any],
) -> None:
    table = hop.format_table(report)
    assert "floor (unix)" in table and "floor (tcp)" in table
    for call, hops in report["results"].items():
        ipc = hops[hop.IPC_HOP]
        line = next(x for x in table.splitlines() if x.startswith(call) and hop.IPC_HOP in x)
        assert f"{ipc['ratio_to_floor']:.1f} unix" in line
    assert f"{ROUNDS} round(s)" in table and hop.SPREAD in table
    assert json.loads(json.dumps(report)) == report  # what --json prints


def test_an_older_single_round_report_still_formats() -> None:
    table = hop.format_table(OLD_REPORT)
    assert "HTTP (loopback TCP, JSON)" in table and "skipped: no Rust engine" in table


def test_the_hop_figure_reads_the_new_report(report: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "hop.json").write_text(json.dumps(report))
    rs = RunSet(tmp_path, {})
    table = latency.hop_table(rs)
    assert set(table["hop"]) >= {"in-process", "+codec", "IPC", "HTTP"}
    assert latency.hop_cost(rs) is not None  # one row per kind: the bars do not collide


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_the_echo_server_answers_what_it_was_sent(kind: str, tmp_path: Path) -> None:
    where = str(tmp_path / "echo.sock") if kind == "unix" else str(procs.free_port())
    cmd = [sys.executable, "-m", "archlab.bench.hop", "--serve-echo", kind, where]
    with procs.running(cmd, name=f"{kind} echo", log_path=tmp_path / "echo.log") as proc:
        if kind == "unix":
            hop.wait_for_socket(Path(where), proc, 30)
        else:
            hop.wait_for_port(int(where), proc, 30)
        client = hop.EchoClient(kind, where)
        try:
            for body in (b"", b"x", bytes(range(256)) * 4, b"y" * 200_000):  # one frame, many recv
                assert client(body) == body
        finally:
            client.close()


def test_bench_hop_refuses_zero_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "hop", "--rounds", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("archlab: error:") and "--rounds" in err and "\n" not in err


def test_every_placement_is_measured_in_every_round_and_the_first_is_the_headline(
    report: dict[str, Any],
) -> None:
    placed = report["placements"]
    assert tuple(placed) == hop.DEFAULT_PLACEMENTS
    assert report["placement"] == hop.DEFAULT_PLACEMENTS[0]
    headline = placed[report["placement"]]
    assert report["floors"] == headline["floors"] and report["results"] == headline["results"]
    for name, part in placed.items():
        assert (part["client_cpus"], part["server_cpus"]) == hop.placement_cpus(
            name, sorted(os.sched_getaffinity(0))
        )
        for hops in part["results"].values():
            assert all(len(s["p50_us_rounds"]) == ROUNDS for s in hops.values())
    table = hop.format_table(report)
    for name in placed:
        assert f"placement {name} " in table


def test_one_cpu_shares_a_cpu_and_two_cpus_separates_the_ends() -> None:
    assert hop.placement_cpus("one-cpu", [2, 3]) == ([2], [2])
    client, server = hop.placement_cpus("two-cpus", [2, 3])
    assert len(client) == len(server) == 1 and client != server
    assert hop.placement_cpus("free", [2, 3]) == ([2, 3], [2, 3])
    with pytest.raises(ValueError, match="2 usable CPUs"):
        hop.placement_cpus("two-cpus", [0])
    with pytest.raises(ValueError, match="unknown placement"):
        hop.placement_cpus("same-node", [0, 1])


def _allowed(pid: int, tid: int) -> list[int]:
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("Cpus_allowed_list:"))
    return cpus.parse_cpu_list(line.split(":", 1)[1].strip())


def test_pinning_a_process_moves_every_one_of_its_threads() -> None:
    usable = sorted(os.sched_getaffinity(0))
    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait, daemon=True) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        moved = cpus.pin_threads(os.getpid(), [usable[-1]])
        tids = [int(t) for t in os.listdir(f"/proc/{os.getpid()}/task")]
        assert moved >= len(workers) + 1
        assert all(_allowed(os.getpid(), tid) == [usable[-1]] for tid in tids)
    finally:
        cpus.pin_threads(os.getpid(), usable)
        stop.set()
    assert _allowed(os.getpid(), threading.get_native_id()) == usable


def test_bench_hop_refuses_a_placement_it_does_not_know(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["bench", "hop", "--placements", "one-cpu,nearby"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("archlab: error:") and "nearby" in err and "\n" not in err
