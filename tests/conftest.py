"""Shared fixtures: `api`, a real deployment over the tiny dataset, once per placement and knobs.

The same conformance tests run unchanged against every placement of the migration path
(`variants.placement.PATH`), with its default knobs, and the three ends of it once more with a
second worker / backend / replica count, with every HTTP server on granian, and with the
recommendation engine in Rust in the family (over IPC) and as a service (over HTTP); restrict them
with ARCHLAB_TEST_VARIANTS=monolith,recs-process. The Rust runs skip, saying why, only where the
engine could not be built (`make setup` builds it). Deployments come from `support.deployment`, so
nothing they start outlives the session, whatever happens.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from support import Deployment, deployment

from variants import native
from variants.multiprocess import config as mp
from variants.placement import PATH


def _test_variants() -> list[str]:
    chosen = os.environ.get("ARCHLAB_TEST_VARIANTS", "")
    return [v.strip() for v in chosen.split(",") if v.strip()] or list(PATH)


# the second shape of each variant: more than one process where the default has one (or, for
# the process family, one backend more than its default of one per CPU)
SCALED_OUT: dict[str, dict[str, int | str]] = {
    "monolith": {"workers": 2},
    "multiprocess": {"backends": mp.available_cpus() + 1},
    "distributed": {"replicas": 2},
}


FAST_SERVER = ("monolith", "multiprocess", "distributed")
"""Placements run once more with every HTTP server on granian (`variants.edge.servers`)."""
RUST_ENGINE = ("multiprocess", "distributed")
"""Placements run once more with `engine = "rust"` for the recommendations group."""
NO_RUST = native.unavailable_reason()
needs_rust = pytest.mark.skipif(NO_RUST is not None, reason=NO_RUST or "")


def _deployments() -> Iterator[object]:
    for variant in _test_variants():
        yield pytest.param((variant, {}), id=variant)
        if variant in SCALED_OUT:
            ((key, value),) = SCALED_OUT[variant].items()
            yield pytest.param((variant, SCALED_OUT[variant]), id=f"{variant}-{key}{value}")
        if variant in FAST_SERVER:
            yield pytest.param((variant, {"server": "granian"}), id=f"{variant}-granian")
        if variant in RUST_ENGINE:
            rust = {"engine_recommendations": "rust"}
            yield pytest.param((variant, rust), id=f"{variant}-rust", marks=needs_rust)


@pytest.fixture(scope="session", params=list(_deployments()))
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """The variant with --size tiny on a free port, healthy; stopped with all it started."""
    variant, knobs = request.param
    root = tmp_path_factory.mktemp(f"api-{variant}")
    with deployment(variant, root, knobs=knobs) as running:
        yield running


LONGEST_FIRST = (
    "test_reproduce.py",
    "test_reliability.py",
    "test_run_smoke.py",
    "test_blast_shape.py",
    "test_faults.py",
    "test_bad_input.py",
)
"""Modules that take the longest, longest first (the test-scale reproduction behind every
figure takes minutes on its own; then the runs of real deployments under kills and faults):
collected first, so one worker starts on the reproduction while the other works through the
next, and the suite ends on short modules on both workers instead of on one long one alone
(`--dist loadscope` hands modules out in collection order: `--no-loadscope-reorder` in
pyproject.toml, or xdist would hand out the modules with the most tests first)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))
