"""The shared catalog image answers exactly as the SQLite catalog, and its segment is immutable."""

from __future__ import annotations

import contextlib
import mmap
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from variants.multiprocess.shmem import SealedSegment, write_all
from workloads.shop import dataset
from workloads.shop.catalog import Catalog
from workloads.shop.catalog_snapshot import SnapshotCatalog, build, build_from, tokens
from workloads.shop.contracts import Product
from workloads.shop.errors import NotFound


@pytest.fixture(scope="module")
def tiny() -> Path:
    return dataset.ensure("tiny", 1) / "catalog.db"


@pytest.fixture(scope="module")
def both(tiny: Path) -> Iterator[tuple[Catalog, SnapshotCatalog]]:
    catalog = Catalog(tiny)
    yield catalog, SnapshotCatalog(build(tiny))
    catalog.close()


def _queries(catalog: Catalog) -> list[str]:
    words: set[str] = set()
    for product in catalog.search("", 1, 100).items:
        words |= set(re.findall(r"[a-z0-9]+", f"{product.name} {product.description}".lower()))
    ordered = sorted(words)
    rng = random.Random(7)
    pairs = [" ".join(rng.sample(ordered, 2)) for _ in range(60)]
    odd = ["", "   ", "LAMP", "Steel lamp", "lamp lamp", "l", "1", "12", "a", "zzqx", "é", "-+-"]
    odd += ["home-1 range", "x " * 12, "made of wool", "ergonomic-steel"]
    return ordered + [w[:2] for w in ordered] + pairs + odd


def test_search_matches_sqlite_fts5_ranking_and_paging(
    both: tuple[Catalog, SnapshotCatalog],
) -> None:
    catalog, snapshot = both
    for q in _queries(catalog):
        for page, size in ((1, 20), (2, 7), (1, 100), (50, 100)):
            assert snapshot.search(q, page, size) == catalog.search(q, page, size), (q, page)


def test_get_and_get_many_match(both: tuple[Catalog, SnapshotCatalog]) -> None:
    catalog, snapshot = both
    for pid in (1, 2, 100, 200):
        assert snapshot.get(pid) == catalog.get(pid)
    for pid in (0, 201, 2**31 - 1):
        with pytest.raises(NotFound):
            snapshot.get(pid)
    ids = [3, 1, 2**31 - 1, 3, 150]
    assert snapshot.get_many(ids) == catalog.get_many(ids)
    assert snapshot.get_many([]) == []


def test_image_of_unusual_products() -> None:
    products = [
        Product(5, "Crème Brûlée Torch", "kitchen", 999, "for crème brûlée_and more"),
        Product(9, "", "empty", 1, ""),
        Product(2**31 - 1, "Last 世界", "x", 2, "ünïcödé words"),
    ]
    snap = SnapshotCatalog(build_from(products))
    assert snap.get(9) == products[1]
    assert snap.search("creme", 1, 10).items == [products[0]]
    assert snap.search("brul TORCH", 1, 10).total == 1
    assert snap.search("", 1, 10).items == products
    assert snap.search("unicode", 1, 10).items == [products[2]]
    assert tokens("brûlée_and") == ["brulee", "and"]
    with pytest.raises(ValueError, match="ascending"):
        build_from(list(reversed(products)))


def _memfd_link(name: str) -> str:
    """/proc/self/fd/N of this process's memfd called `name` (the mapping keeps one open)."""
    for fd in os.listdir("/proc/self/fd"):
        link = f"/proc/self/fd/{fd}"
        with contextlib.suppress(OSError):
            if os.readlink(link).startswith(f"/memfd:{name}"):
                return link
    raise AssertionError(f"no memfd {name}")


def test_sealed_segment_is_read_only_for_everyone(tiny: Path) -> None:
    image = build(tiny)
    segment = SealedSegment("archlab-test", lambda fd: write_all(fd, image))
    try:
        assert segment.size == len(image)
        assert segment.map[:16] == image[:16]
        with pytest.raises(TypeError):
            segment.map[0] = 0  # mapped PROT_READ
        fd = os.open(_memfd_link("archlab-test"), os.O_RDWR)
        try:
            with pytest.raises(PermissionError):  # sealed: not even a fresh writable mapping
                mmap.mmap(fd, segment.size, flags=mmap.MAP_SHARED)
            with pytest.raises(PermissionError):
                os.pwrite(fd, b"x", 0)
        finally:
            os.close(fd)
        assert SnapshotCatalog(segment.map).get(1).id == 1
    finally:
        segment.close()
