"""One measured run: start a variant, drive locust against it, stop both, write the results.

Layout of a run directory: results/README.md. `execute` is the only entry point; the CLI and
`reproduce` build RunPlans and call it, so a matrix of runs is a list of plans.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

import workloads
from archlab import procs
from archlab.meta import iso, new_meta, repo_root, utc_now, write_meta
from archlab.sampler import sampling
from archlab.summary import format_table, summarize_run, write_summary
from archlab.variants import get_variant
from workloads.scenarios import get_scenario
from workloads.shop.config import ShopConfig

LOCUSTFILE = Path(workloads.__file__).resolve().parent / "locustfile.py"
LOCUST_GRACE_S = 60.0  # locust's start-up and shutdown on top of --run-time
PROGRESS_EVERY_S = 5.0

Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunPlan:
    """What to run. None for users/spawn_rate means the scenario's default."""

    variant: str
    scenario: str = "steady"
    duration_s: int = 30
    size: str = "tiny"
    seed: int = 1
    users: int | None = None
    spawn_rate: float | None = None
    knobs: Mapping[str, int | str | None] = field(default_factory=dict)
    warmup_s: float | None = None  # None: the spawn ramp, ceil(users / spawn_rate)
    run_id: str | None = None
    ready_timeout_s: float = 300.0
    keep_state: bool = True


@dataclass
class RunResult:
    run_dir: Path
    status: str
    summary: dict[str, Any] | None


def default_results_dir() -> Path:
    """results/runs of the source checkout when there is one, else ./results/runs."""
    root = repo_root()
    return (root if root else Path.cwd()) / "results" / "runs"


def parse_duration(text: str) -> int:
    """Seconds from '90', '90s', '2m', '1m30s' or '1h' (locust's --run-time style)."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or not match:
        raise ValueError(f"bad duration {text!r}; use e.g. 30s, 2m, 1m30s")
    h, m, s = (int(g) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s


def make_run_dir(results_dir: Path, variant: str, scenario: str, run_id: str | None) -> Path:
    """Create results_dir/<run-id>; the default id is <UTC time>-<variant>-<scenario>[-N]."""
    results_dir.mkdir(parents=True, exist_ok=True)
    if run_id is not None:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", run_id):
            raise ValueError(f"run id {run_id!r} may only contain letters, digits, '.', '_', '-'")
        path = results_dir / run_id
        path.mkdir()  # an existing run is never overwritten
        return path
    base = f"{utc_now():%Y%m%d-%H%M%S}-{variant}-{scenario}"
    for n in range(1, 1000):
        path = results_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"too many runs named {base}")


class _LineCounter:
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


def _locust_command(base_url: str, users: int, spawn_rate: float, duration_s: int) -> list[str]:
    return [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--headless",
        "-u", str(users),
        "-r", str(spawn_rate),
        "-t", f"{duration_s}s",
        "--host", base_url,
        "--only-summary",
        "--exit-code-on-error", "0",  # failed requests are data; a non-zero exit is a crash
        "--loglevel", "INFO",
    ]  # fmt: skip


def _drive_load(
    run_dir: Path, meta: dict[str, Any], plan: RunPlan, users: int, spawn_rate: float, echo: Echo
) -> None:
    """Run locust headless for the plan's duration, printing progress; raise if it fails."""
    records = run_dir / "requests.csv"
    env = {
        **os.environ,
        "ARCHLAB_RECORDS": str(records),
        "ARCHLAB_SCENARIO": plan.scenario,
        "ARCHLAB_SEED": str(plan.seed),
    }
    cmd = _locust_command(meta["base_url"], users, spawn_rate, plan.duration_s)
    log = run_dir / "locust.log"
    with (
        procs.running(cmd, name="locust", log_path=log, env=env, cwd=run_dir) as loc,
        sampling(loc.pid, run_dir / "generator_cpu.csv") as sampler,
    ):
        meta["processes"]["locust"] = {"pid": loc.pid, "pgid": loc.pgid, "command": cmd}
        write_meta(run_dir, meta)
        counter = _LineCounter(records)
        start = time.monotonic()
        next_report, last_count, last_t = start + PROGRESS_EVERY_S, 0, start
        while loc.popen.poll() is None:
            now = time.monotonic()
            if now - start > plan.duration_s + LOCUST_GRACE_S:
                raise procs.ProcessError(
                    f"locust still running {now - start:.0f} s after a {plan.duration_s} s run.\n"
                    f"--- last lines of {log} ---\n{loc.log_tail()}"
                )
            if now >= next_report:
                count = counter.count()
                rate = (count - last_count) / (now - last_t)
                cpu = sum(sampler.latest.values())
                echo(
                    f"  {now - start:4.0f} s / {plan.duration_s} s   requests {count:>8}"
                    f"   {rate:7.1f}/s   generator CPU {cpu:3.0f}%"
                )
                next_report, last_count, last_t = now + PROGRESS_EVERY_S, count, now
            time.sleep(0.1)
    meta["locust_exit_code"] = loc.popen.returncode
    if loc.popen.returncode != 0:
        raise procs.ProcessError(
            f"locust exited with code {loc.popen.returncode}.\n"
            f"--- last lines of {log} ---\n{loc.log_tail()}"
        )


