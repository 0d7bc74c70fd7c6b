"""Figure and notebook 08 (the engine in Python and in Rust) on a small synthetic run set.

The synthetic set has every pair of the comparison (`polyglot.SCENARIOS`), written the way the
harness writes runs (rundir's column constants, `summarize_run`), plus engine.json and hop.json:

- every request of an endpoint in a stretch takes one fixed time, so each p50 and p99 is that
  time; the endpoints that never call the engine are 10 % slower in every Rust run than in its
  Python twin (the pairs' latency noise band is therefore ln 1.1), the roles other than the
  engine use the same CPU and memory in both (their bands are 0);
- the engine role's CPU counter grows by PER_CALL_S[engine] with every recommendation request
  sent (plus a fixed rate inside and outside a fault window), so its CPU per related call is
  PER_CALL_S; its PSS is flat with one higher sample (median vs peak);
- gc-pressure: the Python engine's fault reaches pid 100, it pauses (three 200 ms full
  collections) and every other endpoint takes 50 ms inside the window against 5 ms outside;
  half its recommendation requests inside take 1200 ms, past the 1000 ms call timeout; it dies
  once after the window. The Rust engine declares no collector and its fault names no pid;
- cpu-hog: the fault reaches both engines; the Python engine's other endpoints take 8 ms inside.
Every number below follows from that.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from matplotlib.figure import Figure
from support import synthetic_manifest, write_csv

from archlab.analysis import polyglot as pg
from archlab.analysis.runset import ENDPOINT_ORDER, load_runset
from archlab.analysis.summary import summarize_run
from archlab.figures import figure_functions, polyglot
from archlab.figures.notebooks import execute, notebooks_dir
from archlab.rundir import (
    ENGINE_BENCH,
    FAULT_COLUMNS,
    FAULTS,
    GC,
    GC_COLUMNS,
    HOP,
    LIFECYCLE,
    META,
    PROCESS_COLUMNS_V1,
    PROCESSES,
    PROFILE_DIR,
    RECORD_COLUMNS,
    REQUESTS,
    ROLE_COLUMNS,
    ROLES,
    SUMMARY,
    TOP_COLUMNS,
    TOP_FRAMES,
    write_json,
)

T0 = 1_800_000_000.0
RATE = 50.0  # requests/s (the ramp: 50 then 100)
SECONDS = 20
RAMP_RATES = (50.0, 100.0)  # 10 s each
FAULT = (6.0, 14.0)  # the fault window, s after the first request
TIMEOUT_MS = 1000.0
MIB = 2**20
RECS = "/products/{id}/recommendations"
PER_CALL_S = {"python": 0.002, "rust": 0.0002}  # the engine's CPU per related call
ENGINE_PID = {"python": 100, "rust": 200}
BACKEND_CPU_PER_S = 0.1
PSS_MIB = {"python": (200.0, 260.0), "rust": (30.0, 40.0)}  # flat, and the one high sample
OTHERS_MS = 5.0
RUST_SLOWER = 1.1  # the other endpoints in every Rust run: the latency noise band
RAMP_RECS_MS = {"python": (4.0, 40.0), "rust": (3.8, 3.8)}  # per ramp step
GC_FULL_AT, GC_FULL_MS = (7.0, 9.0, 11.0), 200.0
ENGINE_CORES = {  # (inside the fault window, outside) beyond the calls' own CPU
    ("gc-pressure", "python"): (0.9, 0.3),
    ("gc-pressure", "rust"): (0.01, 0.01),
    ("cpu-hog", "python"): (0.8, 0.0),
    ("cpu-hog", "rust"): (1.0, 0.0),
}
BUILD = {  # size -> engine -> (median, min, max) build seconds, PSS MiB
    "small": {"python": ((4.0, 3.0, 5.0), 300.0), "rust": ((0.2, 0.1, 0.3), 75.0)},
    "full": {"python": ((30.0, 28.0, 33.0), 1500.0), "rust": ((1.0, 0.9, 1.2), 300.0)},
}
HOPS = {"in-process (Python engine)": 40.0, "IPC -> Python engine": 150.0,
        "IPC -> Rust engine": 90.0}  # fmt: skip


def _times(scenario: str) -> list[float]:
    if scenario == pg.RAMP:
        step = 10.0
        return [k * step + i / r for k, r in enumerate(RAMP_RATES) for i in range(int(step * r))]
    seconds = 10 if scenario == pg.PROFILE else SECONDS
    return [i / RATE for i in range(int(seconds * RATE))]


def _latency(scenario: str, engine: str, endpoint: str, t: float, recs_seen: int) -> float:
    inside = scenario in pg.FAULT_SCENARIOS and FAULT[0] <= t < FAULT[1]
    if endpoint == RECS:
        if scenario == pg.RAMP:
            return RAMP_RECS_MS[engine][0 if t < 10 else 1]
        if engine == "python" and inside:
            if scenario == pg.GC_PRESSURE:
                return 1200.0 if recs_seen % 2 == 0 else 30.0
            return 20.0
        return 5.0 if engine == "python" else 2.0
    if engine == "rust":
        return OTHERS_MS * RUST_SLOWER
    if inside:
        return 50.0 if scenario == pg.GC_PRESSURE else 8.0
    return OTHERS_MS


def _overlap(a: float, b: float, c: float, d: float) -> float:
    return max(0.0, min(b, d) - max(a, c))


def _write_run(root: Path, scenario: str, engine: str, *, knob: str | None = None) -> str:
    tag = pg.tag(scenario, engine)
    run = root / "runs" / tag
    run.mkdir(parents=True)
    times = _times(scenario)
    requests, recs_at = [], []
    for i, t in enumerate(times):
        endpoint = ENDPOINT_ORDER[i % len(ENDPOINT_ORDER)]
        ms = _latency(scenario, engine, endpoint, t, len(recs_at))
        if endpoint == RECS:
            recs_at.append(t)
        requests.append((T0 + t, endpoint, ms, 200, "", T0 + t))
    write_csv(run / REQUESTS, RECORD_COLUMNS, requests)
    seconds = int(math.ceil(times[-1]))
    inside_rate, outside_rate = ENGINE_CORES.get((scenario, engine), (0.0, 0.0))
    low, high = PSS_MIB[engine]
    samples = []
    for s in range(-1, seconds + 2):
        extra = outside_rate * max(0.0, s) + (inside_rate - outside_rate) * _overlap(0, s, *FAULT)
        if scenario not in pg.FAULT_SCENARIOS:
            extra = 0.0
        engine_cpu = PER_CALL_S[engine] * sum(1 for t in recs_at if t < s) + extra
        pss = int((high if s == seconds // 2 else low) * MIB)
        for pid, role, cpu, mem in (
            (10, "backend", BACKEND_CPU_PER_S * (s + 2), 40 * MIB),
            (ENGINE_PID[engine], pg.ENGINE_ROLE, engine_cpu, pss),
        ):
            samples.append((T0 + s, pid, 1, role, role, T0 - 2, round(cpu, 6), 0.0, "", mem, mem,
                            mem, 0, 8, 0, 0))  # fmt: skip
    write_csv(run / PROCESSES, PROCESS_COLUMNS_V1, samples)  # rows without smaps columns
    gc: list[tuple[object, ...]] = [(10, "backend", 0, T0 + s + 0.25, 0.05, 10, 0)
                                    for s in range(seconds)]  # fmt: skip
    collector = "python" if engine == "python" else "none"
    if engine == "python":
        gc += [(100, pg.ENGINE_ROLE, 0, T0 + s + 0.5, 1.0, 10, 0) for s in range(seconds)]
        if scenario == pg.GC_PRESSURE:
            gc += [(100, pg.ENGINE_ROLE, 2, T0 + g, GC_FULL_MS, 1000, 0) for g in GC_FULL_AT]
    write_csv(run / GC, GC_COLUMNS, sorted(gc, key=lambda r: float(str(r[3]))))
    declared = [(10, "backend", T0 - 2, "python"),
                (ENGINE_PID[engine], pg.ENGINE_ROLE, T0 - 2, collector)]  # fmt: skip
    write_csv(run / ROLES, ROLE_COLUMNS, declared)
    events: list[dict[str, Any]] = [
        {"time": T0 - 3, "event": "postmaster-start", "pid": 1,
         "config": {"call_timeouts_ms": {pg.ENGINE_ROLE: TIMEOUT_MS}}},
    ]  # fmt: skip
    if scenario in pg.FAULT_SCENARIOS:
        reached = engine == "python" or scenario == pg.CPU_HOG
        pids = str(ENGINE_PID[engine]) if reached else ""
        kind = "gc" if scenario == pg.GC_PRESSURE else "hog"
        fault = (0, kind, pg.ENGINE_ROLE, pg.ENGINE_ROLE, pids, T0 + FAULT[0], T0 + FAULT[1], "{}")
        write_csv(run / FAULTS, FAULT_COLUMNS, [fault])
        if scenario == pg.GC_PRESSURE and engine == "python":
            events.append({"time": T0 + FAULT[1] + 0.5, "event": "exit", "role": pg.ENGINE_ROLE,
                           "pid": 100, "exit_code": 70, "expected": False})  # fmt: skip
    (run / LIFECYCLE).write_text("".join(json.dumps(e) + "\n" for e in events))
    warmup = 0.0 if scenario == pg.RAMP else 1.0
    load: dict[str, Any] = {"loop": "open", "offered_rps": RATE, "users": 1}
    if scenario == pg.RAMP:
        load = {"loop": "open", "offered_rps": None, "steps": [1, 2], "rate_per_user": 50.0,
                "step_s": 10.0}  # fmt: skip
    meta: dict[str, Any] = {
        "schema_version": 3,
        "run_id": tag,
        "status": "completed",
        "variant": pg.PLACEMENT,
        "scenario": {"name": "open" if scenario == pg.PROFILE else scenario},
        "knobs": {pg.KNOB: knob or engine},
        "warmup_s": warmup,
        "duration_s": seconds,
        "dataset_size": "tiny",
        "load": load,
        "shop_config": {"rebuild_interval_s": 1.0 if scenario == pg.GC_PRESSURE else 60.0},
        "profile": {"enabled": False},
    }
    if scenario == pg.PROFILE:
        roles = ["backend"] + ([pg.ENGINE_ROLE] if engine == "python" else [])
        meta["profile"] = {"enabled": True, "status": "ok", "rate_hz": 100, "samples": 500,
                           "roles": roles, "py_spy_errors": 0, "gil": False}  # fmt: skip
        top = [("backend", 1, "_worker", "thread.py", 100, 0.25, 200, 0.5, 400)]
        if engine == "python":
            top.append((pg.ENGINE_ROLE, 1, "Model.related", "recommendations.py", 30, 0.3, 60,
                        0.6, 100))  # fmt: skip
        write_csv(run / PROFILE_DIR / TOP_FRAMES, TOP_COLUMNS, top)
    write_json(run / META, meta)
    write_json(run / SUMMARY, summarize_run(run, warmup_s=warmup))
    return tag


def _manifest(root: Path, tags: list[str]) -> Path:
    return synthetic_manifest(root, tags, pg.KIND, hop=HOP)


def _engine_json() -> dict[str, Any]:
    sizes = {
        size: {
            engine: {
                "build_seconds": dict(zip(("median", "min", "max"), b, strict=True)),
                "rebuild_call_seconds": {"median": b[0] + 0.01, "min": b[1], "max": b[2]},
                "pss_mib": pss,
                "uss_mib": pss,
                "rss_mib": pss,
                "baskets": 10,
                "pairs": 20,
            }  # fmt: skip
            for engine, (b, pss) in engines.items()
        }
        for size, engines in BUILD.items()
    }
    return {"rounds": 5, "cpus": 2, "sizes": sizes}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("polyglot-set")
    tags = [_write_run(root, s, e) for s in pg.SCENARIOS for e in pg.ENGINES]
    write_json(root / ENGINE_BENCH, _engine_json())
    hops = {h: {"p50_us": us, "p99_us": 2 * us, "mean_us": 1.1 * us} for h, us in HOPS.items()}
    write_json(root / HOP, {"calls": 100, "warmup": 10, "size": "tiny", "results": {},
                            "engines": {"recommendations.related(k=10)": hops}})  # fmt: skip
    return _manifest(root, tags)


@pytest.fixture(scope="module")
def python_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run set made where no Rust engine could be built: Python runs only, benches skipped."""
    root = tmp_path_factory.mktemp("python-only")
    tags = [_write_run(root, pg.RAMP, "python")]
    reason = "no Rust toolchain (cargo not found)"
    write_json(root / ENGINE_BENCH, {"skipped": reason})
    write_json(
        root / HOP, {"calls": 100, "warmup": 10, "results": {}, "engines": {"skipped": reason}}
    )
    return _manifest(root, tags)


