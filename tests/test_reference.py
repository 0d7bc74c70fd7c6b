"""The committed reference run set is whole: every run finished, raw records kept, figures drawn.

A newcomer reads the README's gallery and the notebooks before running anything; both come
from `results/reference/`, so it must be a complete `full` reproduction of this repository's
matrix and carry a figure for every figure function.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from archlab import reference
from archlab import reproduce as repro
from archlab.analysis import readings
from archlab.analysis.runset import load_runset
from archlab.analysis.summary import summarize_run
from archlab.analysis.validate import validate_run
from archlab.figures import figure_functions, gallery, isolation
from archlab.rundir import SUMMARY, read_json, read_meta, warmup_of, write_json

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
README = Path(__file__).resolve().parents[1] / "README.md"
MAX_BYTES = 64 * 2**20
"""Every raw row of 185 runs (the remedy and copy-on-write studies: ~18 MiB of it) plus the
figures and notebooks: 45 MiB when written; a guard against committing databases or reports."""

pytestmark = pytest.mark.skipif(
    not (REFERENCE / "manifest.json").exists(), reason="no reference run set committed yet"
)


def test_the_reference_is_a_complete_full_reproduction_with_its_machine() -> None:
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert load_runset(REFERENCE).scale == "full"
    assert manifest["machine"]["cpu_model"] and manifest["machine"]["usable_cpus"]
    rs = load_runset(REFERENCE)
    assert all(run.finished for run in rs.runs.values())
    assert rs.hop is not None


def test_the_reference_runs_todays_full_matrix() -> None:
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    cpus = manifest["machine"]["usable_cpus"]
    expected = [s.tag for s in repro.plan_steps(repro.SCALES["full"], cpus)]
    assert [s["tag"] for s in manifest["steps"]] == expected


def test_the_reference_names_the_one_clean_commit_that_made_it() -> None:
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    assert manifest["made_from"] == reference.provenance(REFERENCE)
    assert manifest["made_from"]["dirty"] is False
    assert manifest["drawn_by"]["dirty"] is False and manifest["drawn_by"]["commit"]


HEADLINE = ("latency.", "knee.", "scaling.", "gc.", "fault.", "server.", "remedy.", "hop.")
"""The readings of the repeated steps and the studies' rounds: what the captions quote."""


def test_every_headline_reading_is_taken_over_at_least_five_repetitions() -> None:
    found = readings.load(load_runset(REFERENCE))
    headline = [r for name, r in found.items() if name.startswith(HEADLINE)]
    assert {name.split(".")[0] + "." for name in found} >= set(HEADLINE)
    assert [r.name for r in headline if r.n < 5] == []


def test_the_readmes_gallery_is_what_the_references_readings_give() -> None:
    rs = load_runset(REFERENCE)
    assert gallery.written(README) == gallery.render(readings.load(rs))


def test_no_second_of_a_crash_run_is_empty_while_load_was_offered() -> None:
    rs = load_runset(REFERENCE)
    killing = [r for r in rs.of("fault") if "crash" in r.scenario or "leak" in r.scenario]
    assert len(killing) >= 3 * 3 * 5  # two crashes and the leak, every variant, five rounds
    empty = {r.tag: r.summary["load"]["empty_buckets"] for r in killing}
    assert {tag: e["offsets_s"] for tag, e in empty.items() if e["count"]} == {}


def test_a_dirty_checkout_cannot_draw_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reference, "git_info", lambda _root: {"commit": "abc123", "dirty": True})
    with pytest.raises(reference.ProvenanceError, match="uncommitted changes"):
        reference.drawing_commit()
    monkeypatch.setattr(reference, "git_info", lambda _root: {"commit": "abc123", "dirty": False})
    assert reference.drawing_commit() == {"commit": "abc123", "dirty": False}


def _run_set(root: Path, commits: list[tuple[str, bool]]) -> Path:
    for i, (commit, dirty) in enumerate(commits):
        (root / "runs" / f"r{i}").mkdir(parents=True)
        write_json(
            root / "runs" / f"r{i}" / "meta.json", {"git": {"commit": commit, "dirty": dirty}}
        )
    return root


def test_a_run_set_made_from_one_clean_commit_names_it(tmp_path: Path) -> None:
    got = reference.provenance(_run_set(tmp_path, [("abc123", False)] * 3))
    assert got == {"commit": "abc123", "dirty": False, "runs": 3}


@pytest.mark.parametrize(
    ("commits", "says"),
    [
        ([("abc123", True)], "uncommitted changes"),
        ([("abc123", False), ("def456", False)], "more than one commit"),
        ([("abc123", False), ("abc123", True)], "more than one commit"),
    ],
)
def test_a_dirty_or_mixed_run_set_cannot_become_the_reference(
    tmp_path: Path, commits: list[tuple[str, bool]], says: str
) -> None:
    with pytest.raises(reference.ProvenanceError, match=says):
        reference.provenance(_run_set(tmp_path, commits))


def _runs() -> list[Path]:
    return sorted(p for p in (REFERENCE / "runs").iterdir() if p.is_dir())


def test_raw_records_are_kept_compressed_without_databases() -> None:
    for run_dir in _runs():
        assert not (run_dir / "state").exists(), run_dir.name
        assert (run_dir / "requests.csv.gz").exists() and not (run_dir / "requests.csv").exists()


def test_every_run_validates_as_it_is_stored() -> None:
    problems = {run_dir.name: validate_run(run_dir) for run_dir in _runs()}
    assert {name: found for name, found in problems.items() if found} == {}


def _first_repetitions() -> list[Path]:
    """Every kind of run once: the runs that are no repetition, and each step's first round."""
    return [p for p in _runs() if not re.search(r"-r([2-9]|\d\d+)$", p.name)]


def test_each_summary_is_what_its_raw_records_give_today() -> None:
    """Recomputed from the gzipped raw files, a committed summary.json comes out the same, for
    every kind of run (later rounds take the same code path: the suite's time is spent once)."""
    for run_dir in _first_repetitions():
        again = summarize_run(run_dir, warmup_s=warmup_of(read_meta(run_dir)))
        assert again["endpoints"]["ALL"]["count"] > 0, run_dir.name
        assert json.loads(json.dumps(again)) == read_json(run_dir / SUMMARY), run_dir.name


def test_the_reference_is_small_enough_for_the_repository() -> None:
    total = sum(p.stat().st_size for p in REFERENCE.rglob("*") if p.is_file())
    assert total < MAX_BYTES


def test_every_figure_is_in_the_gallery_folder_and_shown_in_the_readme() -> None:
    readme = README.read_text()
    for name in figure_functions():
        assert (REFERENCE / "figures" / f"{name}.png").exists(), name
        assert f"results/reference/figures/{name}.png" in readme, name


def test_the_fault_readings_prose_quotes_what_readings_json_holds() -> None:
    """Notebook 03's prose and the gallery take the same medians over the same repetitions
    (`faults.per_run`), not a worst case over all of them."""
    rs = load_runset(REFERENCE)
    text = isolation.reading(rs)
    found = readings.load(rs)
    quoted = [r for name, r in found.items() if name.startswith("fault.")]
    assert quoted
    for r in quoted:
        if r.name.split(".")[2].startswith("error_pct") and r.median:
            assert f"error {r.text()}" in text, r.name
        if "others_p99_ratio" in r.name:
            assert f"p99 at {r.text().replace(' [', ' x baseline [', 1)}" in text, r.name
        if "recovery_s" in r.name:
            assert f"back after {r.text('{:.0f}')}" in text, r.name
