"""Nothing lost: the load generator's ledger of acknowledged orders and the invariant check.

After the load stops the harness waits (bounded) for the notifications to drain the orders
outbox while the variant still runs, stops the variant, then checks the shop's invariants
(`workloads/shop/invariants.py`) on its databases against `ledger.csv`, and writes
`invariants.json` (results/README.md).

A deployment the harness did not start (`archlab run --target`) keeps its databases out of
reach, so `check_through_api` checks what a client can see instead: every acknowledged order
reads back, intact, under its id and key, and no product those orders touched shows negative
stock. Stock conservation and exactly-once notifications need the databases: such a report
lists them under `not_checked`.
"""

from __future__ import annotations

import csv
import http.client
import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from archlab.rundir import INVARIANTS, LEDGER, LEDGER_COLUMNS, Status, write_json
from workloads.shop import invariants
from workloads.shop.dataset import state_paths

DRAIN_TIMEOUT_S = 15.0
DRAIN_POLL_S = 0.2
# reading a target back through its API
API_WORKERS = 8  # concurrent read-backs
API_TIMEOUT_S = 10.0  # per request
API_ATTEMPTS = 3  # no answer or a 5xx is retried (a target may be briefly unavailable)
API_BACKOFF_S = 0.2  # doubled per attempt
METHOD_DATABASES = "databases"  # invariants.json `method`: read from the state/ databases
METHOD_API = "api"  # read back through the public API (--target)
NOT_CHECKED_THROUGH_API = ("stock_conserved", "notifications_sent_exactly_once")


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
    report = {"method": METHOD_DATABASES, **invariants.check(state_dir, acknowledged)}
    report["checks"]["acknowledged_keys_have_one_id"] = not conflicting
    report["violations"]["acknowledged_with_two_ids"] = conflicting[: invariants.MAX_LISTED]
    report["ok"] = all(report["checks"].values())
    report["outbox"] = drain or {"drained": None}
    # the notification check covers unsent orders only when the outbox drained
    report["notifications_verified"] = report["counts"]["outbox_pending"] == 0
    return report


def _get_json(base_url: str, path: str) -> tuple[int, Any]:
    """GET base_url+path: (status, parsed JSON or None); status 0 when no answer came.

    No answer and 5xx are retried API_ATTEMPTS times, so a blip is not taken for a loss.
    """
    status, body = 0, b""
    for attempt in range(API_ATTEMPTS):
        if attempt:
            time.sleep(API_BACKOFF_S * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(base_url + path, timeout=API_TIMEOUT_S) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
            exc.close()
        except (OSError, http.client.HTTPException):
            status, body = 0, b""
        if 0 < status < 500:
            break
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None


def _intact(order: dict[str, Any]) -> bool:
    """An order with lines of positive quantity whose total is the sum of its lines."""
    lines = order.get("lines")
    if not isinstance(lines, list) or not lines:
        return False
    try:
        total = sum(int(line["qty"]) * int(line["unit_price_cents"]) for line in lines)
        return all(int(line["qty"]) >= 1 for line in lines) and total == order["total_cents"]
    except (KeyError, TypeError, ValueError):
        return False


def check_through_api(run_dir: Path, base_url: str) -> dict[str, Any]:
    """The invariants a client can check, against the run's ledger (a --target run).

    Reads every acknowledged order back with `GET /orders/{id}` and the stock of every product
    in them with `GET /products/{id}`; an answer that never came (after retries) fails the
    check it belongs to, so a run is never called clean unchecked.
    """
    acknowledged, conflicting = read_ledger(run_dir / LEDGER)
    with ThreadPoolExecutor(API_WORKERS) as pool:
        answers = list(
            pool.map(lambda oid: _get_json(base_url, f"/orders/{oid}"), acknowledged.values())
        )
        missing, not_intact, unanswered = [], [], []
        touched: set[int] = set()
        units = 0
        for (key, oid), (status, body) in zip(acknowledged.items(), answers, strict=True):
            if status == 0 or status >= 500:
                unanswered.append(f"/orders/{oid}")
            elif (
                status != 200
                or not isinstance(body, dict)
                or body.get("id") != oid
                or body.get("idempotency_key") != key
            ):
                missing.append(key)
            elif not _intact(body):
                not_intact.append(key)
            else:
                touched.update(int(line["product_id"]) for line in body["lines"])
                units += sum(int(line["qty"]) for line in body["lines"])
        products = sorted(touched)
        stock = list(pool.map(lambda pid: _get_json(base_url, f"/products/{pid}"), products))
    negative, unreadable = [], []
    for pid, (status, body) in zip(products, stock, strict=True):
        level = body.get("stock") if status == 200 and isinstance(body, dict) else None
        if not isinstance(level, int):
            unreadable.append(f"/products/{pid}")
        elif level < 0:
            negative.append(pid)
    checks = {
        "acknowledged_orders_read_back": not (missing or unanswered),
        "acknowledged_orders_intact": not not_intact,
        "acknowledged_keys_have_one_id": not conflicting,
        "no_negative_stock": not (negative or unreadable),
    }
    limit = invariants.MAX_LISTED
    return {
        "method": METHOD_API,
        "base_url": base_url,
        "ok": all(checks.values()),
        "checks": checks,
        "not_checked": list(NOT_CHECKED_THROUGH_API),
        "counts": {
            "acknowledged": len(acknowledged),
            "read_back": len(acknowledged) - len(missing) - len(unanswered),
            "units_in_acknowledged": units,
            "products_checked": len(products),
        },
        "violations": {
            "missing_acknowledged": missing[:limit],
            "not_intact": not_intact[:limit],
            "acknowledged_with_two_ids": conflicting[:limit],
            "negative_stock": negative[:limit],
            "unanswered": (unanswered + unreadable)[:limit],
        },
        "outbox": {"drained": None},
        "notifications_verified": False,
    }


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
    return _judge(meta, run_dir, lambda: check_run(run_dir, state_dir, meta.get("outbox_drain")))


def judge_target(run_dir: Path, meta: dict[str, Any], base_url: str) -> dict[str, Any] | None:
    """After the load on a --target: check through its API, write invariants.json, judge.

    Only a run whose load completed is checked (a target that failed or a run interrupted
    would only make the check wait on it); judged as `judge_run` judges.
    """
    if meta.get("status") != Status.COMPLETED or not (run_dir / LEDGER).exists():
        return None
    return _judge(meta, run_dir, lambda: check_through_api(run_dir, base_url))


def _judge(
    meta: dict[str, Any], run_dir: Path, check: Callable[[], dict[str, Any]]
) -> dict[str, Any] | None:
    try:
        report = check()
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
    if report.get("method") == METHOD_API:
        lines = [
            f"invariants (through the API): {verdict}  ({counts.get('acknowledged', 0)} "
            f"acknowledged orders, {counts.get('read_back', 0)} read back, "
            f"{counts.get('products_checked', 0)} products' stock checked; not checked: "
            f"{', '.join(report.get('not_checked', []))})"
        ]
    else:
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
    if not report.get("notifications_verified", True) and report.get("method") != METHOD_API:
        lines.append(
            "  note: the outbox did not drain, so unsent notifications were not checked "
            "(duplicates were)"
        )
    return "\n".join(lines)
