"""The invariant checker finds each kind of violation, and passes a healthy shop.

A real shop state (LocalShop over the tiny dataset, 12 orders, notifications drained) is
corrupted on purpose, one kind of violation per test. The kinds are every list under
`violations` of `invariants.check` and of `integrity.check_run`, by the check they fail:

- `acknowledged_orders_stored_once`: `missing_acknowledged` (an acknowledged key not stored,
  or stored under another id than the one acknowledged);
- `no_negative_stock`: `negative_stock`;
- `stock_conserved`: `not_conserved` (available + sold != initial, or sold != the units in
  stored orders and open reservations);
- `notifications_sent_exactly_once`: `notifications_duplicated`, `notifications_unsent` (only
  once the outbox drained) and `notifications_for_unknown_orders`;
- `acknowledged_keys_have_one_id` (`check_run`, from the ledger): `acknowledged_with_two_ids`.

A key stored twice cannot be checked for: the orders schema refuses it (tested below).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from archlab import cli
from archlab.host import procs
from archlab.measure import integrity
from archlab.rundir import INVARIANTS, LEDGER, Status, read_meta, start_csv
from workloads.shop import dataset, invariants
from workloads.shop.contracts import OrderItem, PlaceOrder
from workloads.shop.local import LocalShop

CHECKS = {
    "acknowledged_orders_stored_once",
    "no_negative_stock",
    "stock_conserved",
    "notifications_sent_exactly_once",
}
RUN_CHECKS = CHECKS | {"acknowledged_keys_have_one_id"}


def _sql(path: Path, *statements: str) -> None:
    """Corrupt a context's database behind the shop's back (committed, connection closed)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()


def _failed(report: dict) -> set[str]:
    return {name for name, ok in report["checks"].items() if not ok}


def _listed(report: dict) -> dict[str, list]:
    return {name: items for name, items in report["violations"].items() if items}


def _write_ledger(path: Path, entries: list[tuple[str, int]]) -> None:
    """As the recorder's Ledger writes it (time, idempotency key, order id)."""
    start_csv(path)
    with path.open("a") as fh:
        fh.writelines(f"{1.8e9 + i:.6f},{key},{oid}\n" for i, (key, oid) in enumerate(entries))


@pytest.fixture
def shop_with_orders(tmp_path: Path):
    dataset.prepare_state(dataset.ensure("tiny"), tmp_path)
    local = LocalShop(tmp_path)
    ledger = {}
    for i in range(12):
        request = PlaceOrder(
            customer_id=1,
            items=[OrderItem(product_id=1 + i % 5, qty=2)],
            idempotency_key=f"inv-{i}",
        )
        ledger[request.idempotency_key] = local.shop.orders.place(request).order.id
    while local.shop.orders.outbox_pending(100):
        local.shop.notifications.drain(100)
    local.close()
    return tmp_path, ledger


