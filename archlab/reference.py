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

from archlab.rundir import (
    GC,
    LEDGER,
    LOCUST_HTML,
    MANIFEST,
    PARTIAL_DIR,
    PROCESSES,
    PROFILE_DIR,
    REQUESTS,
    RUNS_DIR,
    SPEEDSCOPE,
    STATE_DIR,
    TELEMETRY_DIR,
    read_json,
    results_root,
)

COMPRESS = (REQUESTS, GC, PROCESSES, LEDGER, f"{PROFILE_DIR}/{SPEEDSCOPE}")
LEAVE_OUT = (STATE_DIR, PARTIAL_DIR, TELEMETRY_DIR, LOCUST_HTML, "*.tmp")


def gzip_file(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    with path.open("rb") as src, gzip.open(target, "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return target


def make_reference(src: Path, dest: Path | None = None) -> Path:
    """Copy run set `src` to `dest` (default results/reference), slimmed, with figures."""
    from archlab.analysis.runset import load_runset
    from archlab.figures import render_all
    from archlab.figures.notebooks import publish_html

    dest = dest or results_root() / "reference"
    manifest = read_json(src / MANIFEST) or {}
    if not manifest.get("complete"):
        raise ValueError(f"{src} is not a complete run set ({MANIFEST}: complete=false)")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*LEAVE_OUT))
    for run in sorted((dest / RUNS_DIR).iterdir()):
        for name in COMPRESS:
            if (run / name).exists():
                gzip_file(run / name)
    figures = render_all(load_runset(dest), dest / "figures")
    publish_html(dest, dest / "notebooks")
    (dest / "README.md").write_text(describe(manifest, [p.name for p in figures]))
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
