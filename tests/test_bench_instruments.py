"""`archlab bench instruments`: both arms run, each run records its instruments, the OFF arm
really runs without them, and the overhead arithmetic (ratio, paired bootstrap) is right.

The live test is one tiny bench (one variant, two repetitions, a few seconds at a low rate):
it checks what the runs contain, never how fast anything was.
"""

from __future__ import annotations

import csv
import itertools
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from support import run_cli

from archlab.analysis import validate
from archlab.run import instruments as bench
from archlab.run.plan import RunPlan, resolve
from archlab.rundir import GC, PROCESSES, TELEMETRY_DIR, Status, read_meta


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("instruments")
    args = [
        "bench", "instruments", "--variants", "monolith", "--repeats", "2", "--duration", "3",
        "--warmup-s", "1", "--rate", "20", "--out", out.name,  # relative to the cwd
    ]  # fmt: skip
    log = out.parent / f"archlab-{uuid.uuid4().hex[:8]}.log"
    res = run_cli(args, timeout_s=240, log_path=log, cwd=out.parent)
    assert res.killed == [], f"left behind: {res.killed}\n{res.output[-3000:]}"
    assert res.returncode == 0, res.output[-4000:]
    return json.loads((out / bench.REPORT).read_text()), res.output


def test_both_arms_run_interleaved_and_every_run_completes(tiny_bench: tuple[dict, str]) -> None:
    report, output = tiny_bench
    runs = report["runs"]
    assert [(r["rep"], r["arm"]) for r in runs] == [(0, "on"), (0, "off"), (1, "off"), (1, "on")]
    assert all(r["status"] == Status.COMPLETED for r in runs)
    assert report["complete"] is True
    assert "run 1/4: monolith on" in output and "run 4/4: monolith on" in output
    for run in runs:
        m = run["metrics"]
        assert m["requests"] > 0 and m["bracket_requests"] > 0
        assert m["server_cpu_ms_per_req"] is not None and m["p99_ms"] >= m["p50_ms"] > 0


def test_meta_records_the_instruments_and_off_means_off(tiny_bench: tuple[dict, str]) -> None:
    report, _ = tiny_bench
    for run in report["runs"]:
        run_dir = Path(run["run_dir"])
        meta = read_meta(run_dir)
        on = run["arm"] == "on"
        tel = meta["telemetry"]
        assert (tel["gc"], tel["process_sampler"], tel["cpu_bracket"]) == (on, on, True)
        assert meta["cpu_bracket"]["opened"] is True
        assert meta["cpu_bracket"]["server_cpu_s"] >= 0
        gc_rows = _rows(run_dir / GC)
        assert not (run_dir / TELEMETRY_DIR).exists()  # merged and removed
        if on:
            assert gc_rows and tel["collected"]["files"] > 0
            assert _rows(run_dir / PROCESSES)
        else:
            assert gc_rows == [] and tel["collected"]["files"] == 0
            assert not (run_dir / PROCESSES).exists()
            assert "server" not in json.loads((run_dir / "summary.json").read_text())
        assert validate.validate_run(run_dir) == []


def test_the_report_has_every_metric_for_the_variant(tiny_bench: tuple[dict, str]) -> None:
    report, output = tiny_bench
    per_metric = report["overhead"]["monolith"]
    for key, _, _ in bench.METRICS:
        assert per_metric[key]["n"] == 2
        m = per_metric[key]
        assert m["ratio_low"] <= m["ratio"] <= m["ratio_high"]
    assert "numpy" in report["interval"]["method"] or "scipy" in report["interval"]["method"]
    assert "variant CPU ms/req" in output


def test_schedule_pairs_each_repetition_and_alternates_which_arm_goes_first() -> None:
    order = bench.schedule(["a", "b", "c"], 4)
    assert len(order) == 2 * 3 * 4
    pairs = [order[i : i + 2] for i in range(0, len(order), 2)]
    for (rep1, v1, arm1), (rep2, v2, arm2) in pairs:
        assert (rep1, v1) == (rep2, v2) and {arm1, arm2} == {"on", "off"}
    for variant in "abc":
        firsts = [p[0][2] for p in pairs if p[0][1] == variant]
        assert firsts.count("on") == firsts.count("off") == 2


