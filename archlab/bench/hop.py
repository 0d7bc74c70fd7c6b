"""`archlab bench hop`: the cost of one contract call, in-process vs IPC vs HTTP, and its floors.

The same context (the catalog every variant serves, over the same database) answers the same
calls several ways: a method call; a method call through the msgpack codec (serialization
alone, no transport); over a Unix socket to another process (the multiprocess variant's
`UdsTransport` + `IpcServer`); over HTTP to a service process under each HTTP server of
`variants.edge.servers` (the distributed variant's `HttpTransport`); and over HTTP to the
default server with urllib3 instead, so the client's own cost is visible next to the server's.
Calls are sequential from one thread, so the numbers are per-hop latency, not throughput.

Floors: a raw echo of one frame (the IPC framing, a catalog.get answer's size) over a Unix
socket and over loopback TCP, plain sockets on both ends, is what the transport costs with
nothing on top; each IPC row is quoted as a ratio to the Unix-socket floor and each HTTP row to
the TCP floor. Everything runs in rounds, every hop once per round in turn (each round starting
at another row), so drift on a shared machine spreads over all hops; a row's p50/p99/mean are
medians over rounds of the per-round values, and its spread is the min–max of the round p50s.
`client_cpu_us` is this process's CPU per call (`time.process_time` over the timed calls): for
a hop into another process, the client's side alone.

Where the two ends run is part of what a round trip costs, so it is set, not left to the
scheduler (`PLACEMENTS`): on one CPU, a call hands the CPU from client to server and back;
on two, each call wakes the other CPU. Left free, the scheduler picks either from one call to
the next, and on the 2-CPU VM that alone moved a floor between 9 and 74 µs and put the IPC hop
below its own floor. Every placement is measured in every round (the order alternating), with
every thread of the client and of each server moved to its CPUs (`cpus.pin_threads`); the first
placement asked for is the report's headline (`results`, `floors`), every one is under
`placements`.

`engines` times one recommendation call (`related`, k = 10) three ways over the same store: a
method call into the Python engine, and the same IPC into a process of each engine (the
Python one as the family's auxiliary serves it, the Rust one as its own program); without a
built Rust engine it says why instead. It runs one round, after the hops.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.host import cpus, procs
from variants import rpc
from variants.multiprocess.ipc import HEADER, listen_unix, recv_frame
from workloads.shop import dataset
from workloads.shop.catalog_snapshot import open_catalog

ENGINE_CALL = "recommendations.related(k=10)"
ENGINE_HOPS = ("in-process (Python engine)", "IPC -> Python engine", "IPC -> Rust engine")
CALLS: dict[str, Callable[[Any, int], Any]] = {
    "catalog.get": lambda c, i: c.get(1 + i % 150),
    "catalog.search(page of 20)": lambda c, i: c.search("", 1 + i % 5, 20),
}
IN_PROCESS = "in-process"
VIA_CODEC = "in-process + msgpack codec"
IPC_HOP = "IPC (Unix socket, msgpack)"
FLOORS = {"unix": "echo over a Unix socket", "tcp": "echo over loopback TCP"}
"""The floors, by transport: the same framing and socket as a hop, nothing on top."""
SPREAD = "min–max of the round p50s"
PLACEMENTS = {
    "one-cpu": "client and servers on one CPU: each call hands that CPU over and back",
    "two-cpus": "client on one CPU, servers on another: each call wakes the other CPU",
    "free": "nothing pinned: the scheduler places each side, call by call",
}
"""Where the client and the servers run, by name; what a call then costs besides the work."""
DEFAULT_PLACEMENTS = ("one-cpu", "two-cpus")


def placement_cpus(
    name: str, usable: list[int], sysfs: Path = Path("/sys/devices/system/cpu")
) -> tuple[list[int], list[int]]:
    """(the client's CPUs, the servers' CPUs) of a placement; ValueError when the machine
    cannot give it (two CPUs on separate cores where there are any)."""
    if name not in PLACEMENTS:
        raise ValueError(f"unknown placement {name!r}; one of {', '.join(PLACEMENTS)}")
    if name == "free":
        return list(usable), list(usable)
    if name == "one-cpu":
        return [usable[0]], [usable[0]]
    groups = cpus.cores(usable, sysfs)
    if len(usable) < 2:
        raise ValueError(f"placement two-cpus needs 2 usable CPUs, this process has {len(usable)}")
    other = groups[1][0] if len(groups) > 1 else usable[1]
    return [usable[0]], [other]


def http_hop(server: str, default: str) -> str:
    """The HTTP row of `server`. Only the default server's name starts with "HTTP": the figures
    group rows by how a name starts (`figures.latency._hop_kind`) and take one row per group."""
    if server == default:
        return f"HTTP (loopback TCP, JSON) {server}"
    return f"{server}: HTTP (loopback TCP, JSON)"


def urllib3_hop(server: str) -> str:
    return f"urllib3 client: HTTP to {server}"


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


def _timed(
    target: Any, call: Callable[[Any, int], Any], n: int, warmup: int
) -> tuple[list[float], float]:
    """`_time_calls`, and this process's CPU per timed call in µs (warm-up not counted)."""
    for i in range(warmup):
        call(target, i)
    cpu0 = time.process_time_ns()
    samples = _time_calls(target, call, n, 0)
    return samples, (time.process_time_ns() - cpu0) / 1000 / n


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


