"""Execute the notebooks headless against one run set and save the executed copies.

Each kernel is given ARCHLAB_RUNSET, so each notebook's `default_runset()` reads the set
`reproduce` just made; a person opening the notebooks in JupyterLab gets the newest set or,
before any run, the committed reference.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from archlab.analysis.runset import ENV_RUNSET
from archlab.rundir import repo_root

CELL_TIMEOUT_S = 600


def notebooks_dir() -> Path:
    return (repo_root() or Path.cwd()) / "notebooks"


def notebook_paths(src: Path | None = None) -> list[Path]:
    return sorted((src or notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path, run_set: Path, out_path: Path, *, relative: bool = False) -> Path:
    """Run every cell of one notebook, its kernel given ARCHLAB_RUNSET=run_set; raise on a
    failing cell.

    `relative`: name the run set relative to the notebook's folder (the kernel's working
    directory), so an executed copy that is published carries no path of this machine.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    where = os.path.relpath(run_set.resolve(), path.parent.resolve()) if relative else None
    # the kernel's own environment, not this process's: notebooks may run while figures render
    env = {**os.environ, ENV_RUNSET: where or str(run_set.resolve())}
    NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        resources={"metadata": {"path": str(path.parent)}},
    ).execute(env=env)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_path)
    return out_path


def execute_all(
    run_set: Path,
    out_dir: Path,
    *,
    src: Path | None = None,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> list[Path]:
    """Execute every notebook into out_dir; the first failing cell aborts with its traceback.
    Once `stop` is set, no further notebook starts (the one running finishes)."""
    written = []
    for path in notebook_paths(src):
        if stop is not None and stop.is_set():
            break
        echo(f"{path.name} ...")
        written.append(execute(path, run_set, out_dir / path.name))
    return written


def publish_html(
    run_set: Path, out_dir: Path, *, echo: Callable[[str], None] = print
) -> list[Path]:
    """Every notebook executed against `run_set` and saved as one self-contained HTML page each
    (figures inline, no script or style fetched from the network), for reading without Jupyter."""
    import tempfile

    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.embed_images = True
    exporter.mathjax_url = ""  # the notebooks have no formulas; nothing to fetch
    exporter.require_js_url = ""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="archlab-notebooks-") as tmp:
        for path in notebook_paths():
            echo(f"{path.name} -> html ...")
            executed = execute(path, run_set, Path(tmp) / path.name, relative=True)
            body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
            body = body.replace('<script src=""></script>', "")
            target = out_dir / f"{path.stem}.html"
            target.write_text(body)
            written.append(target)
    return written
