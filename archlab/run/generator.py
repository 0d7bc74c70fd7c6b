"""The load generator of a run: locust headless, the workload's shoppers and the recorder.

locust loads two files: `workloads/locustfile.py` (what the shoppers do) and
`archlab/measure/recorder.py` (a plugin that writes requests.csv and ledger.csv from locust's
request events). The harness never imports the recorder (importing locust monkey-patches the
process with gevent); it passes its path, and the files to write, through the environment.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import workloads
from archlab import measure
from archlab.host import procs
from archlab.host.cpus import pin_command
from archlab.measure.profiler import Profiler
from archlab.measure.sampler import ProcessSampler, sampling
from archlab.rundir import (
    ENV_LEDGER,
    ENV_RECORDS,
    GENERATOR_CPU,
    LEDGER,
    LOCUST_CSV_PREFIX,
    LOCUST_HTML,
    LOCUST_LOG,
    REQUESTS,
    start_csv,
    write_meta,
)
from workloads.scenarios import ENV_LOAD, ENV_SCENARIO, ENV_SEED, LoadSpec

LOCUSTFILE = Path(workloads.__file__).resolve().parent / "locustfile.py"
RECORDER = Path(measure.__file__).resolve().parent / "recorder.py"
LOCUST_GRACE_S = 60.0  # locust's start-up and shutdown on top of --run-time
PROGRESS_EVERY_S = 5.0

Echo = Callable[[str], None]


def locust_command(
    base_url: str,
    load: LoadSpec,
    duration_s: int,
    processes: int = 1,
    run_dir: Path | None = None,
) -> list[str]:
    """locust headless against base_url; a ramp's LoadTestShape replaces -u/-r/-t.

    With run_dir, locust also keeps its own HTML report and stats CSVs there (LOCUST_HTML,
    LOCUST_CSV_PREFIX_*.csv): its view of the run, rounded, for cross-checking ours.
    """
    cmd = [sys.executable, "-m", "locust", "-f", f"{LOCUSTFILE},{RECORDER}", "--headless"]
    if not load.steps:
        cmd += ["-u", str(load.users), "-r", str(load.spawn_rate), "-t", f"{duration_s}s"]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    cmd += [
        "--host", base_url,
        "--only-summary",
        "--exit-code-on-error", "0",  # failed requests are data; a non-zero exit is a crash
        "--loglevel", "INFO",
    ]  # fmt: skip
    if run_dir is not None:
        # absolute: the same files whatever folder locust runs in
        cmd += ["--html", str(run_dir.resolve() / LOCUST_HTML)]
        cmd += ["--csv", str(run_dir.resolve() / LOCUST_CSV_PREFIX)]
    return cmd


def locust_env(
    records: Path, load: LoadSpec, seed: int, ledger: Path | None = None
) -> dict[str, str]:
    """The environment the shoppers (workloads/locustfile.py) and the recorder read; paths
    absolute, since locust runs in the run folder (a relative `--results-dir` would not be)."""
    env = {**os.environ}
    env.pop(ENV_LEDGER, None)
    if ledger is not None:
        env[ENV_LEDGER] = str(ledger.resolve())
    return {
        **env,
        ENV_RECORDS: str(records.resolve()),
        ENV_SCENARIO: load.scenario,
        ENV_LOAD: load.to_json(),
        ENV_SEED: str(seed),
    }


class LineCounter:
    """Counts lines appended to a growing file, reading only the new bytes each time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return 0
        self.offset += len(chunk)
        self.lines += chunk.count(b"\n")
        return max(0, self.lines - 1)  # minus the header


def drive_load(
    run_dir: Path,
    meta: dict[str, Any],
    *,
    load: LoadSpec,
    seed: int,
    duration_s: int,
    processes: int,
    cpus: list[int] | None,
    sample_interval_s: float,
    server_sampler: ProcessSampler | None,
    profiler: Profiler | None,
    echo: Echo,
) -> None:
    """Run locust headless for the run's duration, printing progress; raise if it fails.

    `server_sampler` None: the server's CPU is not known (a --target run).
    """
    records = run_dir / REQUESTS
    start_csv(records)
    ledger = run_dir / LEDGER
    start_csv(ledger)
    env = locust_env(records, load, seed, ledger)
    cmd = pin_command(
        locust_command(meta["base_url"], load, duration_s, processes, run_dir=run_dir), cpus
    )
    log = run_dir / LOCUST_LOG
    with (
        procs.running(cmd, name="locust", log_path=log, env=env, cwd=run_dir) as loc,
        sampling(loc.pid, run_dir / GENERATOR_CPU, sample_interval_s) as sampler,
    ):
        meta["processes"]["locust"] = {"pid": loc.pid, "pgid": loc.pgid, "command": cmd}
        write_meta(run_dir, meta)
        counter = LineCounter(records)
        start = time.monotonic()
        next_report, last_count, last_t = start + PROGRESS_EVERY_S, 0, start
        while loc.popen.poll() is None:
            now = time.monotonic()
            if profiler is not None:
                profiler.poll(now - start)
            if now - start > duration_s + LOCUST_GRACE_S:
                raise procs.ProcessError(
                    f"locust still running {now - start:.0f} s after a {duration_s} s run.\n"
                    f"--- last lines of {log} ---\n{loc.log_tail()}"
                )
            if now >= next_report:
                count = counter.count()
                rate = (count - last_count) / (now - last_t)
                gen = sum(sampler.latest.values())
                sut = (
                    "   -"
                    if server_sampler is None
                    else f"{sum(server_sampler.latest.values()):4.0f}%"
                )
                echo(
                    f"  {now - start:4.0f} s / {duration_s} s   requests {count:>8}"
                    f"   {rate:7.1f}/s   CPU: server {sut}  generator {gen:4.0f}%"
                )
                next_report, last_count, last_t = now + PROGRESS_EVERY_S, count, now
            time.sleep(0.1)
    meta["locust_exit_code"] = loc.popen.returncode
    if loc.popen.returncode != 0:
        raise procs.ProcessError(
            f"locust exited with code {loc.popen.returncode}.\n"
            f"--- last lines of {log} ---\n{loc.log_tail()}"
        )
