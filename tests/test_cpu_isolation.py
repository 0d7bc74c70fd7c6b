"""CPU isolation: a group's processes confined to CPUs of their own, everything else to the rest.

The split is computed from the CPUs the deployer may use, and reaches every process of the
group, including what it forks (gunicorn's workers) and execs (the Rust engine).
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from support import deployment

from archlab.deployers import get_variant
from variants import isolation
from variants import placement as placements

TWO_CPUS = len(os.sched_getaffinity(0)) >= 2


def test_the_isolated_group_gets_the_last_cpu_and_every_other_group_the_rest() -> None:
    found = placements.load("multiprocess")
    split = isolation.split(found, "recommendations", [0, 1, 2, 3])
    assert split["recommendations"] == (3,)
    assert all(cpus == (0, 1, 2) for g, cpus in split.items() if g != "recommendations")
    confined = found.with_cpus(split)
    assert confined.groups["recommendations"].cpus == (3,)
    assert confined.describe()["groups"]["recommendations"]["cpus"] == [3]  # meta.json's


def test_isolation_needs_two_cpus_and_a_group_that_is_not_the_edge() -> None:
    found = placements.load("multiprocess")
    with pytest.raises(isolation.IsolationError, match="needs 2 CPUs"):
        isolation.split(found, "recommendations", [0])
    with pytest.raises(isolation.IsolationError, match="cannot isolate 'backend'"):
        isolation.split(found, "backend", [0, 1])
    with pytest.raises(placements.PlacementError, match="cpus"):
        found.with_cpus({"recommendations": (1, 1)})


def test_the_harness_records_the_split_it_ran() -> None:
    spec = get_variant("distributed")
    assert "cpu_isolation" in spec.knobs and "bulkhead" in spec.knobs
    assert "cpu_isolation" not in get_variant("monolith").knobs  # one process: nothing to split
    ran = spec.placement_with({**spec.resolve_knobs({"cpu_isolation": "recommendations"})}, [0, 1])
    assert ran is not None
    assert ran.groups["recommendations"].cpus == (1,) and ran.groups["gateway"].cpus == (0,)


def _affinities(pids: list[int]) -> list[set[int]]:
    return [set(psutil.Process(pid).cpu_affinity() or ()) for pid in pids]


def _tree(pid: int) -> list[int]:
    root = psutil.Process(pid)
    return [root.pid, *(p.pid for p in root.children(recursive=True))]


@pytest.mark.skipif(not TWO_CPUS, reason="isolation needs 2 CPUs")
@pytest.mark.parametrize("variant", ["multiprocess", "distributed"])
def test_every_process_of_the_isolated_group_runs_on_its_cpu(variant: str, tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    knobs = {"cpu_isolation": "recommendations"}
    with deployment(variant, tmp_path / variant, knobs=knobs) as d:
        recs = d.pid("recommendations")
        engine = _tree(recs)
        assert _affinities(engine) == [{cpus[-1]}] * len(engine)
        front = d.pid("gateway" if variant == "distributed" else "backend")
        assert _affinities(_tree(front)) == [set(cpus[:-1])] * len(_tree(front))
