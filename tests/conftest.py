"""Shared fixtures: `api`, a real variant server over the tiny dataset, once per variant.

The same conformance tests run against every registered variant; restrict them with
ARCHLAB_TEST_VARIANTS=monolith,multiprocess.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from archlab.deployers import VARIANTS, get_variant
from archlab.host import procs

READY_TIMEOUT_S = 120.0


def _test_variants() -> list[str]:
    chosen = os.environ.get("ARCHLAB_TEST_VARIANTS", "")
    return [v.strip() for v in chosen.split(",") if v.strip()] or list(VARIANTS)


@dataclass(frozen=True)
class RunningApi:
    """A variant server that is up: where to reach it and where its state lives."""

    variant: str
    base_url: str
    state_dir: Path
    log_path: Path


@pytest.fixture(scope="session", params=_test_variants(), ids=str)
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    """Start the variant with --size tiny on a free port; stop its process group afterwards."""
    variant: str = request.param
    spec = get_variant(variant)
    root = tmp_path_factory.mktemp(f"api-{variant}")
    state_dir = root / "state"
    state_dir.mkdir()
    port = procs.free_port()
    base_url = f"http://127.0.0.1:{port}"
    cmd = spec.command(
        port=port, size="tiny", seed=1, state_dir=state_dir, knobs=spec.resolve_knobs({})
    )
    log_path = root / "server.log"
    with procs.running(cmd, name=f"{variant} server", log_path=log_path) as server:
        procs.wait_healthy(server, f"{base_url}/healthz", READY_TIMEOUT_S)
        yield RunningApi(variant, base_url, state_dir, log_path)
