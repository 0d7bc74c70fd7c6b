"""The seeded dataset: every context's database file, generated deterministically.

The same (size, seed) always gives byte-for-byte the same rows. Datasets are built
once into a cache folder and copied into a run's state folder, so every run of every
variant starts from identical data.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from itertools import accumulate
from pathlib import Path

import msgspec

from workloads.shop import catalog, inventory, notifications, orders, recommendations
from workloads.shop.db import create

GENERATOR_VERSION = 1
CONTEXTS = ("catalog", "inventory", "orders", "recommendations", "notifications")
SCHEMAS = {
    "catalog": catalog.SCHEMA,
    "inventory": inventory.SCHEMA,
    "orders": orders.SCHEMA,
    "recommendations": recommendations.SCHEMA,
    "notifications": notifications.SCHEMA,
}


@dataclass(frozen=True)
class Size:
    products: int
    categories: int
    baskets: int
    stock_range: tuple[int, int]


SIZES: dict[str, Size] = {
    "tiny": Size(products=200, categories=8, baskets=3_000, stock_range=(200, 2_000)),
    "small": Size(products=20_000, categories=40, baskets=400_000, stock_range=(500, 5_000)),
    "full": Size(products=100_000, categories=120, baskets=2_000_000, stock_range=(500, 20_000)),
}

ADJECTIVES = [
    "ergonomic",
    "rustic",
    "sleek",
    "compact",
    "deluxe",
    "vintage",
    "modern",
    "classic",
    "portable",
    "durable",
    "smart",
    "lightweight",
    "heavy",
    "quiet",
    "bright",
    "cozy",
    "elegant",
    "rugged",
    "handmade",
    "premium",
]
MATERIALS = [
    "steel",
    "wooden",
    "cotton",
    "leather",
    "ceramic",
    "glass",
    "bamboo",
    "wool",
    "granite",
    "copper",
    "linen",
    "rubber",
    "marble",
    "plastic",
    "silk",
    "concrete",
]
NOUNS = [
    "lamp",
    "chair",
    "table",
    "mug",
    "kettle",
    "backpack",
    "jacket",
    "blanket",
    "speaker",
    "keyboard",
    "bottle",
    "pan",
    "notebook",
    "pillow",
    "clock",
    "shelf",
    "knife",
    "bicycle",
    "tent",
    "watch",
    "scarf",
    "boots",
    "helmet",
    "drone",
    "camera",
    "guitar",
    "plant",
    "vase",
    "rug",
    "desk",
]
CATEGORY_WORDS = [
    "home",
    "kitchen",
    "outdoor",
    "office",
    "garden",
    "sports",
    "music",
    "travel",
    "kids",
    "fashion",
    "audio",
    "tools",
    "crafts",
    "pets",
    "beauty",
    "books",
    "games",
    "health",
    "auto",
    "camping",
]


def state_paths(folder: Path) -> dict[str, Path]:
    return {name: folder / f"{name}.db" for name in CONTEXTS}


def data_root() -> Path:
    """Where built datasets are cached: $ARCHLAB_DATA, else `data/datasets` in the repo."""
    env = os.environ.get("ARCHLAB_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data" / "datasets"


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def _bulk(conn: sqlite3.Connection, sql: str, rows: list[tuple]) -> None:
    conn.execute("BEGIN")
    conn.executemany(sql, rows)
    conn.execute("COMMIT")


def generate(size: str, seed: int, dest: Path) -> dict:
    """Write every context's database into `dest` (which must exist)."""
    spec = SIZES[size]
    rng = random.Random(seed)
    started = time.perf_counter()
    cats = [
        f"{CATEGORY_WORDS[i % len(CATEGORY_WORDS)]}-{i // len(CATEGORY_WORDS) + 1}"
        for i in range(spec.categories)
    ]
    products = []
    by_category: dict[int, list[int]] = {i: [] for i in range(spec.categories)}
    for pid in range(1, spec.products + 1):
        c = rng.randrange(spec.categories)
        by_category[c].append(pid)
        adj, mat, noun = rng.choice(ADJECTIVES), rng.choice(MATERIALS), rng.choice(NOUNS)
        name = f"{adj.title()} {mat.title()} {noun.title()} {pid}"
        desc = f"A {adj} {noun} made of {mat}, from our {cats[c]} range. " + " ".join(
            rng.sample(ADJECTIVES, 3)
        )
        products.append((pid, name, cats[c], rng.randint(199, 99_999), desc))

    dbs = {name: create(path, SCHEMAS[name]) for name, path in state_paths(dest).items()}
    _bulk(dbs["catalog"], "INSERT INTO products VALUES (?, ?, ?, ?, ?)", products)
    dbs["catalog"].execute(catalog.REBUILD_INDEX)
    lo, hi = spec.stock_range
    _bulk(
        dbs["inventory"],
        "INSERT INTO stock (product_id, available, sold, initial) VALUES (?, ?, 0, ?)",
        [(pid, q, q) for pid in range(1, spec.products + 1) for q in [rng.randint(lo, hi)]],
    )

    # cumulative weights summed once, not by every call: what `choices(population, weights)`
    # sums itself, so the same draws (the same rows), without re-summing 500 weights per basket
    cat_cum = list(accumulate(_zipf_weights(spec.categories, 0.8)))
    in_cat_cum = {c: list(accumulate(_zipf_weights(len(ids)))) for c, ids in by_category.items()}
    basket_sizes, size_cum = (1, 2, 3, 4, 5), list(accumulate((20, 35, 25, 12, 8)))
    cat_ids = list(range(spec.categories))
    all_ids = list(range(1, spec.products + 1))
    encode = msgspec.msgpack.Encoder().encode
    baskets = []
    for _ in range(spec.baskets):
        (c,) = rng.choices(cat_ids, cum_weights=cat_cum)
        n = rng.choices(basket_sizes, cum_weights=size_cum)[0]
        items = set(rng.choices(by_category[c], cum_weights=in_cat_cum[c], k=n))
        if rng.random() < 0.15:
            items.add(rng.choice(all_ids))
        baskets.append((encode(sorted(items)),))
    _bulk(dbs["recommendations"], "INSERT INTO baskets (items) VALUES (?)", baskets)
    for conn in dbs.values():
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    return {
        "size": size,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "spec": asdict(spec),
        "build_seconds": round(time.perf_counter() - started, 3),
    }


