"""Sample the CPU and memory of a process tree once a second, in a background thread.

Used on the load generator: locust's own CPU warning is sampled every 10 s and reads 0 at first,
so short runs never warn. A saturated generator is flagged in the summary.
"""

from __future__ import annotations

import contextlib
import csv
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

CPU_COLUMNS = ("time", "pid", "name", "cpu_percent", "rss_bytes")


class TreeSampler(threading.Thread):
    """Writes one CSV row per live process of the tree rooted at `root_pid` every `interval_s`.

    cpu_percent is percent of one CPU over the last interval (can exceed 100 with threads). A
    process's first reading is only a baseline and is not written.
    """

    def __init__(self, root_pid: int, path: Path, interval_s: float = 1.0) -> None:
        super().__init__(name=f"sampler-{root_pid}", daemon=True)
        self.root_pid = root_pid
        self.path = path
        self.interval_s = interval_s
        self._stop_event = threading.Event()
        self._known: dict[int, psutil.Process] = {}
        self.latest: dict[int, float] = {}  # pid -> last cpu_percent, for progress lines

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root_pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def run(self) -> None:
        with self.path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(CPU_COLUMNS)
            while not self._stop_event.is_set():
                self._sample(writer)
                fh.flush()
                self._stop_event.wait(self.interval_s)

    def _sample(self, writer: Any) -> None:  # a csv writer
        now = time.time()
        latest = {}
        for proc in self._tree():
            known = self._known.get(proc.pid)
            if known is None or not known.is_running():  # new (or pid reused): take a baseline
                self._known[proc.pid] = proc
                with contextlib.suppress(psutil.Error):
                    proc.cpu_percent(None)
                continue
            try:
                with known.oneshot():
                    cpu = known.cpu_percent(None)
                    rss = known.memory_info().rss
                    name = known.name()
            except psutil.Error:
                continue
            latest[proc.pid] = cpu
            writer.writerow((f"{now:.3f}", proc.pid, name, f"{cpu:.1f}", rss))
        self.latest = latest

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5.0)


@contextlib.contextmanager
def sampling(root_pid: int, path: Path, interval_s: float = 1.0) -> Iterator[TreeSampler]:
    """Run a TreeSampler for the duration of the with-block."""
    sampler = TreeSampler(root_pid, path, interval_s)
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()
