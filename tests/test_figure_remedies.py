"""The isolation-remedy study (`archlab.analysis.remedies`, figure 02-gc_isolation_bulkheads) on
synthetic run sets, and its steps in the reproduce matrix.

Every synthetic run is an open loop at RATE for SECONDS, written the way the harness writes
runs. The engine's full collections (gc.csv rows of the `recommendations` role, generation 2)
cover [5, 10) s; a request of the other endpoints sent inside them takes INSIDE[...] ms, every
other request BASE_MS. So each run's others' p99 inside is its INSIDE value and outside BASE_MS.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure
from support import synthetic_manifest, write_csv

from archlab import reproduce as repro
from archlab.analysis import gcwindows
from archlab.analysis import remedies as rm
from archlab.analysis.runset import ENDPOINT_ORDER, RunSet, load_runset
from archlab.analysis.summary import summarize_run
from archlab.figures import figure_functions, gcstalls
from archlab.figures import remedies as fig
from archlab.rundir import GC, GC_COLUMNS, META, RECORD_COLUMNS, REQUESTS, SUMMARY, write_json

T0 = 1_800_000_000.0
RATE = 40.0
SECONDS = 16
BASE_MS = 4.0
PAUSE = (5.0, 10.0)
INSIDE = {  # (design, remedy) -> others' p99 inside the collections, rounds 1 .. 3
    ("monolith", "none"): (80.0, 90.0, 85.0),
    ("multiprocess", "none"): (60.0, 70.0, 65.0),
    ("multiprocess", "bulkhead"): (12.0, 14.0, 13.0),  # apart from cpu: the bulkhead dominates
    ("multiprocess", "cpu"): (40.0, 50.0, 45.0),
    ("multiprocess", "both"): (5.0, 6.0, 7.0),  # within 2x of outside in every round
    ("distributed", "none"): (100.0, 120.0, 110.0),
    ("distributed", "bulkhead"): (50.0, 60.0, 55.0),
    ("distributed", "cpu"): (52.0, 58.0, 62.0),  # overlaps the bulkhead: not distinguishable
    ("distributed", "both"): (20.0, 25.0, 30.0),  # not within 2x
}

HEALTHY_P99 = {"none": (9.0, 10.0, 11.0), "bulkhead": (9.5, 10.5, 11.5), "cpu": (30.0, 32.0, 34.0)}
"""The family's p99 on a healthy run: the bulkhead costs nothing measurable, CPU isolation
does (the front on one CPU)."""


def _write_run(
    root: Path, design: str, remedy: str, round_no: int, inside_ms: float,
    scenario: str = "gc-pressure",
) -> str:  # fmt: skip
    """A run of the study; a healthy one (`open`) has no collections and every twentieth
    request takes `inside_ms` (its p99)."""
    name = rm.tag(scenario, design, remedy, round_no)
    run = root / "runs" / name
    rows = []
    for i in range(int(SECONDS * RATE)):
        t = i / RATE
        endpoint = ENDPOINT_ORDER[i % len(ENDPOINT_ORDER)]
        if scenario == rm.HEALTHY:
            slow = i % 20 == 0
        else:
            slow = endpoint in gcwindows.OTHERS and PAUSE[0] <= t < PAUSE[1]
        ms = inside_ms if slow else BASE_MS
        rows.append((T0 + t, endpoint, ms, 200, "", T0 + t))
    write_csv(run / REQUESTS, RECORD_COLUMNS, rows)
    role = "recommendations" if design != "monolith" else "monolith"
    duration_ms = (PAUSE[1] - PAUSE[0]) * 1000
    pauses = [] if scenario == rm.HEALTHY else [(20, role, 2, T0 + PAUSE[0], duration_ms, 0, 0)]
    write_csv(run / GC, GC_COLUMNS, pauses)
    meta = {
        "schema_version": 3,
        "run_id": name,
        "status": "completed",
        "variant": design,
        "scenario": {"name": scenario},
        "knobs": {"threads": 8, **(rm.knobs(remedy) if design != rm.BASELINE else {})},
        "warmup_s": 1.0,
        "duration_s": SECONDS,
        "dataset_size": "tiny",
        "load": {"loop": "open", "offered_rps": RATE, "users": 1},
        "profile": {"enabled": False},
    }
    write_json(run / META, meta)
    write_json(run / SUMMARY, summarize_run(run, warmup_s=1.0))
    return name


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> RunSet:
    root = tmp_path_factory.mktemp("remedies")
    tags = [
        _write_run(root, design, remedy, r, values[r - 1])
        for r in (1, 2, 3)
        for (design, remedy), values in INSIDE.items()
    ]
    tags += [
        _write_run(root, "multiprocess", remedy, r, p99[r - 1], rm.HEALTHY)
        for r in (1, 2, 3)
        for remedy, p99 in HEALTHY_P99.items()
    ]
    return load_runset(synthetic_manifest(root, tags, rm.KIND))


def test_the_others_p99_inside_and_outside_the_collections_is_the_median_over_rounds(
    study: RunSet,
) -> None:
    t = rm.table(study).set_index(["scenario", "design", "remedy"])
    assert len(t) == len(INSIDE) + len(HEALTHY_P99) and set(t["rounds"]) == {3}
    for (design, remedy), values in INSIDE.items():
        row = t.loc[("gc-pressure", design, remedy)]
        assert row["others_p99_inside_ms"] == pytest.approx(sorted(values)[1])
        assert row["others_p99_inside_ms_min"] == pytest.approx(min(values))
        assert row["others_p99_outside_ms"] == pytest.approx(BASE_MS)
        assert row["others_ratio"] == pytest.approx(sorted(values)[1] / BASE_MS)


def test_the_verdict_names_the_dominant_cause_only_when_the_remedies_are_apart(
    study: RunSet,
) -> None:
    found = {v.design: v for v in rm.verdicts(study)}
    assert found["multiprocess"].dominant == "bulkhead"
    assert found["distributed"].dominant is None  # the ranges overlap
    assert found["multiprocess"].isolated() is True
    assert found["distributed"].isolated() is False
    assert found["multiprocess"].gain("both") == pytest.approx(65.0 / 6.0)
    base = found["multiprocess"].baseline_ratio
    assert base is not None and base.median == pytest.approx(85.0 / BASE_MS)


def test_the_reading_says_what_dominated_and_whether_isolation_holds(study: RunSet) -> None:
    text = fig.reading(study)
    assert "gc-pressure, multiprocess" in text
    assert "head-of-line blocking at the front dominated" in text
    assert "not distinguishable at this N" in text
    assert "isolated under both (within 2x in every round)" in text
    assert "not isolated under any remedy" in text
    assert text in gcstalls.reading(study)
    assert (
        "healthy, multiprocess, each remedy's cost: ms p99: none 10.0, "
        "bulkhead 10.5 (not distinguishable), cpu 32.0" in text
    )


def test_a_run_whose_knobs_disagree_with_its_tag_is_not_used(tmp_path: Path) -> None:
    good = _write_run(tmp_path, "multiprocess", "both", 1, 6.0)
    bad = _write_run(tmp_path, "multiprocess", "bulkhead", 1, 6.0)
    meta = tmp_path / "runs" / bad / META
    write_json(meta, {**__import__("json").loads(meta.read_text()), "knobs": {"bulkhead": 0}})
    rs = load_runset(synthetic_manifest(tmp_path, [good, bad], rm.KIND))
    assert list(rm.runs_table(rs)["tag"]) == [good]


def test_the_figure_is_drawn_and_registered_as_02_gc_isolation_bulkheads(study: RunSet) -> None:
    assert isinstance(fig.gc_isolation_bulkheads(study), Figure)
    assert figure_functions()["02-gc_isolation_bulkheads"] is fig.gc_isolation_bulkheads


def test_without_the_study_nothing_is_drawn(tmp_path: Path) -> None:
    rs = load_runset(synthetic_manifest(tmp_path, [], rm.KIND))
    assert fig.gc_isolation_bulkheads(rs) is None
    assert fig.reading(rs) == fig.NO_RUNS


def test_tags_round_trip_and_the_remedies_order_rotates_between_rounds() -> None:
    assert rm.parse_tag(rm.tag("cpu-hog", "distributed", "both", 2)) == (
        "cpu-hog", "distributed", "both", 2
    )  # fmt: skip
    assert rm.parse_tag("remedy-open-multiprocess-wat-r1") is None
    firsts = {rm.remedy_order(r)[0] for r in range(1, len(rm.REMEDIES) + 1)}
    assert firsts == set(rm.REMEDIES)


def test_every_scale_runs_the_study_interleaved_and_full_repeats_it_five_times() -> None:
    for scale in (s for s in repro.SCALES.values() if not s.only_headline):
        steps = [s for s in repro.plan_steps(scale, [0, 1]) if rm.KIND in s.kinds]
        assert steps, scale.name
        for s in steps:
            parsed = rm.parse_tag(s.tag)
            assert parsed is not None
            scenario, design, remedy, _ = parsed
            assert s.plan.variant == design and s.plan.scenario == scenario
            assert s.plan.rate == rm.RATE
            if design != rm.BASELINE:
                assert dict(s.plan.knobs) == rm.knobs(remedy)
    full = [s for s in repro.plan_steps(repro.SCALES["full"], [0, 1]) if rm.KIND in s.kinds]
    rounds = [rm.parse_tag(s.tag)[3] for s in full]  # type: ignore[index]
    assert rounds == sorted(rounds) and set(rounds) == {1, 2, 3, 4, 5}  # round by round
    names = repro.SCALES["full"].remedy_names
    assert {rm.NONE, "bulkhead", "both"} <= set(names)  # "both" less "bulkhead" is the cpu's
    scenarios = repro.SCALES["full"].remedy_scenarios
    assert set(rm.DISTURBED) <= set(scenarios)  # both causes, each under every remedy
    per_round = len(scenarios) * (1 + len(rm.DESIGNS) * len(names))
    assert len(full) == 5 * per_round
