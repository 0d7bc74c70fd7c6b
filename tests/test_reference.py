"""The committed reference run set is whole: every run finished, raw records kept, figures drawn.

A newcomer reads the README's gallery and the notebooks before running anything; both come
from `results/reference/`, so it must be a complete `full` reproduction of this repository's
matrix and carry a figure for every figure function.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from archlab import reproduce as repro
from archlab.analysis.runset import load_runset
from archlab.figures import figure_functions

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
README = Path(__file__).resolve().parents[1] / "README.md"
MAX_BYTES = 40 * 2**20

pytestmark = pytest.mark.skipif(
    not (REFERENCE / "manifest.json").exists(), reason="no reference run set committed yet"
)


def test_the_reference_is_a_complete_full_reproduction_with_its_machine() -> None:
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert load_runset(REFERENCE).scale == "full"
    assert manifest["machine"]["cpu_model"] and manifest["machine"]["usable_cpus"]
    cpus = manifest["machine"]["usable_cpus"]
    expected = [s.tag for s in repro.plan_steps(repro.SCALES["full"], cpus)]
    assert [s["tag"] for s in manifest["steps"]] == expected
    rs = load_runset(REFERENCE)
    assert all(run.finished for run in rs.runs.values())
    assert rs.hop is not None


def test_raw_records_are_kept_compressed_and_the_summaries_match_them() -> None:
    for run_dir in sorted((REFERENCE / "runs").iterdir()):
        assert not (run_dir / "state").exists(), run_dir.name
        with gzip.open(run_dir / "requests.csv.gz", "rt") as fh:
            rows = sum(1 for _ in fh) - 1
        summary = json.loads((run_dir / "summary.json").read_text())
        assert rows >= summary["endpoints"]["ALL"]["count"] > 0, run_dir.name


def test_the_reference_is_small_enough_for_the_repository() -> None:
    total = sum(p.stat().st_size for p in REFERENCE.rglob("*") if p.is_file())
    assert total < MAX_BYTES


def test_every_figure_is_in_the_gallery_folder_and_shown_in_the_readme() -> None:
    readme = README.read_text()
    for name in figure_functions():
        assert (REFERENCE / "figures" / f"{name}.png").exists(), name
        assert f"results/reference/figures/{name}.png" in readme, name