# ---------------------------------------------------------------- the measures


def test_cpu_per_related_call_is_the_engine_roles_cpu_over_its_answered_calls(
    synthetic: Path,
) -> None:
    table = pg.cpu_table(load_runset(synthetic)).set_index(["scenario", "engine"])
    for scenario in pg.STEADY_SCENARIOS:
        for engine, per_call in PER_CALL_S.items():
            row = table.loc[(scenario, engine)]
            assert row["engine_cpu_ms_per_call"] == pytest.approx(1000 * per_call, rel=0.03)
            # one recommendation request in five: a fifth of that per request overall
            assert row["engine_cpu_ms_per_request"] == pytest.approx(200 * per_call, rel=0.03)
            assert row["related_calls"] == row["recs_requests"]  # no error, none at the timeout
    steps = pg.ramps(load_runset(synthetic))
    assert steps["engine_cpu_ms_per_call"].to_numpy() == pytest.approx(
        [2.0, 2.0, 0.2, 0.2], rel=1e-6
    )  # every step's counter moves by exactly its calls
    assert table.loc[(pg.RAMP, "python"), "engine_cpu_ms_per_call_median_step"] == pytest.approx(
        2.0
    )


def test_a_recommendation_past_the_call_timeout_is_not_an_answered_call(synthetic: Path) -> None:
    rs = load_runset(synthetic)
    run = pg.pair_run(rs, pg.GC_PRESSURE, "python")
    assert run is not None and pg.engine_timeout_ms(run) == TIMEOUT_MS
    c = pg.calls(pg.measured_requests(run), pg.engine_timeout_ms(run))
    inside = int((FAULT[1] - FAULT[0]) * RATE / len(ENDPOINT_ORDER))
    assert c.at_timeout == inside // 2 and c.errors == 0
    assert c.answered == c.requests - inside // 2


