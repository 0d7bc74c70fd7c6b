"""The HTTP server study (`archlab.analysis.servers`, figure 04-server_sensitivity) on synthetic
run sets, and its steps in the reproduce matrix.

The synthetic runs are written the way the harness writes them (rundir's column constants,
`summarize_run`), so the study reads them through summary.json as it reads real runs:

- every run is an open loop at RATE for SECONDS (1 s warm-up); one request in twenty takes
  P99[...] ms, the others 2 ms, so each run's p99 is its P99 value and its p50 2 ms;
- one process's CPU counter grows by CPU[...] ms per request sent, so the run's CPU ms per
  request is that value (within the summary's interpolation at the window's ends: 0.1 %).

CPU: monolith 0.80 / 0.70 and distributed 1.80 / 1.20 ms (gunicorn-gthread / granian, median
over three rounds): the gap shrinks from 1.00 to 0.50 ms, so 50 % of it is the server.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from support import synthetic_manifest, write_csv

from archlab import reproduce as repro
from archlab.analysis import servers as sv
from archlab.analysis.runset import ENDPOINT_ORDER, RunSet, load_runset
from archlab.analysis.summary import summarize_run
from archlab.figures import cost, figure_functions
from archlab.figures import servers as fig
from archlab.rundir import (
    META,
    PROCESS_COLUMNS_V1,
    PROCESSES,
    RECORD_COLUMNS,
    REQUESTS,
    SUMMARY,
    write_json,
)
from variants.placement import PATH

T0 = 1_800_000_000.0
RATE = 50.0
SECONDS = 20
BASE_MS = 2.0
GTHREAD, GRANIAN = "gunicorn-gthread", "granian"
CPU = {  # (variant, server) -> CPU ms per request in rounds 1, 2, 3
    ("monolith", GTHREAD): (0.80, 0.78, 0.82),
    ("monolith", GRANIAN): (0.70, 0.69, 0.71),
    ("multiprocess", GTHREAD): (0.90, 0.88, 0.95),
    ("multiprocess", GRANIAN): (0.85, 0.80, 0.92),  # overlaps gunicorn-gthread's range
    ("distributed", GTHREAD): (1.80, 1.76, 1.86),  # gaps 1.00, 0.98, 1.04
    ("distributed", GRANIAN): (1.20, 1.17, 1.23),  # gaps 0.50, 0.48, 0.52
}
P99 = {
    ("monolith", GTHREAD): (9.0, 8.0, 10.0),
    ("monolith", GRANIAN): (8.5, 9.5, 7.5),  # overlaps: not distinguishable
    ("multiprocess", GTHREAD): (10.0, 11.0, 12.0),
    ("multiprocess", GRANIAN): (10.5, 11.5, 9.5),
    ("distributed", GTHREAD): (22.0, 20.0, 24.0),
    ("distributed", GRANIAN): (13.0, 12.0, 14.0),  # apart
}


def _write_run(
    root: Path, variant: str, server: str, round_no: int, cpu_ms: float, p99_ms: float,
    *, knob: str | None = None, rate: float = RATE,
) -> str:  # fmt: skip
    name = sv.tag(variant, server, round_no)
    run = root / "runs" / name
    times = [i / rate for i in range(int(SECONDS * rate))]
    requests = [
        (T0 + t, ENDPOINT_ORDER[i % len(ENDPOINT_ORDER)], p99_ms if i % 20 == 0 else BASE_MS, 200,
         "", T0 + t)
        for i, t in enumerate(times)
    ]  # fmt: skip
    write_csv(run / REQUESTS, RECORD_COLUMNS, requests)
    samples = []
    for s in range(0, SECONDS + 2):
        cpu = cpu_ms / 1000 * sum(1 for t in times if t < s)
        samples.append((T0 + s, 10, 1, "edge", "edge", T0 - 2, round(cpu, 6), 0.0, "", 2**25,
                        2**25, 2**25, 0, 8, 0, 0))  # fmt: skip
    write_csv(run / PROCESSES, PROCESS_COLUMNS_V1, samples)  # rows without smaps columns
    meta = {
        "schema_version": 3,
        "run_id": name,
        "status": "completed",
        "variant": variant,
        "scenario": {"name": "open"},
        "knobs": {"threads": 8, "server": knob or server},
        "warmup_s": 1.0,
        "duration_s": SECONDS,
        "dataset_size": "tiny",
        "load": {"loop": "open", "offered_rps": RATE, "users": 1},
        "profile": {"enabled": False},
    }
    write_json(run / META, meta)
    write_json(run / SUMMARY, summarize_run(run, warmup_s=1.0))
    return name


def _manifest(root: Path, tags: list[str]) -> Path:
    return synthetic_manifest(root, tags, sv.KIND)


def _study(root: Path, cpu: dict, p99: dict, rounds: int) -> RunSet:
    tags = [
        _write_run(root, variant, server, r, cpu[(variant, server)][r - 1],
                   p99[(variant, server)][r - 1])
        for r in range(1, rounds + 1)
        for (variant, server) in cpu
    ]  # fmt: skip
    return load_runset(_manifest(root, tags))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> RunSet:
    return _study(tmp_path_factory.mktemp("servers"), CPU, P99, 3)


# ---------------------------------------------------------------- the measures


def test_each_variant_and_server_is_the_median_over_rounds_with_its_range(study: RunSet) -> None:
    t = sv.table(study).set_index(["variant", "server"])
    assert len(t) == len(CPU) and set(t["rounds"]) == {3}
    for key, values in CPU.items():
        row = t.loc[key]
        assert row["cpu_ms_per_request"] == pytest.approx(sorted(values)[1], rel=2e-3)
        assert row["cpu_ms_per_request_min"] == pytest.approx(min(values), rel=2e-3)
        assert row["cpu_ms_per_request_max"] == pytest.approx(max(values), rel=2e-3)
        assert row["p99_ms"] == pytest.approx(sorted(P99[key])[1])
        assert row["p50_ms"] == pytest.approx(BASE_MS, rel=1e-3)
        assert row["achieved_rps"] == pytest.approx(RATE, rel=0.01) and row["keeping_up"]
    assert sv.offered_rates(study) == [RATE] and sv.rounds(study) == [1, 2, 3]


def test_the_gap_is_paired_by_round_and_half_of_it_is_the_server(study: RunSet) -> None:
    g = sv.gap(study, GTHREAD)
    assert g is not None and g.rounds == 3
    assert (g.median, g.low, g.high) == pytest.approx((1.00, 0.98, 1.04), rel=3e-3)
    s = sv.share(study, GRANIAN)
    assert s is not None
    assert s.other_gap.median == pytest.approx(0.50, rel=3e-3)
    assert s.share == pytest.approx(0.50, abs=2e-3)
    assert s.bounds == pytest.approx((1 - 0.52 / 0.98, 1 - 0.48 / 1.04), abs=3e-3)
    assert s.distinguishable is True
    text = sv.share_text(s)
    assert text.startswith("50 % (47 to 54 %) of the distributed variant's extra CPU per "
                           "request over the monolith is the server")  # fmt: skip
    assert "1.00 (0.98-1.04) CPU ms/request under gunicorn-gthread, 0.50 (0.48-0.52)" in text


def test_overlapping_round_ranges_read_as_not_distinguishable(study: RunSet) -> None:
    mono = sv.effect(study, "monolith", "p99_ms", GRANIAN)
    dist = sv.effect(study, "distributed", "p99_ms", GRANIAN)
    mp = sv.effect(study, "multiprocess", "cpu_ms_per_request", GRANIAN)
    assert mono and mono.apart is False and dist and dist.apart is True and mp and not mp.apart
    text = cost.reading(study)
    assert "- monolith: CPU per request 0.80 (0.78-0.82) vs 0.70 (0.69-0.71) CPU ms (-1" in text
    assert "distinguishable); p99 9.0 (8.0-10.0) vs 8.5 (7.5-9.5) ms (-6 %, not distinguish" in text
    assert "- distributed: CPU per request 1.80 (1.76-1.86) vs 1.20 (1.17-1.23)" in text
    assert "p99 22.0 (20.0-24.0) vs 13.0 (12.0-14.0) ms (-41 %, distinguishable)" in text
    assert "50 % (47 to 54 %) of the distributed variant's extra CPU" in text
    assert "3 rounds interleaved, 2 CPUs" in text


def test_a_gap_within_the_rounds_noise_is_not_put_on_the_server(tmp_path: Path) -> None:
    cpu = {
        ("monolith", GTHREAD): (0.80, 0.78),
        ("monolith", GRANIAN): (0.70, 0.72),
        ("distributed", GTHREAD): (1.80, 1.70),
        ("distributed", GRANIAN): (1.60, 1.75),
    }
    p99 = {key: (5.0, 6.0) for key in cpu}  # fmt: skip
    rs = _study(tmp_path, cpu, p99, 2)
    s = sv.share(rs, GRANIAN)
    assert s is not None and s.distinguishable is False  # gaps 0.92-1.00 vs 0.90-1.03
    assert "is not distinguishable (the gaps' round ranges overlap" in sv.share_text(s)
    assert "not distinguishable" in fig.fig_server_sensitivity(rs).get_suptitle()


def test_one_round_states_the_share_without_judging_it(tmp_path: Path) -> None:
    cpu = {key: values[:1] for key, values in CPU.items() if key[0] != "multiprocess"}
    rs = _study(tmp_path, cpu, P99, 1)
    s = sv.share(rs, GRANIAN)
    assert s is not None and s.distinguishable is None and s.share == pytest.approx(0.5, abs=2e-3)
    assert "from one round (no spread: not judged)" in sv.share_text(s)
    assert "one round: not judged" in cost.reading(rs)


def test_a_run_whose_knob_or_variant_disagrees_with_its_tag_is_not_used(tmp_path: Path) -> None:
    tags = [
        _write_run(tmp_path, "monolith", GTHREAD, 1, 0.8, 9.0),
        _write_run(tmp_path, "monolith", GRANIAN, 1, 0.7, 9.0, knob=GTHREAD),
    ]
    rs = load_runset(_manifest(tmp_path, tags))
    assert [(v, s) for v, s, _, _ in sv.study_runs(rs)] == [("monolith", GTHREAD)]
    assert sv.share(rs, GRANIAN) is None


# ---------------------------------------------------------------- figure, reading


def test_the_figure_has_both_panels_and_names_rate_rounds_cpus_and_share(study: RunSet) -> None:
    assert figure_functions()["04-server_sensitivity"] is fig.fig_server_sensitivity
    assert cost.FIGURES["server_sensitivity"] is cost.fig_server_sensitivity
    f = fig.fig_server_sensitivity(study)
    assert isinstance(f, Figure)
    titles = [ax.get_title(loc="left") for ax in f.axes]
    assert titles == ["(a) CPU per request", "(b) p99 latency"]
    for ax in f.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == list(sv.VARIANTS)
        assert len(ax.patches) == len(CPU)  # a bar per variant and server
    labels = {t.get_text() for t in f.axes[0].texts}
    assert {"0.80", "0.70", "1.80", "1.20"} <= labels
    title = f.get_suptitle()
    assert "50 req/s, 3 rounds, 2 CPUs" in title and "50 % (47 to 54 %)" in title
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. constrained layout giving up
        f.savefig(io.BytesIO(), format="png", dpi=60)


def test_without_the_runs_there_is_no_figure_and_the_reading_says_so(tmp_path: Path) -> None:
    rs = load_runset(_manifest(tmp_path, []))
    assert fig.fig_server_sensitivity(rs) is None
    assert sv.table(rs).empty and sv.shares(rs) == [] and sv.gap(rs, GTHREAD) is None
    assert "no server-sensitivity runs in this run set" in cost.reading(rs)


# ---------------------------------------------------------------- the reproduce steps


def test_the_full_scale_runs_every_variant_under_every_server_round_by_round() -> None:
    scale = repro.SCALES["full"]
    steps = [s for s in repro.plan_steps(scale, [0, 1]) if s.kinds == (sv.KIND,)]
    assert len(steps) == 5 * 3 * 2 == scale.server_rounds * len(sv.VARIANTS) * len(sv.SERVERS)
    by_round = [steps[i : i + 6] for i in range(0, len(steps), 6)]
    for r, block in enumerate(by_round, start=1):  # round r's six runs, then round r + 1's
        assert {sv.parse_tag(s.tag) for s in block} == {
            (v, srv, r) for v in sv.VARIANTS for srv in sv.SERVERS
        }
        assert [s.plan.variant for s in block] == [v for v in sv.VARIANTS for _ in sv.SERVERS]
        assert [s.plan.knobs["server"] for s in block[:2]] == list(sv.server_order(r))
    for s in steps:
        p = s.plan
        assert (p.scenario, p.rate, p.duration_s, p.pin) == ("open", sv.RATE, scale.server_s,
                                                             False)  # fmt: skip
        assert s.fingerprint()["knobs"] == {"server": sv.parse_tag(s.tag)[1]}
    assert sv.RATE == repro.PATH_RATE  # the same load, for the same reason


def test_the_quick_and_test_scales_run_fewer_rounds() -> None:
    quick = [s for s in repro.plan_steps(repro.SCALES["quick"], [0, 1]) if s.kinds == (sv.KIND,)]
    assert len(quick) == 1 * 3 * 2
    test = [s.tag for s in repro.plan_steps(repro.SCALES["test"], [0, 1]) if s.kinds == (sv.KIND,)]
    assert test == [sv.tag(v, srv, 1) for v in (PATH[0], PATH[-1]) for srv in sv.SERVERS]
