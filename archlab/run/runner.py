"""One measured run: start a variant, drive locust against it, stop both, write the results.

Layout of a run directory: results/README.md. `execute` is the only entry point; the CLI and
`reproduce` build RunPlans and call it, so a matrix of runs is a list of plans.

What runs, and where:

- the variant, in its own process group, pinned to the server CPUs (when pinned), with
  `ARCHLAB_TELEMETRY_DIR=<run>/telemetry` so each of its processes declares its role and records
  its GC pauses (`variants/telemetry.py`); a `ProcessSampler` follows its whole process tree;
- locust (one process, or a master and N workers with `--processes`), in its own group, pinned
  to the generator CPUs, watched by a `TreeSampler`;
- optionally py-spy on the variant's tree (`--profile`), pinned to the generator CPUs.

The harness itself moves to the generator CPUs for the run. Every child is stopped whatever
happens; afterwards the GC files are merged, the variant's lifecycle log copied, and the summary
written.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

import workloads
from archlab.analysis.records import RECORD_COLUMNS
from archlab.analysis.summary import format_table, summarize_run, write_summary
from archlab.deployers import get_variant
from archlab.machine import usable_cpus
from archlab.measure import gcdata, integrity
from archlab.measure.profiler import ProfilePlan, Profiler, format_top_frames, read_top_frames
from archlab.measure.sampler import ProcessSampler, sampling, sampling_processes
from archlab.run import fault_schedule, procs, restart
from archlab.run.cpus import CpuPlan, format_cpu_list, pin_command, plan_cpus, set_affinity
from archlab.rundir import iso, new_meta, results_root, utc_now, write_meta
from variants import cli, telemetry
from variants import faults as fault_control
from workloads.scenarios import LoadSpec, get_scenario, resolve_load

LOCUSTFILE = Path(workloads.__file__).resolve().parent / "locustfile.py"
LOCUST_GRACE_S = 60.0  # locust's start-up and shutdown on top of --run-time
PROGRESS_EVERY_S = 5.0
DEFAULT_DURATION_S = 30
TELEMETRY_DIR = "telemetry"
LIFECYCLE_FILE = "lifecycle.jsonl"  # written by a variant into its state dir, if it has one
FAILED_INVARIANTS = "failed-invariants"  # the run completed but lost or corrupted data

Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunPlan:
    """What to run. None means: the scenario's default (or, for CPUs, the machine's)."""

    variant: str
    scenario: str = "steady"
    duration_s: int | None = None  # None: a ramp's own length, else DEFAULT_DURATION_S
    size: str = "tiny"
    seed: int = 1
    users: int | None = None
    spawn_rate: float | None = None
    knobs: Mapping[str, int | str | None] = field(default_factory=dict)
    warmup_s: float | None = None  # None: the spawn ramp, ceil(users / spawn_rate); 0 for ramps
    run_id: str | None = None
    ready_timeout_s: float = 300.0
    keep_state: bool = True
    # load shape overrides
    rate: float | None = None  # open loop at this many requests/s
    max_in_flight: int | None = None
    steps: tuple[int, ...] | None = None
    step_s: float | None = None
    # generator hygiene
    processes: int | None = None
    sut_cpus: list[int] | None = None
    gen_cpus: list[int] | None = None
    pin: bool = True
    # instruments
    sample_interval_s: float = 1.0
    window_s: float | None = None
    gc_telemetry: bool = True
    profile: ProfilePlan | None = None
    # invariants: how long to wait for the notifications to drain the outbox after the load
    drain_timeout_s: float = integrity.DRAIN_TIMEOUT_S


@dataclass
class RunResult:
    run_dir: Path
    status: str
    summary: dict[str, Any] | None


def default_results_dir() -> Path:
    """results/runs of the source checkout when there is one, else ./results/runs."""
    return results_root() / "runs"


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


def locust_command(base_url: str, load: LoadSpec, duration_s: int, processes: int = 1) -> list[str]:
    """locust headless against base_url; a ramp's LoadTestShape replaces -u/-r/-t."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
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
    return cmd


def locust_env(
    records: Path, load: LoadSpec, seed: int, ledger: Path | None = None
) -> dict[str, str]:
    """The environment the locustfile reads (see workloads/locustfile.py)."""
    env = {**os.environ}
    env.pop("ARCHLAB_LEDGER", None)
    if ledger is not None:
        env["ARCHLAB_LEDGER"] = str(ledger)
    return {
        **env,
        "ARCHLAB_RECORDS": str(records),
        "ARCHLAB_SCENARIO": load.scenario,
        "ARCHLAB_LOAD": load.to_json(),
        "ARCHLAB_SEED": str(seed),
    }


