"""Blast radius on synthetic records: a fault's window, its effect, and the recovery time."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from archlab import cli
from archlab.analysis import blast, summary
from archlab.analysis.records import RECORD_COLUMNS, Record

T0 = 1_800_000_000.0
RATE = 20  # requests per second per endpoint
DOWN = "/products/{id}/recommendations"
UP = "/products/{id}"


def synthetic(
    seconds: float = 30.0,
    *,
    down: tuple[float, float] | None = None,
    slow: tuple[float, float, float] | None = None,
) -> list[Record]:
    """Two endpoints at RATE req/s, 2 ms each; DOWN fails (status 0) in `down` (s after T0),
    or takes `slow[2]` ms more in `[slow[0], slow[1])`."""
    records = [Record(T0 - 0.5, blast.SETUP_ENDPOINT, 5.0, 200, "")]
    for i in range(int(seconds * RATE)):
        t = T0 + i / RATE
        offset = t - T0
        records.append(Record(t, UP, 2.0 + (i % 7) * 0.1, 200, ""))
        if down and down[0] <= offset < down[1]:
            records.append(Record(t, DOWN, 0.5, 0, "ConnectionRefusedError: refused"))
        elif slow and slow[0] <= offset < slow[1]:
            records.append(Record(t, DOWN, 2.0 + slow[2], 200, ""))
        else:
            records.append(Record(t, DOWN, 2.0 + (i % 5) * 0.1, 200, ""))
    return records


def by_endpoint(rows: list[blast.BlastRow]) -> dict[str, blast.BlastRow]:
    return {row.endpoint: row for row in rows}


def test_a_crash_takes_one_endpoint_down_for_three_seconds() -> None:
    records = synthetic(down=(10.0, 13.0))
    fault = blast.Fault("crash", "recommendations", "recommendations", start=T0 + 10.0)
    rows = by_endpoint(blast.blast(records, [fault], warmup_s=2.0))
    assert set(rows) == {DOWN, UP}  # the setup fetch is not an endpoint
    hit, spared = rows[DOWN], rows[UP]
    assert hit.baseline_source == "pre-fault" and hit.baseline.error_rate == 0
    assert hit.window_source == "records"  # no lifecycle log: until the endpoint recovered
    assert hit.window == pytest.approx((T0 + 10.0, T0 + 13.0))
    assert hit.during.error_rate == pytest.approx(1.0)
    assert hit.recovery_s == pytest.approx(3.0)
    assert spared.during.count > 0 and spared.during.error_rate == 0
    assert spared.recovery_s == 0
    assert spared.during.p99_ms == pytest.approx(spared.baseline.p99_ms, abs=1.0)


def test_the_lifecycle_log_ends_a_crash_window_and_reports_the_restart() -> None:
    records = synthetic(down=(10.0, 13.0))
    fault = blast.Fault("crash", "recommendations", "recommendations", start=T0 + 10.0)
    lifecycle = [
        {"time": T0 + 1.0, "event": "ready", "role": "recommendations"},  # before: ignored
        {"time": T0 + 10.05, "event": "exit", "role": "recommendations"},
        {"time": T0 + 10.2, "event": "restart", "role": "recommendations"},
        {"time": T0 + 10.3, "event": "ready", "role": "catalog"},  # another role
        {"time": T0 + 12.9, "event": "ready", "role": "recommendations"},
    ]
    rows = by_endpoint(blast.blast(records, [fault], warmup_s=2.0, lifecycle=lifecycle))
    hit = rows[DOWN]
    assert hit.window_source == "lifecycle"
    assert hit.restart_s == pytest.approx(0.2) and hit.ready_s == pytest.approx(2.9)
    assert hit.window[1] - hit.window[0] == pytest.approx(2.9)
    assert hit.during.error_rate == pytest.approx(1.0)
    assert hit.recovery_s == pytest.approx(3.0)
    assert rows[UP].during.error_rate == 0


def test_a_slow_fault_with_an_end_raises_p99_until_it_ends() -> None:
    records = synthetic(slow=(10.0, 15.0, 100.0))
    fault = blast.Fault("slow", "recommendations", "recommendations", T0 + 10.0, T0 + 15.0)
    rows = by_endpoint(blast.blast(records, [fault], warmup_s=2.0))
    hit = rows[DOWN]
    assert hit.window_source == "fault"
    assert hit.during.error_rate == 0
    assert hit.during.p99_ms > 100 and hit.baseline.p99_ms < 3
    assert hit.recovery_s == pytest.approx(5.0)
    assert rows[UP].recovery_s == 0


def test_a_fault_that_outlasts_the_records_never_recovers() -> None:
    records = synthetic(seconds=20.0, down=(10.0, 25.0))
    fault = blast.Fault("crash", "recommendations", "recommendations", start=T0 + 10.0)
    tol = blast.Tolerance(max_window_s=8.0)
    hit = by_endpoint(blast.blast(records, [fault], warmup_s=2.0, tol=tol))[DOWN]
    assert hit.recovery_s is None
    assert hit.window_source == "max" and hit.window[1] - hit.window[0] == 8.0


def test_tolerance() -> None:
    tol = blast.Tolerance()
    base = blast.Stats(count=100, errors=1, p99_ms=10.0)
    assert blast.within(blast.Stats(count=50, errors=1, p99_ms=30.0), base, tol)  # 2% <= 1+1 pp
    assert not blast.within(blast.Stats(count=10, errors=1, p99_ms=5.0), base, tol)  # 10%
    assert not blast.within(blast.Stats(count=10, errors=0, p99_ms=30.1), base, tol)  # > 10+20
    slow_base = blast.Stats(count=100, errors=0, p99_ms=100.0)
    assert blast.within(blast.Stats(count=10, errors=0, p99_ms=200.0), slow_base, tol)
    assert not blast.within(blast.Stats(count=10, errors=0, p99_ms=201.0), slow_base, tol)
    assert blast.p99([float(i) for i in range(1, 101)]) == 99.0
    assert blast.p99([]) is None


def test_a_fault_before_the_warm_up_ends_takes_its_baseline_outside_faults() -> None:
    records = synthetic(down=(1.0, 4.0))
    fault = blast.Fault("crash", "recommendations", "recommendations", start=T0 + 1.0)
    tol = blast.Tolerance(max_window_s=5.0)
    hit = by_endpoint(blast.blast(records, [fault], warmup_s=2.0, tol=tol))[DOWN]
    assert hit.baseline_source == "outside-faults"
    assert hit.baseline.count > 0 and hit.baseline.error_rate == 0
    assert hit.recovery_s == pytest.approx(3.0)


def _write_run(run_dir: Path, records: list[Record], faults: list[dict[str, str]]) -> None:
    run_dir.mkdir()
    meta = {"run_id": run_dir.name, "variant": "multiprocess", "scenario": {"name": "x"}}
    (run_dir / "meta.json").write_text(json.dumps({**meta, "warmup_s": 2}))
    with (run_dir / "requests.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(RECORD_COLUMNS)
        for r in records:
            writer.writerow([r.start_time, r.endpoint, r.latency_ms, r.status, r.error, ""])
    with (run_dir / "faults.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["kind", "component", "role", "pids", "start", "end", "params"]
        )
        writer.writeheader()
        writer.writerows(faults)


def test_archlab_blast_prints_the_matrix_and_writes_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run-a"
    fault = {
        "kind": "crash",
        "component": "recommendations",
        "role": "recommendations",
        "pids": "4242",
        "start": str(T0 + 10.0),
        "end": "",
        "params": '{"signal": "SIGKILL"}',
    }
    _write_run(run_dir, synthetic(down=(10.0, 13.0)), [fault])
    assert blast.read_faults(run_dir / "faults.csv")[0].pids == (4242,)
    out_csv = tmp_path / "blast.csv"
    assert cli.main(["blast", str(run_dir), "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert "crash:recommendations" in text and "multiprocess" in text and DOWN in text
    rows = list(csv.DictReader(out_csv.open()))
    assert tuple(rows[0]) == blast.CSV_COLUMNS
    got = {r["endpoint"]: r for r in rows}
    assert float(got[DOWN]["during_error_rate"]) == 1.0
    assert float(got[DOWN]["recovery_s"]) == 3.0
    assert float(got[DOWN]["fault_start_s"]) == pytest.approx(10.5)  # from the first request
    assert float(got[UP]["during_error_rate"]) == 0.0
    assert got[UP]["lifecycle_ready_s"] == ""


def test_archlab_blast_without_faults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run-b"
    _write_run(run_dir, synthetic(seconds=5), [])
    assert cli.main(["blast", str(run_dir)]) == 0
    assert "no faults" in capsys.readouterr().out


def test_a_request_in_flight_at_the_kill_counts_as_during() -> None:
    records = synthetic(down=(10.0, 10.5))
    records.append(Record(T0 + 9.99, UP, 20.0, 0, "ConnectionResetError: reset"))  # cut off
    fault = blast.Fault("crash", "monolith", "monolith", start=T0 + 10.0)
    lifecycle = [{"time": T0 + 10.05, "event": "ready", "role": "monolith"}]
    rows = by_endpoint(blast.blast(records, [fault], warmup_s=2.0, lifecycle=lifecycle))
    assert rows[UP].during.count == 2 and rows[UP].during.errors == 1


def test_the_lifecycle_follows_the_killed_pids_under_another_name() -> None:
    fault = blast.Fault("crash", "recommendations", "monolith", start=T0, pids=(11, 12))
    lifecycle = [
        {"time": T0 + 0.01, "event": "exit", "role": "monolith-process", "pid": 11},
        {"time": T0 + 0.02, "event": "exit", "role": "catalog", "pid": 99},
        {"time": T0 + 0.03, "event": "ready", "role": "catalog", "pid": 98},
        {"time": T0 + 0.5, "event": "restart", "role": "monolith-process", "pid": 13},
        {"time": T0 + 4.0, "event": "ready", "role": "monolith-process", "pid": 13},
    ]
    assert blast.lifecycle_times(fault, lifecycle) == pytest.approx((0.5, 4.0))


def _held_back(records: list[Record], held: tuple[float, float]) -> list[Record]:
    """The records as an open loop writes them (intended = sent), except that the requests
    scheduled in `held` (s after T0) left only at its end, all at once, and were answered."""
    out = []
    for r in records:
        offset = r.start_time - T0
        if held[0] <= offset < held[1]:
            late = T0 + held[1] + (offset - held[0]) / 1000
            out.append(Record(late, r.endpoint, 2.0, 200, "", r.start_time))
        else:
            out.append(r._replace(intended_time=r.start_time))
    return out


def test_an_open_loops_requests_count_in_the_second_they_were_scheduled() -> None:
    """A sender held up for 3 s sends that backlog at once when it is freed: by its send time
    the three seconds would be empty (skipped) and the fourth would carry their wait; by the
    schedule the wait falls in the seconds it happened in, and the recovery is at 3 s."""
    records = _held_back(synthetic(), held=(10.0, 13.0))
    fault = blast.Fault("slow", "recommendations", "recommendations", T0 + 10.0, T0 + 13.0)
    rows = by_endpoint(blast.blast(records, [fault], warmup_s=2.0))
    for row in rows.values():
        assert row.during.count == 3 * RATE  # scheduled in the window, sent after it
        assert row.during.p99_ms is not None and row.during.p99_ms > 2900  # from the schedule
        assert row.recovery_s == pytest.approx(3.0)
    bucket = blast.Tolerance().bucket_s
    assert bucket == summary.BUCKET_S  # one owner of the bucket width
