"""`archlab bench floor`: the latency the lab reports when the server does nothing.

The lab's load generator (locust headless, the shoppers of `workloads/locustfile.py`, the
recorder writing requests.csv: `archlab.run.generator.drive_load`, as every run uses it) drives
the bare endpoint (`variants.bare`: the monolith's HTTP server, framework and process model,
answering `GET /products/{id}` and the catalogue page with the monolith's own bytes) with the
open loop restricted to `GET /products/{id}`, at each offered rate, in interleaved rounds. What
it reads there is the floor every latency of the lab stands on: HTTP stack plus generator.

Which part is the generator's own is measured, not guessed: at one low rate an independent
client (`python -m archlab.run.floor client`: stdlib `http.client`, one keep-alive
connection, a `perf_counter` open-loop schedule met by sleeping, then spinning the last
millisecond) drives the same endpoint in the same rounds. Both are summarised with the same HDR
percentiles (`archlab.analysis.summary.latency_stats`); their difference is what the lab's
generator adds per request.

Every measurement leaves out its first `WARMUP_S` (connections, the catalogue fetch). The
server is pinned as a run pins it (`archlab.host.cpus.plan_cpus`: unpinned below 4 CPUs), and
the independent client runs where the generator runs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import http.client
import json
import math
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from archlab.analysis.records import Record, read_records
from archlab.analysis.rounds import Spread
from archlab.analysis.runset import SETUP_ENDPOINT
from archlab.analysis.summary import latency_stats
from archlab.host import procs
from archlab.host.cpus import CpuPlan, format_cpu_list, pin_command, plan_cpus, set_affinity
from archlab.host.machine import usable_cpus
from archlab.run.generator import drive_load
from archlab.rundir import FLOOR, REQUESTS, default_runs_dir, iso, utc_now, write_json
from variants import placement
from variants.edge import servers
from workloads.scenarios import get_scenario, resolve_load

DEFAULT_RATES = (40.0, 100.0, 200.0, 400.0)
DEFAULT_SECONDS = 10.0
DEFAULT_ROUNDS = 3
CHECK_RATE = 40.0  # req/s: where the independent client cross-checks the lab's generator
WARMUP_S = 1.0  # as a run's: ceil(users / spawn_rate) of the open scenario
SPIN_S = 0.001  # the independent client spins the last millisecond before each intended start
PRODUCTS = 100  # the ids the client cycles through (the bare endpoint answers any id alike)
THREADS = 8  # the monolith's request threads
ENDPOINT = "/products/{id}"
CATALOG_PATH = "/products?page=1&page_size=100"  # what the shoppers learn ids from
SEED = 1
READY_TIMEOUT_S = 300.0
CLIENT_GRACE_S = 30.0
SCHEMA = 1
Echo = Callable[[str], None]


def default_server() -> str:
    """The HTTP server the monolith runs unless told otherwise (its `server` knob)."""
    return placement.load("monolith").server


# --- the independent client -----------------------------------------------------------------


def intended_times(start: float, rate: float, seconds: float) -> list[float]:
    """The open-loop schedule: one request every 1/rate s from `start`, for `seconds`."""
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")
    return [start + i / rate for i in range(round(rate * seconds))]


def wait_until(t: float, spin_s: float = SPIN_S) -> None:
    """Return at perf_counter time `t`: `time.sleep` wakes up late by up to a timer slack, so
    it sleeps until `spin_s` before and spins the rest."""
    delay = t - spin_s - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    while time.perf_counter() < t:
        pass


def run_client(url: str, rate: float, seconds: float, out: Path) -> int:
    """Drive `url` open-loop over one keep-alive connection; one CSV row per request:
    offset of its intended start (s), send lag (ms), latency (ms), HTTP status (0: none).

    One connection sends one request at a time, so an answer slower than the interval delays
    the next request; the lag column keeps that delay, as a corrected latency would.
    """
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    start = time.perf_counter() + 0.05
    rows: list[tuple[str, str, str, int]] = []
    for i, t in enumerate(intended_times(start, rate, seconds)):
        wait_until(t)
        sent = time.perf_counter()
        try:
            conn.request("GET", f"/products/{i % PRODUCTS + 1}")
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            conn.close()  # the next request opens a new connection
            status = 0
        done = time.perf_counter()
        rows.append((f"{t - start:.6f}", f"{(sent - t) * 1000:.4f}", f"{(done - sent) * 1000:.4f}",
                     status))  # fmt: skip
    conn.close()
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("offset_s", "lag_ms", "latency_ms", "status"))
        writer.writerows(rows)
    return 0


# --- the two measurements ---------------------------------------------------------------------


def _percentiles(latencies: Sequence[float]) -> dict[str, float]:
    stats = latency_stats(latencies)
    return {"p50": stats["p50"], "p99": stats["p99"]}


def lab_stats(records: Sequence[Record], warmup_s: float = WARMUP_S) -> dict[str, Any]:
    """The lab's `GET /products/{id}` after the warm-up: count, errors, achieved rate, and p50
    and p99 of observed latency, corrected latency and send lag (start - intended), in ms."""
    start = min((r.start_time for r in records), default=0.0) + warmup_s  # as summarize_run
    kept = [r for r in records if r.start_time >= start and r.endpoint != SETUP_ENDPOINT]
    end = max((r.end_time for r in kept), default=start)
    lags = [max(0.0, (r.start_time - r.intended_time) * 1000) for r in kept if r.intended_time]
    return {
        "count": len(kept),
        "errors": sum(1 for r in kept if r.status != 200 or r.error),
        "achieved_rps": round(len(kept) / (end - start), 2) if end > start else 0.0,
        "observed_ms": _percentiles([r.latency_ms for r in kept]),
        "corrected_ms": _percentiles([r.corrected_ms for r in kept]),
        "send_lag_ms": _percentiles(lags or [0.0]),
    }


def client_stats(path: Path, warmup_s: float = WARMUP_S) -> dict[str, Any]:
    """The independent client's rows after the warm-up, in `lab_stats`'s shape."""
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if float(r["offset_s"]) >= warmup_s]
    lags = [max(0.0, float(r["lag_ms"])) for r in rows]
    observed = [float(r["latency_ms"]) for r in rows]
    span = float(rows[-1]["offset_s"]) - float(rows[0]["offset_s"]) if len(rows) > 1 else 0.0
    return {
        "count": len(rows),
        "errors": sum(1 for r in rows if r["status"] != "200"),
        "achieved_rps": round((len(rows) - 1) / span, 2) if span > 0 else 0.0,
        "observed_ms": _percentiles(observed),
        "corrected_ms": _percentiles([a + b for a, b in zip(lags, observed, strict=True)]),
        "send_lag_ms": _percentiles(lags or [0.0]),
    }


def _lab_once(
    base_url: str, rate: float, seconds: float, cpus: CpuPlan, run_dir: Path, echo: Echo
) -> dict[str, Any]:
    """One open-loop run of the lab's generator, `GET /products/{id}` only."""
    run_dir.mkdir(parents=True)
    load = resolve_load(get_scenario("open"), rate=rate, generator_processes=cpus.processes)
    load = dataclasses.replace(load, weights={"view": 1})
    meta: dict[str, Any] = {"base_url": base_url, "processes": {}, "load": load.to_dict()}
    drive_load(
        run_dir,
        meta,
        load=load,
        seed=SEED,
        duration_s=math.ceil(WARMUP_S + seconds),
        processes=cpus.processes,
        cpus=cpus.generator,
        sample_interval_s=1.0,
        server_sampler=None,
        profiler=None,
        echo=lambda line: echo("  " + line.strip()),
    )
    return lab_stats(list(read_records(run_dir / REQUESTS)))