def test_the_ratio_of_means_and_a_constant_ratio_has_a_zero_width_interval() -> None:
    ratio, low, high = bench.ratio_interval([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert ratio == pytest.approx(2.0) and low == pytest.approx(2.0) and high == pytest.approx(2.0)


def test_the_bootstrap_resamples_pairs() -> None:
    # ON is OFF + 5 % in every pair while OFF varies 100-fold: resampling runs independently
    # would give a wide interval; resampling pairs gives exactly 1.05.
    off = [1.0, 10.0, 100.0, 3.0]
    ratio, low, high = bench.ratio_interval([1.05 * x for x in off], off)
    assert (ratio, low, high) == pytest.approx((1.05, 1.05, 1.05))


def test_the_bootstrap_interval_matches_the_exact_bootstrap_distribution() -> None:
    on, off = [1.0, 2.0, 3.0, 6.0], [1.0, 1.0, 1.0, 1.0]
    ratio, low, high = bench.ratio_interval(on, off, resamples=40_000, seed=3)
    assert ratio == pytest.approx(3.0)
    # every one of the 4^4 equally likely resamples of the pairs, and its ratio of means
    exact = sorted(
        np.mean([on[i] for i in idx]) / np.mean([off[i] for i in idx])
        for idx in itertools.product(range(4), repeat=4)
    )
    weights = np.full(len(exact), 1 / len(exact))
    cdf = np.cumsum(weights)
    exact_low = exact[int(np.searchsorted(cdf, 0.025))]
    exact_high = exact[int(np.searchsorted(cdf, 0.975))]
    assert low == pytest.approx(exact_low, abs=0.26)  # the distribution's steps are 0.25 wide
    assert high == pytest.approx(exact_high, abs=0.26)
    assert low < ratio < high


def test_overhead_is_a_cost_in_percent_for_every_direction() -> None:
    slower = bench.overhead([95.0, 95.0], [100.0, 100.0], direction=-1)  # throughput fell 5 %
    assert slower["overhead_pct"] == pytest.approx(100 * (100 / 95 - 1), abs=0.01)
    assert slower["verdict"] == "> 2 %"
    costlier = bench.overhead([1.01, 2.02], [1.0, 2.0], direction=1)  # 1 % more CPU per request
    assert costlier["overhead_pct"] == pytest.approx(1.0)
    assert costlier["verdict"] == "< 2 %" and costlier["pair_ratios"] == [1.01, 1.01]
    assert bench.verdict(-1.0, 3.0) == "undecided"


def test_a_variant_with_a_failed_run_drops_that_pair() -> None:
    metrics = {key: 1.0 for key, _, _ in bench.METRICS} | {"harness_cpu_pct": 1.0}
    runs = [
        {"variant": "v", "rep": rep, "arm": arm, "status": status, "metrics": metrics}
        for rep, arm, status in [
            (0, "on", Status.COMPLETED),
            (0, "off", Status.COMPLETED),
            (1, "off", Status.FAILED),
            (1, "on", Status.COMPLETED),
            (2, "on", Status.COMPLETED),
            (2, "off", Status.COMPLETED),
        ]
    ]
    result = bench.overheads(runs, bench.Config(variants=("v",), resamples=100))
    assert result["v"]["p99_ms"]["n"] == 2
    assert result["v"]["p99_ms"]["ratio"] == pytest.approx(1.0)


def test_the_arms_differ_only_in_their_instruments() -> None:
    cfg = bench.Config(variants=("monolith",))
    on = bench.run_plan(cfg, "monolith", "on", "x")
    off = bench.run_plan(cfg, "monolith", "off", "x")
    assert (on.gc_telemetry, on.process_sampler, off.gc_telemetry, off.process_sampler) == (
        True,
        True,
        False,
        False,
    )
    same = {k: v for k, v in vars(on).items() if k not in ("gc_telemetry", "process_sampler")}
    assert same == {k: v for k, v in vars(off).items() if k in same}
    assert on.cpu_bracket and off.cpu_bracket
    setup = resolve(on)
    assert setup.load.loop == "open" and setup.load.offered_rps == cfg.rate
    assert setup.duration_s == cfg.warmup_s + cfg.duration_s


def test_a_target_run_refuses_the_switches_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="--target"):
        resolve(RunPlan(target="http://127.0.0.1:9", cpu_bracket=True))
