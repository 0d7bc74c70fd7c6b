"""`archlab reproduce` end to end on a test-sized profile: the matrix, every figure, every notebook.

One reproduction (profile `test`: the tiny dataset, runs of a few seconds) is made once for the
module by the real command line; the tests read what it left behind. The same run set is the
fixture the figure functions and the notebooks are checked against.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from matplotlib.figure import Figure
from support import run_cli, wait_until, watching

from archlab import reproduce as repro
from archlab.analysis import migration, ramp
from archlab.analysis.runset import ENV_RUNSET, VARIANT_ORDER, default_runset_path, load_runset
from archlab.analysis.validate import validate_run
from archlab.figures import figure_functions
from archlab.figures.notebooks import notebook_paths
from archlab.host import procs
from archlab.rundir import MANIFEST, read_json, read_meta
from variants import native
from variants.placement import PATH
from workloads.scenarios import get_scenario

NO_RUST = native.unavailable_reason()
REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def reproduction(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("repro")
    paths = {
        "out": root / "set",
        "figures": root / "figures",
        "notebooks": root / "notebooks",
        "log": root / "reproduce.log",
    }
    args = [
        "reproduce", "--scale", "test",
        "--out", str(paths["out"]), "--figures-dir", str(paths["figures"]),
        "--notebooks-dir", str(paths["notebooks"]),
    ]  # fmt: skip
    out = run_cli(args, timeout_s=540, log_path=paths["log"])
    assert out.returncode == 0 and out.killed == [], out.output[-4000:]
    return paths


def _copy_of(reproduction: dict[str, Path], dest: Path, drop: tuple[str, ...] = ()) -> Path:
    """A run set made of links to the module's finished runs (so a test may change it), with
    the steps in `drop` left out (pending again)."""
    manifest = json.loads((reproduction["out"] / "manifest.json").read_text())
    (dest / "runs").mkdir(parents=True)
    for step in manifest["steps"]:
        if step["tag"] not in drop:
            src = reproduction["out"] / step["run"]
            (dest / step["run"]).symlink_to(src.resolve(), target_is_directory=True)
    for name in ("hop.json", "floor.json", "engine.json"):
        if (reproduction["out"] / name).exists():
            (dest / name).write_text((reproduction["out"] / name).read_text())
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def test_every_step_of_the_matrix_ran_and_is_a_valid_run(reproduction: dict[str, Path]) -> None:
    manifest = json.loads((reproduction["out"] / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["failed"] == []
    tags = [s["tag"] for s in manifest["steps"]]
    assert tags == [s.tag for s in repro.plan_steps(repro.SCALES["test"])]
    for variant in ("monolith", "multiprocess", "distributed"):
        assert f"latency-{variant}-r1" in tags and f"gc-pressure-{variant}-r1" in tags
    for placement in (PATH[0], PATH[-1]):
        assert {f"path-{placement}", f"path-{placement}-crash-recommendations"} <= set(tags)
    for step in manifest["steps"]:
        run_dir = reproduction["out"] / step["run"]
        assert step["status"] == "completed", step
        assert validate_run(run_dir) == [], step["tag"]
    hop = json.loads((reproduction["out"] / "hop.json").read_text())
    assert set(hop["results"]["catalog.get"]) >= {"in-process", "IPC (Unix socket, msgpack)"}
    found = json.loads((reproduction["out"] / "readings.json").read_text())["readings"]
    names = {r["name"] for r in found}
    for variant in VARIANT_ORDER:  # the test scale runs each headline step once
        assert f"latency.{variant}.p99_ms@50rps" in names and f"gc.{variant}.others_ratio" in names
    assert all(r["n"] >= 1 and r["ci_low"] <= r["median"] <= r["ci_high"] for r in found)


@pytest.mark.parametrize("scale", ["quick", "full"])
def test_the_migration_path_runs_every_step_at_one_rate_steady_and_under_both_faults(
    scale: str,
) -> None:
    """Every placement of the path under each scenario, one scenario's steps back to back, all
    at the same open-loop rate and length; the variants' own matrix stays the three variants."""
    s = repro.SCALES[scale]
    steps = repro.plan_steps(s, [0, 1], native_engines=False)
    path = [st for st in steps if st.kinds == ("path",)]
    scenarios = ("open", *s.path_scenarios)
    assert [st.tag for st in path] == [
        f"path-{p}" if sc == "open" else f"path-{p}-{sc}" for sc in scenarios for p in PATH
    ]
    assert steps[-len(path) :] == path  # after the variants' runs: their order is unchanged
    for st in path:
        plan = st.plan
        assert plan.variant in PATH and plan.scenario in scenarios and plan.run_id == st.tag
        assert (plan.rate, plan.duration_s, plan.size) == (repro.PATH_RATE, s.path_s, s.size)
        assert plan.steps is None and plan.pin is False and plan.profile is None
        assert st.fingerprint()["rate"] == repro.PATH_RATE
    assert {st.plan.variant for st in steps if st not in path} == set(VARIANT_ORDER)
    assert s.to_dict()["path_rate"] == repro.PATH_RATE  # recorded in the manifest