def test_the_ramp_compares_the_engines_step_by_step_against_the_pairs_noise(
    synthetic: Path,
) -> None:
    rs = load_runset(synthetic)
    band = pg.noise(rs, pg.RAMP)
    assert band.bands["p50_ms"] == pytest.approx(math.log(RUST_SLOWER))
    assert band.bands["p99_ms"] == pytest.approx(math.log(RUST_SLOWER))
    assert band.bands["cpu_ms_per_request"] == pytest.approx(0.0, abs=1e-9)
    assert band.bands["pss_mib"] == pytest.approx(0.0, abs=1e-9)
    comparison = pg.ramp_comparison(rs)
    assert comparison["offered_rps"].tolist() == list(RAMP_RATES)
    assert comparison["python_p99_ms"].tolist() == pytest.approx([4.0, 40.0], rel=1e-3)
    assert comparison["rust_p99_ms"].tolist() == pytest.approx([3.8, 3.8], rel=1e-3)
    # 4.0 vs 3.8 is a 5 % gap, inside the ±10 % band; 40 vs 3.8 is not
    assert comparison["beyond_noise_p99"].tolist() == [False, True]


def test_the_engines_memory_is_its_pss_median_and_peak(synthetic: Path) -> None:
    mem = pg.memory_table(load_runset(synthetic)).set_index(["scenario", "engine"])
    for engine, (low, high) in PSS_MIB.items():
        assert mem.loc[(pg.RAMP, engine), "pss_median_mib"] == pytest.approx(low)
        assert mem.loc[(pg.RAMP, engine), "pss_peak_mib"] == pytest.approx(high)


