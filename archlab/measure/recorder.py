"""The harness's locust plugin: every request into requests.csv, every acknowledged order into
ledger.csv.

locust loads it beside the workload (`locust -f workloads/locustfile.py,<this file>`), so the
shoppers know nothing of the harness. What the recorder needs beyond locust's own request event
the shoppers put into the request's `context` (keys: `workloads/scenarios.py`): an open-loop
arrival's intended start, and the idempotency key and id of an order answered 201.

The harness names the files in the environment (archlab/rundir.py ENV_RECORDS, ENV_LEDGER);
without them the plugin does nothing. Each locust process appends whole lines
with one locked write, so `--processes N` is safe; the master of several processes sends no
requests and records none.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import time
from collections.abc import Iterator
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner

from archlab.rundir import ENV_LEDGER, ENV_RECORDS, LEDGER_COLUMNS, RECORD_COLUMNS
from workloads.scenarios import CONTEXT_ACKNOWLEDGED, CONTEXT_INTENDED

ERROR_CHARS = 300  # an error message is cut to this length in requests.csv


class CsvAppender:
    """Appends rows to a CSV file; buffered (flushed each second) to stay cheap.

    Each flush is one `write` of whole lines to a file opened with O_APPEND, under an exclusive
    `flock`, so several locust processes can share the file without tearing lines. The header
    is written only into an empty file (the harness creates the file with it).
    """

    FLUSH_ROWS = 2000
    FLUSH_SECONDS = 1.0

    def __init__(self, path: str, header: tuple[str, ...]) -> None:
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.rows: list[tuple[Any, ...]] = []
        self.last_flush = time.monotonic()
        with self._locked():
            if os.fstat(self.fd).st_size == 0:
                self._write([header])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        assert self.fd is not None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _write(self, rows: list[Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        data = memoryview(buf.getvalue().encode())
        assert self.fd is not None
        while data:
            written = os.write(self.fd, data)
            data = data[written:]

    def add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        now = time.monotonic()
        if len(self.rows) >= self.FLUSH_ROWS or now - self.last_flush >= self.FLUSH_SECONDS:
            self.flush()

    def flush(self, **_: Any) -> None:
        if self.fd is None:
            return
        rows, self.rows = self.rows, []
        if rows:
            with self._locked():
                self._write(rows)
        self.last_flush = time.monotonic()

    def close(self, **_: Any) -> None:
        self.flush()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def endpoint(request_type: str, name: str) -> str:
    """The endpoint column: locust's name, after the method unless it is a GET (`POST /orders`).

    locust shows the method in a column of its own, so the shoppers name requests by path only.
    """
    return name if request_type == "GET" else f"{request_type} {name}"


class Recorder(CsvAppender):
    """One row per request as the load generator saw it (columns: archlab/rundir.py)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, RECORD_COLUMNS)

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response: Any = None,
        exception: BaseException | None = None,
        start_time: float | None = None,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if start_time is None:  # custom clients may omit it
            start_time = time.time() - response_time / 1000
        status = getattr(response, "status_code", 0) or 0
        error = "" if exception is None else f"{type(exception).__name__}: {exception}"
        intended = (context or {}).get(CONTEXT_INTENDED)
        self.add(
            (
                f"{start_time:.6f}",
                endpoint(request_type, name),
                f"{response_time:.3f}",
                status,
                error[:ERROR_CHARS],
                "" if intended is None else f"{intended:.6f}",
            )
        )


class Ledger(CsvAppender):
    """Every order answered 201: when, its idempotency key, its id.

    The invariant check after the run (`workloads/shop/invariants.py`) requires each of them
    to be stored exactly once under that id.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path, LEDGER_COLUMNS)

    def on_request(self, context: dict[str, Any] | None = None, **_: Any) -> None:
        acknowledged = (context or {}).get(CONTEXT_ACKNOWLEDGED)
        if acknowledged is not None:
            key, order_id = acknowledged
            self.add((f"{time.time():.6f}", key, order_id))


@events.init.add_listener
def _install(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):  # workers send, the master doesn't
        return
    for env_name, kind in ((ENV_RECORDS, Recorder), (ENV_LEDGER, Ledger)):
        path = os.environ.get(env_name)
        if path:
            appender = kind(path)
            environment.events.request.add_listener(appender.on_request)
            environment.events.test_stop.add_listener(appender.flush)
            environment.events.quitting.add_listener(appender.close)
