"""The catalog as one immutable, position-independent byte image: build it once, read it anywhere.

A deployer that wants every process to read the catalog without IPC and without a copy per
process (the multiprocess variant puts this image in one shared-memory segment) builds the
image from the catalog database with `build()` and serves `SnapshotCatalog(buffer)` over it.
The reader only slices the buffer (`memoryview.cast`), so the pages stay shared; each answer
decodes just the products it returns.

The search is the catalog's, re-implemented over an inverted index so that both stores agree:
free text becomes up to `MAX_QUERY_TERMS` lowercase word prefixes that must all match the name
or description (as `catalog.fts_query`), ranked by FTS5's own BM25 (k1 = 1.2, b = 0.75, every
column weight 1, a row's length is its token count over both columns), ties broken by id.

Layout (native byte order, every section 8-byte aligned), sections in this order:
ids int64[n] ascending · record offsets uint64[n+1] · records (msgpack `Product`) ·
row token counts uint32[n] · vocabulary offsets uint64[t+1] · vocabulary (sorted UTF-8 tokens) ·
posting starts uint64[t+1] · posting rows uint32[p] · posting term frequencies uint32[p].
Postings are grouped by token in vocabulary order, so every token with a given prefix, and so
all of a prefix term's postings, form one contiguous run.
"""

from __future__ import annotations

import heapq
import math
import mmap
import re
import sqlite3
import struct
import sys
import unicodedata
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path

import msgspec

from workloads.shop.catalog import _TOKEN, MAX_QUERY_TERMS
from workloads.shop.contracts import Product, SearchPage
from workloads.shop.errors import NotFound

MAGIC = b"ARCHCAT1"
VERSION = 1
# magic, version, byte order (1 little), products, tokens, postings, total tokens, 9 offsets
_HEADER = struct.Struct("=8sIIIIQQ9Q")
K1 = 1.2
B = 0.75

Buffer = bytes | bytearray | memoryview | mmap.mmap
"""Anything `memoryview()` accepts that a snapshot may live in."""

_WORD = re.compile(r"[^\W_]+")
_encode_product = msgspec.msgpack.Encoder().encode
_decode_product = msgspec.msgpack.Decoder(Product).decode


def tokens(text: str) -> list[str]:
    """Index tokens as SQLite's unicode61 tokenizer makes them: case- and accent-folded words."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return _WORD.findall(folded)


def query_terms(q: str) -> list[str]:
    """The prefix terms of a query, exactly as `catalog.fts_query` picks them."""
    return [t.lower() for t in _TOKEN.findall(q)[:MAX_QUERY_TERMS]]


def _aligned(parts: list[bytes], blob: bytes) -> int:
    """Append `blob` padded to 8 bytes; return its offset."""
    offset = sum(len(p) for p in parts)
    parts.append(blob + b"\0" * (-len(blob) % 8))
    return offset


def build(db_path: Path) -> bytes:
    """The image of every product in the catalog database at `db_path`."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id, name, category, price_cents, description FROM products ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return build_from(Product(*r) for r in rows)


def build_from(products: Iterable[Product]) -> bytes:
    """The image of `products` (an iterable of `Product` in ascending id order)."""
    ids = array("q")
    rec_offsets = array("Q", [0])
    records: list[bytes] = []
    doclen = array("I")
    postings: dict[str, dict[int, int]] = {}
    size = 0
    for row, product in enumerate(products):
        if ids and product.id <= ids[-1]:
            raise ValueError("products must come in strictly ascending id order")
        ids.append(product.id)
        blob = _encode_product(product)
        records.append(blob)
        size += len(blob)
        rec_offsets.append(size)
        words = tokens(product.name) + tokens(product.description)
        doclen.append(len(words))
        for word in words:
            tf = postings.setdefault(word, {})
            tf[row] = tf.get(row, 0) + 1
    vocab = sorted(postings, key=lambda w: w.encode())
    vocab_offsets = array("Q", [0])
    vocab_blob: list[bytes] = []
    post_starts = array("Q", [0])
    post_rows = array("I")
    post_tfs = array("I")
    vsize = 0
    for word in vocab:
        raw = word.encode()
        vocab_blob.append(raw)
        vsize += len(raw)
        vocab_offsets.append(vsize)
        for row, tf in sorted(postings[word].items()):
            post_rows.append(row)
            post_tfs.append(tf)
        post_starts.append(len(post_rows))
    parts: list[bytes] = []
    _aligned(parts, b"\0" * _HEADER.size)
    offsets = [
        _aligned(parts, ids.tobytes()),
        _aligned(parts, rec_offsets.tobytes()),
        _aligned(parts, b"".join(records)),
        _aligned(parts, doclen.tobytes()),
        _aligned(parts, vocab_offsets.tobytes()),
        _aligned(parts, b"".join(vocab_blob)),
        _aligned(parts, post_starts.tobytes()),
        _aligned(parts, post_rows.tobytes()),
        _aligned(parts, post_tfs.tobytes()),
    ]
    header = _HEADER.pack(
        MAGIC,
        VERSION,
        1 if sys.byteorder == "little" else 0,
        len(ids),
        len(vocab),
        len(post_rows),
        sum(doclen),
        *offsets,
    )
    parts[0] = header + parts[0][len(header) :]  # the placeholder becomes the header
    return b"".join(parts)