def start_records(path: Path) -> None:
    """Create requests.csv with its header; locust processes append whole lines to it."""
    path.write_text(",".join(RECORD_COLUMNS) + "\n")


def _drive_load(
    run_dir: Path,
    meta: dict[str, Any],
    plan: RunPlan,
    load: LoadSpec,
    duration_s: int,
    cpus: CpuPlan,
    server_sampler: ProcessSampler,
    profiler: Profiler | None,
    echo: Echo,
) -> None:
    """Run locust headless for the plan's duration, printing progress; raise if it fails."""
    records = run_dir / "requests.csv"
    start_records(records)
    ledger = run_dir / integrity.LEDGER_FILE
    integrity.start_ledger(ledger)
    env = locust_env(records, load, plan.seed, ledger)
    cmd = pin_command(
        locust_command(meta["base_url"], load, duration_s, cpus.processes), cpus.generator
    )
    log = run_dir / "locust.log"
    with (
        procs.running(cmd, name="locust", log_path=log, env=env, cwd=run_dir) as loc,
        sampling(loc.pid, run_dir / "generator_cpu.csv", plan.sample_interval_s) as sampler,
    ):
        meta["processes"]["locust"] = {"pid": loc.pid, "pgid": loc.pgid, "command": cmd}
        write_meta(run_dir, meta)
        counter = _LineCounter(records)
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
                sut = sum(server_sampler.latest.values())
                echo(
                    f"  {now - start:4.0f} s / {duration_s} s   requests {count:>8}"
                    f"   {rate:7.1f}/s   CPU: server {sut:4.0f}%  generator {gen:4.0f}%"
                )
                next_report, last_count, last_t = now + PROGRESS_EVERY_S, count, now
            time.sleep(0.1)
    meta["locust_exit_code"] = loc.popen.returncode
    if loc.popen.returncode != 0:
        raise procs.ProcessError(
            f"locust exited with code {loc.popen.returncode}.\n"
            f"--- last lines of {log} ---\n{loc.log_tail()}"
        )


@contextlib.contextmanager
def _pinned(cpus: list[int] | None) -> Iterator[None]:
    """Run the harness itself (and the threads it starts) on `cpus` for the block."""
    previous = set_affinity(cpus)
    try:
        yield
    finally:
        if previous is not None:
            set_affinity(previous)


def _describe_generator(load: LoadSpec, cpus: CpuPlan) -> str:
    if load.loop == "open":
        shape = f"open loop, {load.users} arrival stream(s) of {load.rate_per_user:g} req/s"
    else:
        shape = "closed loop"
    if load.steps:
        shape += f", step ramp {list(load.steps)} users x {load.step_s:g} s"
    procs_text = "1 process" if cpus.processes == 1 else f"master + {cpus.processes} workers"
    return f"locust FastHttpUser, {shape}, headless, {procs_text}"


