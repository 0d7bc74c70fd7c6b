"""Catalog: products and full-text search. Read-heavy and read-only at run time."""

from __future__ import annotations

import re
from pathlib import Path

from workloads.shop.contracts import Product, SearchPage
from workloads.shop.db import Database
from workloads.shop.errors import NotFound

SCHEMA = """
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents > 0),
    description TEXT NOT NULL
);
CREATE VIRTUAL TABLE products_fts USING fts5(
    name, description, content='products', content_rowid='id'
);
"""
REBUILD_INDEX = "INSERT INTO products_fts(products_fts) VALUES ('rebuild')"

_COLUMNS = "p.id, p.name, p.category, p.price_cents, p.description"
_TOKEN = re.compile(r"[A-Za-z0-9]+")
MAX_QUERY_TERMS = 8


def fts_query(q: str) -> str | None:
    """Turn free text into a safe FTS5 query: every word must match (as a prefix)."""
    terms = _TOKEN.findall(q)[:MAX_QUERY_TERMS]
    if not terms:
        return None
    return " AND ".join(f'"{t.lower()}"*' for t in terms)


class Catalog:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, readonly=True)
        (self._count,) = self.db.conn.execute("SELECT COUNT(*) FROM products").fetchone()

    def search(self, q: str, page: int, page_size: int) -> SearchPage:
        offset = (page - 1) * page_size
        conn = self.db.conn
        match = fts_query(q)
        if match is None:
            if q.strip():
                return SearchPage(items=[], page=page, page_size=page_size, total=0)
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM products p ORDER BY p.id LIMIT ? OFFSET ?",
                (page_size, offset),
            ).fetchall()
            total = self._count
        else:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM products_fts f JOIN products p ON p.id = f.rowid "
                "WHERE products_fts MATCH ? ORDER BY f.rank, p.id LIMIT ? OFFSET ?",
                (match, page_size, offset),
            ).fetchall()
            (total,) = conn.execute(
                "SELECT COUNT(*) FROM products_fts WHERE products_fts MATCH ?", (match,)
            ).fetchone()
        return SearchPage(
            items=[Product(*r) for r in rows], page=page, page_size=page_size, total=total
        )

    def get(self, product_id: int) -> Product:
        row = self.db.conn.execute(
            f"SELECT {_COLUMNS} FROM products p WHERE p.id = ?", (product_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"product {product_id} does not exist")
        return Product(*row)

    def get_many(self, product_ids: list[int]) -> list[Product]:
        """Products in the order asked for; unknown ids are left out."""
        if not product_ids:
            return []
        marks = ",".join("?" * len(product_ids))
        rows = self.db.conn.execute(
            f"SELECT {_COLUMNS} FROM products p WHERE p.id IN ({marks})", product_ids
        ).fetchall()
        by_id = {r[0]: Product(*r) for r in rows}
        return [by_id[i] for i in product_ids if i in by_id]

    def close(self) -> None:
        self.db.close()
