"""The pure attribution and classification rules of the GC and profile figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from archlab.analysis import gcwindows
from archlab.analysis.runset import RunSet
from archlab.figures import gcstalls, profiles
from archlab.measure.profiler import short_file


def _requests(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["endpoint", "start_time", "end_time", "corrected_ms"])


def _pauses(rows: list[tuple[str, int, float, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["role", "generation", "start", "duration_ms"])
    df["pid"] = 1
    return gcwindows.pauses(df)


def test_overlap_counts_inside_and_outside() -> None:
    counts = gcwindows.overlap_counts(
        np.array([0.0, 2.0, 5.0]),
        np.array([1.0, 3.0, 6.0]),
        np.array([0.5, 5.5]),
        np.array([0.7, 7]),
    )
    assert counts.tolist() == [1, 0, 1]


def test_pauses_keep_only_long_ones() -> None:
    df = _pauses([("a", 0, 1.0, 0.5), ("a", 2, 2.0, 10.0)])
    assert df["duration_ms"].tolist() == [10.0]
    assert df["end"].iloc[0] == 2.01


def test_inside_outside_splits_on_full_collections_only() -> None:
    req = _requests(
        [
            ("/products?q", 0.0, 1.0, 900.0),
            ("/products?q", 2.0, 2.1, 5.0),
            ("/products?q", 3.0, 3.2, 7.0),
        ]  # fmt: skip
    )
    engine = _pauses([("monolith", 2, 0.5, 400.0), ("monolith", 1, 3.05, 50.0)])
    (row,) = gcwindows.inside_outside(req, engine)
    assert (row["n_inside"], row["n_outside"]) == (1, 2)
    assert row["p99_inside_ms"] == 900.0 and row["p99_outside_ms"] == 7.0


def test_engine_and_path_roles() -> None:
    assert gcwindows.engine_roles("monolith", {"monolith"}) == {"monolith"}
    assert gcwindows.engine_roles("distributed", {"gateway", "recommendations"}) == {
        "recommendations"
    }
    assert "recommendations" not in gcstalls.path_roles("multiprocess", "/products?q", set())
    assert gcstalls.path_roles("distributed", "/products/{id}/recommendations", set()) == {
        "gateway",
        "catalog",
        "recommendations",
    }


def test_slow_requests_go_to_the_longest_pause_on_their_path() -> None:
    fast = [("/products?q", 10.0 + i, 10.001 + i, 1.0) for i in range(200)]
    req = _requests(
        [
            *fast,
            ("/products?q", 0.0, 1.0, 500.0),
            ("/products/{id}/recommendations", 2.0, 3.0, 600.0),
        ]
    )
    all_pauses = _pauses(
        [
            ("recommendations", 2, 0.1, 800.0),
            ("recommendations", 2, 2.1, 800.0),
            ("gateway", 1, 2.0, 5.0),
        ]  # fmt: skip
    )
    attributed, threshold = gcstalls.attribute_slow(req, all_pauses, "distributed")
    assert threshold == 1.0
    # the catalog search does not call the engine: its overlap does not count
    assert attributed.tolist() == [gcstalls.NO_PAUSE, "recommendations"]


def test_classify_stack_rules() -> None:
    shop = ("Catalog.search", "workloads/shop/catalog.py")
    gthread = ("ThreadWorker.handle", "site-packages/gunicorn/workers/gthread.py")
    assert profiles.classify_stack([gthread, shop]) == "domain"
    assert profiles.classify_stack([gthread, shop, ("encode", "msgspec/json.py")]) == (
        "serialization"
    )
    client = [gthread, ("UdsTransport.__call__", "variants/multiprocess/ipc.py"),
              ("recv_frame", "variants/multiprocess/ipc.py")]  # fmt: skip
    assert profiles.classify_stack(client) == "transport"
    server_wait = [("IpcServer._serve", "variants/multiprocess/ipc.py"),
                   ("recv_frame", "variants/multiprocess/ipc.py")]  # fmt: skip
    assert profiles.classify_stack(server_wait) == "idle"
    accept_loop = [("ThreadWorker.run", "site-packages/gunicorn/workers/gthread.py"),
                   ("EpollSelector.select", "selectors.py")]  # fmt: skip
    assert profiles.classify_stack(accept_loop) == "idle"
    assert profiles.classify_stack([("main", "tool.py")]) == "other"


def test_a_frame_is_classified_by_its_project_path_wherever_the_profile_was_recorded() -> None:
    """The reference was recorded in another clone; its frames must read as this checkout's."""
    cases = {
        "/work/main/workloads/shop/db.py": "workloads/shop/db.py",
        "/home/me/archlab/archlab/run/plan.py": "archlab/run/plan.py",  # a clone named archlab
        "/srv/x/variants/multiprocess/ipc.py": "variants/multiprocess/ipc.py",
        "/v/lib/python3.11/site-packages/falcon/app.py": "site-packages/falcon/app.py",
        "/usr/lib/python3.11/threading.py": "threading.py",
        "<frozen importlib._bootstrap>": "<frozen importlib._bootstrap>",
    }
    assert {path: short_file(path) for path in cases} == cases
    frames = [
        ("handle", "/elsewhere/variants/edge/app.py"),
        ("place", "/elsewhere/workloads/shop/orders.py"),
    ]
    assert profiles.classify_stack([(n, short_file(f)) for n, f in frames]) == "domain"


def test_a_run_set_without_profiles_gives_empty_tables_the_notebook_can_still_pivot(
    tmp_path: Path,
) -> None:
    rs = RunSet(tmp_path, {})
    table = profiles.breakdown_table(rs)
    assert table.empty and list(table.columns) == list(profiles.BREAKDOWN_COLUMNS)
    pivot = table.pivot_table(index=["variant", "role"], columns="category", values="seconds")
    assert pivot.empty  # notebook 05's cell, which raised KeyError on a frame without columns
    assert list(profiles.top_functions_table(rs).columns) == list(profiles.TOP_COLUMNS)
    assert profiles.time_breakdown(rs) is None and profiles.top_functions(rs) is None
    assert "No profile runs" in profiles.reading(rs)