def _roles_seen(run_dir: Path) -> dict[int, str]:
    """pid -> role from roles.csv, overlaid with the sampler's last label per pid."""
    roles = gcdata.read_roles(run_dir / "roles.csv")
    path = run_dir / "processes.csv"
    if path.exists():
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                with contextlib.suppress(KeyError, ValueError):
                    roles.setdefault(int(row["pid"]), row["role"])
    return roles


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
    cpus = plan_cpus(
        usable_cpus(),
        sut=plan.sut_cpus,
        generator=plan.gen_cpus,
        processes=plan.processes,
        pin=plan.pin,
    )
    load = resolve_load(
        scenario,
        users=plan.users,
        spawn_rate=plan.spawn_rate,
        rate=plan.rate,
        max_in_flight=plan.max_in_flight,
        steps=plan.steps,
        step_s=plan.step_s,
        generator_processes=cpus.processes,
    )
    if load.ramp_s is not None:
        if plan.duration_s is not None and plan.duration_s != load.ramp_s:
            raise ValueError(
                f"a step ramp lasts len(steps) x step_s = {load.ramp_s} s; drop --duration "
                "or change --steps/--step-s"
            )
        duration_s = load.ramp_s
    else:
        duration_s = plan.duration_s if plan.duration_s is not None else DEFAULT_DURATION_S
    if plan.warmup_s is not None:
        warmup_s = plan.warmup_s
    else:
        warmup_s = 0 if load.steps else math.ceil(load.users / load.spawn_rate)
    if warmup_s >= duration_s:
        raise ValueError(f"warm-up ({warmup_s} s) must be shorter than the run ({duration_s} s)")
    if plan.sample_interval_s <= 0:
        raise ValueError("--sample-interval must be positive")
    results_dir = results_dir or default_results_dir()
    run_dir = make_run_dir(results_dir, plan.variant, plan.scenario, plan.run_id)
    state_dir = run_dir / "state"
    state_dir.mkdir()
    telemetry_dir = run_dir / TELEMETRY_DIR
    telemetry_dir.mkdir()
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
        duration_s=duration_s,
        users=load.users,
        spawn_rate=load.spawn_rate,
        base_url=base_url,
        started_at=utc_now(),
        argv=argv,
        load=load.to_dict(),
        cpu_pinning=cpus.to_dict(),
        load_generator=_describe_generator(load, cpus),
        notes=cpus.notes,
    )
    meta["warmup_s"] = warmup_s
    server_args = [a for k, v in scenario.server_args.items() for a in (f"--{k}", str(v))]
    # The domain's knobs as the variant will read them: parsed by the deployers' own parser.
    served, _ = cli.deployer_parser("", "", "").parse_known_args(server_args)
    meta["shop_config"] = msgspec.to_builtins(cli.shop_config(served))
    meta["telemetry"] = {
        "gc": plan.gc_telemetry,
        "sample_interval_s": plan.sample_interval_s,
        "window_s": plan.window_s,
    }
    meta["profile"] = {"enabled": False}
    write_meta(run_dir, meta)
    echo(f"run {run_dir.name}: {plan.variant} {knobs} size={plan.size} seed={plan.seed}")
    echo(f"  {meta['load_generator']} for {duration_s} s -> {run_dir}")
    if cpus.sut is not None and cpus.generator is not None:
        echo(
            f"  pinned: server CPUs {format_cpu_list(cpus.sut)}, "
            f"generator CPUs {format_cpu_list(cpus.generator)}"
        )
    for note in meta["notes"]:
        echo(f"  note: {note}")
    cmd = pin_command(
        spec.command(port=port, size=plan.size, seed=plan.seed, state_dir=state_dir, knobs=knobs),
        cpus.sut,
    )
    cmd += server_args
    faults_dir = state_dir / fault_schedule.FAULTS_DIR
    server_env = {**os.environ, telemetry.ENV_DIR: str(telemetry_dir)}
    server_env[fault_control.ENV_DIR] = str(faults_dir)
    server_env[telemetry.ENV_SWITCH] = "1" if plan.gc_telemetry else "0"
    summary = None
    profiler: Profiler | None = None
    watched: list[ProcessSampler] = []
    restarter: restart.Restarter | None = None
    try:
        with (
            _pinned(cpus.generator),
            procs.running(
                cmd,
                name=f"{plan.variant} server",
                log_path=run_dir / "server.log",
                env=server_env,
            ) as server,
            sampling_processes(
                server.pid,
                run_dir / "processes.csv",
                plan.sample_interval_s,
                roles_dir=telemetry_dir / telemetry.ROLES_DIR,
            ) as server_sampler,
        ):
            watched.append(server_sampler)
            meta["processes"]["server"] = {"pid": server.pid, "pgid": server.pgid, "command": cmd}
            meta["status"] = "waiting for /healthz"
            write_meta(run_dir, meta)
            echo(f"  waiting for {base_url}/healthz (up to {plan.ready_timeout_s:.0f} s) ...")
            t0 = time.monotonic()
            meta["health"] = procs.wait_healthy(server, f"{base_url}/healthz", plan.ready_timeout_s)
            meta["server_ready_s"] = round(time.monotonic() - t0, 3)
            meta["status"] = "running"
            meta["load_started_at"] = iso(utc_now())
            if plan.profile is not None:
                profiler = Profiler(plan.profile, run_dir, server.pid, duration_s, cpus.generator)
                meta["profile"] = profiler.info
            echo(f"  ready after {meta['server_ready_s']:.1f} s; driving load")
            if spec.restarted_by_harness is not None:
                restarter = restart.Restarter(
                    server,
                    cmd,
                    role=spec.restarted_by_harness,
                    health_url=f"{base_url}/healthz",
                    lifecycle=state_dir / LIFECYCLE_FILE,
                    log_path=run_dir / "server.log",
                    env=server_env,
                    ready_timeout_s=plan.ready_timeout_s,
                    on_restart=lambda proc: setattr(server_sampler, "root_pid", proc.pid),
                )
                restarter.start()
            try:
                with fault_schedule.scheduled(
                    scenario.faults,
                    spec,
                    run_dir=run_dir,
                    telemetry_dir=telemetry_dir,
                    faults_dir=faults_dir,
                    duration_s=duration_s,
                ) as scheduler:
                    try:
                        _drive_load(
                            run_dir, meta, plan, load, duration_s, cpus, server_sampler,
                            profiler, echo,
                        )  # fmt: skip
                    finally:
                        if scheduler is not None:
                            scheduler.stop()
                            meta["faults"] = scheduler.rows()
                            if scheduler.errors:
                                meta["fault_errors"] = scheduler.errors
            finally:
                if profiler is not None:
                    profiler.stop()  # before the variant stops: py-spy writes its file now
            meta["load_ended_at"] = iso(utc_now())
            if restarter is not None:
                restarter.stop()
                meta["harness_restarts"] = restarter.restarts
                if restarter.errors:
                    meta["harness_restart_errors"] = restarter.errors
                server = restarter.current
            if not server.alive():
                raise procs.ProcessError(
                    f"the server exited (code {server.popen.returncode}) during the run.\n"
                    f"--- last lines of server.log ---\n{server.log_tail()}"
                )
            # let the notifications catch up before stopping: the invariants need a drained outbox
            meta["outbox_drain"] = integrity.wait_outbox_drained(
                state_dir, plan.drain_timeout_s, alive=server.alive
            )
        if restarter is not None:
            restarter.stop_started()  # a restarted server: stopped here, the first by `with`
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
        if restarter is not None:
            try:
                restarter.stop()
            finally:
                restarter.stop_started()  # whatever happened, nothing it started outlives the run
        meta["ended_at"] = iso(utc_now())
        for sampler in watched:
            meta["telemetry"]["sampler_missed"] = [
                {"pid": pid, "role": role} for pid, role in sorted(sampler.missed.items())
            ]
            if sampler.error:
                meta["telemetry"]["sampler_error"] = sampler.error
        _collect(run_dir, meta, state_dir, telemetry_dir, profiler)
        report = _check_invariants(run_dir, meta, state_dir)
        if (run_dir / "requests.csv").exists():
            write_meta(run_dir, meta)  # the summary reads the final meta
            try:
                summary = summarize_run(run_dir, warmup_s=warmup_s, window_s=plan.window_s)
                write_summary(run_dir, summary)
            except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome
                meta["summary_error"] = f"{type(exc).__name__}: {exc}"
        if not plan.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
        write_meta(run_dir, meta)
        if summary is not None:
            echo("\n" + format_table(summary))
            top = read_top_frames(run_dir / "profile" / "top_frames.csv")
            if top:
                echo("\ntop frames per role (py-spy):\n" + format_top_frames(top))
        if report is not None:
            echo("\n" + integrity.format_report(report))
        echo(f"\nresults ({meta['status']}): {run_dir}")
    return RunResult(run_dir=run_dir, status=meta["status"], summary=summary)