def _client_step(
    base_url: str,
    r: int,
    rounds: int,
    rate: float,
    seconds: float,
    cpus: CpuPlan,
    work: Path,
    echo: Echo,
) -> dict[str, Any]:
    """One run of the independent client, in its own process where the generator runs."""
    echo(f"round {r}/{rounds}: independent client at {rate:g} req/s ...")
    work = work / f"r{r}-client"
    work.mkdir(parents=True)
    out = work / "client.csv"
    cmd = [sys.executable, "-m", "archlab.run.floor", "client", base_url]
    cmd += ["--rate", f"{rate:g}", "--seconds", f"{WARMUP_S + seconds:g}", "--out", str(out)]
    with procs.running(
        pin_command(cmd, cpus.generator), name="floor client", log_path=work / "client.log"
    ) as proc:
        code = proc.popen.wait(timeout=WARMUP_S + seconds + CLIENT_GRACE_S)
    if code != 0 or not out.exists():
        raise procs.ProcessError(f"the independent client exited {code}:\n{proc.log_tail()}")
    return client_stats(out)


def save_bodies(
    server: str, size: str, work: Path, state: Path, cpus: CpuPlan
) -> tuple[Path, Path]:
    """The monolith's own answers to `GET /products/1` and the catalogue page, in files."""
    product, catalog = work / "product.json", work / "catalog.json"
    port = procs.free_port()
    cmd = [
        sys.executable, "-m", "variants.monolith", "--port", str(port), "--size", size,
        "--server", server, "--threads", str(THREADS), "--state-dir", str(state / "monolith"),
    ]  # fmt: skip
    with procs.running(
        pin_command(cmd, cpus.sut), name="monolith", log_path=work / "monolith.log"
    ) as proc:
        base = f"http://127.0.0.1:{port}"
        procs.wait_healthy(proc, f"{base}/healthz", READY_TIMEOUT_S)
        for path, file in (("/products/1", product), (CATALOG_PATH, catalog)):
            with urllib.request.urlopen(base + path, timeout=10) as resp:
                file.write_bytes(resp.read())
    return product, catalog


