"""`archlab bench engine`: the recommendation engine's model rebuild in Python and in Rust.

Each engine runs as its own process over the same store (a fresh copy of the dataset per
size), served over the family's IPC; both get the same `rebuild` calls, alternating
(python, rust, python, ...) so that drift on a shared machine spreads over both. A rebuild
reports its own `build_seconds` (the model build, measured inside the engine, the same way in
both); the wall time of the call adds the ingest and the call itself. After the last round
each process's memory is read (USS and PSS from smaps, RSS): the model's heap in Python, its
vectors in Rust. Medians with the spread over the rounds; one size at a time, so the two
engines never compete for the machine with another size's.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from archlab.bench.hop import engine_command, wait_for_socket
from archlab.host import procs
from variants import native, rpc
from variants.multiprocess.ipc import IpcServer, UdsTransport
from workloads.shop import dataset
from workloads.shop.local import LocalShop

ENGINES = ("python", "rust")
MIB = 2**20
REBUILD_TIMEOUT_S = 600.0


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def _memory(pid: int) -> dict[str, float]:
    info = psutil.Process(pid).memory_full_info()
    return {
        "rss_mib": round(info.rss / MIB, 1),
        "uss_mib": round(info.uss / MIB, 1),
        "pss_mib": round(getattr(info, "pss", info.uss) / MIB, 1),
    }


def measure_size(size: str, rounds: int, echo: Any = None) -> dict[str, Any]:
    """Both engines on one copy of `size`'s store: rebuild times and memory."""
    with tempfile.TemporaryDirectory(prefix="archlab-engine-") as tmp:
        state = Path(tmp)
        dataset.prepare_state(dataset.ensure(size), state)
        codec = rpc.Codec("msgpack")
        shop = LocalShop(state)  # its orders, served as the family's orders process serves them
        orders = state / "orders.sock"
        server = IpcServer(orders, rpc.Dispatcher("orders", shop.shop.orders, codec).handle)
        server.start()
        socks = {e: state / f"engine-{e}.sock" for e in ENGINES}
        built: dict[str, list[float]] = {e: [] for e in ENGINES}
        wall: dict[str, list[float]] = {e: [] for e in ENGINES}
        started: dict[str, float] = {}
        with (
            contextlib.ExitStack() as cleanup,
            procs.running(
                engine_command("python", socks["python"], state, orders),
                name="python engine",
                log_path=state / "python.log",
            ) as py,
            procs.running(
                engine_command("rust", socks["rust"], state, orders),
                name="rust engine",
                log_path=state / "rust.log",
                grace_s=2.0,
            ) as rs,
        ):
            cleanup.callback(shop.close)
            cleanup.callback(server.stop, 1.0)
            running = {"python": py, "rust": rs}
            for engine, proc in running.items():
                t0 = time.monotonic()
                wait_for_socket(socks[engine], proc, REBUILD_TIMEOUT_S)
                started[engine] = round(time.monotonic() - t0, 3)
            proxies = {
                e: rpc.make_proxy(
                    "recommendations",
                    UdsTransport(socks[e], call_timeout_s=REBUILD_TIMEOUT_S),
                    codec,
                )
                for e in ENGINES
            }
            stats: dict[str, Any] = {}
            for i in range(rounds):
                for engine in ENGINES if i % 2 == 0 else reversed(ENGINES):
                    t0 = time.perf_counter()
                    stats[engine] = proxies[engine].rebuild()
                    wall[engine].append(time.perf_counter() - t0)
                    built[engine].append(stats[engine].build_seconds)
                if echo is not None:
                    echo(f"  {size}: round {i + 1}/{rounds}")
            memory = {e: _memory(running[e].pid) for e in ENGINES}
        return {
            e: {
                "build_seconds": _spread(built[e]),
                "rebuild_call_seconds": _spread(wall[e]),
                "ready_seconds": started[e],
                "baskets": stats[e].baskets,
                "pairs": stats[e].pairs,
                **memory[e],
            }
            for e in ENGINES
        }


def measure(sizes: tuple[str, ...] = ("small", "full"), rounds: int = 5, echo: Any = None) -> dict:
    """Every size; `skipped` with the reason where the Rust engine is not built."""
    reason = native.unavailable_reason()
    if reason is not None:
        return {"skipped": reason}
    return {
        "rounds": rounds,
        "cpus": len(psutil.Process().cpu_affinity() or []),
        "sizes": {size: measure_size(size, rounds, echo) for size in sizes},
    }


def format_table(report: dict[str, Any]) -> str:
    if "skipped" in report:
        return f"engine benchmark skipped: {report['skipped']}"
    lines = [
        f"{'size':<6} {'engine':<7} {'build s (min-max)':>22} {'call s':>8} {'PSS MiB':>8} "
        f"{'USS MiB':>8}"
    ]
    lines.append("-" * len(lines[0]))
    for size, engines in report["sizes"].items():
        for engine, r in engines.items():
            b = r["build_seconds"]
            lines.append(
                f"{size:<6} {engine:<7} {b['median']:>8.3f} ({b['min']:.3f}-{b['max']:.3f})"
                f" {r['rebuild_call_seconds']['median']:>8.3f} {r['pss_mib']:>8.1f}"
                f" {r['uss_mib']:>8.1f}"
            )
    lines.append(f"medians of {report['rounds']} alternating rebuilds per engine and size")
    return "\n".join(lines)
