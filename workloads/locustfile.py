"""Virtual shoppers for locust: search, view products, ask for recommendations, order, re-read.

Works as-is for a person (`locust -f workloads/locustfile.py --host http://127.0.0.1:8000`,
web UI, no environment variables). The harness (`archlab run`) sets:

- ARCHLAB_SCENARIO: a name from `workloads/scenarios.py` (task weights, think time); "steady".
- ARCHLAB_RECORDS: a CSV path; every request is appended to it (see results/README.md).
- ARCHLAB_SEED: seeds each user's random choices (the traffic mix, not the timing).

Product ids and search words are learned once per process from the first catalogue page.
"""

from __future__ import annotations

import csv
import os
import random
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import gevent
from gevent.lock import Semaphore
from locust import FastHttpUser, between, events
from locust.env import Environment
from locust.runners import MasterRunner

from archlab.records import RECORD_COLUMNS
from workloads.scenarios import get_scenario

SCENARIO = get_scenario(os.environ.get("ARCHLAB_SCENARIO", "steady"))
SEED = os.environ.get("ARCHLAB_SEED")
CUSTOMERS = int(os.environ.get("ARCHLAB_CUSTOMERS", "1000"))
CATALOG_PAGE_SIZE = 100
ORDERS_REMEMBERED = 20


@dataclass(frozen=True)
class Catalog:
    """What a shopper knows about the shop: valid product ids and words that occur in names."""

    product_ids: list[int]
    words: list[str]


_catalog: Catalog | None = None
_catalog_lock = Semaphore()
_user_counter = 0


def learn_catalog(user: FastHttpUser) -> Catalog:
    """Fetch the first catalogue page once per process (the first user to start does it)."""
    global _catalog
    with _catalog_lock:
        if _catalog is None:
            url = f"/products?page=1&page_size={CATALOG_PAGE_SIZE}"
            with user.client.get(url, name="/products (setup)", catch_response=True) as resp:
                if resp.status_code != 200:
                    resp.failure(f"catalogue fetch answered {resp.status_code}")
                    raise RuntimeError(f"cannot learn the catalogue: HTTP {resp.status_code}")
                items = resp.json()["items"]
            words = {w for item in items for w in re.findall(r"[a-z]{3,}", item["name"].lower())}
            if not items:
                raise RuntimeError("the shop has no products")
            _catalog = Catalog([int(item["id"]) for item in items], sorted(words) or [""])
        return _catalog


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except Exception:  # noqa: BLE001 - any unparseable body is a failure reported by the caller
        return None


class Shopper(FastHttpUser):
    """One shopper; its task mix and think time come from the scenario."""

    wait_time = between(*SCENARIO.wait_time)

    def on_start(self) -> None:
        global _user_counter
        _user_counter += 1
        self.rng = random.Random(f"{SEED}:{_user_counter}") if SEED else random.Random()
        self.catalog = learn_catalog(self)
        self.orders: list[int] = []
        # Users spawn in bursts; a random first think time keeps them from staying in lockstep.
        gevent.sleep(self.rng.uniform(0, SCENARIO.wait_time[1]))

    def _product(self) -> int:
        return self.rng.choice(self.catalog.product_ids)

    def search(self) -> None:
        word = quote(self.rng.choice(self.catalog.words))
        page = self.rng.choice((1, 1, 1, 2))
        self.client.get(f"/products?q={word}&page={page}", name="/products?q")

    def view(self) -> None:
        self.client.get(f"/products/{self._product()}", name="/products/{id}")

    def recommend(self) -> None:
        pid = self._product()
        self.client.get(f"/products/{pid}/recommendations", name="/products/{id}/recommendations")

    def order(self) -> None:
        """Place a small order; a 409 out_of_stock is a valid answer, not a failure."""
        ids = self.rng.sample(self.catalog.product_ids, k=min(len(self.catalog.product_ids), 2))
        lines = self.rng.choice((1, 1, 2))
        body = {
            "customer_id": self.rng.randint(1, CUSTOMERS),
            "items": [{"product_id": pid, "qty": self.rng.randint(1, 2)} for pid in ids[:lines]],
            "idempotency_key": uuid.uuid4().hex,
        }
        with self.client.post("/orders", json=body, name="POST /orders", catch_response=True) as r:
            data = _json(r)
            if r.status_code == 201:
                order_id = (data or {}).get("id") or (data or {}).get("order", {}).get("id")
                if order_id is None:
                    r.failure("201 without an order id")
                    return
                self.orders.append(int(order_id))
                del self.orders[:-ORDERS_REMEMBERED]
                r.success()
            elif r.status_code == 409 and (data or {}).get("error") == "out_of_stock":
                r.success()
            elif r.status_code != 0:
                r.failure(f"HTTP {r.status_code}: {str(data)[:120]}")

    def read_order(self) -> None:
        """Read back one of this shopper's orders (skipped until it has placed one)."""
        if self.orders:
            self.client.get(f"/orders/{self.rng.choice(self.orders)}", name="/orders/{id}")

    tasks = {
        fn: SCENARIO.weights.get(name, 0)
        for name, fn in (
            ("search", search),
            ("view", view),
            ("recommend", recommend),
            ("order", order),
            ("read_order", read_order),
        )
        if SCENARIO.weights.get(name, 0) > 0
    }


class Recorder:
    """Appends every request to a CSV file; buffered (flushed each second) to stay cheap."""

    FLUSH_ROWS = 2000
    FLUSH_SECONDS = 1.0

    def __init__(self, path: str) -> None:
        self.file = open(path, "w", newline="", buffering=1 << 16)  # noqa: SIM115 - closed at quit
        self.writer = csv.writer(self.file)
        self.writer.writerow(RECORD_COLUMNS)
        self.file.flush()
        self.rows: list[tuple[str, str, str, int, str]] = []
        self.last_flush = time.monotonic()

    def on_request(
        self,
        name: str,
        response_time: float,
        response: Any = None,
        exception: BaseException | None = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        if start_time is None:  # custom clients may omit it
            start_time = time.time() - response_time / 1000
        status = getattr(response, "status_code", 0) or 0
        error = "" if exception is None else f"{type(exception).__name__}: {exception}"[:300]
        self.rows.append((f"{start_time:.6f}", name, f"{response_time:.3f}", status, error))
        now = time.monotonic()
        if len(self.rows) >= self.FLUSH_ROWS or now - self.last_flush >= self.FLUSH_SECONDS:
            self.flush()

    def flush(self, **_: Any) -> None:
        if self.file.closed:
            return
        self.writer.writerows(self.rows)
        self.rows.clear()
        self.file.flush()
        self.last_flush = time.monotonic()

    def close(self, **_: Any) -> None:
        self.flush()
        self.file.close()


@events.init.add_listener
def _install_recorder(environment: Environment, **_: Any) -> None:
    path = os.environ.get("ARCHLAB_RECORDS")
    if path and not isinstance(environment.runner, MasterRunner):  # workers send, master doesn't
        recorder = Recorder(path)
        environment.events.request.add_listener(recorder.on_request)
        environment.events.test_stop.add_listener(recorder.flush)
        environment.events.quitting.add_listener(recorder.close)
