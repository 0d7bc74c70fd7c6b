"""The code's layout is a specification too: each stage imports only the stages below it.

    cli -> reproduce / reference -> run, figures -> analysis -> measure -> rundir -> host

and the workload (`workloads/`) imports nothing of the harness. Read from the source with `ast`,
so a new import that runs the wrong way fails here, not in a reviewer's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# a stage -> the archlab stages it may import (itself always)
ALLOWED: dict[str, set[str]] = {
    "host": set(),
    "rundir": {"host"},
    "measure": {"rundir", "host"},
    "analysis": {"measure", "rundir", "host", "deployers"},
    "bench": {"measure", "rundir", "host"},
    "run": {"analysis", "measure", "rundir", "host", "deployers"},
    "figures": {"analysis", "measure", "rundir", "host", "deployers"},
    "deployers": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _stage(module: str) -> str | None:
    """archlab.run.plan -> run; archlab.rundir -> rundir; archlab -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "archlab" else None


def _harness_files() -> list[Path]:
    return sorted((ROOT / "archlab").rglob("*.py"))


def test_the_workload_imports_nothing_of_the_harness() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] == "archlab")
        for p in sorted((ROOT / "workloads").rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_a_stage_imports_only_the_stages_below_it(stage: str) -> None:
    base = ROOT / "archlab" / stage
    files = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    assert files and all(f.exists() for f in files), f"no archlab/{stage}"
    wrong = {}
    for path in files:
        stages = {_stage(m) for m in _imports(path)} - {None, stage}
        stages -= ALLOWED[stage]
        stages -= {s for s in stages if s and s.startswith("__")}  # archlab.__version__
        if stages:
            wrong[str(path.relative_to(ROOT))] = sorted(s for s in stages if s)
    assert wrong == {}


def test_the_harness_top_folder_is_a_short_list_of_entry_points() -> None:
    modules = sorted(p.name for p in (ROOT / "archlab").glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= 8, modules


def test_every_harness_module_belongs_to_a_known_stage() -> None:
    tops = {"cli", "reproduce", "reference"}
    stages = {
        _stage("archlab." + str(p.relative_to(ROOT / "archlab")).replace("/", ".")[:-3])
        for p in _harness_files()
        if p.name != "__init__.py" or p.parent != ROOT / "archlab"
    }
    assert stages - tops - set(ALLOWED) == set()
