"""The committed reference: a finished run set, slimmed for the repository, with its figures.

Databases (`state/`) and half-written attempts are left out; the raw records are gzipped
(every row kept, so figures drawn from them match the originals) and `summary.json`, `meta.json`
and the manifest are copied unchanged. Readers of raw files accept `name.csv.gz` for `name.csv`.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from archlab.figures.runset import results_root

COMPRESS = (
    "requests.csv",
    "gc.csv",
    "processes.csv",
    "ledger.csv",
    "profile/profile.speedscope.json",
)
LEAVE_OUT = ("state", ".partial", "telemetry", "*.tmp")


def gzip_file(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    with path.open("rb") as src, gzip.open(target, "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return target


def make_reference(src: Path, dest: Path | None = None) -> Path:
    """Copy run set `src` to `dest` (default results/reference), slimmed, with figures."""
    from archlab.figures import render_all
    from archlab.figures.runset import load_runset

    dest = dest or results_root() / "reference"
    manifest = json.loads((src / "manifest.json").read_text())
    if not manifest.get("complete"):
        raise ValueError(f"{src} is not a complete run set (manifest.json: complete=false)")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*LEAVE_OUT))
    for run in sorted((dest / "runs").iterdir()):
        for name in COMPRESS:
            if (run / name).exists():
                gzip_file(run / name)
    render_all(load_runset(dest), dest / "figures")
    return dest
