"""Virtual shoppers for locust: search, view products, ask for recommendations, order, re-read.

Works as-is for a person (`locust -f workloads/locustfile.py --host http://127.0.0.1:8000`,
web UI, no environment variables). The harness sets (names: `workloads/scenarios.py`):

- ARCHLAB_LOAD: the resolved load (`workloads.scenarios.LoadSpec` as JSON): closed or open
  loop, task weights, think time, arrival rate, ramp steps, client timeout. Without it,
  ARCHLAB_SCENARIO (a name from `workloads/scenarios.py`, default "steady") is used with its
  defaults.
- ARCHLAB_SEED: seeds each user's random choices (the traffic mix, not the timing).

This file holds the shoppers only. Whoever records the requests listens to locust's request
events (the harness loads its recorder beside this file); what they cannot see on the wire the
shoppers put into each request's `context`: an open-loop arrival's intended start
(`CONTEXT_INTENDED`) and an acknowledged order's idempotency key and id (`CONTEXT_ACKNOWLEDGED`).

Load shapes: `Shopper` is the closed loop (wait for the answer, think, repeat);
`OpenLoopShopper` is an arrival stream at a fixed rate that records each request's intended
start time (coordinated-omission correction); `StepRamp` (a LoadTestShape) steps the user
count when the load has `steps`. Only the classes the load asks for are non-abstract, so locust
picks them up by itself.

Product ids and search words are learned once per process from the first catalogue page.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import gevent
import gevent.local
import gevent.pool
from gevent.lock import Semaphore
from locust import FastHttpUser, LoadTestShape, between, constant, task

from workloads.scenarios import (
    CONTEXT_ACKNOWLEDGED,
    CONTEXT_INTENDED,
    ENV_LOAD,
    ENV_SCENARIO,
    ENV_SEED,
    LoadSpec,
    get_scenario,
    resolve_load,
)

LOAD = (
    LoadSpec.from_json(os.environ[ENV_LOAD])
    if os.environ.get(ENV_LOAD)
    else resolve_load(get_scenario(os.environ.get(ENV_SCENARIO, "steady")))
)
SEED = os.environ.get(ENV_SEED)
CUSTOMERS = int(os.environ.get("ARCHLAB_CUSTOMERS", "1000"))
CATALOG_PAGE_SIZE = 100
ORDERS_REMEMBERED = 20

log = logging.getLogger("workloads.locustfile")


@dataclass(frozen=True)
class Catalog:
    """What a shopper knows about the shop: valid product ids and words that occur in names."""

    product_ids: list[int]
    words: list[str]


_catalog: Catalog | None = None
_catalog_lock = Semaphore()
_user_counter = 0
_arrival = gevent.local.local()  # .intended: the scheduled start of the request being sent


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


class _ShopUser(FastHttpUser):
    """The shopper's actions; the subclasses decide when they happen.

    A request that gets no connection or no answer within the load's `timeout_s` fails (status
    0, the timeout in its error): in an outage the open loop's requests end as errors instead of
    waiting in a restarting server's listen backlog.
    """

    abstract = True
    network_timeout = LOAD.timeout_s
    connection_timeout = LOAD.timeout_s

    def on_start(self) -> None:
        global _user_counter
        # The shop sets no cookie; locust's client would still run http.cookiejar over every
        # request and answer inside the timed section (the floor bench's finding).
        self.client.client.cookiejar = None
        _user_counter += 1
        index = getattr(self.environment.runner, "worker_index", 0) or 0
        stream = f"{_user_counter}" if index <= 0 else f"w{index}:{_user_counter}"
        self.rng = random.Random(f"{SEED}:{stream}") if SEED else random.Random()
        self.catalog = learn_catalog(self)
        self.orders: list[int] = []

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
        key = uuid.uuid4().hex
        body = {
            "customer_id": self.rng.randint(1, CUSTOMERS),
            "items": [{"product_id": pid, "qty": self.rng.randint(1, 2)} for pid in ids[:lines]],
            "idempotency_key": key,
        }
        with self.client.post("/orders", json=body, catch_response=True) as r:
            data = _json(r)
            if r.status_code == 201:
                order_id = (data or {}).get("id") or (data or {}).get("order", {}).get("id")
                if order_id is None:
                    r.failure("201 without an order id")
                    return
                self.orders.append(int(order_id))
                del self.orders[:-ORDERS_REMEMBERED]
                r.success()
                r.request_meta["context"][CONTEXT_ACKNOWLEDGED] = (key, int(order_id))
            elif r.status_code == 409 and (data or {}).get("error") == "out_of_stock":
                r.success()
            elif r.status_code != 0:
                r.failure(f"HTTP {r.status_code}: {str(data)[:120]}")

    def read_order(self) -> None:
        """Read back one of this shopper's orders (skipped until it has placed one)."""
        if self.orders:
            self.client.get(f"/orders/{self.rng.choice(self.orders)}", name="/orders/{id}")


