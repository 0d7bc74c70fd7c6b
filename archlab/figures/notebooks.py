"""Execute the notebooks headless against one run set and save the executed copies.

The kernel inherits ARCHLAB_RUNSET, so each notebook's `default_runset()` reads the set
`reproduce` just made; a person opening the notebooks in JupyterLab gets the newest set or,
before any run, the committed reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from archlab.analysis.runset import ENV_RUNSET
from archlab.rundir import repo_root

CELL_TIMEOUT_S = 600


def notebooks_dir() -> Path:
    return (repo_root() or Path.cwd()) / "notebooks"


def notebook_paths(src: Path | None = None) -> list[Path]:
    return sorted((src or notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path, run_set: Path, out_path: Path) -> Path:
    """Run every cell of one notebook with ARCHLAB_RUNSET=run_set; raise on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = os.environ.get(ENV_RUNSET)
    os.environ[ENV_RUNSET] = str(run_set.resolve())
    try:
        NotebookClient(
            nb,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    finally:
        if old is None:
            os.environ.pop(ENV_RUNSET, None)
        else:
            os.environ[ENV_RUNSET] = old
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_path)
    return out_path


def execute_all(
    run_set: Path,
    out_dir: Path,
    *,
    src: Path | None = None,
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """Execute every notebook into out_dir; the first failing cell aborts with its traceback."""
    written = []
    for path in notebook_paths(src):
        echo(f"{path.name} ...")
        written.append(execute(path, run_set, out_dir / path.name))
    return written