def test_the_rust_engine_reads_no_collector_never_zero_pauses(synthetic: Path) -> None:
    rs = load_runset(synthetic)
    gc = pg.gc_table(rs)
    rust = gc[gc["engine"] == "rust"]
    assert len(rust) == len(pg.SCENARIOS)
    assert set(rust["gc"]) == {pg.NO_COLLECTOR}
    assert rust[["collections", "total_pause_ms", "max_pause_ms"]].isna().all().all()
    python = gc[gc["engine"] == "python"].set_index("scenario")
    assert set(python["gc"]) == {"python"}
    assert python.loc[pg.GC_PRESSURE, "full_collections"] == len(GC_FULL_AT)
    assert python.loc[pg.GC_PRESSURE, "max_pause_ms"] == pytest.approx(GC_FULL_MS)
    faults = pg.fault_summaries(rs).set_index(["scenario", "engine"])
    assert faults.loc[(pg.GC_PRESSURE, "rust"), "gc"] == pg.NO_COLLECTOR
    assert faults.loc[(pg.GC_PRESSURE, "python"), "full_inside"] == len(GC_FULL_AT)
    text = polyglot.reading(rs)
    assert "rust: no collector in ramp, gc-pressure, cpu-hog, profile" in text
    assert "not zero pauses" in text


