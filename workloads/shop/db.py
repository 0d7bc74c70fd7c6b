"""SQLite access shared by every context: one database file per context, WAL mode.

Connections are per thread (sqlite3 objects must not cross threads), opened lazily
and reused, so a thread-pool server holds one connection per worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000


def connect(
    path: Path, *, readonly: bool = False, synchronous: str = "NORMAL"
) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


class Database:
    """A context's database file with one connection per thread.

    `synchronous="FULL"` makes a commit survive power loss, not only a process crash;
    orders use it because an acknowledged order must be durable.

    `isolation_level=None` leaves transactions to us: writers use `BEGIN IMMEDIATE`
    so the write lock is taken up front and concurrent writers queue instead of
    failing on lock upgrade.
    """

    def __init__(self, path: Path, *, readonly: bool = False, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=self.readonly, synchronous=self.synchronous)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def create(path: Path, schema: str) -> sqlite3.Connection:
    """Create a fresh database file with `schema`, for the dataset generator."""
    path.unlink(missing_ok=True)
    conn = connect(path)
    conn.executescript(schema)
    return conn