def serve_echo(kind: str, where: str) -> None:
    """The floors' server process: every frame answered with the same bytes, a thread per
    connection as `IpcServer` runs, no codec and no dispatch: the socket and framing alone."""
    if kind == "unix":
        listener = listen_unix(Path(where))
    else:
        listener = socket.create_server(("127.0.0.1", int(where)))
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_echo, args=(conn,), name="echo", daemon=True).start()


def _echo(conn: socket.socket) -> None:
    if conn.family == socket.AF_INET:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn, contextlib.suppress(OSError):  # PeerClosed included: the client is done
        while True:
            small, body = recv_frame(conn)
            conn.sendall(HEADER.pack(len(body), small) + body)


class EchoClient:
    """The floors' client: one blocking connection; a frame goes out in one `sendall` and the
    echo is read by the IPC transport's `recv_frame`, as `UdsTransport` does."""

    def __init__(self, kind: str, where: str, timeout_s: float = 5.0) -> None:
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout_s)
            sock.connect(where)
        else:
            sock = socket.create_connection(("127.0.0.1", int(where)), timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Kernel-side timeouts, as UdsTransport: a Python-level one adds a poll() per recv.
        sock.settimeout(None)
        rpc.kernel_timeouts(sock, timeout_s)
        self.sock = sock

    def __call__(self, body: bytes) -> bytes:
        """`body` sent as one frame; the body of the frame that comes back."""
        self.sock.sendall(HEADER.pack(len(body), 1) + body)
        return recv_frame(self.sock)[1]

    def close(self) -> None:
        self.sock.close()


class Urllib3Transport:
    """`rpc.Transport` over a urllib3 keep-alive pool: the alternative client, making the same
    `POST /rpc/<method>` with the same JSON body as `HttpTransport` (the proxy encodes it and
    decodes the answer with msgspec either way), so the two clients' costs compare directly."""

    def __init__(self, host: str, port: int, timeout_s: float = 5.0) -> None:
        import urllib3

        self.pool = urllib3.HTTPConnectionPool(
            host,
            port,
            maxsize=1,
            retries=False,
            timeout=urllib3.Timeout(connect=0.5, read=timeout_s),
        )
        self._headers = {"Content-Type": "application/json"}
        self._errors = (urllib3.exceptions.HTTPError, OSError)

    def __call__(self, method: str, args: bytes) -> tuple[bool, bytes]:
        try:
            resp = self.pool.request("POST", f"/rpc/{method}", body=args, headers=self._headers)
        except self._errors as exc:
            raise rpc.TransportError(f"catalog.{method}: {type(exc).__name__}: {exc}") from exc
        if resp.status == 200:
            return True, resp.data
        if resp.status != 500 and resp.headers.get("Content-Type", "").startswith(
            "application/json"
        ):
            return False, resp.data  # a domain error, as HttpTransport reports it
        raise rpc.TransportError(f"catalog.{method}: HTTP {resp.status}")

    def close(self) -> None:
        self.pool.close()


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


def wait_for_port(port: int, proc: procs.Proc, timeout_s: float = 60.0) -> None:
    """Until the server started as `proc` accepts on 127.0.0.1:`port`; ProcessError if not."""
    deadline = time.monotonic() + timeout_s
    while not procs.port_in_use(port):
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


@dataclass(frozen=True)
class _Hop:
    name: str
    target: Any
    floor: str | None = None
    """The floor it is quoted against (a key of FLOORS); None: in-process, no transport."""
    info: dict[str, str] = field(default_factory=dict)
    """What the row is, for readers that should not parse its name (server, client)."""


def _summary(rounds: list[dict[str, float]], cpu_us: list[float] | None) -> dict[str, Any]:
    """Medians over rounds of each round's p50/p99/mean (the keys readers of hop.json know),
    with the per-round values, and the median client CPU per call when it is meaningful."""
    out: dict[str, Any] = {
        key: round(statistics.median([r[key] for r in rounds]), 1)
        for key in ("p50_us", "p99_us", "mean_us")
    }
    out["p50_us_rounds"] = [r["p50_us"] for r in rounds]
    out["p99_us_rounds"] = [r["p99_us"] for r in rounds]
    if cpu_us is not None:
        out["client_cpu_us"] = round(statistics.median(cpu_us), 1)
        out["client_cpu_us_rounds"] = [round(c, 1) for c in cpu_us]
    return out


def resolve_placements(
    placements: tuple[str, ...], usable: list[int]
) -> dict[str, tuple[list[int], list[int]]]:
    """Each placement's (client CPUs, server CPUs); ValueError unless there is at least one,
    none twice, and this machine can give each."""
    if not placements or len(set(placements)) != len(placements):
        raise ValueError(f"one or more distinct placements, got {placements!r}")
    return {name: placement_cpus(name, usable) for name in placements}


def _place(pids: list[int], cpu_set: list[int]) -> None:
    """Every thread of each process in `pids`, and of the processes under it, on `cpu_set`."""
    import psutil

    for pid in pids:
        found = [pid]
        with contextlib.suppress(psutil.Error):
            found += [child.pid for child in psutil.Process(pid).children(recursive=True)]
        for member in found:
            cpus.pin_threads(member, cpu_set)


def _placement_report(
    placement: str,
    timed: dict[tuple[str, str, str], tuple[list[dict[str, float]], list[float]]],
    hops: list[_Hop],
    payload: bytes,
) -> dict[str, Any]:
    """One placement's floors and per-call results, each row summarized over its rounds."""
    floors: dict[str, dict[str, Any]] = {}
    for kind, label in FLOORS.items():
        runs, cpu_runs = timed[(placement, "", kind)]
        floors[kind] = {
            "hop": label,
            "frame_bytes": HEADER.size + len(payload),
            **_summary(runs, cpu_runs),
        }
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for call_name in CALLS:
        per_hop = results[call_name] = {}
        for hop in hops:
            runs, cpu_runs = timed[(placement, call_name, hop.name)]
            stats = _summary(runs, cpu_runs if hop.floor else None)
            if hop.floor is not None:
                stats["floor"] = hop.floor
                stats["ratio_to_floor"] = round(stats["p50_us"] / floors[hop.floor]["p50_us"], 2)
            per_hop[hop.name] = {**stats, **hop.info}
    return {"floors": floors, "results": results}


def measure(
    n: int = 5000,
    warmup: int = 500,
    size: str = "tiny",
    rounds: int = 5,
    echo: Callable[[str], None] | None = None,
    placements: tuple[str, ...] = DEFAULT_PLACEMENTS,
) -> dict[str, Any]:
    """Every hop and floor under every placement, `rounds` times in turn, `n` timed calls each
    after `warmup` (`echo`: a progress line per round). Raises ValueError for `n` or `rounds`
    below 1, or a placement this machine cannot give."""
    if n < 1 or rounds < 1 or warmup < 0:
        raise ValueError(f"calls and rounds at least 1, warmup at least 0 (got {n}, {rounds})")
    usable = sorted(os.sched_getaffinity(0))
    where = resolve_placements(placements, usable)
    import urllib3

    from variants.distributed.http import CallPolicy, proxy
    from variants.edge import servers
    from variants.multiprocess.ipc import UdsTransport

    say = echo or (lambda _text: None)
    default = servers.DEFAULT_SERVER
    with tempfile.TemporaryDirectory(prefix="archlab-hop-") as tmp:
        state = Path(tmp)
        dataset.prepare_state(dataset.ensure(size), state)
        local = open_catalog(state / "catalog.db")
        msgpack, json_codec = rpc.Codec("msgpack"), rpc.Codec("json")
        via_codec = rpc.make_proxy(
            "catalog", rpc.Dispatcher("catalog", local, msgpack).handle, msgpack
        )
        payload = msgpack.encode(local.get(1))  # an echo frame the size of a catalog.get answer
        sock, echo_sock = state / "catalog.sock", state / "echo.sock"
        echo_port = procs.free_port()
        me = [sys.executable, "-m", "archlab.bench.hop"]
        with contextlib.ExitStack() as stack:

            def start(cmd: list[str], name: str) -> procs.Proc:
                log = state / f"{name.replace(' ', '-')}.log"
                return stack.enter_context(procs.running(cmd, name=name, log_path=log))

            ipc_proc = start([*me, "--serve-ipc", str(sock), str(state)], "ipc catalog")
            unix_echo = start([*me, "--serve-echo", "unix", str(echo_sock)], "unix echo")
            tcp_echo = start([*me, "--serve-echo", "tcp", str(echo_port)], "tcp echo")
            http: dict[str, tuple[procs.Proc, int]] = {}
            for server in servers.SERVERS:
                port = procs.free_port()
                cmd = [
                    sys.executable, "-m", "variants.distributed.service", "catalog",
                    "--port", str(port), "--state-dir", str(state), "--size", size,
                    "--server", server,
                ]  # fmt: skip
                http[server] = start(cmd, f"http catalog {server}"), port
            wait_for_socket(sock, ipc_proc, 30)
            wait_for_socket(echo_sock, unix_echo, 30)
            wait_for_port(echo_port, tcp_echo, 30)
            for proc, port in http.values():
                procs.wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", 60)

            floor_clients = {
                "unix": EchoClient("unix", str(echo_sock)),
                "tcp": EchoClient("tcp", str(echo_port)),
            }
            for client in floor_clients.values():
                stack.callback(client.close)
            hops = [
                _Hop(IN_PROCESS, local),
                _Hop(VIA_CODEC, via_codec),
                _Hop(
                    IPC_HOP,
                    rpc.make_proxy("catalog", UdsTransport(sock), msgpack),
                    "unix",
                    {"client": "UdsTransport"},
                ),
            ]
            for server, (_proc, port) in http.items():
                remote, transport = proxy(
                    "catalog", f"http://127.0.0.1:{port}", CallPolicy(timeout_s=5.0)
                )
                stack.callback(transport.close)
                info = {"server": server, "client": "HttpTransport"}
                hops.append(_Hop(http_hop(server, default), remote, "tcp", info))
            alternative = Urllib3Transport("127.0.0.1", http[default][1])
            stack.callback(alternative.close)
            hops.append(
                _Hop(
                    urllib3_hop(default),
                    rpc.make_proxy("catalog", alternative, json_codec),
                    "tcp",
                    {"server": default, "client": f"urllib3 {urllib3.__version__}"},
                )
            )

            echo_call: Callable[[Any, int], Any] = lambda c, _i: c(payload)  # noqa: E731
            # One entry per row: (call, row, target, how to call it); a floor's call is "".
            order: list[tuple[str, str, Any, Callable[[Any, int], Any]]] = [
                ("", kind, client, echo_call) for kind, client in floor_clients.items()
            ]
            order += [(c, hop.name, hop.target, fn) for c, fn in CALLS.items() for hop in hops]
            server_pids = [proc.pid for proc in (ipc_proc, unix_echo, tcp_echo)]
            server_pids += [proc.pid for proc, _port in http.values()]
            stack.callback(_place, [os.getpid()], usable)
            timed: dict[tuple[str, str, str], tuple[list[dict[str, float]], list[float]]] = {}
            for r in range(rounds):
                say(f"round {r + 1}/{rounds} ...")
                first = r % len(placements)
                for name in placements[first:] + placements[:first]:
                    client_cpus, server_cpus = where[name]
                    _place(server_pids, server_cpus)
                    _place([os.getpid()], client_cpus)
                    start_at = r * len(order) // rounds  # no row is always first, or always last
                    for call_name, row, target, fn in order[start_at:] + order[:start_at]:
                        samples, cpu = _timed(target, fn, n, warmup)
                        runs, cpu_runs = timed.setdefault((name, call_name, row), ([], []))
                        runs.append(_stats(samples))
                        cpu_runs.append(cpu)
            _place([os.getpid()], usable)

        placed = {
            name: {
                "description": PLACEMENTS[name],
                "client_cpus": where[name][0],
                "server_cpus": where[name][1],
                **_placement_report(name, timed, hops, payload),
            }
            for name in placements
        }
        say("the engines (one round) ...")
        engines = measure_engines(state, n, warmup)
    headline = placements[0]
    return {
        "calls": n,
        "warmup": warmup,
        "size": size,
        "rounds": rounds,
        "spread": SPREAD,
        "servers": list(servers.SERVERS),
        "placement": headline,
        "floors": placed[headline]["floors"],
        "results": placed[headline]["results"],
        "placements": placed,
        "engines": engines,
    }


def _spread(stats: dict[str, Any]) -> str:
    rounds = stats.get("p50_us_rounds")
    return f"{min(rounds):.1f}–{max(rounds):.1f}" if rounds else "-"


def _row(call: str, hop: str, stats: dict[str, Any], ratio: str) -> str:
    cpu = stats.get("client_cpu_us")
    return (
        f"{call:<29} {hop:<42} {stats['p50_us']:>8.1f} {_spread(stats):>13} "
        f"{stats['p99_us']:>8.1f} {ratio:>10} {'-' if cpu is None else f'{cpu:.1f}':>7}"
    )


def _section(lines: list[str], floors: dict[str, Any], results: dict[str, Any]) -> None:
    for kind, stats in floors.items():
        lines.append(_row(f"floor ({kind})", stats["hop"], stats, "1.0"))
    for call, hops in results.items():
        for hop, s in hops.items():
            ratio = s.get("ratio_to_floor")
            lines.append(_row(call, hop, s, "-" if ratio is None else f"{ratio:.1f} {s['floor']}"))


def format_table(report: dict[str, Any]) -> str:
    """Per placement, the floors and every hop with its ratio to its floor; then the engines;
    a footer that says how the numbers were made. Reads older reports (one placement, or one
    round) too."""
    head = (
        f"{'call':<29} {'hop':<42} {'p50 µs':>8} {'spread µs':>13} {'p99 µs':>8} "
        f"{'x floor':>10} {'cpu µs':>7}"
    )
    lines = [head, "-" * len(head)]
    placed = report.get("placements") or {}
    if placed:
        for name, part in placed.items():
            where = (
                cpus.format_cpu_list(part["client_cpus"]),
                cpus.format_cpu_list(part["server_cpus"]),
            )
            lines.append(
                f"placement {name} (client CPU {where[0]}, servers CPU {where[1]}): "
                f"{part['description']}"
            )
            _section(lines, part["floors"], part["results"])
    else:
        _section(lines, report.get("floors") or {}, report["results"])
    engines = dict(report.get("engines") or {})
    skipped = engines.pop("skipped", None)
    if engines:
        lines.append("the engines (unpinned):")
    _section(lines, {}, engines)
    if skipped is not None:
        lines.append(f"{ENGINE_CALL:<29} skipped: {skipped}")
    rounds = report.get("rounds", 1)
    lines.append(
        f"{rounds} round(s), every hop once per round in turn (each round starting at another); "
        f"per round {report['calls']} sequential calls per hop after {report['warmup']} warm-up"
    )
    if placed:
        lines.append(
            f"every placement in every round (alternating which first); the headline "
            f"(hop.json `results`, the figures): {report['placement']}"
        )
    floors = report.get("floors") or {}
    if floors:
        frame = next(iter(floors.values())).get("frame_bytes", "?")
        lines += [
            f"p50, p99: median over rounds of each round's value; spread: {SPREAD}",
            f"floors: a {frame}-byte frame echoed (IPC framing, plain sockets, nothing on top); "
            "x floor: p50 / its floor's p50 (IPC: unix, HTTP: tcp)",
            "cpu µs: this process's CPU per call (process_time), the client's side of a hop; "
            "the engines: one round",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m archlab.bench.hop")
    served = parser.add_mutually_exclusive_group(required=True)
    served.add_argument("--serve-ipc", nargs=2, metavar=("SOCKET", "STATE_DIR"))
    served.add_argument("--serve-engine-ipc", nargs=2, metavar=("SOCKET", "STATE_DIR"))
    served.add_argument("--serve-echo", nargs=2, metavar=("unix|tcp", "SOCKET|PORT"))
    parser.add_argument("--orders", type=Path, help="with --serve-engine-ipc: orders' socket")
    args = parser.parse_args()
    if args.serve_ipc:
        serve_ipc(Path(args.serve_ipc[0]), Path(args.serve_ipc[1]))
    elif args.serve_echo:
        if args.serve_echo[0] not in FLOORS:
            parser.error(f"--serve-echo: unix or tcp, not {args.serve_echo[0]!r}")
        serve_echo(*args.serve_echo)
    else:
        serve_engine_ipc(
            Path(args.serve_engine_ipc[0]), Path(args.serve_engine_ipc[1]), args.orders
        )