def test_a_healthy_shop_passes(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    report = invariants.check(state, ledger)
    assert report["ok"], report
    assert set(report["checks"]) == CHECKS and _failed(report) == set()
    assert _listed(report) == {}
    assert report["counts"]["stored_orders"] == 12
    assert report["counts"]["units_sold"] == 24
    assert report["counts"]["notifications_sent"] == 12


def test_a_lost_acknowledged_order_is_found(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    report = invariants.check(state, {**ledger, "never-stored": 999})
    assert _failed(report) == {"acknowledged_orders_stored_once"} and not report["ok"]
    assert _listed(report) == {"missing_acknowledged": ["never-stored"]}


def test_stock_that_vanished_is_not_conserved(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    with sqlite3.connect(state / "inventory.db") as conn:
        conn.execute("UPDATE stock SET available = available - 1 WHERE product_id = 3")
    report = invariants.check(state, ledger)
    assert not report["checks"]["stock_conserved"]
    assert report["checks"]["no_negative_stock"]
    assert report["violations"]["not_conserved"] == [3]


def test_a_reservation_without_an_order_still_conserves_stock(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    local = LocalShop(state)
    local.shop.inventory.reserve("crashed-before-storing", [OrderItem(product_id=7, qty=3)])
    local.close()
    report = invariants.check(state, ledger)
    assert report["checks"]["stock_conserved"]
    assert report["counts"]["orphaned_units"] == 3


def test_a_duplicate_notification_is_found(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    with sqlite3.connect(state / "notifications.db") as conn:
        conn.execute(
            "INSERT INTO sink (event_id, order_id, channel, body, sent_at) "
            "SELECT event_id + 1000, order_id, channel, body, sent_at FROM sink LIMIT 1"
        )
    report = invariants.check(state, ledger)
    assert _failed(report) == {"notifications_sent_exactly_once"}
    assert list(_listed(report)) == ["notifications_duplicated"]
    assert len(report["violations"]["notifications_duplicated"]) == 1


def test_an_oversold_product_is_negative_stock_even_with_every_unit_accounted_for(
    shop_with_orders,
) -> None:
    state, ledger = shop_with_orders
    # product 1 is in 3 stored orders of 2 units: 6 sold out of an initial stock of only 5
    _sql(
        state / "inventory.db",
        "PRAGMA ignore_check_constraints = ON",
        "UPDATE stock SET initial = 5, available = -1 WHERE product_id = 1 AND sold = 6",
    )
    report = invariants.check(state, ledger)
    assert _failed(report) == {"no_negative_stock"}
    assert _listed(report) == {"negative_stock": [1]}


def test_units_counted_sold_that_no_order_holds_are_not_conserved(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    # available + sold still equals initial, but no order or reservation holds the extra unit
    _sql(
        state / "inventory.db",
        "UPDATE stock SET sold = sold + 1, available = available - 1 WHERE product_id = 4",
    )
    report = invariants.check(state, ledger)
    assert _failed(report) == {"stock_conserved"}
    assert _listed(report) == {"not_conserved": [4]}


def test_an_acknowledged_order_deleted_from_the_database_is_missing(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    lost = ledger["inv-3"]
    _sql(
        state / "orders.db",
        f"DELETE FROM outbox WHERE order_id = {lost}",
        f"DELETE FROM orders WHERE id = {lost}",
    )
    report = invariants.check(state, ledger)
    assert _failed(report) == {"acknowledged_orders_stored_once", "notifications_sent_exactly_once"}
    assert _listed(report) == {
        "missing_acknowledged": ["inv-3"],
        "notifications_for_unknown_orders": [lost],  # it had been notified before it was lost
    }
    # its stock is still accounted for: its reservation now has no order (an orphan)
    assert report["checks"]["stock_conserved"] and report["counts"]["orphaned_units"] == 2


def test_an_order_acknowledged_under_one_id_but_stored_under_another_is_missing(
    shop_with_orders,
) -> None:
    state, ledger = shop_with_orders
    report = invariants.check(state, {**ledger, "inv-2": ledger["inv-3"]})
    assert ledger["inv-2"] != ledger["inv-3"]
    assert _failed(report) == {"acknowledged_orders_stored_once"}
    assert _listed(report) == {"missing_acknowledged": ["inv-2"]}


def test_a_stored_order_never_notified_is_unsent_once_the_outbox_drained(
    shop_with_orders,
) -> None:
    state, ledger = shop_with_orders
    forgotten = ledger["inv-7"]
    _sql(state / "notifications.db", f"DELETE FROM sink WHERE order_id = {forgotten}")
    report = invariants.check(state, ledger)
    assert report["counts"]["outbox_pending"] == 0
    assert _failed(report) == {"notifications_sent_exactly_once"}
    assert _listed(report) == {"notifications_unsent": [forgotten]}


def test_unsent_notifications_are_not_judged_while_the_outbox_is_pending(
    shop_with_orders, tmp_path: Path
) -> None:
    state, ledger = shop_with_orders
    waiting = ledger["inv-7"]
    _sql(state / "notifications.db", f"DELETE FROM sink WHERE order_id = {waiting}")
    _sql(state / "orders.db", f"UPDATE outbox SET acked_at = NULL WHERE order_id = {waiting}")
    report = integrity.check_run(tmp_path, state, {"drained": False, "pending": 1})
    assert report["ok"] and report["counts"]["outbox_pending"] == 1
    assert report["notifications_verified"] is False
    assert report["violations"]["notifications_unsent"] == []
    # duplicates are still found while the outbox is pending
    _sql(
        state / "notifications.db",
        "INSERT INTO sink (event_id, order_id, channel, body, sent_at) "
        "SELECT event_id + 1000, order_id, channel, body, sent_at FROM sink LIMIT 1",
    )
    report = integrity.check_run(tmp_path, state, {"drained": False, "pending": 1})
    assert _failed(report) == {"notifications_sent_exactly_once"}
    assert list(_listed(report)) == ["notifications_duplicated"]


def test_a_notification_for_an_order_that_does_not_exist_is_found(shop_with_orders) -> None:
    state, ledger = shop_with_orders
    _sql(
        state / "notifications.db",
        "INSERT INTO sink (event_id, order_id, channel, body, sent_at) "
        "VALUES (9999, 9999, 'email', 'Thank you! Order #9999', 0)",
    )
    report = invariants.check(state, ledger)
    assert _failed(report) == {"notifications_sent_exactly_once"}
    assert _listed(report) == {"notifications_for_unknown_orders": [9999]}


def test_violations_are_listed_up_to_a_limit_but_every_one_fails_the_check(
    shop_with_orders,
) -> None:
    state, ledger = shop_with_orders
    ghosts = [f"({9000 + n}, {9000 + n}, 'email', 'ghost', 0)" for n in range(25)]
    _sql(
        state / "notifications.db",
        "INSERT INTO sink (event_id, order_id, channel, body, sent_at) VALUES " + ", ".join(ghosts),
    )
    report = invariants.check(state, ledger)
    assert _failed(report) == {"notifications_sent_exactly_once"}
    assert report["violations"]["notifications_for_unknown_orders"] == list(
        range(9000, 9000 + invariants.MAX_LISTED)
    )
    assert report["counts"]["notifications_sent"] == 12 + 25


def test_the_orders_schema_refuses_a_key_stored_twice(shop_with_orders) -> None:
    """Why no check looks for a key stored twice: the database cannot hold one."""
    state, _ = shop_with_orders
    with pytest.raises(sqlite3.IntegrityError, match="idempotency_key"):
        _sql(
            state / "orders.db",
            "INSERT INTO orders (customer_id, idempotency_key, fingerprint, lines, total_cents, "
            "created_at) SELECT customer_id, idempotency_key, fingerprint, lines, total_cents, "
            "created_at FROM orders WHERE idempotency_key = 'inv-0'",
        )


# ------------------------------------------------------------------ the run's check and verdict


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


def test_a_clean_run_passes_every_check(shop_with_orders, run_dir: Path) -> None:
    state, ledger = shop_with_orders
    _write_ledger(run_dir / LEDGER, sorted(ledger.items()))
    report = integrity.check_run(run_dir, state, {"drained": True, "pending": 0})
    assert report["ok"] and report["notifications_verified"]
    assert set(report["checks"]) == RUN_CHECKS and _failed(report) == set()
    assert _listed(report) == {}
    assert report["counts"]["acknowledged"] == report["counts"]["stored_orders"] == 12


def test_a_key_acknowledged_with_two_ids_fails_the_run(shop_with_orders, run_dir: Path) -> None:
    state, ledger = shop_with_orders
    # the first answer for inv-4 is the stored one; a second 201 gave it another id
    _write_ledger(run_dir / LEDGER, [*sorted(ledger.items()), ("inv-4", ledger["inv-5"])])
    meta = {"status": Status.COMPLETED}
    report = integrity.judge_run(run_dir, meta, state)
    assert report is not None and not report["ok"]
    assert _failed(report) == {"acknowledged_keys_have_one_id"}
    assert _listed(report) == {"acknowledged_with_two_ids": ["inv-4"]}
    assert meta["status"] == Status.FAILED_INVARIANTS
    assert meta["invariants"]["checks"]["acknowledged_keys_have_one_id"] is False
    assert "acknowledged_keys_have_one_id" in integrity.format_report(report)


def test_a_run_that_failed_otherwise_keeps_its_status_but_is_checked(
    shop_with_orders, run_dir: Path
) -> None:
    state, ledger = shop_with_orders
    _write_ledger(run_dir / LEDGER, [*sorted(ledger.items()), ("acked-but-lost", 999)])
    meta = {"status": Status.FAILED}
    report = integrity.judge_run(run_dir, meta, state)
    assert report is not None and _failed(report) == {"acknowledged_orders_stored_once"}
    assert meta["status"] == Status.FAILED
    assert (run_dir / "invariants.json").exists() and meta["invariants"]["ok"] is False


def test_a_run_whose_databases_cannot_be_checked_is_never_called_clean(
    shop_with_orders, run_dir: Path
) -> None:
    state, ledger = shop_with_orders
    _write_ledger(run_dir / LEDGER, sorted(ledger.items()))
    for leftover in state.glob("orders.db-*"):
        leftover.unlink()
    (state / "orders.db").write_bytes(b"this is not an SQLite database" * 100)
    meta = {"status": Status.COMPLETED}
    assert integrity.judge_run(run_dir, meta, state) is None
    assert meta["status"] == Status.FAILED_INVARIANTS
    assert "DatabaseError" in meta["invariants_error"]
    assert not (run_dir / "invariants.json").exists()


# ------------------------------------------------------------------ `archlab run`'s exit code


@pytest.fixture
def cli_signals() -> Iterator[None]:
    """cli.main installs its own SIGINT/SIGTERM/SIGHUP handlers: put pytest's back after."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _archlab_run(results: Path, run_id: str) -> tuple[int, Path]:
    """A short real run of the monolith (tiny dataset, 6 s), in this process."""
    argv = ["run", "--variant", "monolith", "--duration", "6s", "--size", "tiny", "--no-pin"]
    code = cli.main([*argv, "--results-dir", str(results), "--run-id", run_id])
    run = results / run_id
    for name, started in read_meta(run)["processes"].items():
        assert procs.group_members(started["pgid"]) == [], f"{name}'s group outlived the run"
    return code, run


def test_archlab_run_exits_0_when_the_invariants_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_signals: None
) -> None:
    code, run = _archlab_run(tmp_path, "clean")
    assert code == 0, capsys.readouterr().err
    assert read_meta(run)["status"] == Status.COMPLETED
    report = json.loads((run / INVARIANTS).read_text())
    assert report["ok"] and set(report["checks"]) == RUN_CHECKS and _failed(report) == set()
    assert report["counts"]["acknowledged"] == report["counts"]["stored_orders"] > 0
    assert "invariants: ok" in capsys.readouterr().out


def test_archlab_run_exits_1_when_an_invariant_is_violated(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cli_signals: None,
) -> None:
    real_check = integrity.check_run
    checked: list[Path] = []

    def negative_stock_found(run_dir: Path, state_dir: Path, drain: dict | None) -> dict:
        """The real check of the real run, then one product found below zero."""
        report = real_check(run_dir, state_dir, drain)
        assert report["ok"], report  # the run itself was clean
        checked.append(run_dir)
        report["checks"]["no_negative_stock"] = False
        report["violations"]["negative_stock"] = [1]
        report["ok"] = False
        return report

    monkeypatch.setattr(integrity, "check_run", negative_stock_found)
    code, run = _archlab_run(tmp_path, "violated")
    out = capsys.readouterr().out
    assert checked == [run]
    assert code == 1
    meta = read_meta(run)
    assert meta["status"] == Status.FAILED_INVARIANTS == "failed-invariants"
    assert meta["invariants"] == {
        "ok": False,
        "checks": {name: name != "no_negative_stock" for name in RUN_CHECKS},
    }
    report = json.loads((run / INVARIANTS).read_text())
    assert not report["ok"] and _failed(report) == {"no_negative_stock"}
    assert report["violations"]["negative_stock"] == [1]
    assert "failed: no_negative_stock" in out and "results (failed-invariants)" in out