def test_the_test_scale_runs_both_ends_of_the_path_and_the_replicate_fault() -> None:
    steps = repro.plan_steps(repro.SCALES["test"], [0, 1])
    tags = [st.tag for st in steps if st.kinds == ("path",)]
    ends = (PATH[0], PATH[-1])
    assert tags == [migration.tag(p) for p in ends] + [
        migration.tag(p, migration.REPLICATE_SCENARIO) for p in ends
    ]


@pytest.mark.skipif(not (REFERENCE / MANIFEST).exists(), reason="no reference run set")
def test_the_path_rate_is_at_or_below_every_reference_ramps_knee() -> None:
    rs = load_runset(REFERENCE)
    knees = {run.variant: ramp.knee(run) for run in rs.of("latency")}
    assert knees and all(k and k["offered_rps"] >= repro.PATH_RATE for k in knees.values())
    assert min(k["offered_rps"] for k in knees.values() if k) >= repro.PATH_RATE  # the slowest


def test_progress_shows_the_time_left_and_where_everything_is(
    reproduction: dict[str, Path],
) -> None:
    log = reproduction["log"].read_text()
    assert "=== [1/" in log and "left" in log
    assert str(reproduction["figures"]) in log and str(reproduction["notebooks"]) in log


def test_every_figure_is_rendered_as_png_and_svg(reproduction: dict[str, Path]) -> None:
    names = set(figure_functions())
    for name in names:
        for ext in ("png", "svg"):
            path = reproduction["figures"] / f"{name}.{ext}"
            assert path.exists() and path.stat().st_size > 1000, path


def test_every_figure_function_returns_a_figure_from_the_run_set(
    reproduction: dict[str, Path],
) -> None:
    rs = load_runset(reproduction["out"])
    for name, fn in figure_functions().items():
        if name == "08-polyglot" and NO_RUST:
            assert fn(rs) is None, "no engine comparison without the Rust engine"
            continue
        assert isinstance(fn(rs), Figure), name


def test_every_notebook_executed_and_ends_with_a_reading_computed_from_the_runs(
    reproduction: dict[str, Path],
) -> None:
    sources = notebook_paths()
    assert [p.name[:2] for p in sources] == ["01", "02", "03", "04", "05", "06", "07", "08"]
    for source in sources:
        nb = nbformat.read(reproduction["notebooks"] / source.name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.get("execution_count") for c in code), source.name
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert errors == [], source.name
        assert (NO_RUST and source.name.startswith("08")) or any(
            o.get("data", {}).get("image/png") for c in code for o in c.outputs
        ), f"{source.name} shows no figure"
        last = code[-1].outputs
        text = "".join(o.get("data", {}).get("text/markdown", "") for o in last)
        assert any(ch.isdigit() for ch in text), f"{source.name}: the reading has no numbers"
        assert str(reproduction["out"].resolve()) in "".join(
            o.get("text", "") for c in code for o in c.outputs
        ), f"{source.name} did not read the run set it was given"


def test_the_committed_notebooks_carry_no_outputs() -> None:
    for source in notebook_paths():
        nb = nbformat.read(source, as_version=4)
        assert nb.cells[0].cell_type == "markdown", source.name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), source.name


def test_a_second_reproduce_resumes_without_redoing_finished_runs(
    reproduction: dict[str, Path], tmp_path: Path
) -> None:
    out = _copy_of(reproduction, tmp_path / "set")
    before = {p.name: p.stat().st_mtime for p in (out / "runs").iterdir()}
    lines: list[str] = []
    outputs = repro.reproduce("test", out, render=False, echo=lines.append)
    assert outputs["failed"] == []
    assert {p.name: p.stat().st_mtime for p in (out / "runs").iterdir()} == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s["status"] for s in manifest["steps"]} == {"done (kept)"}
    assert not any(line.startswith("=== [") for line in lines)


