"""The summary on synthetic records: percentiles, error classification, windows, CPU flags."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from archlab.analysis.records import Record, is_error, read_records
from archlab.analysis.summary import (
    ALL,
    empty_buckets,
    format_table,
    latency_stats,
    load_stats,
    scheduled_at,
    summarize,
    summarize_cpu,
)
from archlab.rundir import RECORD_COLUMNS_V1


def rec(t: float, latency_ms: float, endpoint: str = "/x", status: int = 200, error: str = ""):
    return Record(t, endpoint, latency_ms, status, error)


def test_percentiles_of_a_known_distribution() -> None:
    latencies = [float(ms) for ms in range(1, 10_001)]  # 1..10000 ms, uniform
    random.Random(1).shuffle(latencies)
    stats = latency_stats(latencies)
    # HDR with 3 significant digits: within 0.1% of the exact nearest-rank percentile.
    for key, exact in (("p50", 5000), ("p90", 9000), ("p99", 9900), ("p99_9", 9990)):
        assert stats[key] == pytest.approx(exact, rel=1e-3), key
    assert stats["min"] == 1.0 and stats["max"] == 10_000.0
    assert stats["mean"] == pytest.approx(5000.5)


def test_percentiles_never_exceed_the_max() -> None:
    stats = latency_stats([1.2345])
    assert stats["p50"] == stats["p99_9"] == stats["max"] == 1.234  # rounded to µs
    skewed = [random.Random(2).lognormvariate(0, 1.5) for _ in range(5000)]
    stats = latency_stats(skewed)
    assert stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["p99_9"]
    assert stats["p99_9"] <= stats["max"] == round(max(skewed), 3)


def test_very_slow_requests_are_clamped_but_max_is_exact() -> None:
    stats = latency_stats([10.0, 120_000.0])  # 2 minutes: beyond the 60 s histogram
    assert stats["max"] == 120_000.0
    assert stats["p99_9"] == pytest.approx(60_000, rel=1e-3)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (200, "", False),
        (201, "", False),
        (409, "", False),  # out_of_stock, accepted by the locustfile
        (409, "CatchResponseError: HTTP 409 idempotency_conflict", True),
        (404, "HTTPError: 404 Not Found", True),
        (200, "CatchResponseError: 201 without an order id", True),
        (0, "ConnectionRefusedError: [Errno 111]", True),
        (0, "", True),
        (500, "", True),
        (503, "", True),
    ],
)
def test_error_classification(status: int, error: str, expected: bool) -> None:
    assert is_error(rec(0.0, 1.0, status=status, error=error)) is expected


def test_summary_counts_errors_per_endpoint() -> None:
    records = [rec(i * 0.1, 2.0, "/a") for i in range(90)]
    records += [rec(i * 0.1, 3.0, "/b", 409) for i in range(5)]
    records += [rec(1.0, 5.0, "/b", 0, "ConnectionResetError"), rec(2.0, 5.0, "/b", 500)]
    summary = summarize(records)
    a, b, everything = (summary["endpoints"][k] for k in ("/a", "/b", ALL))
    assert (a["errors"], b["errors"], everything["errors"]) == (0, 2, 2)
    assert b["error_rate"] == pytest.approx(2 / 7)
    assert b["statuses"] == {"0": 1, "409": 5, "500": 1}
    assert set(b["top_errors"]) == {"ConnectionResetError", "HTTP 500"}
    assert everything["count"] == len(records)


def test_window_and_throughput() -> None:
    # 100 requests sent over 9.9 s, the last answered 0.1 s later: a 10 s window.
    records = [rec(1000 + i * 0.1, 100.0, "/a" if i % 4 else "/b") for i in range(100)]
    summary = summarize(records)
    assert summary["window"]["seconds"] == pytest.approx(10.0)
    eps = summary["endpoints"]
    assert eps[ALL]["throughput_rps"] == pytest.approx(10.0)
    assert eps["/a"]["throughput_rps"] + eps["/b"]["throughput_rps"] == pytest.approx(10.0)
    assert list(eps) == ["/a", "/b", ALL]  # sorted endpoints, ALL last

    warm = summarize(records, start=1005.0)  # drop a 5 s warm-up
    assert warm["endpoints"][ALL]["count"] == 50
    assert warm["window"]["start"] == 1005.0


def test_empty_records() -> None:
    summary = summarize([])
    assert summary["endpoints"][ALL]["count"] == 0
    assert summary["endpoints"][ALL]["throughput_rps"] == 0.0
    assert "ALL" in format_table(summary)


def test_read_records_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    header = ",".join(RECORD_COLUMNS_V1)  # a schema-1 file (no intended_time) is still read
    path.write_text(
        f'{header}\n1.5,/a,2.250,200,\n2.0,/b,3.0,0,"Err: a, b"\n2.5,/a,1.0,20'
    )  # the last row was cut mid-write
    assert read_records(path) == [rec(1.5, 2.25, "/a"), rec(2.0, 3.0, "/b", 0, "Err: a, b")]
    path.write_text("when,what\n")
    with pytest.raises(ValueError, match="unexpected header"):
        read_records(path)


def cpu(t: float, pid: int, pct: float) -> dict:
    return {"time": str(t), "pid": pid, "name": "python", "cpu_percent": pct}


def test_generator_saturation_flag() -> None:
    calm = [cpu(t, 1, 30.0) for t in range(1, 21)]
    assert summarize_cpu(calm)["saturated"] is False
    hot = calm + [cpu(t, 2, 99.0 if t % 2 else 50.0) for t in range(1, 21)]
    result = summarize_cpu(hot)
    assert result["saturated"] is True
    assert result["processes"]["2"]["saturated"] and not result["processes"]["1"]["saturated"]
    assert result["max_cpu_percent"] == 99.0
    assert result["mean_cpu_percent"] == pytest.approx(74.5)


def test_generator_startup_outside_the_window_is_ignored() -> None:
    samples = [cpu(1.0, 1, 100.0)] + [cpu(t, 1, 20.0) for t in range(2, 12)]
    assert summarize_cpu(samples)["saturated"] is False  # 1 of 11 samples is under the 10% share
    windowed = summarize_cpu(samples, start=1.0, end=11.0)
    assert windowed["max_cpu_percent"] == 20.0 and windowed["samples"] == 10


def test_a_schema_1_run_directory_is_still_summarized(tmp_path: Path) -> None:
    from archlab.analysis import validate
    from archlab.analysis.summary import summarize_run

    run = tmp_path / "old"
    run.mkdir()
    (run / "requests.csv").write_text(
        ",".join(RECORD_COLUMNS_V1) + "\n" + "".join(f"{i / 10},/a,2.0,200,\n" for i in range(50))
    )
    (run / "generator_cpu.csv").write_text(
        "time,pid,name,cpu_percent,rss_bytes\n"
        + "".join(f"{t},7,python,20.0,1000\n" for t in range(1, 6))
    )
    summary = summarize_run(run)
    assert summary["endpoints"][ALL]["count"] == 50 and summary["corrected"] is False
    assert summary["generator"]["samples"] > 0 and "cpu_s" not in summary["generator"]
    assert "server" not in summary and "gc" not in summary
    assert validate.validate_csv(run / "requests.csv") == []
    assert validate.validate_csv(run / "generator_cpu.csv") == []


def _scheduled(n: int, lag_s: float) -> list[Record]:
    """n open-loop requests, one every 0.1 s, each sent lag_s after its intended time."""
    return [Record(1000 + i * 0.1 + lag_s, "/a", 2.0, 200, "", 1000 + i * 0.1) for i in range(n)]


def test_an_open_loop_that_sent_its_schedule_is_on_schedule() -> None:
    load = {"loop": "open", "offered_rps": 10.0}
    stats = load_stats(_scheduled(100, 0.001), load, window_s=10.0)
    assert stats["on_schedule"] is True and stats["send_lag_ms"]["max"] < 2


def test_an_open_loop_that_fell_behind_is_not_on_schedule() -> None:
    load = {"loop": "open", "offered_rps": 20.0}  # twice what was sent
    assert load_stats(_scheduled(100, 0.0), load, window_s=10.0)["on_schedule"] is False


def test_a_sender_within_a_tenth_of_a_millisecond_is_on_time() -> None:
    load = {"loop": "open", "offered_rps": 10.0}
    assert load_stats(_scheduled(100, 0.00005), load, window_s=10.0)["late_sender"] is False


def test_a_sender_a_millisecond_late_is_flagged_late() -> None:
    load = {"loop": "open", "offered_rps": 10.0}
    assert load_stats(_scheduled(100, 0.001), load, window_s=10.0)["late_sender"] is True


def test_an_open_loop_ramp_has_no_single_schedule_to_keep() -> None:
    load = {"loop": "open", "offered_rps": None, "steps": [1, 2], "step_s": 5.0}
    assert load_stats(_scheduled(100, 0.0), load, window_s=10.0)["on_schedule"] is None


def test_a_run_without_server_telemetry_is_summarized_and_valid(tmp_path: Path) -> None:
    """A --target run: no processes.csv, gc.csv, roles.csv or server.log, and that is fine."""
    import json

    from archlab.analysis import validate
    from archlab.analysis.summary import summarize_run, write_summary
    from archlab.measure.integrity import METHOD_API
    from archlab.rundir import (
        LEDGER_COLUMNS,
        RECORD_COLUMNS,
        SERVER_TELEMETRY_NOT_COLLECTED,
        new_meta,
        utc_now,
        write_meta,
    )

    run = tmp_path / "t"
    run.mkdir()
    meta = new_meta(
        run_id="t", variant="target", module="", knobs={}, scenario={}, seed=1, size="unknown",
        duration_s=5, users=1, spawn_rate=1.0, base_url="http://127.0.0.1:9",
        started_at=utc_now(),
    )  # fmt: skip
    meta.update(
        status="completed",
        variant_module=None,
        server_telemetry=SERVER_TELEMETRY_NOT_COLLECTED,
        load={"loop": "closed"},
        telemetry={"gc": None, "sample_interval_s": 1.0, "window_s": None},
        profile={"enabled": False},
        warmup_s=0,
    )
    write_meta(run, meta)
    (run / "requests.csv").write_text(
        ",".join(RECORD_COLUMNS) + "\n" + "".join(f"{i / 10},/a,2.0,200,,\n" for i in range(50))
    )
    (run / "ledger.csv").write_text(",".join(LEDGER_COLUMNS) + "\n1.0,k,1\n")
    (run / "generator_cpu.csv").write_text(
        "time,pid,name,cpu_percent,rss_bytes,cpu_user_s,cpu_system_s\n"
        + "".join(f"{t},7,python,20.0,1000,{t / 10},0\n" for t in range(1, 6))
    )
    for name in ("locust.log",):
        (run / name).write_text("")
    report = {
        "method": METHOD_API, "ok": True, "checks": {"acknowledged_orders_read_back": True},
        "counts": {}, "violations": {}, "outbox": {"drained": None},
        "notifications_verified": False, "not_checked": ["stock_conserved"],
    }  # fmt: skip
    (run / "invariants.json").write_text(json.dumps(report))
    summary = summarize_run(run)
    assert "server" not in summary and "gc" not in summary
    assert summary["invariants"]["method"] == METHOD_API
    assert any("through the API" in note for note in summary["notes"])
    assert not any("outbox had not drained" in note for note in summary["notes"])
    format_table(summary)
    write_summary(run, summary)
    write_meta(run, {**meta, "target": "http://127.0.0.1:9"})
    assert validate.validate_run(run) == [], validate.validate_run(run)
    write_meta(run, meta)
    assert any("missing field 'target'" in p for p in validate.validate_run(run))
    write_meta(run, {**meta, "target": "http://127.0.0.1:9", "server_telemetry": "collected"})
    problems = validate.validate_run(run)
    assert any("missing processes.csv" in p for p in problems)
    assert any("method api in a run whose server telemetry is collected" in p for p in problems)


def test_a_raw_file_reads_the_same_by_its_name_or_by_its_gzipped_copy(tmp_path: Path) -> None:
    """Readers are handed either `processes.csv` or what `stored` found (`processes.csv.gz`)."""
    import gzip

    from archlab.rundir import open_stored, stored

    plain = tmp_path / "processes.csv"
    with gzip.open(tmp_path / "processes.csv.gz", "wt") as fh:
        fh.write("time,pid\n1.0,7\n")
    found = stored(plain)
    assert found is not None and found.name == "processes.csv.gz"
    for path in (plain, found):
        with open_stored(path) as fh:
            assert fh.read().splitlines() == ["time,pid", "1.0,7"]


# --- seconds in which the load fell silent -------------------------------------------------


def _open_loop(seconds: int, rate: int = 10, silent: tuple[float, float] = (0, 0)) -> list[Record]:
    """An open loop's records: `rate` per second, none scheduled in `silent` (s after 1000)."""
    return [
        Record(1000 + i / rate + 0.0001, "/a", 2.0, 200, "", 1000 + i / rate)
        for i in range(seconds * rate)
        if not silent[0] <= i / rate < silent[1]
    ]


