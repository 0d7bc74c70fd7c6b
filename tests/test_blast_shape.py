"""The blast radius of a crashed recommendations component has the shape each design promises.

For every variant, `crash-recommendations` at `tiny` size; the blast radius is computed from
the run's own records (archlab/analysis/blast.py). The monolith hosts everything in one
process, so every endpoint fails from the kill until the restart; multiprocess and distributed
isolate the
recommendations, so the endpoints that do not need them keep an error rate near zero. If a
measurement one day shows otherwise, this test fails: the claim is what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from archlab.analysis import blast
from archlab.deployers import VARIANTS
from workloads.scenarios import SCENARIOS

SCENARIO = "crash-recommendations"
assert SCENARIO in SCENARIOS

DURATION = "12s"
RECOMMENDATIONS = "/products/{id}/recommendations"
INDEPENDENT = ("/products/{id}", "/products?q", "POST /orders", "/orders/{id}")
NEAR_ZERO = 0.02  # error rate an isolated endpoint may show during the fault
MONOLITH_DOWN = 0.5  # share of all requests in the kill-to-restart window that fail
# Per endpoint the window may hold only a few requests, some straddling its edges (sent just
# before the kill, or queued on the restarted master's socket and answered late by the new
# worker), so each endpoint is judged by the blast tolerance: errors or a p99 beyond it.


@pytest.fixture(scope="module", params=list(VARIANTS), ids=str)
def crash_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    variant: str = request.param
    results = tmp_path_factory.mktemp(f"crash-{variant}")
    cmd = [
        sys.executable, "-m", "archlab.cli", "run", "--variant", variant,
        "--scenario", SCENARIO, "--size", "tiny", "--duration", DURATION,
        "--run-id", "crash", "--results-dir", str(results),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    run_dir = results / "crash"
    assert (run_dir / "meta.json").exists(), out.stdout + out.stderr
    rows, origin = blast.blast_run(run_dir)
    return variant, run_dir, out, rows, origin


def test_crash_recommendations_shape(crash_run) -> None:
    variant, run_dir, out, rows, origin = crash_run
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed", out.stdout[-3000:] + out.stderr[-3000:]
    hit = [r for r in rows if r.fault.kind == "crash" and r.fault.component == "recommendations"]
    crashes = [r.to_dict(origin) for r in hit]
    assert crashes, f"no crash of recommendations in {run_dir}/faults.csv"
    table = blast.format_text(crashes)
    by_endpoint = {r["endpoint"]: r for r in crashes}
    assert set(INDEPENDENT) | {RECOMMENDATIONS} <= set(by_endpoint), table
    # The window is the component's downtime (kill to restart), which can be short: an
    # endpoint without a request in flight in it says nothing, but some must have had one.
    if variant == "monolith":
        during = sum(r.during.count for r in hit)
        assert during > 0, table
        assert sum(r.during.errors for r in hit) / during >= MONOLITH_DOWN, table
        for row in hit:
            if row.during.count:
                kept_working = blast.within(row.during, row.baseline, blast.Tolerance())
                assert not kept_working, f"{row.endpoint} kept working\n{table}"
    else:
        assert sum(by_endpoint[e]["during_count"] for e in INDEPENDENT) > 0, table
        for endpoint in INDEPENDENT:
            row = by_endpoint[endpoint]
            if row["during_count"]:
                assert row["during_error_rate"] <= NEAR_ZERO, f"{endpoint} was hit\n{table}"
