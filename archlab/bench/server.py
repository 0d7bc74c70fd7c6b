"""`archlab bench server`: the monolith's `GET /products/{id}` against the bare HTTP stack.

For each server of `variants.edge.servers`, wrk drives the monolith (the whole shop behind the
edge) and the bare endpoint (`variants.bare`: the same server, framework and process model,
answering with the monolith's own bytes), one at a time, the server pinned to one CPU and wrk to
another, interleaved round by round so that drift on a shared machine spreads over all four.
The ratio monolith / bare is how much of what the HTTP stack allows the domain leaves; wrk is
a C client, so the client does not decide the ceiling.
"""

from __future__ import annotations

import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archlab.host import procs
from archlab.host.cpus import format_cpu_list, pin_command
from archlab.host.machine import usable_cpus
from variants.edge import servers

TARGETS = ("monolith", "bare")
DEFAULT_THREADS = 8  # the placements' request threads per process
PRODUCTS = 150  # ids 1..150 exist in every dataset size
_ROTATE = """
local n = 0
request = function()
  n = n % {products} + 1
  return wrk.format("GET", "/products/" .. n)
end
"""
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_P = re.compile(r"^\s+(50|99)\.000%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


class BenchError(RuntimeError):
    pass


def parse_wrk(text: str) -> dict[str, float]:
    """Requests/s and the p50/p99 latency (ms) from wrk's `--latency` output."""
    rps = _RPS.search(text)
    if rps is None:
        raise BenchError(f"wrk printed no Requests/sec: {text[-300:]!r}")
    out = {"rps": float(rps.group(1))}
    for pct, value, unit in _P.findall(text):
        out[f"p{pct}_ms"] = round(float(value) * _UNIT_MS[unit], 3)
    return out


def _command(
    target: str, server: str, port: int, size: str, body: Path, state: Path, threads: int
) -> list[str]:
    if target == "monolith":
        return [
            sys.executable, "-m", "variants.monolith", "--port", str(port), "--size", size,
            "--server", server, "--threads", str(threads),
            "--state-dir", str(state / f"m-{server}"),
        ]  # fmt: skip
    return [
        sys.executable, "-m", "variants.bare", "--port", str(port), "--server", server,
        "--body", str(body), "--threads", str(threads),
    ]  # fmt: skip


def _wrk(
    wrk: str, url: str, script: Path, cpu: list[int], seconds: float, connections: int
) -> dict[str, float]:
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), url]
    with tempfile.NamedTemporaryFile("w+b", suffix=".log") as log:
        with procs.running(pin_command(cmd, cpu), name="wrk", log_path=Path(log.name)) as proc:
            code = proc.popen.wait(timeout=seconds + 30)
        text = Path(log.name).read_text(errors="replace")
    if code != 0:
        raise BenchError(f"wrk exited {code}: {text[-300:]!r}")
    return parse_wrk(text)


def measure(
    *,
    rounds: int = 3,
    seconds: float = 10.0,
    warmup_s: float = 2.0,
    connections: int = 16,
    size: str = "small",
    echo: Callable[[str], None] = print,
    threads: int = DEFAULT_THREADS,
) -> dict[str, Any]:
    """Rounds of (server x target) wrk runs; per pair the runs and their medians. `threads`:
    request threads of both targets, which under granian is also how many requests it admits
    at once (fewer than wrk's connections leaves connections waiting)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("needs wrk on PATH (Debian: apt-get install wrk; `make setup` does)")
    usable = usable_cpus()
    if len(usable) < 2:
        raise BenchError(f"needs 2 CPUs (the server on one, wrk on another); {len(usable)} usable")
    server_cpu, client_cpu = [usable[0]], [usable[1]]
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        s: {t: [] for t in TARGETS} for s in servers.SERVERS
    }
    with tempfile.TemporaryDirectory(prefix="archlab-bench-server-") as tmp:
        root = Path(tmp)
        script = root / "rotate.lua"
        script.write_text(_ROTATE.format(products=PRODUCTS))
        body = root / "product.json"
        for r in range(1, rounds + 1):
            for server in servers.SERVERS:
                for target in TARGETS:
                    echo(f"round {r}/{rounds}: {target} on {server} ...")
                    port = procs.free_port()
                    cmd = _command(target, server, port, size, body, root, threads)
                    log = root / f"{target}-{server}.log"
                    with procs.running(
                        pin_command(cmd, server_cpu), name=target, log_path=log
                    ) as p:
                        base = f"http://127.0.0.1:{port}"
                        procs.wait_healthy(p, f"{base}/healthz", 300)
                        if target == "monolith" and not body.exists():
                            with urllib.request.urlopen(f"{base}/products/1", timeout=10) as resp:
                                body.write_bytes(resp.read())
                        _wrk(wrk, base, script, client_cpu, warmup_s, connections)
                        runs[server][target].append(
                            _wrk(wrk, base, script, client_cpu, seconds, connections)
                        )
                    time.sleep(0.5)  # let the stopped server's port and CPU settle
        body_bytes = body.stat().st_size
    return {
        "rounds": rounds,
        "seconds": seconds,
        "connections": connections,
        "threads": threads,
        "size": size,
        "server_cpus": server_cpu,
        "client_cpus": client_cpu,
        "body_bytes": body_bytes,
        "client": "wrk -t1 (C), GET /products/1..150",
        "runs": runs,
        "servers": {s: summarize(runs[s]) for s in servers.SERVERS},
    }


def summarize(pair: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians and ranges over rounds; the ratio monolith / bare of each round's throughput."""
    out: dict[str, Any] = {}
    for target, rows in pair.items():
        rps = [row["rps"] for row in rows]
        out[target] = {
            "rps": round(statistics.median(rps), 1),
            "rps_min": round(min(rps), 1),
            "rps_max": round(max(rps), 1),
            "p99_ms": round(statistics.median(row.get("p99_ms", float("nan")) for row in rows), 3),
        }
    ratios = [m["rps"] / b["rps"] for m, b in zip(pair["monolith"], pair["bare"], strict=True)]
    out["ratio"] = round(statistics.median(ratios), 3)
    out["ratio_min"] = round(min(ratios), 3)
    out["ratio_max"] = round(max(ratios), 3)
    return out


def format_table(report: dict[str, Any]) -> str:
    head = f"{'server':<18} {'monolith req/s':>22} {'bare req/s':>22} {'monolith/bare':>20}"
    lines = [head, "-" * len(head)]
    for server, s in report["servers"].items():
        m, b = s["monolith"], s["bare"]
        lines.append(
            f"{server:<18} {m['rps']:>8.0f} [{m['rps_min']:.0f}-{m['rps_max']:.0f}]"
            f"{'':>1} {b['rps']:>8.0f} [{b['rps_min']:.0f}-{b['rps_max']:.0f}]"
            f"{'':>1} {s['ratio']:>8.1%} [{s['ratio_min']:.0%}-{s['ratio_max']:.0%}]"
        )
    lines.append(
        f"medians [min-max] over {report['rounds']} interleaved rounds of {report['seconds']:g} s; "
        f"{report['client']}, {report['connections']} connections; "
        f"{report.get('threads', DEFAULT_THREADS)} request threads; server on CPU "
        f"{format_cpu_list(report['server_cpus'])}, wrk on CPU "
        f"{format_cpu_list(report['client_cpus'])}; body {report['body_bytes']} B"
    )
    return "\n".join(lines)
