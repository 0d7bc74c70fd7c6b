"""The per-request record format shared by the locustfile (writer) and the summary (reader).

Kept free of heavy imports: the locustfile imports it inside every load-generator process.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

RECORD_COLUMNS = ("start_time", "endpoint", "latency_ms", "status", "error")


class Record(NamedTuple):
    """One request as the load generator saw it."""

    start_time: float  # epoch seconds when the request was sent
    endpoint: str  # the locust request name, e.g. "/products/{id}"
    latency_ms: float  # until the full response body was read
    status: int  # HTTP status; 0 when no response arrived (connection error)
    error: str  # "" when the generator counted the request as a success


def is_error(record: Record) -> bool:
    """A failed request: no response, a 5xx, or one the generator marked as failed.

    A 409 out_of_stock is a valid answer of the shop (the locustfile marks it a success), so it
    counts as an error only if the error column is filled.
    """
    return record.status == 0 or record.status >= 500 or bool(record.error)


def iter_records(path: Path) -> Iterator[Record]:
    """Stream records from a requests.csv file."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        if tuple(header) != RECORD_COLUMNS:
            raise ValueError(f"{path}: unexpected header {header}, expected {RECORD_COLUMNS}")
        for row in reader:
            if len(row) != len(RECORD_COLUMNS):
                continue  # a row cut short by a killed generator
            try:
                yield Record(float(row[0]), row[1], float(row[2]), int(row[3]), row[4])
            except ValueError:
                continue


def read_records(path: Path) -> list[Record]:
    """All records of a requests.csv file."""
    return list(iter_records(path))