def test_an_unfinished_run_is_set_aside_and_done_again(
    reproduction: dict[str, Path], tmp_path: Path
) -> None:
    out = _copy_of(reproduction, tmp_path / "set", drop=("latency-monolith-r1",))
    victim = out / "runs" / "latency-monolith-r1"
    victim.mkdir()
    (victim / "meta.json").write_text(json.dumps({"status": "interrupted"}))
    lines: list[str] = []
    outputs = repro.reproduce("test", out, render=False, echo=lines.append)
    assert outputs["failed"] == []
    assert [line for line in lines if line.startswith("=== [")][0].endswith(
        "latency-monolith-r1"
    ) or any("latency-monolith-r1" in line and "[1/1]" in line for line in lines)
    assert (out / "runs" / ".partial" / "latency-monolith-r1-1" / "meta.json").exists()
    meta = json.loads((victim / "meta.json").read_text())
    assert meta["status"] == "completed"


def test_ctrl_c_keeps_finished_runs_and_the_same_command_resumes(
    reproduction: dict[str, Path], tmp_path: Path
) -> None:
    """A real SIGINT mid-matrix: exit 130, every run's processes stopped, the finished runs and
    the manifest kept; the same command then redoes only what had not finished."""
    redo = ("scaling-multiprocess-1cpu-r1", "scaling-distributed-1cpu-r1")  # adjacent
    out = _copy_of(reproduction, tmp_path / "set", drop=redo)
    args = ["reproduce", "--scale", "test", "--out", str(out), "--no-render"]
    first_log = tmp_path / "first.log"
    proc = procs.start([sys.executable, "-m", "archlab.cli", *args], name="reproduce",
                       log_path=first_log)  # fmt: skip

    def second_step_under_load() -> bool:
        steps = {s["tag"]: s["status"] for s in (read_json(out / MANIFEST) or {})["steps"]}
        return (
            steps.get(redo[0]) == "completed"
            and steps.get(redo[1]) == "running"
            and (out / "runs" / redo[1] / "requests.csv").exists()
        )

    with watching(proc.pid) as tree:
        try:
            wait_until(
                lambda: proc.popen.poll() is not None or second_step_under_load(),
                240,
                f"{redo[1]} runs after {redo[0]} finished",
            )
            assert proc.popen.poll() is None, first_log.read_text()[-3000:]
            os.kill(proc.pid, signal.SIGINT)
            code = proc.popen.wait(timeout=90)
            left = [p.pid for p in tree.alive()]
        finally:
            procs.stop(proc, grace_s=5)
    assert code == 130 and left == [], first_log.read_text()[-3000:]
    assert "run the same command again to resume" in first_log.read_text()
    manifest = read_json(out / MANIFEST)
    assert manifest and manifest["interrupted_at"] and not manifest["complete"]
    status = {s["tag"]: s["status"] for s in manifest["steps"]}
    assert (status[redo[0]], status[redo[1]]) == ("completed", "running")
    assert read_meta(out / "runs" / redo[1])["status"] == "interrupted"

    again = run_cli(args, timeout_s=300, log_path=tmp_path / "second.log")
    assert again.returncode == 0 and again.killed == [], again.output[-3000:]
    manifest = read_json(out / MANIFEST)
    assert manifest and manifest["complete"] is True
    status = {s["tag"]: s["status"] for s in manifest["steps"]}
    assert status.pop(redo[1]) == "completed"
    assert set(status.values()) == {"done (kept)"}  # redo[0] included: it had finished
    assert (out / "runs" / ".partial" / f"{redo[1]}-1" / "meta.json").exists()


def test_fresh_starts_over_and_moves_the_old_run_set_aside(
    reproduction: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _copy_of(reproduction, tmp_path / "set")
    old = (out / MANIFEST).read_text()
    first = repro.plan_steps(repro.SCALES["test"])[:1]  # one step is enough to start over
    monkeypatch.setattr(repro, "plan_steps", lambda scale, cpus=None, native_engines=True: first)
    # the floor, the hops and the engines are measured by the module's reproduction; here only
    # their being redone matters (the benchmarks hand back the module's own reports)
    floors: list[Path] = []
    monkeypatch.setattr(repro.floor, "measure", lambda out_path, **_: floors.append(out_path) or {})
    redone: list[str] = []

    def measured_again(name: str) -> Callable[..., dict[str, Any]]:
        report = json.loads((reproduction["out"] / name).read_text())
        return lambda *_, **__: redone.append(name) or report

    monkeypatch.setattr(repro.hop, "measure", measured_again("hop.json"))
    monkeypatch.setattr(repro.engine_bench, "measure", measured_again("engine.json"))
    lines: list[str] = []
    outputs = repro.reproduce("test", out, fresh=True, render=False, echo=lines.append)
    assert outputs["failed"] == []
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("set-")]
    assert (aside / MANIFEST).read_text() == old and any(str(aside) in line for line in lines)
    manifest = read_json(out / MANIFEST)
    assert manifest and [(s["tag"], s["status"]) for s in manifest["steps"]] == [
        (first[0].tag, "completed")
    ]
    assert (out / "hop.json").exists()  # measured again, not carried over
    assert redone == ["hop.json", "engine.json"]  # likewise
    assert floors == [out / "floor.json"]