ACTIONS: dict[str, Callable[[_ShopUser], None]] = {
    "search": _ShopUser.search,
    "view": _ShopUser.view,
    "recommend": _ShopUser.recommend,
    "order": _ShopUser.order,
    "read_order": _ShopUser.read_order,
}
MIX = {ACTIONS[name]: w for name, w in LOAD.weights.items() if w > 0}


class Shopper(_ShopUser):
    """Closed loop: one request at a time, then think time (from the scenario)."""

    abstract = LOAD.loop != "closed"
    wait_time = between(*LOAD.wait_time)
    tasks = MIX  # type: ignore[assignment]  # locust accepts {callable: weight}

    def on_start(self) -> None:
        super().on_start()
        # Users spawn in bursts; a random first think time keeps them from staying in lockstep.
        gevent.sleep(self.rng.uniform(0, LOAD.wait_time[1]))


class OpenLoopShopper(_ShopUser):
    """Open loop: an arrival stream of `rate_per_user` requests/s at fixed intervals.

    Each arrival runs in its own greenlet and records its intended start. When `max_in_flight`
    requests are outstanding the schedule waits, but the intended times keep their pace, so the
    backlog shows up in the corrected latency instead of disappearing (coordinated omission).
    A load with a short client timeout has a pool larger than its rate x timeout
    (`resolve_load`), so its schedule never waits.
    """

    abstract = LOAD.loop != "open"
    wait_time = constant(0)
    concurrency = LOAD.max_in_flight  # connections of this user's client pool

    def context(self) -> dict[str, Any]:
        """Each request of an arrival carries the arrival's intended start."""
        intended = getattr(_arrival, "intended", None)
        return {} if intended is None else {CONTEXT_INTENDED: intended}

    @task
    def arrivals(self) -> None:
        rate = LOAD.rate_per_user
        if rate <= 0:
            raise RuntimeError("open loop without a rate")
        interval = 1.0 / rate
        lead = LOAD.lead_ms / 1000
        funcs, weights = list(MIX), list(MIX.values())
        pool = gevent.pool.Pool(LOAD.max_in_flight)
        first = time.time() + lead + self.rng.uniform(0, interval)  # streams not in lockstep
        i = 0
        try:
            while True:
                intended = first + i * interval
                delay = intended - lead - time.time()
                if delay > 0:
                    gevent.sleep(delay)
                pool.spawn(self._arrive, self.rng.choices(funcs, weights)[0], intended)
                i += 1
        finally:
            pool.kill(block=False)

    def _arrive(self, action: Callable[[_ShopUser], None], intended: float) -> None:
        on_time(intended, LOAD.spin_ms / 1000)
        _arrival.intended = intended
        if action is _ShopUser.read_order and not self.orders:
            action = _ShopUser.view  # an arrival always sends a request
        try:
            action(self)
        except Exception:  # noqa: BLE001 - one failed arrival must not stop the stream
            log.exception("arrival failed")


def on_time(intended: float, spin_s: float) -> None:
    """Return at `intended` (epoch s), within microseconds while the generator has a CPU.

    A gevent sleep ends up to a millisecond late, and so does a greenlet spawned at the
    moment it should run; the last `spin_s` are spun instead, each check yielding to the hub
    so that answers to earlier arrivals are still read as they come.
    """
    delay = intended - spin_s - time.time()
    if delay > 0:
        gevent.sleep(delay)
    while time.time() < intended:
        gevent.sleep(0)


class StepRamp(LoadTestShape):
    """Hold `steps[i]` users for `step_s` seconds each, then stop."""

    abstract = not LOAD.steps

    def tick(self) -> tuple[int, float] | None:
        step = int(self.get_run_time() // LOAD.step_s)
        if step >= len(LOAD.steps):
            return None
        return LOAD.steps[step], max(LOAD.spawn_rate, float(LOAD.steps[step]))