def _summarized(tmp_path: Path, records: list[Record], load: dict[str, object]) -> dict:
    import json

    from archlab.analysis.summary import summarize_run
    from archlab.rundir import RECORD_COLUMNS

    run = tmp_path / "run"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({"load": load}))
    rows = "".join(
        f"{r.start_time:.6f},{r.endpoint},{r.latency_ms},{r.status},{r.error},"
        f"{'' if r.intended_time is None else f'{r.intended_time:.6f}'}\n"
        for r in records
    )
    (run / "requests.csv").write_text(",".join(RECORD_COLUMNS) + "\n" + rows)
    return summarize_run(run)


def test_empty_buckets_are_the_whole_seconds_without_a_scheduled_request() -> None:
    records = _open_loop(10, silent=(4.0, 6.5))
    assert empty_buckets(records, start=1000.0) == [4.0, 5.0]  # 6.5 s is in the bucket of 6
    assert empty_buckets(_open_loop(10), start=1000.0) == []
    assert empty_buckets([], start=1000.0) == []


def test_an_open_loop_is_bucketed_by_its_schedule_not_by_when_it_sent() -> None:
    """Requests held up for two seconds and sent at once were still scheduled in those
    seconds: no bucket is empty. Without a schedule (closed loop) the same sends leave two."""
    held = [r._replace(start_time=max(r.start_time, 1006.0)) for r in _open_loop(10)]
    assert empty_buckets(held, start=1000.0) == []
    closed = [r._replace(intended_time=None) for r in held]
    assert scheduled_at(closed[45]) == 1006.0 and scheduled_at(held[45]) == 1004.5
    assert empty_buckets(closed, start=1000.0) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_the_summary_flags_an_open_loop_with_a_silent_second(tmp_path: Path) -> None:
    load = {"loop": "open", "offered_rps": 10.0}
    summary = _summarized(tmp_path, _open_loop(10, silent=(4.0, 6.5)), load)
    empty = summary["load"]["empty_buckets"]
    assert empty == {"count": 2, "offsets_s": [4.0, 5.0], "width_s": 1.0, "by": "intended_time"}
    assert "EMPTY BUCKETS: 2 1 s bucket(s) held no request" in format_table(summary)


def test_the_summary_of_a_full_run_flags_nothing(tmp_path: Path) -> None:
    summary = _summarized(tmp_path, _open_loop(10), {"loop": "open", "offered_rps": 10.0})
    assert summary["load"]["empty_buckets"]["count"] == 0
    assert "EMPTY BUCKETS" not in format_table(summary)
