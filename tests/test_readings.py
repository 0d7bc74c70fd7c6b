"""readings.json: every headline number a median over repetitions with its 95 % interval."""

from __future__ import annotations

import json
from pathlib import Path

from support import ramp_windows, synthetic_manifest

from archlab.analysis import readings
from archlab.analysis.readings import Reading
from archlab.analysis.rounds import NOT_DISTINGUISHABLE, median_interval
from archlab.analysis.runset import load_runset, round_tag, split_round
from archlab.rundir import META, READINGS, SUMMARY, write_json


def _ramp_run(root: Path, tag: str, variant: str, p99s: list[float]) -> None:
    """A finished latency ramp of one step per p99 given, at 50 req/s per step."""
    rows = ramp_windows([(50.0 * (i + 1), 50.0 * (i + 1), p99) for i, p99 in enumerate(p99s)], 5.0)
    (root / "runs" / tag).mkdir(parents=True)
    write_json(root / "runs" / tag / META, {"status": "completed", "variant": variant,
                                            "scenario": {"name": "ramp"}})  # fmt: skip
    write_json(root / "runs" / tag / SUMMARY, {"windows": {"rows": rows}})


def test_a_reading_is_the_median_of_its_repetitions_with_an_interval_around_it() -> None:
    r = Reading.of("x", [10.0, 12.0, 11.0, 13.0, 9.0], "ms")
    assert r is not None and (r.median, r.n, r.unit) == (11.0, 5, "ms")
    assert 9.0 <= r.ci_low <= r.median <= r.ci_high <= 13.0
    assert r.text() == f"11.0 ms [{r.ci_low:.1f}, {r.ci_high:.1f}], n=5"


def test_one_repetition_has_no_interval_and_is_not_ranked() -> None:
    one = Reading.of("x", [10.0], "ms")
    assert one is not None and one.text() == "10.0 ms (n=1)"
    assert median_interval([10.0]) == (10.0, 10.0)
    assert readings.compare(one, one) == "one repetition: not ranked"


def test_overlapping_intervals_are_not_distinguishable_and_apart_ones_are_ranked() -> None:
    a = Reading.of("a", [10, 11, 12, 13, 14], "ms")
    b = Reading.of("b", [12, 13, 14, 15, 16], "ms")
    c = Reading.of("c", [30, 31, 32, 33, 34], "ms")
    assert a and b and c
    assert readings.compare(a, b) == NOT_DISTINGUISHABLE
    assert readings.compare(a, c) == "lower" and readings.compare(c, a) == "higher"


def test_a_repeated_steps_runs_are_grouped_by_their_tag_without_the_round() -> None:
    assert split_round(round_tag("latency-monolith", 3)) == ("latency-monolith", 3)
    assert split_round("path-monolith-crash-recommendations") == (
        "path-monolith-crash-recommendations", 1
    )  # fmt: skip


def test_the_latency_readings_take_each_step_over_every_repetition(tmp_path: Path) -> None:
    tags = []
    for r, p99s in enumerate(([5.0, 8.0], [6.0, 9.0], [7.0, 40.0]), start=1):
        tag = round_tag("latency-monolith", r)
        _ramp_run(tmp_path, tag, "monolith", p99s)
        tags.append(tag)
    rs = load_runset(synthetic_manifest(tmp_path, tags, "latency"))
    assert list(rs.repeated("latency")) == ["latency-monolith"]
    found = {r.name: r for r in readings.latency(rs)}
    first = found["latency.monolith.p99_ms@50rps"]
    assert (first.median, first.n) == (6.0, 3)
    second = found["latency.monolith.p99_ms@100rps"]
    assert second.median == 9.0 and second.ci_high == 40.0  # one noisy round widens it
    path = readings.write(rs)
    assert path == tmp_path / READINGS
    data = json.loads(path.read_text())["readings"]
    assert all(set(r) == {"name", "median", "ci_low", "ci_high", "n", "unit"} for r in data)
    assert readings.load(rs)["latency.monolith.p99_ms@50rps"] == first


def test_the_knee_reading_is_the_achieved_rate_of_the_highest_step_that_held(
    tmp_path: Path,
) -> None:
    tags = []
    for r, p99s in enumerate(([5.0, 8.0, 300.0], [6.0, 9.0, 250.0], [7.0, 40.0, 20.0]), 1):
        tag = round_tag("latency-monolith", r)
        _ramp_run(tmp_path, tag, "monolith", p99s)
        tags.append(tag)
    rs = load_runset(synthetic_manifest(tmp_path, tags, "latency"))
    found = {r.name: r for r in readings.knees(rs)}
    rate, p99 = found["knee.monolith.achieved_rps"], found["knee.monolith.p99_ms"]
    assert (rate.median, rate.n, rate.unit) == (100.0, 3, "req/s")  # 150 req/s broke the SLO
    assert (p99.median, p99.ci_high) == (9.0, 40.0)


def test_a_fault_reading_takes_each_runs_worst_and_its_last_recovery() -> None:
    import pandas as pd

    from archlab.analysis import faults

    rows = [  # two runs of one variant: the targeted endpoint fails, the others less so
        ("r1", "/recs", True, 1.0, 50.0, 6.0),
        ("r1", "/products", False, 0.10, 3.0, 2.0),
        ("r1", "/cart", False, 0.20, 2.0, 4.0),
        ("r2", "/recs", True, 0.9, 40.0, None),
        ("r2", "/products", False, 0.0, 1.5, 1.0),
    ]
    df = pd.DataFrame(
        rows, columns=["run_id", "endpoint", "targeted", "during_error_rate", "p99_ratio",
                       "recovery_s"],
    ).assign(scenario="crash-recommendations", variant="monolith")  # fmt: skip
    got = faults.per_run(df).set_index("run_id")
    assert got.loc["r1", "error_rate"] == 1.0 and got.loc["r1", "others_error_rate"] == 0.2
    assert got.loc["r1", "others_p99_ratio"] == 3.0 and got.loc["r1", "recovery_s"] == 6.0
    assert pd.isna(got.loc["r2", "recovery_s"])  # one endpoint never came back: not a number
