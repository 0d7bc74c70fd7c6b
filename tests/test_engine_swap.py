"""The live swap: under load, the postmaster replaces the Python recommendation engine with the
Rust one (and back) on a SIGHUP, without an error on any other endpoint.

The config file's `engines` table names the new engine; the postmaster starts it on the same
state, and once it is ready (it has re-bound the socket, so new connections reach it) the old
process finishes its calls in flight and stops. Callers' pooled connections to the old one are
closed by it and reopened to the new one on their next call.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from support import Load, deployment, request, wait_until

from variants import native

NO_RUST = native.unavailable_reason()
pytestmark = pytest.mark.skipif(NO_RUST is not None, reason=NO_RUST or "")

SWAP_TIMEOUT_S = 60.0
LOAD_AROUND_S = 1.5  # load before and after each swap, so calls are in flight across it
OTHERS = ("product", "search", "order", "order_read")
PRODUCTS = range(1, 21)


def _answers(base_url: str) -> dict[int, list[Any]]:
    found = {}
    for p in PRODUCTS:
        status, body = request(base_url, "GET", f"/products/{p}/recommendations")
        assert status == 200 and not body["degraded"], (p, status, body)
        found[p] = body["items"]
    return found


def _swap(state_dir: Path, postmaster: int, engine: str, old_pid: int) -> dict[str, Any]:
    """Ask for `engine` and wait until the old engine process has exited; its exit event."""
    (state_dir / "multiprocess.json").write_text(
        json.dumps({"engines": {"recommendations": engine}})
    )
    os.kill(postmaster, signal.SIGHUP)
    return wait_until(
        lambda: next(
            (e for e in _lifecycle(state_dir) if e["event"] == "exit" and e.get("pid") == old_pid),
            None,
        ),
        SWAP_TIMEOUT_S,
        f"the old engine (pid {old_pid}) stops after the swap to {engine}",
    )


def _lifecycle(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "lifecycle.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _engine_pid(state_dir: Path) -> int:
    starts = [
        e for e in _lifecycle(state_dir) if e["event"] == "start" and e["role"] == "recommendations"
    ]
    return int(starts[-1]["pid"])


def test_the_engine_is_swapped_under_load_without_an_error_elsewhere(tmp_path: Path) -> None:
    with deployment("multiprocess", tmp_path) as family:
        state = family.state_dir
        before = _answers(family.base_url)
        python_pid = _engine_pid(state)
        with Load(family.base_url).running() as load:
            time.sleep(LOAD_AROUND_S)  # load before the swap: requests in flight across it
            t0 = time.monotonic()
            exit_py = _swap(state, family.proc.pid, "rust", python_pid)
            swap_s = time.monotonic() - t0
            time.sleep(LOAD_AROUND_S)
            rust_pid = _engine_pid(state)
            rust = psutil.Process(rust_pid)
            assert rust.exe() == str(native.binary("rust", "recommendations"))
            assert rust.cmdline()[0] == "archlab: recommendations"
            during_rust = _answers(family.base_url)
            exit_rs = _swap(state, family.proc.pid, "python", rust_pid)
            time.sleep(LOAD_AROUND_S)
        after = _answers(family.base_url)

        for endpoint in OTHERS:
            statuses = load.statuses(endpoint)
            assert statuses, endpoint
            failed = [s for s in statuses if not 200 <= s < 300 and s != 409]  # 409: sold out
            assert not failed, f"{endpoint}: {len(failed)} failed ({sorted(set(failed))})"
        recs = load.recommendations_since(0.0)
        assert recs and all(status == 200 for status, _ in recs)
        degraded = sum(1 for _, d in recs if d)
        print(
            f"swap python->rust {swap_s:.2f} s, {len(recs)} recommendations of which "
            f"{degraded} degraded, {sum(len(load.statuses(e)) for e in OTHERS)} other requests"
        )
        assert exit_py["expected"] and exit_py["exit_code"] == 0
        assert exit_rs["expected"] and exit_rs["exit_code"] == 0
        assert before == during_rust == after  # the same model from the same store
        states = request(family.base_url, "GET", "/healthz")[1]["components"]
        assert states["recommendations"] == "ok"
