"""The knee and throughput at the SLO (`archlab.analysis.ramp`) on hand-made ramps: one
definition (the highest step that holds over the repetitions) robust to one noisy step."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import ramp_windows, synthetic_manifest

from archlab.analysis import ramp, readings
from archlab.analysis.runset import RunSet, load_runset
from archlab.rundir import META, SUMMARY, write_json

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
STEP_S = 8.0
RATES = (50, 100, 200, 300, 400)
KNOBS = {"threads": 8, "workers": 1}


def _windows(p99s: tuple[float, ...], behind_at: float | None = None) -> list[dict]:
    slow = behind_at if behind_at is not None else float("inf")
    steps = [(o, o * (0.6 if o >= slow else 1.0), p) for o, p in zip(RATES, p99s, strict=False)]
    return ramp_windows(steps, STEP_S)


def _write(root: Path, tag: str, p99s: tuple[float, ...], **meta: object) -> str:
    run = root / "runs" / tag
    run.mkdir(parents=True)
    write_json(
        run / META,
        {"variant": "distributed", "status": "completed", "scenario": {"name": "ramp"},
         "knobs": KNOBS} | meta,
    )  # fmt: skip
    write_json(run / SUMMARY, {"windows": {"rows": _windows(p99s)}})
    return tag


def _runset(root: Path, ramps: dict[str, tuple[float, ...]], **meta: object) -> RunSet:
    tags = [_write(root, tag, p99s, **meta) for tag, p99s in ramps.items()]
    return load_runset(synthetic_manifest(root, tags, "latency"))


def test_one_noisy_step_within_the_slo_does_not_move_the_knee(tmp_path: Path) -> None:
    # the reference's distributed ramp: 65 ms at 100 req/s, 4x the first step, yet within
    rs = _runset(tmp_path, {"latency-distributed": (17.0, 65.7, 39.7, 46.9, 290.6)})
    k = ramp.knee(rs.runs["latency-distributed"])
    assert k is not None and k["bent"] is True
    assert (k["offered_rps"], k["achieved_rps"], k["p99_ms"]) == (300.0, 300.0, 46.9)
    assert (k["p99_ci_low"], k["p99_ci_high"], k["n"]) == (46.9, 46.9, 1)
    assert (k["bent_at_rps"], k["bent_p99_ms"]) == (400.0, 290.6)
    assert k["bent_reason"] == "p99 over the SLO (100 ms)"
    assert ramp.throughput_at_slo(rs.runs["latency-distributed"]) == 300.0
    assert not hasattr(ramp, "KNEE_FACTOR")


def test_a_step_over_the_slo_below_the_top_does_not_hide_the_steps_that_held(
    tmp_path: Path,
) -> None:
    rs = _runset(tmp_path, {"latency-distributed": (17.0, 140.0, 40.0, 45.0, 300.0)})
    steps = ramp.held_steps(rs.runs["latency-distributed"])
    assert list(steps["holds"]) == [True, False, True, True, False]
    assert ramp.knee(rs.runs["latency-distributed"])["offered_rps"] == 300.0


def test_a_ramp_that_fails_only_at_its_top_step_bends_there(tmp_path: Path) -> None:
    rs = _runset(tmp_path, {"fails-at-top": (10.0, 11.0, 12.0, 20.0, 150.0),
                            "never-fails": (10.0, 11.0, 12.0, 20.0, 30.0)})  # fmt: skip
    top = ramp.knee(rs.runs["fails-at-top"])
    assert top is not None and top["bent"] is True
    assert (top["offered_rps"], top["bent_at_rps"], top["top_offered_rps"]) == (300, 400, 400)
    held = ramp.knee(rs.runs["never-fails"])
    assert held is not None and held["bent"] is False
    assert (held["offered_rps"], held["bent_at_rps"], held["bent_reason"]) == (400, None, "")


def test_a_step_that_falls_behind_does_not_hold_whatever_its_p99(tmp_path: Path) -> None:
    root = tmp_path / "runs" / "behind"
    root.mkdir(parents=True)
    write_json(root / META, {"variant": "monolith", "status": "completed",
                             "scenario": {"name": "ramp"}})  # fmt: skip
    write_json(root / SUMMARY, {"windows": {"rows": _windows((5, 5, 5, 5, 5), behind_at=300)}})
    rs = load_runset(synthetic_manifest(tmp_path, ["behind"], "latency"))
    k = ramp.knee(rs.runs["behind"])
    assert k is not None and (k["offered_rps"], k["bent_at_rps"]) == (200, 300)
    assert k["bent_reason"] == "fell behind the offered rate"


def test_no_step_that_holds_gives_no_knee_and_no_throughput(tmp_path: Path) -> None:
    rs = _runset(tmp_path, {"slow": (150.0, 200.0, 400.0)})
    k = ramp.knee(rs.runs["slow"])
    assert k is not None and k["offered_rps"] is None and k["p99_ms"] is None
    assert (k["bent"], k["bent_at_rps"], k["top_offered_rps"]) == (True, 50.0, 200.0)
    assert ramp.throughput_at_slo(rs.runs["slow"]) == 0.0


def test_repetitions_group_by_variant_cpus_and_knobs_not_by_tag(tmp_path: Path) -> None:
    ramps = {f"latency-distributed-r{i}": (17.0, 20.0, 30.0, 40.0, 300.0) for i in (1, 2, 3)}
    rs = _runset(tmp_path / "a", ramps)
    other = tmp_path / "b"
    _write(other, "latency-distributed", (17.0, 20.0, 30.0, 40.0, 300.0),
           knobs=KNOBS | {"replicas": 2})  # fmt: skip
    rs.runs["x"] = load_runset(synthetic_manifest(other, ["latency-distributed"], "latency")).runs[
        "latency-distributed"
    ]
    groups = ramp.repetitions(rs.of("latency"))
    assert sorted(len(g) for g in groups.values()) == [1, 3]
    (three,) = [key for key, g in groups.items() if len(g) == 3]
    assert three.variant == "distributed" and three.cpus is None and dict(three.knobs) == KNOBS


def test_one_bad_step_in_one_of_three_runs_leaves_the_median_and_the_knee(tmp_path: Path) -> None:
    """Run r2 measured 400 ms at 200 req/s. The median p99 there is the other runs' 30 ms;
    with three runs the interval's upper end still reaches 400 ms (a bootstrap of three values
    cannot tell one outlier from a spread), so that step does not hold, but 300 req/s held in
    every run: the knee stays there."""
    rs = _runset(tmp_path, {
        "latency-distributed-r1": (17.0, 20.0, 30.0, 40.0, 300.0),
        "latency-distributed-r2": (18.0, 21.0, 400.0, 42.0, 310.0),
        "latency-distributed-r3": (16.0, 19.0, 29.0, 41.0, 290.0),
    })  # fmt: skip
    runs = rs.of("latency")
    steps = ramp.held_steps(runs).set_index("offered_rps")
    assert set(steps["n"]) == {3}
    assert steps.loc[200.0, "p99_ms"] == 30.0 and steps.loc[200.0, "p99_ci_high"] == 400.0
    assert not steps.loc[200.0, "holds"] and steps.loc[300.0, "holds"]
    k = ramp.knee(runs)
    assert k is not None and (k["offered_rps"], k["p99_ms"], k["n"]) == (300.0, 41.0, 3)
    assert k["p99_ci_low"] <= 41.0 <= k["p99_ci_high"] <= 42.0
    assert (k["bent_at_rps"], k["bent_p99_ms"]) == (400.0, 300.0)
    assert ramp.throughput_at_slo(runs) == 300.0
    # one run alone is read the same way, with a degenerate interval
    assert ramp.knee(runs[1])["offered_rps"] == 300.0


def test_a_top_step_that_one_of_three_runs_failed_is_not_claimed(tmp_path: Path) -> None:
    rs = _runset(tmp_path, {
        "r1": (17.0, 20.0, 30.0, 40.0, 60.0),
        "r2": (18.0, 21.0, 31.0, 42.0, 250.0),
        "r3": (16.0, 19.0, 29.0, 41.0, 70.0),
    })  # fmt: skip
    k = ramp.knee(rs.of("latency"))
    assert k is not None and k["offered_rps"] == 300.0 and k["bent"] is True
    assert k["bent_p99_ms"] == 70.0 and k["bent_reason"] == "p99 over the SLO (100 ms)"


@pytest.mark.skipif(not (REFERENCE / "manifest.json").exists(), reason="no reference run set")
def test_the_reference_knees_are_steps_of_its_ramps_and_what_its_readings_say() -> None:
    rs = load_runset(REFERENCE)
    found = {r.name: r for r in readings.knees(rs)}
    for runs in rs.repeated("latency").values():
        k = ramp.knee(runs)
        assert k is not None and k["offered_rps"] is not None, runs[0].tag
        steps = set(ramp.ramp_steps(runs[0])["offered_rps"])
        assert k["offered_rps"] in steps and k["offered_rps"] >= min(steps)
        reading = found[f"knee.{runs[0].variant}.achieved_rps"]
        assert (reading.median, reading.n) == (k["achieved_rps"], len(runs))
        assert ramp.throughput_at_slo(runs) == k["achieved_rps"]
