"""The set-up files agree with each other, so conda and pip users get the same lab."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENVIRONMENT = yaml.safe_load((ROOT / "environment.yml").read_text())


def pip_section() -> list[str]:
    for dep in ENVIRONMENT["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            return dep["pip"]
    raise AssertionError("environment.yml has no pip section")


def test_environment_uses_conda_forge_and_the_projects_python() -> None:
    assert ENVIRONMENT["channels"] == ["conda-forge"]
    pythons = [
        d for d in ENVIRONMENT["dependencies"] if isinstance(d, str) and d.startswith("python")
    ]
    assert pythons == ["python=3.11"]
    assert PYPROJECT["project"]["requires-python"].startswith(">=3.11")


def test_environment_installs_the_project_with_every_extra() -> None:
    (install,) = [line for line in pip_section() if re.match(r"^(-e )?\.(\[|$)", line)]
    extras = set(re.search(r"\[(.*)\]", install).group(1).split(","))
    assert extras == set(PYPROJECT["project"]["optional-dependencies"])


def test_environment_pins_nothing_that_pyproject_does_not_declare() -> None:
    declared = {
        re.split(r"[<>=!~\[ ]", dep)[0].lower()
        for deps in [
            PYPROJECT["project"]["dependencies"],
            *PYPROJECT["project"]["optional-dependencies"].values(),
        ]
        for dep in deps
    }
    extra_pip = [line for line in pip_section() if not line.startswith(("-e", "."))]
    conda = [
        d.split("=")[0]
        for d in ENVIRONMENT["dependencies"]
        if isinstance(d, str) and d.split("=")[0] not in ("python", "pip")
    ]
    assert set(extra_pip + conda) <= declared


def test_the_console_script_and_ci_entry_point() -> None:
    assert PYPROJECT["project"]["scripts"]["archlab"] == "archlab.cli:main"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", makefile, re.M) and re.search(r"^reproduce:", makefile, re.M)
