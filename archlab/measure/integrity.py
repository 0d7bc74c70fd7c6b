"""Nothing lost: the load generator's ledger of acknowledged orders and the invariant check.

After the load stops the harness waits (bounded) for the notifications to drain the orders
outbox while the variant still runs, stops the variant, then checks the shop's invariants
(`workloads/shop/invariants.py`) on its databases against `ledger.csv`, and writes
`invariants.json` (results/README.md).
"""

from __future__ import annotations

import csv
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archlab.rundir import INVARIANTS, LEDGER, LEDGER_COLUMNS, Status, write_json
from workloads.shop import invariants
from workloads.shop.dataset import state_paths

DRAIN_TIMEOUT_S = 15.0
DRAIN_POLL_S = 0.2


def read_ledger(path: Path) -> tuple[dict[str, int], list[str]]:
    """idempotency key -> order id of every order answered 201, and keys answered with two ids.

    A row cut short (the generator was killed mid-write) is skipped.
    """
    acknowledged: dict[str, int] = {}
    conflicting: list[str] = []
    if not path.exists():
        return acknowledged, conflicting
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        if tuple(next(reader, ())) != LEDGER_COLUMNS:
            raise ValueError(f"{path}: unexpected header, expected {list(LEDGER_COLUMNS)}")
        for row in reader:
            if len(row) != len(LEDGER_COLUMNS):
                continue
            try:
                key, oid = row[1], int(row[2])
            except ValueError:
                continue
            if acknowledged.setdefault(key, oid) != oid and key not in conflicting:
                conflicting.append(key)
    return acknowledged, conflicting


def outbox_pending(state_dir: Path) -> int | None:
    """Outbox events not yet acknowledged by notifications (read-only); None if unreadable."""
    path = state_paths(state_dir)["orders"]
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            (n,) = conn.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return int(n)


def wait_outbox_drained(
    state_dir: Path,
    timeout_s: float = DRAIN_TIMEOUT_S,
    *,
    alive: Callable[[], bool] = lambda: True,
) -> dict[str, Any]:
    """Poll the outbox until nothing is pending, `timeout_s` passes or the variant died."""
    t0 = time.monotonic()
    pending = outbox_pending(state_dir)
    while pending != 0 and time.monotonic() - t0 < timeout_s and alive():
        time.sleep(DRAIN_POLL_S)
        pending = outbox_pending(state_dir)
    return {
        "drained": pending == 0,
        "pending": pending,
        "waited_s": round(time.monotonic() - t0, 3),
        "timeout_s": timeout_s,
    }


def check_run(run_dir: Path, state_dir: Path, drain: dict[str, Any] | None) -> dict[str, Any]:
    """Check the invariants of a stopped variant's state against the run's ledger."""
    acknowledged, conflicting = read_ledger(run_dir / LEDGER)
    report = invariants.check(state_dir, acknowledged)
    report["checks"]["acknowledged_keys_have_one_id"] = not conflicting
    report["violations"]["acknowledged_with_two_ids"] = conflicting[: invariants.MAX_LISTED]
    report["ok"] = all(report["checks"].values())
    report["outbox"] = drain or {"drained": None}
    # the notification check covers unsent orders only when the outbox drained
    report["notifications_verified"] = report["counts"]["outbox_pending"] == 0
    return report


def write_report(run_dir: Path, report: dict[str, Any]) -> Path:
    return write_json(run_dir / INVARIANTS, report)


def judge_run(run_dir: Path, meta: dict[str, Any], state_dir: Path) -> dict[str, Any] | None:
    """After the variant stopped: check the invariants, write invariants.json, judge the run.

    A completed run whose invariants fail becomes `failed-invariants`; so does one whose check
    could not run (never call a run clean unchecked). Runs that failed for another reason are
    checked too (when the databases exist) but keep their status. None: nothing to check.
    """
    if not state_paths(state_dir)["orders"].exists():
        return None
    try:
        report = check_run(run_dir, state_dir, meta.get("outbox_drain"))
    except Exception as exc:  # noqa: BLE001 - report, and never call the run clean
        meta["invariants_error"] = f"{type(exc).__name__}: {exc}"
        if meta.get("status") == Status.COMPLETED:
            meta["status"] = Status.FAILED_INVARIANTS
        return None
    write_report(run_dir, report)
    meta["invariants"] = {"ok": report["ok"], "checks": report["checks"]}
    if meta.get("status") == Status.COMPLETED and not report["ok"]:
        meta["status"] = Status.FAILED_INVARIANTS
    return report


def format_report(report: dict[str, Any]) -> str:
    """Two or three lines for the terminal."""
    counts = report.get("counts", {})
    verdict = "ok" if report.get("ok") else "VIOLATED"
    lines = [
        f"invariants: {verdict}  ({counts.get('acknowledged', 0)} acknowledged orders, "
        f"{counts.get('stored_orders', 0)} stored, {counts.get('notifications_sent', 0)} "
        f"notifications sent, {counts.get('outbox_pending', 0)} pending)"
    ]
    failed = [name for name, ok in report.get("checks", {}).items() if not ok]
    if failed:
        lines.append("  failed: " + ", ".join(failed))
        for name, items in report.get("violations", {}).items():
            if items:
                lines.append(f"  {name}: {items[:5]}")
    if not report.get("notifications_verified", True):
        lines.append(
            "  note: the outbox did not drain, so unsent notifications were not checked "
            "(duplicates were)"
        )
    return "\n".join(lines)
