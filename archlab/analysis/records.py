"""requests.csv read back: one `Record` per request, as the recorder wrote it.

The columns are archlab/rundir.py's; the writer is archlab/measure/recorder.py. Schema 2 added
the `intended_time` column (open-loop load: when the request was *scheduled*); files written
before it (five columns) are still read, with `intended_time` None.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from archlab.rundir import RECORD_COLUMNS, RECORD_COLUMNS_V1, open_stored


class Record(NamedTuple):
    """One request as the load generator saw it."""

    start_time: float  # epoch seconds when the request was sent
    endpoint: str  # the locust request name, e.g. "/products/{id}"
    latency_ms: float  # until the full response body was read
    status: int  # HTTP status; 0 when no response arrived (connection error)
    error: str  # "" when the generator counted the request as a success
    intended_time: float | None = None  # open loop: when the schedule wanted it sent

    @property
    def corrected_ms(self) -> float:
        """Latency from the intended start (coordinated-omission corrected) when scheduled.

        A request sent late because the generator was held up (all connections busy, the
        previous request of a closed loop still waiting) counts its wait; without a schedule
        (closed loop) this is the observed latency.
        """
        if self.intended_time is None:
            return self.latency_ms
        return self.latency_ms + max(0.0, self.start_time - self.intended_time) * 1000

    @property
    def end_time(self) -> float:
        return self.start_time + self.latency_ms / 1000


def is_error(record: Record) -> bool:
    """A failed request: no response, a 5xx, or one the generator marked as failed.

    A 409 out_of_stock is a valid answer of the shop (the locustfile marks it a success), so it
    counts as an error only if the error column is filled.
    """
    return record.status == 0 or record.status >= 500 or bool(record.error)


def iter_records(path: Path) -> Iterator[Record]:
    """Stream records from a requests.csv file (schema 1 or 2), or its .gz copy."""
    torn = path.exists() and _ends_mid_line(path)
    with open_stored(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        if tuple(header) not in (RECORD_COLUMNS, RECORD_COLUMNS_V1):
            raise ValueError(f"{path}: unexpected header {header}, expected {RECORD_COLUMNS}")
        width = len(header)
        rows: Iterator[list[str]] = _all_but_last(reader) if torn else reader
        for row in rows:
            if len(row) != width:
                continue  # a row cut short by a killed generator
            try:
                intended = float(row[5]) if width > 5 and row[5] else None
                yield Record(float(row[0]), row[1], float(row[2]), int(row[3]), row[4], intended)
            except ValueError:
                continue


def _ends_mid_line(path: Path) -> bool:
    """True when the file's last line has no newline (its writer was killed mid-row)."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return False
        fh.seek(-1, 2)
        return fh.read(1) != b"\n"


def _all_but_last(rows: Iterator[list[str]]) -> Iterator[list[str]]:
    previous = None
    for row in rows:
        if previous is not None:
            yield previous
        previous = row


def read_records(path: Path) -> list[Record]:
    """All records of a requests.csv file."""
    return list(iter_records(path))
