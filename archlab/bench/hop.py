"""`archlab bench hop`: the cost of one contract call, in-process vs IPC vs HTTP.

The same context (the catalog every variant serves, over the same database) answers
the same calls four ways: a method call; a method call through the msgpack codec
(serialization alone, no transport); over a Unix socket to another process (the
multiprocess variant's `UdsTransport` + `IpcServer`); and over HTTP to another process
(the distributed variant's `HttpTransport` to a gunicorn service). Calls are sequential
from one thread, so the numbers are per-hop latency, not throughput.

`engines` times one recommendation call (`related`, k = 10) three ways over the same store: a
method call into the Python engine, and the same IPC into a process of each engine (the
Python one as the family's auxiliary serves it, the Rust one as its own program); without a
built Rust engine it says why instead.
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

ENGINE_CALL = "recommendations.related(k=10)"
ENGINE_HOPS = ("in-process (Python engine)", "IPC -> Python engine", "IPC -> Rust engine")
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


def serve_engine_ipc(socket_path: Path, state_dir: Path, orders: Path | None = None) -> None:
    """The Python engine's server process, as the family's recommendations auxiliary (its
    orders over IPC at `orders`, for a rebuild)."""
    from variants.multiprocess.ipc import IpcServer, UdsTransport
    from workloads.shop.recommendations import Recommendations

    peer = None
    if orders is not None:
        peer = rpc.make_proxy("orders", UdsTransport(orders), rpc.Codec("msgpack"))
    engine = Recommendations(state_dir / "recommendations.db", peer)  # type: ignore[arg-type]
    dispatcher = rpc.Dispatcher("recommendations", engine, rpc.Codec("msgpack"))
    server = IpcServer(socket_path, dispatcher.handle)
    print("ready", flush=True)
    server.serve_forever()


def engine_command(engine: str, sock: Path, state: Path, orders: Path | None = None) -> list[str]:
    """A process of `engine` serving recommendations over IPC on `sock` from `state`'s store
    (calling orders at `orders`, for a rebuild), for a benchmark to start itself."""
    from variants import native

    if engine == "python":
        cmd = [
            sys.executable,
            "-m",
            "archlab.bench.hop",
            "--serve-engine-ipc",
            str(sock),
            str(state),
        ]
        return cmd + (["--orders", str(orders)] if orders is not None else [])
    return native.standalone(
        engine,
        "recommendations",
        state,
        serve={"socket": str(sock)},
        peers={"orders-socket": str(orders or state / "no-orders.sock")},
    )


def wait_for_socket(sock: Path, proc: procs.Proc, timeout_s: float = 60.0) -> None:
    """Until the server started as `proc` has bound `sock`; ProcessError with its log if not."""
    deadline = time.monotonic() + timeout_s
    while not sock.exists():
        if not proc.alive() or time.monotonic() > deadline:
            raise procs.ProcessError(f"{proc.name} did not start:\n{proc.log_tail()}")
        time.sleep(0.05)


def measure_engines(state: Path, n: int, warmup: int) -> dict[str, Any]:
    """One `related` call into each engine: in-process (Python), and over IPC to each."""
    from variants import native
    from variants.multiprocess.ipc import UdsTransport
    from workloads.shop.recommendations import Recommendations

    reason = native.unavailable_reason()
    if reason is not None:
        return {"skipped": reason}
    msgpack = rpc.Codec("msgpack")
    py_sock, rs_sock = state / "engine-py.sock", state / "engine-rs.sock"
    py_cmd = engine_command("python", py_sock, state)
    rs_cmd = engine_command("rust", rs_sock, state)
    local = Recommendations(state / "recommendations.db", None)  # type: ignore[arg-type]
    call: Callable[[Any, int], Any] = lambda r, i: r.related(1 + i % 150, 10)  # noqa: E731
    try:
        with (
            procs.running(py_cmd, name="python engine", log_path=state / "py.log") as py,
            procs.running(rs_cmd, name="rust engine", log_path=state / "rs.log", grace_s=2) as rs,
        ):
            wait_for_socket(py_sock, py)
            wait_for_socket(rs_sock, rs)
            targets = {
                ENGINE_HOPS[0]: local,
                ENGINE_HOPS[1]: rpc.make_proxy("recommendations", UdsTransport(py_sock), msgpack),
                ENGINE_HOPS[2]: rpc.make_proxy("recommendations", UdsTransport(rs_sock), msgpack),
            }
            return {
                ENGINE_CALL: {
                    hop: _stats(_time_calls(target, call, n, warmup))
                    for hop, target in targets.items()
                }
            }
    finally:
        local.close()


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
            wait_for_socket(sock, ipc_proc, 30)
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
        engines = measure_engines(state, n, warmup)
    return {"calls": n, "warmup": warmup, "size": size, "results": results, "engines": engines}


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{'call':<28} {'hop':<28} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9}"]
    lines.append("-" * len(lines[0]))
    engines = dict(report.get("engines") or {})
    skipped = engines.pop("skipped", None)
    for call, hops in (*report["results"].items(), *engines.items()):
        for hop, s in hops.items():
            lines.append(
                f"{call:<28} {hop:<28} {s['p50_us']:>9.1f} {s['p99_us']:>9.1f} {s['mean_us']:>9.1f}"
            )
    if skipped is not None:
        lines.append(f"{ENGINE_CALL:<28} skipped: {skipped}")
    lines.append(f"{report['calls']} sequential calls each after {report['warmup']} warm-up calls")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m archlab.bench.hop")
    served = parser.add_mutually_exclusive_group(required=True)
    served.add_argument("--serve-ipc", nargs=2, metavar=("SOCKET", "STATE_DIR"))
    served.add_argument("--serve-engine-ipc", nargs=2, metavar=("SOCKET", "STATE_DIR"))
    parser.add_argument("--orders", type=Path, help="with --serve-engine-ipc: orders' socket")
    args = parser.parse_args()
    if args.serve_ipc:
        serve_ipc(Path(args.serve_ipc[0]), Path(args.serve_ipc[1]))
    else:
        serve_engine_ipc(
            Path(args.serve_engine_ipc[0]), Path(args.serve_engine_ipc[1]), args.orders
        )
