"""One measured run: start a variant, drive locust against it, stop both, write the results.

The run directory's format is archlab/rundir.py's. `execute` is the only entry point; the CLI and
`reproduce` build RunPlans (archlab/run/plan.py) and call it, so a matrix of runs is a list of
plans. A run goes through its stages in one place, `execute`, each stage a method of `_Run`:

1. `start`: the run folder, meta.json, the variant's command and environment;
2. `serving`: the variant in its own process group (pinned to the server CPUs when pinned),
   with `ARCHLAB_TELEMETRY_DIR=<run>/telemetry` so each of its processes declares its role and
   records its GC pauses (`variants/telemetry.py`); a `ProcessSampler` follows its process tree;
   the harness restarts its top process if it dies (archlab/run/restart.py). Both instruments
   can be switched off (`gc_telemetry`, `process_sampler`) to measure what they cost, with a
   `CpuBracket` (`cpu_bracket`) reading the variant's CPU at the two ends of the window instead;
3. `measure`: the fault plan, py-spy (`--profile`) and locust (archlab/run/generator.py), each
   in its own group on the generator CPUs; then the outbox drains;
4. `finish` (whatever happened): every child stopped, GC files merged, the variant's lifecycle
   log copied, the invariants checked, the summary written.

A `--target` run (archlab/run/target.py) replaces 2 and 3 with `drive_target`: the target's
health, then locust against it; it starts nothing else, and `finish` checks the invariants
through the target's API.

The harness itself moves to the generator CPUs for the run.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from archlab.analysis.summary import format_table, summarize_run, write_summary
from archlab.host import procs
from archlab.host.cpus import format_cpu_list, pin_command, set_affinity
from archlab.measure import gcdata, integrity
from archlab.measure.cpubracket import CpuBracket
from archlab.measure.profiler import Profiler, format_top_frames, read_top_frames
from archlab.measure.sampler import ProcessSampler, sampling_processes
from archlab.run import fault_schedule, restart, target
from archlab.run.generator import drive_load
from archlab.run.plan import RunPlan, Setup, resolve
from archlab.rundir import (
    LIFECYCLE,
    PROCESSES,
    PROFILE_DIR,
    REQUESTS,
    ROLES,
    SERVER_LOG,
    SERVER_TELEMETRY_COLLECTED,
    SERVER_TELEMETRY_NOT_COLLECTED,
    STATE_DIR,
    TELEMETRY_DIR,
    TOP_FRAMES,
    Status,
    default_runs_dir,
    iso,
    make_run_dir,
    new_meta,
    utc_now,
    write_meta,
)
from variants import cli, telemetry
from variants import faults as fault_control

Echo = Callable[[str], None]


@dataclass
class RunResult:
    run_dir: Path
    status: str
    summary: dict[str, Any] | None


@contextlib.contextmanager
def _pinned(cpus: list[int] | None) -> Iterator[None]:
    """Run the harness itself (and the threads it starts) on `cpus` for the block."""
    previous = set_affinity(cpus)
    try:
        yield
    finally:
        if previous is not None:
            set_affinity(previous)


def _roles_seen(run_dir: Path) -> dict[int, str]:
    """pid -> role from roles.csv, overlaid with the sampler's last label per pid."""
    roles = gcdata.read_roles(run_dir / ROLES)
    path = run_dir / PROCESSES
    if path.exists():
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                with contextlib.suppress(KeyError, ValueError):
                    roles.setdefault(int(row["pid"]), row["role"])
    return roles