def test_notebooks_default_to_the_newest_run_set_then_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archlab.analysis import runset

    monkeypatch.delenv(ENV_RUNSET, raising=False)
    monkeypatch.setattr(runset, "results_root", lambda: tmp_path)
    assert default_runset_path() == tmp_path / "reference"
    for name, status in (("quick", "completed"), ("full", "pending")):
        (tmp_path / "repro" / name).mkdir(parents=True)
        (tmp_path / "repro" / name / "manifest.json").write_text(
            json.dumps({"steps": [{"status": status}]})
        )
    assert default_runset_path() == tmp_path / "repro" / "quick"
    monkeypatch.setenv(ENV_RUNSET, "/somewhere")
    assert default_runset_path() == Path("/somewhere")


@pytest.mark.parametrize("flag", ["--scale", "--profile"])
def test_an_unknown_scale_is_a_clear_error_under_either_flag_name(flag: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "archlab.cli", "reproduce", flag, "huge"],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert proc.returncode == 2 and "invalid choice: 'huge'" in proc.stderr


@pytest.mark.parametrize(
    ("usable", "pinned", "skipped"),
    [(2, [1], [2]), (4, [1, 2], [4]), (16, [1, 2, 4, 8], [16]), (64, [1, 2, 4, 8, 16, 32], [64])],
)
def test_the_scaling_study_pins_as_many_cores_as_leave_the_generator_its_share(
    usable: int, pinned: list[int], skipped: list[int]
) -> None:
    assert repro.scaling_cpus(usable) == (pinned, skipped)
    steps = repro.plan_steps(repro.SCALES["scaling"], list(range(usable)))
    for st in steps:
        if st.cpus is not None:
            generator = st.plan.gen_cpus or []
            assert st.cpus in pinned and len(generator) >= max(1, st.cpus // 4)
            assert not set(generator) & set(st.plan.sut_cpus or [])


def test_more_cores_mean_replicas_of_the_monolith_and_backends_of_the_family() -> None:
    steps = repro.plan_steps(repro.SCALES["scaling"], list(range(16)))
    for st in (s for s in steps if "scaling" in s.kinds):
        n = st.cpus or 16
        knobs = dict(st.plan.knobs)
        if st.plan.variant == "monolith":
            assert knobs == {"workers": n}, st.tag
        elif st.plan.variant == "multiprocess":
            assert knobs.get("backends", n) == n, st.tag  # its default: one per CPU it may use
        else:
            assert "workers" not in knobs and "backends" not in knobs


@pytest.mark.parametrize(("scale", "reps"), [("quick", 3), ("full", 5), ("scaling", 5)])
def test_every_headline_step_is_repeated_round_by_round(scale: str, reps: int) -> None:
    """Each headline step (latency and scaling ramps, fault scenarios) runs `reps` times, and
    round r + 1 starts only after every headline step has run r times (A B C A B C ...)."""
    steps = repro.plan_steps(repro.SCALES[scale], [0, 1], native_engines=False)
    headline = [s for s in steps if {"latency", "scaling", "fault"} & set(s.kinds)]
    counts = repro.repetitions(headline)
    assert counts and set(counts.values()) == {reps}
    rounds = [s.round for s in headline]
    assert rounds == sorted(rounds)
    per_round = len(counts)
    assert [s.step for s in headline[:per_round]] == [s.step for s in headline[-per_round:]]
    assert all(s.tag == repro.round_tag(s.step, s.round) for s in headline)


def test_the_output_says_how_many_repetitions_each_kind_of_run_had() -> None:
    steps = repro.plan_steps(repro.SCALES["quick"], [0, 1], native_engines=False)
    lines = repro.repetition_lines(steps, [2])
    assert "latency: 3 repetitions of each of 3 steps" in lines
    assert any(line.startswith("fault: 3 repetitions of each of ") for line in lines)
    assert any("not run pinned to 2 CPUs" in line for line in lines)


def test_a_fault_that_kills_a_process_runs_long_enough_for_the_restart() -> None:
    """The full scale's crash and leak runs give the monolith, which restarts whole, time to
    come back within the records; the others keep the shorter fault length."""
    scale = repro.SCALES["full"]
    for st in repro.plan_steps(scale, [0, 1], native_engines=False):
        if "fault" not in st.kinds:
            continue
        kinds = {f.kind for f in get_scenario(st.plan.scenario).faults}
        if kinds & set(repro.KILLING):
            assert st.plan.duration_s == scale.crash_s >= 24, st.tag
        else:
            assert st.plan.duration_s in (scale.fault_s, scale.gc_s), st.tag