def ensure(size: str, seed: int = 1, root: Path | None = None) -> Path:
    """The cached dataset folder for (size, seed), built first if missing.

    Built in a temporary folder and renamed into place, so concurrent builders and an
    interrupted build never leave a half-written dataset behind.
    """
    if size not in SIZES:
        raise ValueError(f"unknown dataset size {size!r}; choose one of {', '.join(SIZES)}")
    root = root or data_root()
    folder = root / f"{size}-seed{seed}-v{GENERATOR_VERSION}"
    if (folder / "dataset.json").exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
    try:
        info = generate(size, seed, tmp)
        (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "dataset.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def info(folder: Path) -> dict:
    return json.loads((folder / "dataset.json").read_text())


def prepare_state(
    dataset: Path, state_dir: Path, contexts: Iterable[str] = CONTEXTS
) -> dict[str, Path]:
    """Copy the dataset's databases (of `contexts`) into `state_dir`, keeping any state
    already there.

    Keeping existing files is what lets a restarted variant carry on with its data. A copy
    goes to a temporary name first, so a process that copies at the same time as another
    (services starting in parallel) never opens half a file.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    paths = state_paths(state_dir)
    for name in contexts:
        path = paths[name]
        if not path.exists():
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            shutil.copyfile(dataset / f"{name}.db", tmp)
            tmp.rename(path)
    return paths
