"""Measure the full-collection pause of the recommendation engine's real heap.

Loads the recommendations context from a dataset exactly as a variant does, then
times `gc.collect()` (a full, generation-2 collection) several times. The heap is the
live model, not a synthetic one, so the number is what a request stuck behind that
collection waits.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from workloads.shop import dataset
from workloads.shop.recommendations import Recommendations


def measure(size: str, seed: int = 1, repeats: int = 5) -> dict:
    with tempfile.TemporaryDirectory(prefix="archlab-gc-") as tmp:
        started = time.perf_counter()
        folder = dataset.ensure(size, seed)
        dataset_seconds = time.perf_counter() - started
        paths = dataset.prepare_state(folder, Path(tmp))
        started = time.perf_counter()
        recs = Recommendations(paths["recommendations"], orders=None)
        load_seconds = time.perf_counter() - started
        gc.collect()
        pauses_ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            gc.collect()
            pauses_ms.append((time.perf_counter() - t0) * 1000)
        tracked = len(gc.get_objects())
        rss = psutil.Process().memory_info().rss
        stats = recs.stats
        recs.close()
    return {
        "size": size,
        "seed": seed,
        "dataset_ready_seconds": round(dataset_seconds, 2),
        "model_load_seconds": round(load_seconds, 2),
        "model": {"baskets": stats.baskets, "products": stats.products, "pairs": stats.pairs},
        "tracked_objects": tracked,
        "rss_mib": round(rss / 2**20, 1),
        "full_gc_ms": [round(p, 1) for p in pauses_ms],
        "full_gc_ms_median": round(statistics.median(pauses_ms), 1),
        "full_gc_ms_max": round(max(pauses_ms), 1),
        "cpus": psutil.cpu_count(),
    }