class SnapshotCatalog:
    """`CatalogApi` over an image from `build()`, reading the buffer in place (thread-safe)."""

    def __init__(self, buffer: Buffer) -> None:
        mv = memoryview(buffer).cast("B")
        magic, version, little, n, t, p, total, *off = _HEADER.unpack_from(mv, 0)
        if magic != MAGIC or version != VERSION:
            raise ValueError("not a catalog snapshot of this version")
        if little != (sys.byteorder == "little"):
            raise ValueError("catalog snapshot was built with another byte order")
        self._mv = mv
        self._count = n
        self._ids = mv[off[0] : off[0] + 8 * n].cast("q")
        self._rec_offsets = mv[off[1] : off[1] + 8 * (n + 1)].cast("Q")
        self._records = mv[off[2] : off[3]]
        self._doclen = mv[off[3] : off[3] + 4 * n].cast("I")
        self._vocab_offsets = mv[off[4] : off[4] + 8 * (t + 1)].cast("Q")
        self._vocab = mv[off[5] : off[6]]
        self._post_starts = mv[off[6] : off[6] + 8 * (t + 1)].cast("Q")
        self._post_rows = mv[off[7] : off[7] + 4 * p].cast("I")
        self._post_tfs = mv[off[8] : off[8] + 4 * p].cast("I")
        self._tokens = t
        self._avgdl = total / n if n else 1.0

    @property
    def size(self) -> int:
        """Bytes of the image."""
        return self._mv.nbytes

    def _product(self, row: int) -> Product:
        offsets = self._rec_offsets
        return _decode_product(self._records[offsets[row] : offsets[row + 1]])

    def _row(self, product_id: int) -> int | None:
        row = bisect_left(self._ids, product_id)
        if row < self._count and self._ids[row] == product_id:
            return row
        return None

    def _token(self, i: int) -> bytes:
        return bytes(self._vocab[self._vocab_offsets[i] : self._vocab_offsets[i + 1]])

    def _lower_bound(self, key: bytes) -> int:
        lo, hi = 0, self._tokens
        while lo < hi:
            mid = (lo + hi) // 2
            if self._token(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _prefix_freqs(self, prefix: str) -> dict[int, int]:
        """row -> how many of its tokens start with `prefix` (FTS5's phrase instance count)."""
        raw = prefix.encode()
        first = self._lower_bound(raw)
        # UTF-8 never contains 0xff, so every token extending `raw` sorts below raw + b"\xff".
        last = self._lower_bound(raw + b"\xff")
        start, end = self._post_starts[first], self._post_starts[last]
        rows = self._post_rows[start:end].tolist()
        tfs = self._post_tfs[start:end].tolist()
        if last - first <= 1:
            return dict(zip(rows, tfs, strict=True))
        freqs: dict[int, int] = {}
        get = freqs.get
        for row, tf in zip(rows, tfs, strict=True):
            freqs[row] = get(row, 0) + tf
        return freqs

    def search(self, q: str, page: int, page_size: int) -> SearchPage:
        offset = (page - 1) * page_size
        terms = query_terms(q)
        if not terms:
            if q.strip():
                return SearchPage(items=[], page=page, page_size=page_size, total=0)
            rows = range(min(offset, self._count), min(offset + page_size, self._count))
            items = [self._product(r) for r in rows]
            return SearchPage(items=items, page=page, page_size=page_size, total=self._count)
        freqs = [self._prefix_freqs(t) for t in terms]
        n = self._count
        idfs = []
        for f in freqs:
            idf = math.log((n - len(f) + 0.5) / (len(f) + 0.5))
            idfs.append(idf if idf > 0.0 else 1e-6)
        doclen, avgdl = self._doclen, self._avgdl
        # Rows are in id order, so the row number breaks ties as FTS5's "ORDER BY rank, id".
        # The arithmetic is FTS5's own (fts5Bm25Function), operation for operation, so the
        # scores and hence the order are bit-identical.
        if len(freqs) == 1:
            (f,), (idf,) = freqs, idfs
            ranked = [
                (
                    -1.0
                    * (idf * ((tf * (K1 + 1.0)) / (tf + K1 * (1 - B + B * doclen[row] / avgdl)))),
                    row,
                )
                for row, tf in f.items()
            ]
        else:
            smallest = min(freqs, key=len)
            ranked = []
            for row in set(smallest).intersection(*(f for f in freqs if f is not smallest)):
                norm = K1 * (1 - B + B * doclen[row] / avgdl)
                score = 0.0
                for idf, f in zip(idfs, freqs, strict=True):
                    tf = f[row]
                    score += idf * ((tf * (K1 + 1.0)) / (tf + norm))
                ranked.append((-1.0 * score, row))
        wanted = offset + page_size
        best = heapq.nsmallest(wanted, ranked) if wanted < len(ranked) else sorted(ranked)
        items = [self._product(r) for _, r in best[offset:wanted]]
        return SearchPage(items=items, page=page, page_size=page_size, total=len(ranked))

    def get(self, product_id: int) -> Product:
        row = self._row(product_id)
        if row is None:
            raise NotFound(f"product {product_id} does not exist")
        return self._product(row)

    def get_many(self, product_ids: list[int]) -> list[Product]:
        """Products in the order asked for; unknown ids are left out."""
        rows = (self._row(i) for i in product_ids)
        return [self._product(r) for r in rows if r is not None]

    def close(self) -> None:
        """Release the views, so the owner of the buffer can unmap it."""
        for name in (
            "_ids",
            "_rec_offsets",
            "_records",
            "_doclen",
            "_vocab_offsets",
            "_vocab",
            "_post_starts",
            "_post_rows",
            "_post_tfs",
            "_mv",
        ):
            getattr(self, name).release()


def open_catalog(db_path: Path) -> SnapshotCatalog:
    """The catalog every variant serves: the snapshot of its database, held in this process.

    Every deployer reads the catalog through the same snapshot code, so a difference between
    variants is where the snapshot lives (one per process, or one shared segment), not which
    search implementation answered.
    """
    return SnapshotCatalog(build(db_path))