@dataclass
class _Run:
    """One run in progress: its plan, its folder and meta, and what it started."""

    plan: RunPlan
    setup: Setup
    run_dir: Path
    meta: dict[str, Any]
    cmd: list[str]
    env: dict[str, str]
    echo: Echo
    profiler: Profiler | None = None
    restarter: restart.Restarter | None = None
    samplers: list[ProcessSampler] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.run_dir / STATE_DIR

    @property
    def telemetry_dir(self) -> Path:
        return self.run_dir / TELEMETRY_DIR

    @property
    def faults_dir(self) -> Path:
        return self.state_dir / fault_schedule.FAULTS_DIR

    @property
    def health_url(self) -> str:
        return f"{self.meta['base_url']}/healthz"

    @classmethod
    def start(
        cls, plan: RunPlan, results_dir: Path | None, argv: list[str] | None, echo: Echo
    ) -> _Run:
        """The run folder with its state and telemetry folders, meta.json, the server command."""
        setup = resolve(plan)
        run_dir = make_run_dir(
            results_dir or default_runs_dir(), setup.name, plan.scenario, plan.run_id
        )
        if setup.target is None:
            (run_dir / STATE_DIR).mkdir()
            (run_dir / TELEMETRY_DIR).mkdir()
            port = procs.free_port()
            base_url = f"http://127.0.0.1:{port}"
        else:
            base_url = setup.target
        meta = new_meta(
            run_id=run_dir.name,
            variant=setup.name,
            module=setup.spec.module if setup.spec is not None else "",
            knobs=setup.knobs,
            scenario=setup.scenario.to_dict(),
            seed=plan.seed,
            size=plan.size,
            duration_s=setup.duration_s,
            users=setup.load.users,
            spawn_rate=setup.load.spawn_rate,
            base_url=base_url,
            started_at=utc_now(),
            argv=argv,
            load=setup.load.to_dict(),
            cpu_pinning=setup.cpus.to_dict(),
            load_generator=setup.describe_generator(),
            notes=setup.cpus.notes,
        )
        placement = setup.placement
        meta["placement"] = placement.describe() if placement is not None else None
        meta["placement_file"] = str(placement.path) if placement is not None else None
        meta["warmup_s"] = setup.warmup_s
        meta["shop_config"] = msgspec.to_builtins(setup.scenario.shop)
        meta["telemetry"] = setup.telemetry(plan)
        meta["profile"] = {"enabled": False}
        if setup.target is not None:
            meta["variant_module"] = None  # the harness started no deployer
            meta["target"] = setup.target
            meta["server_telemetry"] = SERVER_TELEMETRY_NOT_COLLECTED
            write_meta(run_dir, meta)
            return cls(plan, setup, run_dir, meta, [], {}, echo)
        meta["server_telemetry"] = SERVER_TELEMETRY_COLLECTED
        write_meta(run_dir, meta)
        assert setup.spec is not None
        state_dir = run_dir / STATE_DIR
        server = setup.spec.command(
            port=port, size=plan.size, seed=plan.seed, state_dir=state_dir, knobs=setup.knobs
        )
        cmd = pin_command([*server, *cli.shop_args(setup.scenario.shop)], setup.cpus.sut)
        env = {
            **os.environ,
            telemetry.ENV_DIR: str(run_dir / TELEMETRY_DIR),
            fault_control.ENV_DIR: str(state_dir / fault_schedule.FAULTS_DIR),
            telemetry.ENV_SWITCH: "1" if plan.gc_telemetry else "0",
        }
        return cls(plan, setup, run_dir, meta, cmd, env, echo)

    def announce(self) -> None:
        plan, setup, meta = self.plan, self.setup, self.meta
        if setup.target is not None:
            label = "" if setup.spec is None else f" (placement {setup.name})"
            self.echo(f"run {self.run_dir.name}: target {setup.target}{label} seed={plan.seed}")
        else:
            self.echo(
                f"run {self.run_dir.name}: {setup.name} {setup.knobs} size={plan.size} "
                f"seed={plan.seed}"
            )
        self.echo(f"  {meta['load_generator']} for {setup.duration_s} s -> {self.run_dir}")
        cpus = setup.cpus
        if cpus.sut is not None and cpus.generator is not None:
            self.echo(
                f"  pinned: server CPUs {format_cpu_list(cpus.sut)}, "
                f"generator CPUs {format_cpu_list(cpus.generator)}"
            )
        for note in meta["notes"]:
            self.echo(f"  note: {note}")

    @contextlib.contextmanager
    def serving(self) -> Iterator[tuple[procs.Proc, ProcessSampler | None]]:
        """The variant started, sampled (unless switched off), healthy and (if it dies)
        restarted, for the block."""
        plan, meta = self.plan, self.meta
        with (
            _pinned(self.setup.cpus.generator),
            procs.running(
                self.cmd,
                name=f"{self.setup.name} server",
                log_path=self.run_dir / SERVER_LOG,
                env=self.env,
            ) as server,
            (
                sampling_processes(
                    server.pid,
                    self.run_dir / PROCESSES,
                    plan.sample_interval_s,
                    roles_dir=self.telemetry_dir / telemetry.ROLES_DIR,
                    memory_interval_s=plan.memory_interval_s,
                )
                if plan.process_sampler
                else contextlib.nullcontext(None)
            ) as sampler,
        ):
            if sampler is not None:
                self.samplers.append(sampler)
            meta["processes"]["server"] = {
                "pid": server.pid,
                "pgid": server.pgid,
                "command": self.cmd,
            }
            meta["status"] = Status.WAITING
            write_meta(self.run_dir, meta)
            self.echo(f"  waiting for {self.health_url} (up to {plan.ready_timeout_s:.0f} s) ...")
            t0 = time.monotonic()
            meta["health"] = procs.wait_healthy(server, self.health_url, plan.ready_timeout_s)
            meta["server_ready_s"] = round(time.monotonic() - t0, 3)
            meta["status"] = Status.RUNNING
            meta["load_started_at"] = iso(utc_now())
            self.echo(f"  ready after {meta['server_ready_s']:.1f} s; driving load")
            assert self.setup.spec is not None
            role = self.setup.spec.restarted_by_harness
            if role is not None:
                self.restarter = restart.Restarter(
                    server,
                    self.cmd,
                    role=role,
                    health_url=self.health_url,
                    lifecycle=self.state_dir / LIFECYCLE,
                    log_path=self.run_dir / SERVER_LOG,
                    env=self.env,
                    ready_timeout_s=plan.ready_timeout_s,
                    on_restart=None
                    if sampler is None
                    else lambda proc: setattr(sampler, "root_pid", proc.pid),
                )
                self.restarter.start()
            yield server, sampler

    def measure(self, server: procs.Proc, sampler: ProcessSampler | None) -> procs.Proc:
        """Faults, profiler and load (and the CPU bracket) for the run's duration; then let the
        outbox drain.

        Returns the variant's top process at the end (a restarted one if it was restarted).
        """
        plan, setup, meta = self.plan, self.setup, self.meta
        assert setup.spec is not None
        if plan.profile is not None:
            self.profiler = Profiler(
                plan.profile, self.run_dir, server.pid, setup.duration_s, setup.cpus.generator
            )
            meta["profile"] = self.profiler.info
        bracket = None
        if plan.cpu_bracket:
            bracket = CpuBracket(
                lambda: (self.restarter.current if self.restarter else server).pid,
                self.telemetry_dir / telemetry.ROLES_DIR,
                self.run_dir / REQUESTS,
                setup.warmup_s,
            )
            bracket.start()
        try:
            with fault_schedule.scheduled(
                setup.scenario.faults,
                setup.spec,
                run_dir=self.run_dir,
                telemetry_dir=self.telemetry_dir,
                faults_dir=self.faults_dir,
                duration_s=setup.duration_s,
            ) as scheduler:
                try:
                    drive_load(
                        self.run_dir,
                        meta,
                        load=setup.load,
                        seed=plan.seed,
                        duration_s=setup.duration_s,
                        processes=setup.cpus.processes,
                        cpus=setup.cpus.generator,
                        sample_interval_s=plan.sample_interval_s,
                        server_sampler=sampler,
                        profiler=self.profiler,
                        echo=self.echo,
                    )
                finally:
                    if scheduler is not None:
                        scheduler.stop()
                        meta["faults"] = scheduler.rows()
                        if scheduler.errors:
                            meta["fault_errors"] = scheduler.errors
        finally:
            if bracket is not None:
                meta["cpu_bracket"] = bracket.close()  # the load has ended: the second reading
            if self.profiler is not None:
                self.profiler.stop()  # before the variant stops: py-spy writes its file now
        meta["load_ended_at"] = iso(utc_now())
        if self.restarter is not None:
            self.restarter.stop()
            meta["harness_restarts"] = self.restarter.restarts
            if self.restarter.errors:
                meta["harness_restart_errors"] = self.restarter.errors
            server = self.restarter.current
        if not server.alive():
            raise procs.ProcessError(
                f"the server exited (code {server.popen.returncode}) during the run.\n"
                f"--- last lines of {SERVER_LOG} ---\n{server.log_tail()}"
            )
        # let the notifications catch up before stopping: the invariants need a drained outbox
        meta["outbox_drain"] = integrity.wait_outbox_drained(
            self.state_dir, plan.drain_timeout_s, alive=server.alive
        )
        return server

    def drive_target(self) -> None:
        """A --target run: wait for the target's health, then the load; nothing else starts."""
        plan, setup, meta = self.plan, self.setup, self.meta
        assert setup.target is not None
        with _pinned(setup.cpus.generator):
            meta["status"] = Status.WAITING
            write_meta(self.run_dir, meta)
            self.echo(f"  waiting for {self.health_url} (up to {plan.ready_timeout_s:.0f} s) ...")
            t0 = time.monotonic()
            meta["health"] = target.wait_healthy(setup.target, plan.ready_timeout_s)
            meta["server_ready_s"] = round(time.monotonic() - t0, 3)
            meta["status"] = Status.RUNNING
            meta["load_started_at"] = iso(utc_now())
            self.echo(f"  healthy after {meta['server_ready_s']:.1f} s; driving load")
            drive_load(
                self.run_dir,
                meta,
                load=setup.load,
                seed=plan.seed,
                duration_s=setup.duration_s,
                processes=setup.cpus.processes,
                cpus=setup.cpus.generator,
                sample_interval_s=plan.sample_interval_s,
                server_sampler=None,
                profiler=None,
                echo=self.echo,
            )
            meta["load_ended_at"] = iso(utc_now())

    def stop_restarted(self) -> None:
        """Stop what the restarter started (the first server is stopped by `serving`)."""
        if self.restarter is not None:
            try:
                self.restarter.stop()
            finally:
                self.restarter.stop_started()

    def finish(self) -> dict[str, Any] | None:
        """After the variant stopped, whatever happened: collect, judge, summarize, report."""
        self.stop_restarted()
        run_dir, meta = self.run_dir, self.meta
        meta["ended_at"] = iso(utc_now())
        for sampler in self.samplers:
            meta["telemetry"]["sampler_missed"] = [
                {"pid": pid, "role": role} for pid, role in sorted(sampler.missed.items())
            ]
            if sampler.error:
                meta["telemetry"]["sampler_error"] = sampler.error
        if self.setup.target is None:
            self._collect()
            report = integrity.judge_run(run_dir, meta, self.state_dir)
        else:
            report = integrity.judge_target(run_dir, meta, self.setup.target)
        summary = None
        if (run_dir / REQUESTS).exists():
            write_meta(run_dir, meta)  # the summary reads the final meta
            try:
                summary = summarize_run(
                    run_dir, warmup_s=self.setup.warmup_s, window_s=self.plan.window_s
                )
                write_summary(run_dir, summary)
            except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome
                meta["summary_error"] = f"{type(exc).__name__}: {exc}"
        if not self.plan.keep_state and self.setup.target is None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        write_meta(run_dir, meta)
        if summary is not None:
            self.echo("\n" + format_table(summary))
            top = read_top_frames(run_dir / PROFILE_DIR / TOP_FRAMES)
            if top:
                self.echo("\ntop frames per role (py-spy):\n" + format_top_frames(top))
        if report is not None:
            self.echo("\n" + integrity.format_report(report))
        self.echo(f"\nresults ({meta['status']}): {run_dir}")
        return summary

    def _collect(self) -> None:
        """Merge the GC files, copy the variant's lifecycle log, finish the profile."""
        meta = self.meta
        try:
            meta["telemetry"]["collected"] = gcdata.collect(self.telemetry_dir, self.run_dir)
        except Exception as exc:  # noqa: BLE001 - keep the raw files, report, go on
            meta["telemetry"]["error"] = f"{type(exc).__name__}: {exc}"
        lifecycle = self.state_dir / LIFECYCLE
        if lifecycle.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(lifecycle, self.run_dir / LIFECYCLE)
        if self.profiler is not None:
            meta["profile"] = self.profiler.finish(_roles_seen(self.run_dir))


def execute(
    plan: RunPlan,
    results_dir: Path | None = None,
    *,
    echo: Echo = print,
    argv: list[str] | None = None,
) -> RunResult:
    """Run `plan` and write its run directory. Children are stopped whatever happens."""
    run = _Run.start(plan, results_dir, argv, echo)
    run.announce()
    meta = run.meta
    summary = None
    try:
        if run.setup.target is not None:
            run.drive_target()
        else:
            with run.serving() as (server, sampler):
                server = run.measure(server, sampler)
            run.stop_restarted()
            meta["server_exit_code"] = server.popen.returncode
        meta["status"] = Status.COMPLETED
    except KeyboardInterrupt:
        meta["status"] = Status.INTERRUPTED
        raise
    except BaseException as exc:
        meta["status"] = Status.FAILED
        meta["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        summary = run.finish()
    return RunResult(run_dir=run.run_dir, status=meta["status"], summary=summary)