def _spread(values: Sequence[float], unit: str = "ms") -> dict[str, Any] | None:
    s = Spread.of(values)
    return None if s is None else {**dataclasses.asdict(s), "text": s.text("{:.3f}", unit)}


def _difference_pct(lab: dict[str, Any], client: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for kind in ("observed_ms", "corrected_ms"):
        for p in ("p50", "p99"):
            base = client[kind][p]
            key = f"{kind.removesuffix('_ms')}_{p}"
            out[key] = round(100 * (lab[kind][p] - base) / base, 1) if base else None
    return out


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds with their 95 % intervals: per rate the lab's, at CHECK_RATE the
    independent client's and the per-round difference lab - client in % of the client's."""
    keys = [(k, p) for k in ("observed_ms", "corrected_ms", "send_lag_ms") for p in ("p50", "p99")]
    lab = []
    for rate in report["rates"]:
        runs = report["lab"][f"{rate:g}"]
        row: dict[str, Any] = {"offered_rps": rate, "rounds": len(runs)}
        row["count"] = _spread([r["count"] for r in runs], "requests")
        row["achieved_rps"] = _spread([r["achieved_rps"] for r in runs], "req/s")
        for kind, p in keys:
            row[f"{kind.removesuffix('_ms')}_{p}_ms"] = _spread([r[kind][p] for r in runs])
        lab.append(row)
    independent = report["independent"]
    client: dict[str, Any] = {"offered_rps": independent["rate"]}
    for kind, p in keys:
        client[f"{kind.removesuffix('_ms')}_{p}_ms"] = _spread(
            [r[kind][p] for r in independent["runs"]]
        )
    diffs = independent["difference_pct"]
    difference = {k: _spread([d[k] for d in diffs if d[k] is not None], "%") for k in diffs[0]}
    return {"lab": lab, "independent": client, "difference_pct": difference}


def measure(
    rates: Sequence[float] = DEFAULT_RATES,
    seconds: float = DEFAULT_SECONDS,
    rounds: int = DEFAULT_ROUNDS,
    server: str | None = None,
    size: str = "tiny",
    out_path: Path | None = None,
    echo: Echo = print,
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """The floor at each rate over `rounds` interleaved rounds, and the cross-check; written to
    `out_path` (FLOOR) when given. Raw runs go to `work_dir` (a temporary folder if None)."""
    rates = sorted({float(r) for r in rates})
    if not rates or rates[0] <= 0 or seconds <= 0 or rounds < 1:
        raise ValueError("floor: positive --rates, --seconds above 0, --rounds at least 1")
    server = servers.check(server or default_server())
    check_rate = CHECK_RATE if CHECK_RATE in rates else rates[0]
    cpus = plan_cpus(usable_cpus())
    lab: dict[str, list[dict[str, Any]]] = {f"{r:g}": [] for r in rates}
    independent: list[dict[str, Any]] = []
    client: dict[str, Any] = {}
    differences: list[dict[str, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="archlab-floor-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        echo(f"saving the monolith's answers ({server}, dataset {size}) ...")
        product, catalog = save_bodies(server, size, work, Path(tmp), cpus)
        port = procs.free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable, "-m", "variants.bare", "--port", str(port), "--server", server,
            "--threads", str(THREADS), "--body", str(product), "--catalog", str(catalog),
        ]  # fmt: skip
        previous = set_affinity(cpus.generator)  # the harness beside the generator, as a run
        try:
            with procs.running(
                pin_command(cmd, cpus.sut), name="bare", log_path=work / "bare.log"
            ) as bare:
                procs.wait_healthy(bare, f"{base}/healthz", READY_TIMEOUT_S)
                for r in range(1, rounds + 1):
                    shift = (r - 1) % len(rates)  # each round starts at another rate
                    for rate in rates[shift:] + rates[:shift]:
                        client_first = rate == check_rate and r % 2 == 1  # ABBA with the lab's
                        if client_first:
                            client = _client_step(base, r, rounds, rate, seconds, cpus, work, echo)
                        echo(f"round {r}/{rounds}: lab generator at {rate:g} req/s ...")
                        stats = _lab_once(base, rate, seconds, cpus, work / f"r{r}-{rate:g}", echo)
                        lab[f"{rate:g}"].append({"round": r, **stats})
                        if rate != check_rate:
                            continue
                        if not client_first:
                            client = _client_step(base, r, rounds, rate, seconds, cpus, work, echo)
                        independent.append({"round": r, **client})
                        differences.append(_difference_pct(stats, client))
                        echo("  " + _pair_line(stats, client))
        finally:
            if previous is not None:
                set_affinity(previous)
        body_bytes = product.stat().st_size
        catalog_bytes = catalog.stat().st_size
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created_at": iso(utc_now()),
        "machine": {"cpu_count": os.cpu_count(), "usable_cpus": usable_cpus()},
        "cpu_pinning": cpus.to_dict(),
        "server": server,
        "threads": THREADS,
        "size": size,
        "endpoint": f"GET {ENDPOINT}",
        "body_bytes": body_bytes,
        "catalog_bytes": catalog_bytes,
        "rates": rates,
        "seconds": seconds,
        "warmup_s": WARMUP_S,
        "rounds": rounds,
        "generator": "the lab's: locust FastHttpUser, open loop (one arrival stream), recorder "
        "(archlab.run.generator.drive_load), weights {view: 1}",
        "client": f"independent: stdlib http.client, one keep-alive connection, open loop on "
        f"time.perf_counter (sleep, then spin the last {SPIN_S * 1000:g} ms)",
        "lab": lab,
        "independent": {"rate": check_rate, "runs": independent, "difference_pct": differences},
    }
    report["summary"] = summarize(report)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(out_path, report)
    return report


def _pair_line(lab: dict[str, Any], client: dict[str, Any]) -> str:
    lo, co = lab["observed_ms"], client["observed_ms"]
    return (
        f"lab p50/p99 {lo['p50']:.3f}/{lo['p99']:.3f} ms vs independent "
        f"{co['p50']:.3f}/{co['p99']:.3f} ms (observed)"
    )


# --- the table and the command line ----------------------------------------------------------


def _cell(spread: dict[str, Any] | None, fmt: str = "{:.3f}") -> str:
    if spread is None:
        return "n/a"
    if spread["rounds"] < 2:
        return fmt.format(spread["median"])
    lo, hi = fmt.format(spread["ci_low"]), fmt.format(spread["ci_high"])
    return f"{fmt.format(spread['median'])} [{lo}, {hi}]"


def format_table(report: dict[str, Any]) -> str:
    """The floor per rate, then the cross-check, medians [95 % interval] over the rounds."""
    s = report["summary"]
    head = (
        f"{'req/s':>6} {'achieved':>9} {'p50 ms':>21} {'p99 ms':>21} {'corr. p99 ms':>21} "
        f"{'send lag p50 ms':>21} {'send lag p99 ms':>21}"
    )
    lines = [
        f"the floor: the lab's generator against the bare endpoint ({report['server']}), "
        f"GET {ENDPOINT}",
        head,
        "-" * len(head),
    ]
    for row in s["lab"]:
        lines.append(
            f"{row['offered_rps']:>6g} {_cell(row['achieved_rps'], '{:.1f}').split(' ')[0]:>9} "
            f"{_cell(row['observed_p50_ms']):>21} {_cell(row['observed_p99_ms']):>21} "
            f"{_cell(row['corrected_p99_ms']):>21} {_cell(row['send_lag_p50_ms']):>21} "
            f"{_cell(row['send_lag_p99_ms']):>21}"
        )
    ind, diff = s["independent"], s["difference_pct"]
    rate = ind["offered_rps"]
    lab = next(row for row in s["lab"] if row["offered_rps"] == rate)
    lines += [
        "",
        f"cross-check at {rate:g} req/s: {'':<26} {'p50 ms':>21} {'p99 ms':>21}",
        f"  lab generator (locust), observed    {'':<1}{_cell(lab['observed_p50_ms']):>21} "
        f"{_cell(lab['observed_p99_ms']):>21}",
        f"  independent (http.client), observed {'':<1}{_cell(ind['observed_p50_ms']):>21} "
        f"{_cell(ind['observed_p99_ms']):>21}",
        f"  lab - independent, % of independent {'':<1}"
        f"{_cell(diff.get('observed_p50'), '{:+.1f}'):>21} "
        f"{_cell(diff.get('observed_p99'), '{:+.1f}'):>21}",
        f"  same, corrected (incl. send lag)    {'':<1}"
        f"{_cell(diff.get('corrected_p50'), '{:+.1f}'):>21} "
        f"{_cell(diff.get('corrected_p99'), '{:+.1f}'):>21}",
        "",
        f"medians [95 % interval] over {report['rounds']} interleaved rounds of "
        f"{report['seconds']:g} s (first {report['warmup_s']:g} s left out); HDR percentiles; "
        f"{_pinning(report['cpu_pinning'])}; {report['machine']['cpu_count']} CPUs; "
        f"body {report['body_bytes']} B",
    ]
    return "\n".join(lines)


def _pinning(pinning: dict[str, Any]) -> str:
    if pinning.get("server") is None:
        return "server and generator unpinned (share the CPUs, as a run on this machine)"
    return (
        f"server on CPU {format_cpu_list(pinning['server'])}, generator and independent client "
        f"on CPU {format_cpu_list(pinning['generator'])}"
    )


def parse_rates(text: str) -> list[float]:
    """'40,100,200' -> [40.0, 100.0, 200.0]; ValueError for anything but positive numbers."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--rates: comma-separated req/s, got {text!r}") from None
    if not rates or min(rates) <= 0:
        raise ValueError(f"--rates: positive req/s, got {text!r}")
    return rates


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `bench floor`, as their own group of `archlab bench`."""
    group = parser.add_argument_group(
        "floor",
        "the lab's load generator (locust + recorder, open loop, GET /products/{id} only) "
        "against the bare endpoint at each --rates for --seconds, in --rounds interleaved "
        f"rounds (default {DEFAULT_ROUNDS}), and an independent stdlib http.client at "
        f"{CHECK_RATE:g} req/s beside it: the latency floor of every figure and the generator's "
        "own share of it. The bodies are the monolith's answers at --size; --out FOLDER keeps "
        "floor.json and the raw runs there (default: results/runs/floor-<UTC time>)",
    )
    group.add_argument(
        "--rates",
        default=",".join(f"{r:g}" for r in DEFAULT_RATES),
        help="floor: offered rates in req/s, comma-separated (default: %(default)s)",
    )
    group.add_argument(
        "--server",
        choices=servers.SERVERS,
        default=None,
        help="floor: the bare endpoint's HTTP server (default: the monolith's server knob, "
        f"{servers.DEFAULT_SERVER})",
    )


def main(args: argparse.Namespace) -> int:
    """`archlab bench floor`: progress on stderr, the table (or JSON) on stdout."""
    rates = parse_rates(args.rates)
    rounds = DEFAULT_ROUNDS if args.rounds is None else args.rounds
    if rounds < 1 or args.seconds <= 0:
        raise ValueError("bench floor: --rounds at least 1, --seconds above 0")
    out = args.out or default_runs_dir() / f"floor-{utc_now():%Y%m%d-%H%M%S}"
    n = rounds * (len(rates) + 1)
    print(
        f"{n} measurements of {WARMUP_S + args.seconds:g} s ({rounds} rounds x {len(rates)} "
        f"rates + the independent client), about {math.ceil(n * (args.seconds + 6) / 60)} min",
        file=sys.stderr,
    )
    report = measure(
        rates,
        args.seconds,
        rounds,
        args.server,
        args.size,
        out / FLOOR,
        lambda t: print(t, file=sys.stderr, flush=True),
        work_dir=out,
    )
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    print(f"written: {out / FLOOR}", file=sys.stderr)
    return 0


def _client_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m archlab.run.floor client",
        description="The independent client: stdlib http.client, open loop, one connection.",
    )
    p.add_argument("url", help="http://127.0.0.1:PORT of an endpoint answering /products/{id}")
    p.add_argument("--rate", type=float, required=True, help="requests/s")
    p.add_argument("--seconds", type=float, required=True, help="how long")
    p.add_argument("--out", type=Path, required=True, help="CSV of one row per request")
    args = p.parse_args(argv)
    return run_client(args.url, args.rate, args.seconds, args.out)


if __name__ == "__main__":
    if sys.argv[1:2] != ["client"]:
        sys.exit("usage: python -m archlab.run.floor client URL --rate R --seconds S --out F")
    sys.exit(_client_main(sys.argv[2:]))