def _collect(
    run_dir: Path,
    meta: dict[str, Any],
    state_dir: Path,
    telemetry_dir: Path,
    profiler: Profiler | None,
) -> None:
    """After the variant stopped: merge GC files, copy its lifecycle log, finish the profile."""
    try:
        meta["telemetry"]["collected"] = gcdata.collect(telemetry_dir, run_dir)
    except Exception as exc:  # noqa: BLE001 - keep the raw files, report, go on
        meta["telemetry"]["error"] = f"{type(exc).__name__}: {exc}"
    lifecycle = state_dir / LIFECYCLE_FILE
    if lifecycle.exists():
        with contextlib.suppress(OSError):
            shutil.copyfile(lifecycle, run_dir / LIFECYCLE_FILE)
    if profiler is not None:
        meta["profile"] = profiler.finish(_roles_seen(run_dir))


def _check_invariants(
    run_dir: Path, meta: dict[str, Any], state_dir: Path
) -> dict[str, Any] | None:
    """After the variant stopped: check the invariants, write invariants.json, judge the run.

    A completed run whose invariants fail becomes `failed-invariants`. Runs that failed for
    another reason are checked too (when the databases exist) but keep their status.
    """
    if not integrity.state_paths(state_dir)["orders"].exists():
        return None
    try:
        report = integrity.check_run(run_dir, state_dir, meta.get("outbox_drain"))
    except Exception as exc:  # noqa: BLE001 - report, and never call the run clean
        meta["invariants_error"] = f"{type(exc).__name__}: {exc}"
        if meta.get("status") == "completed":
            meta["status"] = FAILED_INVARIANTS
        return None
    integrity.write_report(run_dir, report)
    meta["invariants"] = {"ok": report["ok"], "checks": report["checks"]}
    if meta.get("status") == "completed" and not report["ok"]:
        meta["status"] = FAILED_INVARIANTS
    return report
