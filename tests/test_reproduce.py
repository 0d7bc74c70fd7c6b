"""`archlab reproduce` end to end on a test-sized profile: the matrix, every figure, every notebook.

One reproduction (profile `test`: the tiny dataset, runs of a few seconds) is made once for the
module by the real command line; the tests read what it left behind. The same run set is the
fixture the figure functions and the notebooks are checked against.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from matplotlib.figure import Figure

from archlab import reproduce as repro
from archlab.analysis.runset import ENV_RUNSET, default_runset_path, load_runset
from archlab.analysis.validate import validate_run
from archlab.figures import figure_functions
from archlab.figures.notebooks import notebook_paths

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
    cmd = [
        sys.executable, "-m", "archlab.cli", "reproduce", "--scale", "test",
        "--out", str(paths["out"]), "--figures-dir", str(paths["figures"]),
        "--notebooks-dir", str(paths["notebooks"]),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=540, start_new_session=True)
    paths["log"].write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return paths


def test_every_step_of_the_matrix_ran_and_is_a_valid_run(reproduction: dict[str, Path]) -> None:
    manifest = json.loads((reproduction["out"] / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["failed"] == []
    tags = [s["tag"] for s in manifest["steps"]]
    assert tags == [s.tag for s in repro.plan_steps(repro.SCALES["test"])]
    for variant in ("monolith", "multiprocess", "distributed"):
        assert f"latency-{variant}" in tags and f"gc-pressure-{variant}" in tags
    for step in manifest["steps"]:
        run_dir = reproduction["out"] / step["run"]
        assert step["status"] == "completed", step
        assert validate_run(run_dir) == [], step["tag"]
    hop = json.loads((reproduction["out"] / "hop.json").read_text())
    assert set(hop["results"]["catalog.get"]) >= {"in-process", "IPC (Unix socket, msgpack)"}


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
        assert isinstance(fn(rs), Figure), name


def test_every_notebook_executed_and_ends_with_a_reading_computed_from_the_runs(
    reproduction: dict[str, Path],
) -> None:
    sources = notebook_paths()
    assert [p.name[:2] for p in sources] == ["01", "02", "03", "04", "05", "06"]
    for source in sources:
        nb = nbformat.read(reproduction["notebooks"] / source.name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.get("execution_count") for c in code), source.name
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert errors == [], source.name
        assert any(o.get("data", {}).get("image/png") for c in code for o in c.outputs), (
            f"{source.name} shows no figure"
        )
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
    reproduction: dict[str, Path],
) -> None:
    out = reproduction["out"]
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
    out = tmp_path / "set"
    manifest = json.loads((reproduction["out"] / "manifest.json").read_text())
    (out / "runs").mkdir(parents=True)
    for step in manifest["steps"]:
        src = reproduction["out"] / step["run"]
        (out / step["run"]).symlink_to(src.resolve(), target_is_directory=True)
    (out / "hop.json").write_text((reproduction["out"] / "hop.json").read_text())
    (out / "manifest.json").write_text(json.dumps(manifest))
    victim = out / "runs" / "latency-monolith"
    victim.unlink()
    victim.mkdir()
    (victim / "meta.json").write_text(json.dumps({"status": "interrupted"}))
    lines: list[str] = []
    outputs = repro.reproduce("test", out, render=False, echo=lines.append)
    assert outputs["failed"] == []
    assert [line for line in lines if line.startswith("=== [")][0].endswith(
        "latency-monolith"
    ) or any("latency-monolith" in line and "[1/1]" in line for line in lines)
    assert (out / "runs" / ".partial" / "latency-monolith-1" / "meta.json").exists()
    meta = json.loads((victim / "meta.json").read_text())
    assert meta["status"] == "completed"


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