def test_inside_the_fault_window_against_outside_it(synthetic: Path) -> None:
    rs = load_runset(synthetic)
    table = pg.fault_table(rs).set_index(["scenario", "engine", "endpoint"])
    gc_py = table.loc[(pg.GC_PRESSURE, "python", pg.OTHERS_LABEL)]
    assert (gc_py["p99_inside_ms"], gc_py["p99_outside_ms"]) == (50.0, OTHERS_MS)
    assert gc_py["reached"]
    recs = table.loc[(pg.GC_PRESSURE, "python", RECS)]
    assert recs["p99_inside_ms"] == 1200.0 and recs["p99_outside_ms"] == 5.0
    assert recs["at_timeout_inside"] == (FAULT[1] - FAULT[0]) * RATE / len(ENDPOINT_ORDER) / 2
    gc_rs = table.loc[(pg.GC_PRESSURE, "rust", pg.OTHERS_LABEL)]
    assert gc_rs["p99_inside_ms"] == gc_rs["p99_outside_ms"] == pytest.approx(OTHERS_MS * 1.1)
    assert not gc_rs["reached"]  # faults.csv names no pid: the fault reached no process
    summary = pg.fault_summaries(rs).set_index(["scenario", "engine"])
    hog = summary.loc[(pg.CPU_HOG, "rust")]
    assert hog["reached"] and hog["engine_cores_inside"] == pytest.approx(1.0, rel=0.05)
    assert summary.loc[(pg.GC_PRESSURE, "python"), "engine_cores_inside"] == pytest.approx(
        0.9 + PER_CALL_S["python"] * RATE / len(ENDPOINT_ORDER), rel=0.05
    )
    assert summary.loc[(pg.GC_PRESSURE, "python"), "engine_deaths"] == 1
    text = polyglot.reading(rs)
    assert "fault reached no process (faults.csv: no pid)" in text
    assert "the engines are not compared under this fault" in text  # gc-pressure
    # cpu-hog reached both: inside, 8 ms vs 5.5 ms is beyond the ±10 % band
    assert "python 8.00 ms vs rust 5.50 ms (x1.45, beyond the ±10 % noise band)" in text


def test_the_build_time_ratio_comes_from_engine_json(synthetic: Path) -> None:
    rs = load_runset(synthetic)
    ratios = pg.build_ratios(rs).set_index("size")
    for size, engines in BUILD.items():
        (py, _), (rust, _) = engines["python"], engines["rust"]
        assert ratios.loc[size, "build_python_over_rust"] == pytest.approx(py[0] / rust[0])
        assert ratios.loc[size, "ranges_apart"]
    assert ratios.loc["small", "pss_python_over_rust"] == pytest.approx(4.0)
    text = polyglot.reading(rs)
    assert "small: python 4.00 s (3.00–5.00) vs rust 0.200 s (0.100–0.300), python/rust x20" in text


def test_the_hop_table_is_the_related_call_per_hop(synthetic: Path) -> None:
    table = pg.hop_table(load_runset(synthetic)).set_index("hop")
    assert table["p50_us"].to_dict() == HOPS
    assert "IPC -> Rust engine p50 90.0 µs, p99 180 µs" in polyglot.reading(load_runset(synthetic))


def test_a_run_whose_knob_names_another_engine_is_not_used(tmp_path: Path) -> None:
    root = tmp_path / "set"
    tags = [_write_run(root, pg.PROFILE, "python"), _write_run(root, pg.PROFILE, "rust",
                                                                   knob="python")]  # fmt: skip
    rs = load_runset(_manifest(root, tags))
    assert set(pg.pair(rs, pg.PROFILE)) == {"python"}
    assert pg.complete_pairs(rs) == []


