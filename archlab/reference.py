"""The committed reference: a finished run set, slimmed for the repository, with its figures.

Databases (`state/`), locust's own HTML report (~300 KB a run, drawn from what requests.csv
holds row by row, and read by no figure) and half-written attempts are left out; the raw
records are gzipped
(every row kept, so figures drawn from them match the originals) and `summary.json`, `meta.json`
and the manifest are copied unchanged. Readers of raw files accept `name.csv.gz` for `name.csv`.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

from archlab.host.machine import git_info
from archlab.rundir import (
    GC,
    LEDGER,
    LOCUST_HTML,
    MANIFEST,
    META,
    PARTIAL_DIR,
    PROCESSES,
    PROFILE_DIR,
    REQUESTS,
    RUNS_DIR,
    SPEEDSCOPE,
    STATE_DIR,
    TELEMETRY_DIR,
    read_json,
    repo_root,
    results_root,
    write_json,
)

COMPRESS = (REQUESTS, GC, PROCESSES, LEDGER, f"{PROFILE_DIR}/{SPEEDSCOPE}")
LEAVE_OUT = (STATE_DIR, PARTIAL_DIR, TELEMETRY_DIR, LOCUST_HTML, "*.tmp")


def gzip_file(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    with path.open("rb") as src, gzip.open(target, "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return target


class ProvenanceError(ValueError):
    """The run set was not made by one clean commit: nobody could rebuild exactly what made it."""


def provenance(run_set: Path) -> dict[str, Any]:
    """The one commit every run of `run_set` was made from, and that its tree was clean.

    Raises ProvenanceError when runs name different commits, a dirty tree, or no commit."""
    commits: dict[tuple[str | None, bool | None], list[str]] = {}
    for meta_path in sorted((run_set / RUNS_DIR).glob(f"*/{META}")):
        git = (read_json(meta_path) or {}).get("git") or {}
        commits.setdefault((git.get("commit"), git.get("dirty")), []).append(meta_path.parent.name)
    if not commits:
        raise ProvenanceError(f"{run_set} has no runs")
    if len(commits) > 1:
        found = ", ".join(
            f"{(c or '?')[:10]}{' (dirty)' if d else ''}: {len(runs)} runs"
            for (c, d), runs in commits.items()
        )
        raise ProvenanceError(f"{run_set} was made from more than one commit ({found})")
    (commit, dirty), runs = next(iter(commits.items()))
    if commit is None:
        raise ProvenanceError(f"{run_set}: its runs record no git commit")
    if dirty is not False:
        raise ProvenanceError(
            f"{run_set} was made from {commit[:10]} with uncommitted changes: reproduce it "
            "from a clean checkout (e.g. a `git worktree` at that commit)"
        )
    return {"commit": commit, "dirty": False, "runs": len(runs)}


def drawing_commit() -> dict[str, Any]:
    """The clean commit this archlab draws from: the figures, readings.json and the gallery
    are its work, so it must be as rebuildable as the runs' commit."""
    root = repo_root()
    git = git_info(root) if root else {"commit": None, "dirty": None}
    if git["commit"] is None:
        raise ProvenanceError("the reference is drawn from a git checkout: none found")
    if git["dirty"] is not False:
        raise ProvenanceError(
            f"this checkout ({git['commit'][:10]}) has uncommitted changes: commit them before "
            "drawing the reference"
        )
    return {"commit": git["commit"], "dirty": False}


def make_reference(src: Path, dest: Path | None = None) -> Path:
    """Copy run set `src` to `dest` (default results/reference), slimmed, with figures, its
    readings and (for the default place) the README's gallery; only a complete run set made
    from one clean commit (`provenance`), drawn by a clean checkout; the manifest names both."""
    from archlab.analysis import readings
    from archlab.analysis.runset import load_runset
    from archlab.figures import gallery, render_all
    from archlab.figures.notebooks import publish_html

    default = results_root() / "reference"
    dest = dest or default
    manifest = read_json(src / MANIFEST) or {}
    if not manifest.get("complete"):
        raise ValueError(f"{src} is not a complete run set ({MANIFEST}: complete=false)")
    made_from = provenance(src)
    drawn_by = drawing_commit()
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*LEAVE_OUT))
    described = {**manifest, "made_from": made_from, "drawn_by": drawn_by}
    write_json(dest / MANIFEST, described)
    for run in sorted((dest / RUNS_DIR).iterdir()):
        for name in COMPRESS:
            if (run / name).exists():
                gzip_file(run / name)
    rs = load_runset(dest)
    readings.write(rs)  # today's sources, over the same runs
    figures = render_all(rs, dest / "figures")
    publish_html(dest, dest / "notebooks")
    readme = (repo_root() or Path.cwd()) / "README.md"
    if dest.resolve() == default.resolve() and readme.exists():
        gallery.update(readme, gallery.render(readings.load(rs)))  # the readings just written
    (dest / "README.md").write_text(describe(described, [p.name for p in figures]))
    return dest


def describe(manifest: dict[str, Any], figures: list[str]) -> str:
    """README.md of the reference: what ran, where, when, and how to redo it."""
    m = manifest.get("machine") or {}
    scale = manifest.get("scale") or manifest["profile"]
    lines = [
        "# results/reference",
        "",
        f"A `{scale['name']}` reproduction (`archlab reproduce --scale {scale['name']}`), "
        'slimmed by `archlab reference` (see results/README.md, "Run sets").',
        "",
        f"- machine: {len(m.get('usable_cpus') or [])} usable CPUs ({m.get('cpu_model')}), "
        f"{(m.get('memory_total_bytes') or 0) / 2**30:.0f} GiB, {m.get('os')}, "
        f"Python {m.get('python_version')}",
        f"- ran: {manifest.get('started_at')} to {manifest.get('finished_at')}",
        f"- dataset: `{scale['size']}`; ramp steps {scale['ramp_steps']} streams x "
        f"{scale['ramp_step_s']:g} s; fault runs {scale['fault_s']} s "
        f"({', '.join(scale['fault_scenarios'])})",
        f"- runs: {len(manifest['steps'])} (`manifest.json` lists each with its plan and status)",
        f"- made from commit `{(manifest.get('made_from') or {}).get('commit', '?')}`, a clean "
        "tree (every run's `meta.json` names it); figures, `readings.json` and the README's "
        f"gallery drawn by commit `{(manifest.get('drawn_by') or {}).get('commit', '?')}`",
        "",
        "Figures (`figures/`, drawn from these runs by `archlab figures results/reference`):",
        "",
        *[f"- `{name}`" for name in figures],
        "",
        "Notebooks executed on these runs, readable without Jupyter (`notebooks/*.html`, one "
        "self-contained page each; the sources are in the repository's `notebooks/`).",
        "",
    ]
    return "\n".join(lines)
