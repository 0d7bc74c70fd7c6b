"""The scaling figure (06) draws only measured points as measured, with intervals over
repetitions, and the model beyond the machine apart and labelled; the cost figures (04) fall
back to the latency ramps' common step, saying so, when a run set has no HTTP server study."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from support import ramp_windows, synthetic_manifest

from archlab.analysis import costmodel as cm
from archlab.analysis.runset import RunSet, load_runset
from archlab.figures import cost, scaling
from archlab.rundir import MANIFEST, META, SUMMARY, read_json, write_json

MIB = 2**20
STEP_S = 10.0
PRICES = cm.Prices(vcpu_hour=0.03, gib_hour=0.004, source="t", url="https://x.invalid",
                   as_of="2024")  # fmt: skip


def _rows(steps: list[tuple[float, float, float]], cpu_percent: float = 0.0) -> list[dict]:
    """Windows of (offered, achieved, p99) steps; the server busy `cpu_percent` x offered/100."""
    return ramp_windows(steps, STEP_S, cpu_percent)


def _runset(root: Path, runs: dict[str, tuple[str, tuple[str, ...], int | None, dict, dict]]):
    for tag, (variant, _, _, summary, meta) in runs.items():
        run = root / "runs" / tag
        run.mkdir(parents=True)
        write_json(run / META, {"variant": variant, "status": "completed",
                                "scenario": {"name": "ramp"}} | meta)  # fmt: skip
        write_json(run / SUMMARY, summary)
    synthetic_manifest(root, list(runs), "scaling")
    manifest = read_json(root / MANIFEST)
    for step in manifest["steps"]:
        _, kinds, cpus, _, _ = runs[step["tag"]]
        step |= {"kinds": list(kinds), "cpus": cpus}
    write_json(root / MANIFEST, manifest)
    return load_runset(root)


def _ramp(*steps: tuple[float, float, float]) -> dict:
    return {"windows": {"rows": _rows(list(steps))}}


MONO = {"threads": 8, "workers": 1}
SCALING_RUNS = {
    # three repetitions pinned to 1 CPU: 300 req/s held in each (p99 20-24 ms), 400 did not
    **{
        f"scaling-monolith-1cpu-r{r}": (
            "monolith", ("scaling",), 1,
            _ramp((100, 100, 10), (200, 200, 12), (300, p99_300, p99), (400, 330, 300)),
            {"knobs": MONO},
        )
        for r, (p99_300, p99) in enumerate(((300, 20), (298, 24), (299, 22)), start=1)
    },
    # the unpinned latency ramp with one worker, and the scaling ramp with one per CPU
    "latency-monolith": (
        "monolith", ("latency", "scaling"), None,
        _ramp((100, 100, 10), (200, 200, 15), (300, 300, 30), (400, 300, 900)),
        {"knobs": MONO},
    ),
    "scaling-monolith-2cpu": (
        "monolith", ("scaling",), None,
        _ramp((100, 100, 10), (200, 200, 12), (300, 300, 20), (400, 400, 40)),
        {"knobs": MONO | {"workers": 2}},
    ),
    "scaling-distributed-1cpu": (
        "distributed", ("scaling",), 1,
        _ramp((100, 100, 30), (200, 150, 900)),
        {"knobs": {"threads": 8}},
    ),
    "latency-distributed": (
        "distributed", ("latency", "scaling"), None,
        _ramp((100, 100, 25), (200, 200, 60), (300, 250, 800)),
        {"knobs": {"threads": 8}},
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> RunSet:
    return _runset(tmp_path_factory.mktemp("scaling"), SCALING_RUNS)


def test_the_table_reduces_repetitions_and_keeps_one_replica_per_core(scaled: RunSet) -> None:
    df = scaling.scaling_table(scaled).set_index(["variant", "cpus"])
    one = df.loc[("monolith", 1)]
    assert one["n"] == 3 and one["knee_offered_rps"] == 300 and not one["lower_bound"]
    assert one["throughput_at_slo_rps"] == 299
    assert one["throughput_ci_low"] >= 298 and one["throughput_ci_high"] <= 300
    assert one["knee_p99_ms"] == 22 and one["knee_p99_ci_high"] == 24
    two = df.loc[("monolith", 2)]
    assert two["tag"] == "scaling-monolith-2cpu" and two["knob_value"] == 2
    assert two["lower_bound"] and two["throughput_at_slo_rps"] == 400
    assert df.loc[("monolith", 2), "speedup_vs_1cpu"] == pytest.approx(400 / 299)
    assert df.loc[("distributed", 1), "knob"] is None
    assert df.loc[("distributed", 2), "throughput_at_slo_rps"] == 200


def test_the_model_scales_the_largest_pinned_point_linearly_beyond_the_machine(
    scaled: RunSet,
) -> None:
    assert scaling.model_cpus(scaled) == [4, 8]
    model = scaling.model_table(scaled).set_index(["variant", "cpus"])
    assert model.loc[("monolith", 4), "modelled_rps"] == 4 * 299
    assert model.loc[("distributed", 8), "modelled_rps"] == 8 * 100
    assert set(model["basis_cpus"]) == {1}


def test_the_figure_draws_the_model_apart_and_says_what_was_not_measured(scaled: RunSet) -> None:
    fig = scaling.throughput_at_slo(scaled)
    assert isinstance(fig, Figure)
    text = fig._supxlabel.get_text().replace("\n", " ")
    assert "4+ CPUs: not measured on this 2-CPU machine" in text
    assert f"dashed, hatched: {scaling.MODEL}" in text
    assert "monolith workers 1 at 1, 2 at 2" in text and "repetitions per point: 1, 3" in text
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert scaling.MODEL in legend and "not measured: this machine has 2 CPUs" in legend
    assert "measured: 95 % interval over repetitions" in legend
    ax = fig.axes[0]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and len(ln.get_xdata())]
    assert sorted(max(ln.get_xdata()) for ln in dashed) == [8, 8]  # one model line per variant
    solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata())]
    assert all(max(ln.get_xdata()) <= 2 for ln in solid)  # measured only up to the machine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(io.BytesIO(), format="png", dpi=60)


def test_the_reading_quotes_intervals_and_labels_the_model(scaled: RunSet) -> None:
    text = scaling.reading(scaled)
    assert "1 CPU (workers=1): 299 req/s [298, 300], n=3" in text
    assert "2 CPUs (all, shared with the generator) (workers=2): ≥ 400 req/s" in text
    assert "4+ CPUs: not measured on this 2-CPU machine." in text
    assert f"{scaling.MODEL} (dashed in the figure, not a measurement)" in text


def _fixed(cpu_s: float, requests: int, pss_mib: float) -> dict:
    total = {"processes": 2, "cpu_s": cpu_s, "pss_mean_bytes": pss_mib * MIB,
             "pss_peak_bytes": pss_mib * MIB}  # fmt: skip
    return {"endpoints": {"ALL": {"count": requests}}, "window": {"seconds": 100.0},
            "load": {"offered_rps": requests / 100, "achieved_rps": requests / 100},
            "server": {"total": total, "roles": {}}}  # fmt: skip


def _ramp_with_cpu(cpu_percent_per_100rps: float, pss_mib: float, top: float) -> dict:
    steps = [(50, 50, 10), (100, 100, 12), (200, 200, 20), (400, top, 500)]
    total = {"processes": 2, "cpu_s": 1.0, "pss_mean_bytes": pss_mib * MIB,
             "pss_peak_bytes": pss_mib * MIB}  # fmt: skip
    return {"windows": {"rows": _rows(steps, cpu_percent_per_100rps)},
            "server": {"total": total, "roles": {}}}  # fmt: skip


def test_without_the_server_study_cost_is_the_latency_step_at_a_common_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 50 req/s (the study's rate, which both ramps ran) the monolith's server was 10 % busy
    over 10 s for 500 requests: 2 ms each; the distributed 25 %: 5 ms. Their profile runs
    (3 and 8 ms) are not read."""
    runs = {
        "latency-monolith": ("monolith", ("latency",), None, _ramp_with_cpu(20, 256, 300), {}),
        "latency-distributed": (
            "distributed", ("latency",), None, _ramp_with_cpu(50, 512, 250), {},
        ),
        "profile-monolith": ("monolith", ("profile",), None, _fixed(30.0, 10_000, 256),
                             {"profile": {"enabled": True}}),
        "profile-distributed": ("distributed", ("profile",), None, _fixed(80.0, 10_000, 512),
                                {"profile": {"enabled": True}}),
    }  # fmt: skip
    rs = _runset(tmp_path, runs)
    assert cost.per_request_basis(rs) == (cost.RAMP_STEP, 50.0)
    table = cost.cost_table(rs, PRICES).set_index("variant")
    assert dict(table["cpu_ms_per_request"]) == pytest.approx({"monolith": 2.0, "distributed": 5.0})
    assert dict(table["per_request_run"]) == {
        "monolith": "latency-monolith", "distributed": "latency-distributed",
    }  # fmt: skip
    # 0.25 GiB held over the 10 s step for its 500 requests
    assert table.loc["monolith", "gib_s_per_request"] == pytest.approx(0.25 * 10 / 500)
    # capacity from the same ramps: 200 req/s held on 2 CPUs, a model of 10 cores for 1000
    assert table.loc["monolith", "cores_needed"] == 10
    monkeypatch.setattr(cost, "_prices", lambda: PRICES)
    fig = cost.fig_cost_per_request(rs)
    text = fig._supxlabel.get_text().replace("\n", " ")
    assert "this run set has no HTTP server study, so each latency ramp's step at 50 req/s" in text
    assert "latency step at 50 req/s" in fig.get_suptitle()
    assert "no HTTP server study" in cost.reading(rs)
