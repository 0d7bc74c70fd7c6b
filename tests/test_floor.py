"""`archlab.run.floor`: the lab's generator against the bare endpoint, cross-checked by an
independent client, and the floor drawn under the latency figure.

The bare endpoint answers the shoppers' catalogue page and any product with the bytes it was
given; the independent client keeps an open-loop schedule; a short real run writes floor.json
with every field the figure and `archlab reproduce` read; the latency figure draws the floor
when the run set has one and says so, and is unchanged without it.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure
from support import synthetic_manifest, write_csv

from archlab.analysis.records import Record
from archlab.analysis.runset import SETUP_ENDPOINT, load_runset
from archlab.analysis.summary import summarize_run
from archlab.figures import latency
from archlab.host import procs
from archlab.run import floor
from archlab.rundir import FLOOR, META, RECORD_COLUMNS, REQUESTS, SUMMARY, read_json, write_json

T0 = 1_800_000_000.0


# ---------------------------------------------------------------- the bare endpoint


def test_the_bare_endpoint_serves_the_catalogue_page_and_any_product_as_given(
    tmp_path: Path,
) -> None:
    product, catalog = tmp_path / "product.json", tmp_path / "catalog.json"
    product.write_bytes(b'{"id":1,"name":"fixed","stock":3}')
    catalog.write_bytes(b'{"items":[{"id":1,"name":"red mug"}],"page":1}')
    port = procs.free_port()
    cmd = [sys.executable, "-m", "variants.bare", "--port", str(port), "--body", str(product)]
    cmd += ["--catalog", str(catalog)]
    base = f"http://127.0.0.1:{port}"
    with procs.running(cmd, name="bare", log_path=tmp_path / "bare.log") as proc:
        procs.wait_healthy(proc, f"{base}/healthz", 60)
        for path, body in (
            (floor.CATALOG_PATH, catalog),
            ("/products", catalog),
            ("/products/1", product),
            ("/products/77", product),
        ):
            with urllib.request.urlopen(base + path, timeout=10) as resp:
                assert resp.read() == body.read_bytes(), path
                assert resp.headers["Content-Type"].startswith("application/json")


# ---------------------------------------------------------------- the independent client


def test_the_independent_clients_schedule_is_evenly_spaced_and_met_not_early() -> None:
    times = floor.intended_times(100.0, 40.0, 2.0)
    assert len(times) == 80 and times[0] == 100.0
    gaps = {round(b - a, 9) for a, b in zip(times, times[1:], strict=False)}
    assert gaps == {0.025}
    with pytest.raises(ValueError):
        floor.intended_times(0.0, 0.0, 1.0)
    target = time.perf_counter() + 0.003
    floor.wait_until(target, spin_s=0.001)
    assert time.perf_counter() >= target  # never early: it spins up to the intended start


def test_the_clients_rows_after_the_warm_up_are_its_stats(tmp_path: Path) -> None:
    rows = [(i / 40, 0.01, 1.0 if i % 10 else 5.0, 200) for i in range(80)]
    rows[-1] = (rows[-1][0], 2.0, 1.0, 0)  # one late request that got no answer
    write_csv(tmp_path / "client.csv", ("offset_s", "lag_ms", "latency_ms", "status"), rows)
    stats = floor.client_stats(tmp_path / "client.csv", warmup_s=1.0)
    assert stats["count"] == 40 and stats["errors"] == 1
    assert stats["achieved_rps"] == pytest.approx(40.0)
    assert stats["observed_ms"] == {"p50": 1.0, "p99": 5.0}
    assert stats["send_lag_ms"]["p99"] == pytest.approx(2.0, abs=0.01)
    assert stats["corrected_ms"]["p99"] >= stats["observed_ms"]["p99"]


def test_the_labs_records_leave_out_the_warm_up_and_the_catalogue_fetch() -> None:
    records = [Record(T0, SETUP_ENDPOINT, 50.0, 200, "", None)]
    for i in range(1, 81):
        t = T0 + i / 40
        records.append(Record(t + 0.0005, "/products/{id}", 1.0, 200, "", t))
    stats = floor.lab_stats(records, warmup_s=1.0)
    assert stats["count"] == 41  # sent from T0 + 1 s on, the setup fetch not among them
    assert stats["observed_ms"] == {"p50": 1.0, "p99": 1.0}
    assert stats["send_lag_ms"]["p50"] == pytest.approx(0.5, abs=0.01)
    assert stats["corrected_ms"]["p50"] == pytest.approx(1.5, abs=0.01)


# ---------------------------------------------------------------- floor.json


def _stats(p50: float, p99: float, lag: float = 0.05, count: int = 400) -> dict[str, Any]:
    return {
        "count": count,
        "errors": 0,
        "achieved_rps": 40.0,
        "observed_ms": {"p50": p50, "p99": p99},
        "corrected_ms": {"p50": p50 + lag, "p99": p99 + lag},
        "send_lag_ms": {"p50": lag, "p99": 2 * lag},
    }


def synthetic_report(rounds: int = 3) -> dict[str, Any]:
    """floor.json as `measure` writes it: the lab reads 1.0, 1.1, 0.9 ms p50 at 40 req/s and
    twice that at 400; the independent client 0.8 ms in every round."""
    rates = [40.0, 400.0]
    lab = {
        "40": [_stats(p, 3 * p) for p in (1.0, 1.1, 0.9)[:rounds]],
        "400": [_stats(2 * p, 6 * p) for p in (1.0, 1.1, 0.9)[:rounds]],
    }
    client = [_stats(0.8, 2.0) for _ in range(rounds)]
    diffs = [floor._difference_pct(a, b) for a, b in zip(lab["40"], client, strict=True)]
    report = {
        "schema": floor.SCHEMA,
        "machine": {"cpu_count": 2},
        "server": "gunicorn-gthread",
        "rates": rates,
        "rounds": rounds,
        "seconds": 10.0,
        "warmup_s": 1.0,
        "lab": lab,
        "independent": {"rate": 40.0, "runs": client, "difference_pct": diffs},
    }
    report["summary"] = floor.summarize(report)
    return report


def test_the_summary_is_the_median_over_rounds_and_the_paired_difference() -> None:
    s = synthetic_report()["summary"]
    low, high = s["lab"]
    assert (low["offered_rps"], high["offered_rps"]) == (40.0, 400.0)
    assert low["observed_p50_ms"]["median"] == pytest.approx(1.0)
    assert low["observed_p50_ms"]["rounds"] == 3
    assert low["observed_p50_ms"]["ci_low"] <= 1.0 <= low["observed_p50_ms"]["ci_high"]
    assert high["observed_p99_ms"]["median"] == pytest.approx(6.0)
    assert s["independent"]["observed_p50_ms"]["median"] == pytest.approx(0.8)
    assert s["difference_pct"]["observed_p50"]["median"] == pytest.approx(25.0)  # 1.0 vs 0.8
    table = floor.format_table({**synthetic_report(), "body_bytes": 9, "cpu_pinning": {}})
    assert "cross-check at 40 req/s" in table and "+25.0" in table


def test_a_short_real_floor_has_every_field_and_sane_values(tmp_path: Path) -> None:
    out = tmp_path / FLOOR
    lines: list[str] = []
    report = floor.measure([40], seconds=2, rounds=1, out_path=out, echo=lines.append)
    assert read_json(out) == read_json(write_json(tmp_path / "again.json", report))
    assert report["machine"]["cpu_count"] >= 1
    assert report["server"] == floor.default_server()
    assert report["rates"] == [40.0] and report["rounds"] == 1
    assert report["body_bytes"] > 0 and report["catalog_bytes"] > report["body_bytes"]
    (lab,) = report["lab"]["40"]
    (client,) = report["independent"]["runs"]
    for stats in (lab, client):
        assert stats["count"] > 0 and stats["errors"] == 0
        for kind in ("observed_ms", "corrected_ms", "send_lag_ms"):
            assert 0 <= stats[kind]["p50"] <= stats[kind]["p99"], (kind, stats)
        assert stats["corrected_ms"]["p50"] >= stats["observed_ms"]["p50"]
    assert report["independent"]["rate"] == 40.0
    (row,) = report["summary"]["lab"]
    assert row["observed_p50_ms"]["median"] == lab["observed_ms"]["p50"]
    assert report["summary"]["difference_pct"]["observed_p50"] is not None
    assert any("independent client" in line for line in lines)
    assert any("lab generator" in line for line in lines)


def test_bad_rates_are_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "archlab.cli", "bench", "floor", "--rates", "40,-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "archlab: error: --rates: positive req/s, got '40,-1'"
    ]


# ---------------------------------------------------------------- the latency figure


def _ramp_run(root: Path, tag: str) -> str:
    """A finished open-loop ramp of two 5 s steps, 40 then 80 req/s, every answer 2 ms."""
    run = root / "runs" / tag
    rows = []
    t = 0.0
    for step, rate in enumerate((40.0, 80.0)):
        while t < 5.0 * (step + 1):
            rows.append((T0 + t, "/products/{id}", 2.0, 200, "", T0 + t))
            t += 1 / rate
    write_csv(run / REQUESTS, RECORD_COLUMNS, rows)
    meta = {
        "schema_version": 3,
        "run_id": tag,
        "status": "completed",
        "variant": "monolith",
        "scenario": {"name": "ramp"},
        "knobs": {"threads": 8},
        "warmup_s": 0.0,
        "duration_s": 10,
        "load": {"loop": "open", "steps": [1, 2], "rate_per_user": 40.0, "step_s": 5.0},
        "profile": {"enabled": False},
    }
    write_json(run / META, meta)
    write_json(run / SUMMARY, summarize_run(run))
    return tag


def _labels(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def _caption(fig: Figure) -> str:
    return fig._supxlabel.get_text() if fig._supxlabel is not None else ""  # type: ignore[attr-defined]


def test_the_latency_figure_draws_the_floor_when_the_run_set_has_one(tmp_path: Path) -> None:
    rs = load_runset(synthetic_manifest(tmp_path, [_ramp_run(tmp_path, "latency-monolith")],
                                        "latency"))  # fmt: skip
    write_json(tmp_path / FLOOR, synthetic_report())
    fig = latency.latency_vs_load(rs)
    assert fig is not None
    assert f"{latency.FLOOR_LABEL} p99" in _labels(fig)
    assert f"{latency.FLOOR_LABEL} p50" in _labels(fig)
    table = latency.floor_table(rs)
    assert list(table["offered_rps"]) == [40.0, 400.0]
    assert table["p99_ms"].iloc[0] == pytest.approx(3.05)  # corrected: observed + send lag
    assert table["p99_ci_low"].iloc[0] <= table["p99_ms"].iloc[0] <= table["p99_ci_high"].iloc[0]
    text = _caption(fig)
    assert latency.FLOOR_LABEL in text and "+25 %" in text
    reading = latency.reading(rs)
    assert "The floor" in reading and "0.8 ms" in reading and "+25 %" in reading


def test_the_latency_figure_without_a_floor_draws_none_and_says_so(tmp_path: Path) -> None:
    rs = load_runset(synthetic_manifest(tmp_path, [_ramp_run(tmp_path, "latency-monolith")],
                                        "latency"))  # fmt: skip
    fig = latency.latency_vs_load(rs)
    assert fig is not None
    assert not any(latency.FLOOR_LABEL in label for label in _labels(fig))
    assert latency.FLOOR_LABEL not in _caption(fig)
    assert latency.floor_table(rs).empty
    assert "No floor" in latency.reading(rs)
