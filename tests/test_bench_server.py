"""`archlab bench server`: the bare endpoint is the edge's HTTP stack with no domain, and the
bench reads wrk's output and compares monolith with bare per server as documented."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

from archlab.bench import server as bench
from archlab.host import procs
from variants.edge import servers

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.24ms  210.11us   5.01ms   80.12%
  Latency Distribution (HdrHistogram - Recorded Latency)
 50.000%    1.20ms
 75.000%    1.31ms
 99.000%  812.00us
  43631 requests in 10.00s, 17.03MB read
Requests/sec:   4363.10
Transfer/sec:      1.70MB
"""


def test_wrk_output_gives_throughput_and_percentiles_in_ms() -> None:
    assert bench.parse_wrk(WRK_OUTPUT) == {"rps": 4363.1, "p50_ms": 1.2, "p99_ms": 0.812}
    with pytest.raises(bench.BenchError, match="no Requests/sec"):
        bench.parse_wrk("unable to connect to 127.0.0.1:8000 Connection refused")


def test_the_ratio_is_the_median_of_each_rounds_monolith_over_bare() -> None:
    pair = {
        "monolith": [{"rps": 900.0}, {"rps": 450.0}, {"rps": 800.0}],
        "bare": [{"rps": 1000.0}, {"rps": 1000.0}, {"rps": 1000.0}],
    }
    s = bench.summarize(pair)
    assert (s["ratio"], s["ratio_min"], s["ratio_max"]) == (0.8, 0.45, 0.9)
    assert s["monolith"]["rps"] == 800.0 and s["bare"]["rps_min"] == 1000.0


@pytest.mark.parametrize("server", servers.SERVERS)
def test_the_bare_endpoint_answers_the_saved_body_for_any_product(
    server: str, tmp_path: Path
) -> None:
    body = tmp_path / "product.json"
    body.write_bytes(b'{"product":{"id":1},"stock":3}')
    port = procs.free_port()
    cmd = [sys.executable, "-m", "variants.bare", "--port", str(port), "--server", server]
    cmd += ["--body", str(body)]
    with procs.running(cmd, name="bare", log_path=tmp_path / "bare.log") as proc:
        procs.wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", 60)
        for pid in (1, 77):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/products/{pid}") as resp:
                assert resp.read() == body.read_bytes()
                assert resp.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("bad", [["--rounds", "0"], ["--threads", "0"]])
def test_bad_rounds_or_threads_are_one_line_and_exit_2(bad: list[str]) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "archlab.cli", "bench", "server", *bad],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "archlab: error: bench server: --rounds and --threads at least 1, --seconds above 0"
    ]