def execute(
    plan: RunPlan,
    results_dir: Path | None = None,
    *,
    echo: Echo = print,
    argv: list[str] | None = None,
) -> RunResult:
    """Run `plan` and write its run directory. Children are stopped whatever happens."""
    spec = get_variant(plan.variant)
    scenario = get_scenario(plan.scenario)
    knobs = spec.resolve_knobs(plan.knobs)
    users = plan.users if plan.users is not None else scenario.users
    spawn_rate = plan.spawn_rate if plan.spawn_rate is not None else scenario.spawn_rate
    warmup_s = plan.warmup_s if plan.warmup_s is not None else math.ceil(users / spawn_rate)
    if warmup_s >= plan.duration_s:
        raise ValueError(
            f"warm-up ({warmup_s} s) must be shorter than the run ({plan.duration_s} s)"
        )
    results_dir = results_dir or default_results_dir()
    run_dir = make_run_dir(results_dir, plan.variant, plan.scenario, plan.run_id)
    state_dir = run_dir / "state"
    state_dir.mkdir()
    port = procs.free_port()
    base_url = f"http://127.0.0.1:{port}"
    meta = new_meta(
        run_id=run_dir.name,
        variant=plan.variant,
        module=spec.module,
        knobs=knobs,
        scenario=scenario.to_dict(),
        seed=plan.seed,
        size=plan.size,
        duration_s=plan.duration_s,
        users=users,
        spawn_rate=spawn_rate,
        base_url=base_url,
        started_at=utc_now(),
        argv=argv,
    )
    meta["warmup_s"] = warmup_s
    meta["shop_config"] = msgspec.to_builtins(ShopConfig())  # the domain's knobs, as served
    write_meta(run_dir, meta)
    echo(f"run {run_dir.name}: {plan.variant} {knobs} size={plan.size} seed={plan.seed}")
    echo(f"  scenario {plan.scenario}: {users} users for {plan.duration_s} s -> {run_dir}")
    for note in meta["notes"]:
        echo(f"  note: {note}")
    cmd = spec.command(port=port, size=plan.size, seed=plan.seed, state_dir=state_dir, knobs=knobs)
    summary = None
    try:
        with procs.running(
            cmd, name=f"{plan.variant} server", log_path=run_dir / "server.log"
        ) as server:
            meta["processes"]["server"] = {"pid": server.pid, "pgid": server.pgid, "command": cmd}
            meta["status"] = "waiting for /healthz"
            write_meta(run_dir, meta)
            echo(f"  waiting for {base_url}/healthz (up to {plan.ready_timeout_s:.0f} s) ...")
            t0 = time.monotonic()
            meta["health"] = procs.wait_healthy(server, f"{base_url}/healthz", plan.ready_timeout_s)
            meta["server_ready_s"] = round(time.monotonic() - t0, 3)
            meta["status"] = "running"
            meta["load_started_at"] = iso(utc_now())
            echo(f"  ready after {meta['server_ready_s']:.1f} s; driving load")
            _drive_load(run_dir, meta, plan, users, spawn_rate, echo)
            meta["load_ended_at"] = iso(utc_now())
            if not server.alive():
                raise procs.ProcessError(
                    f"the server exited (code {server.popen.returncode}) during the run.\n"
                    f"--- last lines of server.log ---\n{server.log_tail()}"
                )
        meta["server_exit_code"] = server.popen.returncode
        meta["status"] = "completed"
    except KeyboardInterrupt:
        meta["status"] = "interrupted"
        raise
    except BaseException as exc:
        meta["status"] = "failed"
        meta["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        meta["ended_at"] = iso(utc_now())
        if (run_dir / "requests.csv").exists():
            try:
                summary = summarize_run(run_dir, warmup_s=warmup_s)
                write_summary(run_dir, summary)
            except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome
                meta["summary_error"] = f"{type(exc).__name__}: {exc}"
        if not plan.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
        write_meta(run_dir, meta)
        if summary is not None:
            echo("\n" + format_table(summary))
        echo(f"\nresults ({meta['status']}): {run_dir}")
    return RunResult(run_dir=run_dir, status=meta["status"], summary=summary)


def reproduce_plans() -> list[RunPlan]:
    """The runs behind the published figures (later issues grow this into a matrix)."""
    return [RunPlan(variant="monolith", scenario="steady", duration_s=60, size="small")]


def reproduce(results_dir: Path | None = None, *, echo: Echo = print) -> list[RunResult]:
    """Run every plan of `reproduce_plans` in turn and list where the results are."""
    results = []
    plans = reproduce_plans()
    for i, plan in enumerate(plans, start=1):
        echo(f"=== reproduce {i}/{len(plans)}: {plan.variant} / {plan.scenario} / {plan.size}")
        results.append(execute(plan, results_dir, echo=echo))
    echo("\nreproduced runs:")
    for result in results:
        echo(f"  {result.status:<10} {result.run_dir}")
    return results