# ---------------------------------------------------------------- figure, reading, notebook


def test_the_figure_renders_every_part(synthetic: Path) -> None:
    assert figure_functions()["08-polyglot"] is polyglot.fig_polyglot
    fig = polyglot.fig_polyglot(load_runset(synthetic))
    assert isinstance(fig, Figure)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    for part in ("(a) GET", "(b) engine role", "(c) CPU", "(d) engine process PSS",
                 "(e) model build", "(f) gc-pressure", "(g) cpu-hog"):  # fmt: skip
        assert any(t.startswith(part) for t in titles), part
    gc_panel = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("(f) gc-"))
    texts = [t.get_text() for t in gc_panel.texts]
    assert pg.NO_COLLECTOR in texts  # written where the Rust engine's pauses would be
    assert "2 CPUs" in fig.get_suptitle()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. constrained layout giving up
        fig.savefig(io.BytesIO(), format="png", dpi=60)


def test_the_reading_names_the_cpus_the_ratios_and_what_is_within_noise(synthetic: Path) -> None:
    text = polyglot.reading(load_runset(synthetic))
    assert "on 2 CPUs, synthetic" in text
    assert "Pairs measured: ramp, gc-pressure, cpu-hog, profile." in text
    assert "per related call 2.00 ms (python, 300 calls) vs 0.200 ms (rust, 300), x10" in text
    assert "beyond the noise at 1 of 2 steps (within it at 50 req/s)" in text
    assert "What these numbers cannot show" in text


def test_without_the_rust_runs_there_is_no_figure_and_the_reading_says_why(
    python_only: Path,
) -> None:
    rs = load_runset(python_only)
    assert pg.complete_pairs(rs) == [] and pg.ramp_comparison(rs).empty
    assert pg.noise(rs, pg.RAMP).bands == {}
    assert pg.build_table(rs).empty and pg.hop_table(rs).empty
    assert polyglot.fig_polyglot(rs) is None
    text = polyglot.reading(rs)
    assert text.startswith("The Python-vs-Rust comparison was not run in this run set")
    assert "no Rust toolchain (cargo not found)" in text
    assert "Runs of one engine only: python (ramp)" in text


def test_the_notebook_reads_the_run_set_it_is_given(synthetic: Path, tmp_path: Path) -> None:
    source = notebooks_dir() / "08_polyglot.ipynb"
    nb = nbformat.read(execute(source, synthetic, tmp_path / source.name), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [o for c in code for o in c.outputs if o.output_type == "error"] == []
    assert any(o.get("data", {}).get("image/png") for c in code for o in c.outputs)
    reading = "".join(o.get("data", {}).get("text/markdown", "") for o in code[-1].outputs)
    assert "per related call" in reading
    assert str(synthetic.resolve()) in "".join(o.get("text", "") for o in code[0].outputs)


def test_tags_name_the_scenario_and_the_engine() -> None:
    assert pg.tag(pg.GC_PRESSURE, "rust") == "polyglot-gc-pressure-rust"
    assert pg.RECS == RECS and RECS not in pg.OTHERS
    assert set(pg.OTHERS) | {RECS} == set(ENDPOINT_ORDER)


def test_a_build_under_the_stats_resolution_is_not_a_ratio(tmp_path: Path) -> None:
    """ModelStats.build_seconds has 1 ms steps: at tiny the Rust build reads 0.000, and the
    reading says the ratio is not measurable instead of failing or dividing by zero."""
    bench = _engine_json()
    for engine in pg.ENGINES:
        bench["sizes"]["small"][engine]["build_seconds"] = (
            {"median": 0.0, "min": 0.0, "max": 0.0}
            if engine == "rust"
            else {"median": 0.004, "min": 0.004, "max": 0.005}
        )
    write_json(tmp_path / ENGINE_BENCH, bench)
    write_json(tmp_path / HOP, {"calls": 1, "warmup": 1, "results": {}})
    rs = load_runset(_manifest(tmp_path, []))
    assert pd.isna(pg.build_ratios(rs).set_index("size").loc["small", "build_python_over_rust"])
    assert "python/rust not measurable" in polyglot.reading(rs)
    assert isinstance(polyglot.FIGURES["polyglot"](rs), Figure)
