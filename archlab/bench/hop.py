"""`archlab bench hop`: the cost of one contract call, in-process vs IPC vs HTTP.

The same context (the catalog every variant serves, over the same database) answers
the same calls four ways: a method call; a method call through the msgpack codec
(serialization alone, no transport); over a Unix socket to another process (the
multiprocess variant's `UdsTransport` + `IpcServer`); and over HTTP to another process
(the distributed variant's `HttpTransport` to a gunicorn service). Calls are sequential
from one thread, so the numbers are per-hop latency, not throughput.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archlab.host import procs
from variants import rpc
from workloads.shop import dataset
from workloads.shop.catalog_snapshot import open_catalog

CALLS: dict[str, Callable[[Any, int], Any]] = {
    "catalog.get": lambda c, i: c.get(1 + i % 150),
    "catalog.search(page of 20)": lambda c, i: c.search("", 1 + i % 5, 20),
}


def _time_calls(target: Any, call: Callable[[Any, int], Any], n: int, warmup: int) -> list[float]:
    for i in range(warmup):
        call(target, i)
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        call(target, i)
        out.append((clock() - t0) / 1000)
    return out


def _stats(samples_us: list[float]) -> dict[str, float]:
    ordered = sorted(samples_us)
    return {
        "p50_us": round(statistics.median(ordered), 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "mean_us": round(statistics.fmean(ordered), 1),
    }


def serve_ipc(socket_path: Path, state_dir: Path) -> None:
    """The IPC side's server process (run by `measure` as a child)."""
    from variants.multiprocess.ipc import IpcServer

    dispatcher = rpc.Dispatcher(
        "catalog", open_catalog(state_dir / "catalog.db"), rpc.Codec("msgpack")
    )
    server = IpcServer(socket_path, dispatcher.handle)
    print("ready", flush=True)
    server.serve_forever()


def measure(n: int = 5000, warmup: int = 500, size: str = "tiny") -> dict[str, Any]:
    from variants.distributed.http import CallPolicy, proxy
    from variants.multiprocess.ipc import UdsTransport

    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="archlab-hop-") as tmp:
        state = Path(tmp)
        dataset.prepare_state(dataset.ensure(size), state)
        local = open_catalog(state / "catalog.db")
        msgpack = rpc.Codec("msgpack")
        via_codec = rpc.make_proxy(
            "catalog", rpc.Dispatcher("catalog", local, msgpack).handle, msgpack
        )
        sock = state / "catalog.sock"
        port = procs.free_port()
        ipc_cmd = [sys.executable, "-m", "archlab.bench.hop", "--serve-ipc", str(sock), str(state)]
        http_cmd = [
            sys.executable, "-m", "variants.distributed.service", "catalog",
            "--port", str(port), "--state-dir", str(state), "--size", size,
        ]  # fmt: skip
        with (
            procs.running(ipc_cmd, name="ipc catalog", log_path=state / "ipc.log") as ipc_proc,
            procs.running(http_cmd, name="http catalog", log_path=state / "http.log") as http_proc,
        ):
            procs.wait_healthy(http_proc, f"http://127.0.0.1:{port}/healthz", 60)
            deadline = time.monotonic() + 30
            while not sock.exists():
                if not ipc_proc.alive() or time.monotonic() > deadline:
                    raise procs.ProcessError(f"IPC server did not start:\n{ipc_proc.log_tail()}")
                time.sleep(0.05)
            over_ipc = rpc.make_proxy("catalog", UdsTransport(sock), msgpack)
            over_http, transport = proxy(
                "catalog", f"http://127.0.0.1:{port}", CallPolicy(timeout_s=5.0)
            )
            hops = {
                "in-process": local,
                "in-process + msgpack codec": via_codec,
                "IPC (Unix socket, msgpack)": over_ipc,
                "HTTP (loopback TCP, JSON)": over_http,
            }
            for call_name, call in CALLS.items():
                results[call_name] = {
                    hop: _stats(_time_calls(target, call, n, warmup))
                    for hop, target in hops.items()
                }
            transport.close()
    return {"calls": n, "warmup": warmup, "size": size, "results": results}


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{'call':<28} {'hop':<28} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9}"]
    lines.append("-" * len(lines[0]))
    for call, hops in report["results"].items():
        for hop, s in hops.items():
            lines.append(
                f"{call:<28} {hop:<28} {s['p50_us']:>9.1f} {s['p99_us']:>9.1f} {s['mean_us']:>9.1f}"
            )
    lines.append(f"{report['calls']} sequential calls each after {report['warmup']} warm-up calls")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m archlab.bench.hop")
    parser.add_argument("--serve-ipc", nargs=2, metavar=("SOCKET", "STATE_DIR"), required=True)
    args = parser.parse_args()
    serve_ipc(Path(args.serve_ipc[0]), Path(args.serve_ipc[1]))
