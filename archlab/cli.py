"""The `archlab` command: serve a placement, run a measured load test, reproduce, summarize.

A deployment is a *placement* (variants/placement.py): a named one (`archlab placements` lists
them; the three original variant names are among them) or a placement file. `--variant` is
the old name of `--placement`.

SIGTERM and SIGHUP are turned into KeyboardInterrupt, so every way of stopping the harness goes
through the same cleanup: the variant's and locust's process groups are always stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import NamedTuple, NoReturn

import psutil

from archlab import __version__, reference
from archlab import reproduce as repro
from archlab.analysis import blast, compare, validate
from archlab.analysis.summary import format_table, summarize_run, write_summary
from archlab.bench import engine as engine_bench
from archlab.bench import gcpause, hop
from archlab.bench import server as server_bench
from archlab.deployers import SIZES, VARIANTS, Knob, all_knobs, flag_name, get_variant, knob_owners
from archlab.host import procs
from archlab.host.cpus import parse_cpu_list
from archlab.measure.profiler import ProfilePlan, parse_window
from archlab.measure.sampler import MEMORY_INTERVAL_S
from archlab.run import floor as floor_bench
from archlab.run import instruments as instruments_bench
from archlab.run.generator import LOCUSTFILE
from archlab.run.plan import RunPlan, parse_duration
from archlab.run.runner import execute
from archlab.rundir import (
    META,
    REQUESTS,
    Status,
    default_runs_dir,
    read_meta,
    results_root,
    stored,
    warmup_of,
)
from variants import placement as placements
from variants.placement import Placement
from workloads.scenarios import SCENARIOS

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
Subparsers = argparse._SubParsersAction  # what `add_subparsers` returns


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, `archlab: error: ...`, and exit code 2 (argparse's code)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("archlab").strip()
        where = f"{command}: " if command else ""
        hint = f"archlab {command} --help" if command else "archlab --help"
        self.exit(2, f"archlab: error: {where}{message} (see `{hint}`)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 1..65535, got {port}")
    return port


def _run_dir(text: str) -> Path:
    """A run directory: it holds meta.json or requests.csv (possibly gzipped)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a directory")
    if (path / META).exists() or stored(path / REQUESTS) is not None:
        return path
    raise argparse.ArgumentTypeError(f"{text} is not a run directory (no {META} or {REQUESTS})")


def _add_placement_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--placement",
        "--variant",  # its name before placements
        dest="placement",
        metavar="NAME|FILE",
        help=f"{help_text}: a named placement ({', '.join(VARIANTS)}; `archlab placements` "
        "describes them) or a placement file (TOML, as in variants/placements/); "
        "--variant is its old name",
    )


def _knob_default(name: str) -> str:
    """A knob's default in words; per placement when the placements differ."""

    def text(knob: Knob) -> str:
        return f"{knob.default_is} ({knob.default})" if knob.default_is else str(knob.default)

    by_default: dict[str, list[str]] = {}
    for owner, knob in knob_owners(name).items():
        by_default.setdefault(text(knob), []).append(owner)
    if len(by_default) == 1:
        ((default, owners),) = by_default.items()
        return f"{', '.join(owners)}; default {default}"
    return "default " + "; ".join(f"{', '.join(o)}: {d}" for d, o in by_default.items())


def _add_variant_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size",
        choices=SIZES,
        default=None,
        help="dataset size (default: tiny; with --target only a label of what it serves, "
        "default unknown)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="dataset and traffic seed (default: %(default)s)"
    )
    knobs = parser.add_argument_group(
        "knobs",
        "tuning of the deployer that runs the placement; each applies to the "
        "placements named in its help (a placement file's own defaults come from the file)",
    )
    for name, knob in all_knobs().items():
        knobs.add_argument(
            flag_name(name),
            dest=name,
            type=type(knob.default),
            choices=knob.choices,
            default=None,
            metavar="N" if knob.choices is None else None,
            help=f"{knob.help} ({_knob_default(name)})",
        )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds to wait for /healthz (loading 'small' takes ~1 min; default %(default)s)",
    )


def _knobs(args: argparse.Namespace) -> dict[str, int | str | None]:
    return {name: getattr(args, name) for name in all_knobs()}


SERVE_PREFIX = "archlab-serve-"  # a serve's temporary folder: <tmp>/archlab-serve-<variant>-*
SERVE_OWNER = "owner.pid"  # in it: the serve's pid, so a later serve can reap it


def _reap_serve_folders() -> list[Path]:
    """Remove the temporary folders of serves that were killed before they could clean up.

    Its variant died with it (archlab/host/launch.py); only its folder can be left over.
    """
    reaped = []
    for folder in Path(tempfile.gettempdir()).glob(f"{SERVE_PREFIX}*"):
        try:
            owner = int((folder / SERVE_OWNER).read_text())
        except (OSError, ValueError):
            continue
        if not psutil.pid_exists(owner):
            shutil.rmtree(folder, ignore_errors=True)
            reaped.append(folder)
    return reaped


def _parse_serve(sub: Subparsers) -> None:
    serve = sub.add_parser(
        "serve",
        help="run a placement in the foreground (for locust's web UI or curl)",
        description="Start a placement on 127.0.0.1:PORT with its state in a temporary "
        "directory (removed at exit) and keep it running until Ctrl-C.",
    )
    serve.add_argument(
        "variant",
        nargs="?",
        metavar="PLACEMENT",
        help="which placement to start (the same as --placement)",
    )
    _add_placement_option(serve, "which placement to start")
    serve.add_argument("--port", type=_port, default=8000, help="port (default: %(default)s)")
    _add_variant_options(serve)


def _placement_arg(args: argparse.Namespace) -> str:
    """serve's placement: the positional or --placement (they must agree)."""
    given = [x for x in (args.variant, args.placement) if x is not None]
    if not given:
        raise ValueError(
            "name a placement: archlab serve --placement NAME|FILE (`archlab placements` "
            "lists them)"
        )
    if len(set(given)) > 1:
        raise ValueError(f"two placements given: {given[0]} and --placement {given[1]}")
    return given[0]


def cmd_serve(args: argparse.Namespace) -> int:
    spec = get_variant(_placement_arg(args))
    knobs = spec.resolve_knobs(_knobs(args))
    size = args.size or "tiny"
    if procs.port_in_use(args.port):
        print(f"port {args.port} is already in use; pick another with --port", file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{args.port}"
    for stale in _reap_serve_folders():
        print(f"removed the state folder of a serve that was killed: {stale}")
    with tempfile.TemporaryDirectory(prefix=f"{SERVE_PREFIX}{spec.name}-") as tmp:
        (Path(tmp) / SERVE_OWNER).write_text(str(os.getpid()))
        state = Path(tmp) / "state"
        state.mkdir()
        cmd = spec.command(port=args.port, size=size, seed=args.seed, state_dir=state, knobs=knobs)
        print(f"starting {spec.name} {knobs} size={size} (state in {state}) ...")
        with procs.running(cmd, name=f"{spec.name} server") as server:
            procs.wait_healthy(server, f"{url}/healthz", args.ready_timeout)
            print(f"\n{spec.name} is ready at {url}  (Ctrl-C stops it)")
            print(f"top process: pid {server.pid}  (its family: ps -o pid,cmd -g {server.pgid})")
            print(f"load it with:  locust -f {LOCUSTFILE} --host {url}")
            print(
                f"  (then open http://localhost:8089), or: archlab run --target {url}\n", flush=True
            )
            code = server.popen.wait()
        print(f"{spec.name} exited with code {code}", file=sys.stderr)
        return code or 1


def _cpus(text: str | None) -> list[int] | None:
    return parse_cpu_list(text) if text else None


def _steps(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"bad --steps {text!r}; use user counts like 1,2,4,8") from None


def _parse_run(sub: Subparsers) -> None:
    run = sub.add_parser(
        "run",
        help="one measured load test; writes results/runs/<run-id>/",
        description="Start the placement, wait for /healthz, drive locust headless for "
        "DURATION, stop everything, then write meta.json, requests.csv, ledger.csv, "
        "processes.csv, gc.csv, roles.csv, generator_cpu.csv, invariants.json, server.log, "
        "locust.log, summary.json (and profile/ with --profile) to RESULTS_DIR/<run-id>/ (see "
        "results/README.md). With --target URL, drive a deployment the harness did not start "
        "instead: the same load and records, the invariants checked through its API, no "
        "server-side telemetry.",
    )
    _add_placement_option(run, "the deployment to start (with --target: only a label)")
    run.add_argument(
        "--target",
        metavar="URL",
        help="drive a deployment someone else started, at an explicit http(s)://HOST[:PORT] "
        "(e.g. one `archlab serve` or compose started): the harness starts only locust; "
        "requests.csv and ledger.csv as usual, invariants.json from reading every acknowledged "
        "order and its products' stock back through the API; processes, GC, roles, profile and "
        "faults need the deployment's processes and are not collected (no --profile, no fault "
        "scenario, no knobs, no --sut-cpus)",
    )
    run.add_argument(
        "--scenario",
        default="steady",
        choices=sorted(SCENARIOS),
        help="load shape from workloads/scenarios.py (default: %(default)s)",
    )
    run.add_argument(
        "--duration",
        default=None,
        help="load duration, e.g. 30s, 2m (default: 30s; a ramp lasts its steps)",
    )
    run.add_argument(
        "--users",
        type=int,
        help="concurrent users, or open-loop arrival streams (default: the scenario's)",
    )
    run.add_argument("--spawn-rate", type=float, help="users started per second (default: ditto)")
    _add_load_shape_options(run.add_argument_group("load shape"))
    run.add_argument(
        "--warmup",
        type=float,
        metavar="S",
        help="leave requests sent in the first S seconds out of the summary (default: the spawn "
        "ramp, users / spawn rate, rounded up; 0 for a ramp); requests.csv still has them",
    )
    _add_variant_options(run)
    _add_generator_options(run.add_argument_group("generator hygiene"))
    _add_instrument_options(run.add_argument_group("instruments"))
    run.add_argument(
        "--run-id",
        help="name of the run directory (default: <UTC time>-<placement>-<scenario>, "
        "'target' for a --target run without --placement)",
    )
    run.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help=f"where run directories go (default: {default_runs_dir()})",
    )
    run.add_argument(
        "--discard-state",
        action="store_true",
        help="delete the variant's databases (<run-dir>/state/) after the run",
    )


def _add_load_shape_options(load: argparse._ArgumentGroup) -> None:
    load.add_argument(
        "--rate",
        type=float,
        metavar="RPS",
        help="open loop at RPS requests/s with the scenario's task mix: each request's intended "
        "start is recorded, latency is reported observed and corrected for coordinated omission",
    )
    load.add_argument(
        "--max-in-flight",
        type=int,
        metavar="N",
        help="open loop: outstanding requests per arrival stream before it waits (default: the "
        "scenario's)",
    )
    load.add_argument(
        "--steps",
        metavar="N,N,...",
        help="step ramp (locust LoadTestShape): users per step, e.g. 1,2,4,8; with an open-loop "
        "scenario each user is a stream of rate_per_user req/s",
    )
    load.add_argument("--step-s", type=float, metavar="S", help="seconds per ramp step")


def _add_generator_options(gen: argparse._ArgumentGroup) -> None:
    gen.add_argument(
        "--sut-cpus",
        metavar="LIST",
        help="pin the variant to these CPUs, e.g. 0-5 (default: 3/4 of the cores when the "
        "machine has at least 4 CPUs; else no pinning)",
    )
    gen.add_argument(
        "--gen-cpus",
        metavar="LIST",
        help="pin locust, py-spy and the harness to these CPUs (default: the other cores)",
    )
    gen.add_argument(
        "--no-pin", action="store_true", help="share every CPU between variant and generator"
    )
    gen.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="locust worker processes (default: one per generator CPU when pinned to several)",
    )


def _add_instrument_options(ins: argparse._ArgumentGroup) -> None:
    ins.add_argument(
        "--sample-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="CPU/memory sampling interval of every process (default: %(default)s)",
    )
    ins.add_argument(
        "--memory-interval",
        type=float,
        default=MEMORY_INTERVAL_S,
        metavar="S",
        help="how often the sampler also reads each process's USS, PSS and swap "
        "(/proc/PID/smaps_rollup, a walk of its page tables; RSS comes every tick) "
        "(default: %(default)s)",
    )
    ins.add_argument(
        "--window",
        type=float,
        metavar="S",
        help="width of the summary's time windows (default: 10 s, or a ramp's step)",
    )
    ins.add_argument(
        "--no-gc-telemetry",
        action="store_true",
        help="do not record GC pauses (ARCHLAB_TELEMETRY=0), e.g. to measure their overhead",
    )
    ins.add_argument(
        "--no-process-sampler",
        action="store_true",
        help="do not sample the variant's processes (no processes.csv, no server CPU or memory "
        "in the summary), e.g. to measure the sampler's overhead",
    )
    ins.add_argument(
        "--cpu-bracket",
        action="store_true",
        help="read the variant's CPU once at each end of the measured window (meta.json "
        "cpu_bracket): its CPU per request without the sampler",
    )
    ins.add_argument(
        "--profile",
        action="store_true",
        help="record the variant's whole process tree with py-spy (speedscope + top frames per "
        "role in <run>/profile/); costs throughput",
    )
    ins.add_argument(
        "--profile-gil", action="store_true", help="with --profile: only threads holding the GIL"
    )
    ins.add_argument(
        "--profile-window",
        metavar="START:END",
        help="with --profile: seconds after the load started (default: the whole load)",
    )
    ins.add_argument(
        "--profile-rate", type=int, default=100, metavar="HZ", help="py-spy samples/s (100)"
    )


def cmd_run(args: argparse.Namespace) -> int:
    if (args.profile_gil or args.profile_window) and not args.profile:
        raise ValueError("--profile-gil and --profile-window need --profile")
    profile = None
    if args.profile:
        profile = ProfilePlan(
            gil=args.profile_gil,
            window=parse_window(args.profile_window) if args.profile_window else None,
            rate_hz=args.profile_rate,
        )
    plan = RunPlan(
        variant=args.placement,
        target=args.target,
        scenario=args.scenario,
        duration_s=parse_duration(args.duration) if args.duration else None,
        size=args.size or ("tiny" if args.target is None else "unknown"),
        seed=args.seed,
        users=args.users,
        spawn_rate=args.spawn_rate,
        knobs=_knobs(args),
        warmup_s=args.warmup,
        run_id=args.run_id,
        ready_timeout_s=args.ready_timeout,
        keep_state=not args.discard_state,
        rate=args.rate,
        max_in_flight=args.max_in_flight,
        steps=_steps(args.steps),
        step_s=args.step_s,
        processes=args.processes,
        sut_cpus=_cpus(args.sut_cpus),
        gen_cpus=_cpus(args.gen_cpus),
        pin=not args.no_pin,
        sample_interval_s=args.sample_interval,
        memory_interval_s=args.memory_interval,
        window_s=args.window,
        gc_telemetry=not args.no_gc_telemetry,
        process_sampler=not args.no_process_sampler,
        cpu_bracket=args.cpu_bracket,
        profile=profile,
    )
    result = execute(plan, args.results_dir, argv=sys.argv)
    return 0 if result.status == Status.COMPLETED else 1


def _parse_placements(sub: Subparsers) -> None:
    pl = sub.add_parser(
        "placements",
        help="list the named placements (which contexts share a process, how they are reached)",
        description="List each named placement (variants/placements/*.toml) with its "
        "description, the deployer that runs it and its process groups, e.g. "
        "`backend[edge x cpus: catalog] inventory[ipc]`: a group, whether it serves the edge "
        "API or how its callers reach it (ipc, http), its replicas and the contexts it hosts "
        "(when not just the one it is named after). Given PLACEMENT (a name or a file), show "
        "only that one: a way to check a placement file.",
        epilog="the migration path: " + " -> ".join(placements.PATH),
    )
    pl.add_argument("placement", nargs="?", metavar="PLACEMENT", help="a name or a file")
    pl.add_argument(
        "--json", action="store_true", help="print each placement resolved in full (as meta.json)"
    )


def _group_text(p: Placement, group: str) -> str:
    """One group compactly: `backend[edge x cpus: catalog]`, `recommendations[http]`."""
    g = p.groups[group]
    kind = "edge" if g.edge else p.transport(group)
    if g.replicas != 1:
        kind += f" x {g.replicas}"
    hosted = "" if g.contexts == (group,) or not g.contexts else ": " + ",".join(g.contexts)
    return f"{group}[{kind}{hosted}]"


def cmd_placements(args: argparse.Namespace) -> int:
    names = [args.placement] if args.placement else list(placements.named())
    loaded = [placements.load(name) for name in names]
    if args.json:
        print(json.dumps({p.name: p.describe() for p in loaded}, indent=2))
        return 0
    width = max(len(p.name) for p in loaded)
    for p in loaded:
        print(f"{p.name:<{width}}  {p.description}")
        groups = " ".join(_group_text(p, g) for g in p.groups)
        print(f"{'':<{width}}  {p.supervisor}: {groups}")
    if not args.placement:
        print(f"\nthe migration path: {' -> '.join(placements.PATH)}")
    return 0


def _parse_reproduce(sub: Subparsers) -> None:
    rep = sub.add_parser(
        "reproduce",
        help="run the scenario matrix, render every figure, execute every notebook",
        description="Run the matrix behind every figure over the three variants (latency "
        "ramps, pinned ramps for the scaling study and open-loop fault scenarios, each repeated "
        "round by round; profiled runs, the studies, the hop micro-benchmark and the "
        "generator's floor) and along the migration path (each placement at one open-loop "
        "rate, steady, crashed and collecting), write every headline number with its 95 % "
        "interval to readings.json, render every figure (PNG and SVG) into results/figures/ "
        "and execute every notebook into results/notebooks/. Interrupted, it keeps finished "
        "runs: the same command resumes.",
        epilog="scales: " + "; ".join(f"{s.name}: {s.description}" for s in repro.SCALES.values()),
    )
    rep.add_argument(
        "--scale",
        "--profile",  # its name until the scales were told apart from py-spy profiles
        dest="scale",
        choices=list(repro.SCALES),
        default="quick",
        help="how big and how long (default: quick; --profile is its old name)",
    )
    rep.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the run set folder (default: results/repro/<scale>)",
    )
    rep.add_argument(
        "--fresh",
        action="store_true",
        help="start over: move an existing run set aside instead of resuming it",
    )
    rep.add_argument("--figures-dir", type=Path, default=None, help="default: results/figures")
    rep.add_argument("--notebooks-dir", type=Path, default=None, help="default: results/notebooks")
    rep.add_argument(
        "--no-render", action="store_true", help="only run the matrix; no figures or notebooks"
    )


def cmd_reproduce(args: argparse.Namespace) -> int:
    outputs = repro.reproduce(
        args.scale,
        args.out,
        fresh=args.fresh,
        figures_dir=args.figures_dir,
        notebooks_dir=args.notebooks_dir,
        render=not args.no_render,
    )
    return 0 if not outputs["failed"] else 1


def _parse_figures(sub: Subparsers) -> None:
    fig = sub.add_parser(
        "figures",
        help="render every figure (and optionally the notebooks) from a run set",
        description="Render every figure of a run set as PNG and SVG, without running anything.",
    )
    fig.add_argument(
        "run_set",
        type=Path,
        nargs="?",
        default=None,
        help="a run set folder (default: the newest under results/repro/, else results/reference)",
    )
    fig.add_argument("--out", type=Path, default=None, help="default: results/figures")
    fig.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        metavar="DIR",
        help="also execute the notebooks into DIR",
    )


def cmd_figures(args: argparse.Namespace) -> int:
    from archlab.analysis.runset import default_runset_path, load_runset
    from archlab.figures import render_all
    from archlab.figures.notebooks import execute_all

    path = args.run_set or default_runset_path()
    out = args.out or results_root() / "figures"
    print(f"figures of {path} -> {out}")
    written = render_all(load_runset(path), out)
    if args.notebooks is not None:
        execute_all(path, args.notebooks)
    print(f"{len(written)} figures written to {out}")
    return 0


def _parse_reference(sub: Subparsers) -> None:
    ref = sub.add_parser(
        "reference",
        help="make a run set the committed reference (results/reference/)",
        description="Copy a run set into DEST without databases, gzip its raw records (the "
        "summaries stay exact), render its figures into DEST/figures and write DEST/README.md.",
    )
    ref.add_argument("run_set", type=Path, help="a finished run set, e.g. results/repro/full")
    ref.add_argument("--dest", type=Path, default=None, help="default: results/reference")


def cmd_reference(args: argparse.Namespace) -> int:
    dest = reference.make_reference(args.run_set, args.dest)
    print(f"reference written: {dest}")
    return 0


def _parse_summarize(sub: Subparsers) -> None:
    summ = sub.add_parser(
        "summarize",
        help="(re)compute summary.json of a run directory and print it",
        description="Recompute RUN_DIR/summary.json from RUN_DIR/requests.csv (and "
        "generator_cpu.csv) and print the table.",
    )
    summ.add_argument("run_dir", type=_run_dir, help="a results/runs/<run-id> directory")
    summ.add_argument(
        "--warmup",
        type=float,
        default=None,
        metavar="S",
        help="ignore requests sent in the first S seconds (default: the run's, from meta.json)",
    )
    summ.add_argument("--json", action="store_true", help="print the JSON instead of a table")
    summ.add_argument(
        "--window", type=float, metavar="S", help="width of the time windows (default: the run's)"
    )


def cmd_summarize(args: argparse.Namespace) -> int:
    if stored(args.run_dir / REQUESTS) is None:
        raise FileNotFoundError(f"{args.run_dir} has no {REQUESTS}: nothing to summarize")
    warmup_s = args.warmup if args.warmup is not None else warmup_of(read_meta(args.run_dir))
    summary = summarize_run(args.run_dir, warmup_s=warmup_s, window_s=args.window)
    path = write_summary(args.run_dir, summary)
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    if not args.json:
        print(f"written: {path}")
    return 0


def _write_table(target: str, text: str, *, machine: bool) -> None:
    """A --csv/--markdown table: alone on stdout ('-'), else to a file. `machine`: stdout holds
    only machine-readable tables, so the "written" line goes to stderr."""
    if target == "-":
        print(text, end="")
    else:
        Path(target).write_text(text)
        print(f"written: {target}", file=sys.stderr if machine else sys.stdout)


def _parse_compare(sub: Subparsers) -> None:
    cmp_ = sub.add_parser(
        "compare",
        help="runs side by side: throughput, percentiles, CPU, memory, GC per role",
        description="Print a table with one column per run: throughput, p50/p99/p99.9 per "
        "endpoint, errors, CPU-seconds per request, memory, GC pause totals and maxima per role, "
        "generator state. Reads each run's summary.json (recomputed when missing). When the runs "
        "differ in more than the variant (dataset, seed, scenario, load shape, duration, CPU "
        "pinning, knobs, profiling, machine), a warning saying how goes to stderr.",
    )
    cmp_.add_argument("runs", nargs="+", type=_run_dir, help="results/runs/<run-id> directories")
    cmp_.add_argument(
        "--csv", metavar="FILE", help="also write the table as CSV ('-': only the CSV, to stdout)"
    )
    cmp_.add_argument(
        "--markdown",
        metavar="FILE",
        help="also write the table as Markdown ('-': only the Markdown, to stdout)",
    )


def cmd_compare(args: argparse.Namespace) -> int:
    runs = [compare.load_run(run_dir) for run_dir in args.runs]
    head, rows = compare.headers(runs), compare.compare_rows(runs)
    warning = compare.warning_text(compare.differences([meta for meta, _ in runs]))
    if warning:
        print(warning, file=sys.stderr)
    machine = "-" in (args.csv, args.markdown)  # stdout carries only the machine-readable table
    if not machine:
        print(compare.format_text(head, rows))
    for target, render in (
        (args.csv, compare.format_csv),
        (args.markdown, compare.format_markdown),
    ):
        if not target:
            continue
        _write_table(target, render(head, rows), machine=machine)
    return 0


def _parse_report(sub: Subparsers) -> None:
    rep = sub.add_parser(
        "report",
        help="one self-contained HTML page for one run or a comparison of several",
        description="Write one HTML file (figures inlined, nothing fetched: it opens offline) "
        "for RUN or for several runs side by side: what ran, a warning when the runs differ in "
        "more than the variant, headline measures with ratios to the first run, latency over "
        "time per endpoint, throughput and errors over time, percentiles per endpoint, CPU, "
        "memory and GC per role, faults and notes.",
    )
    rep.add_argument("runs", nargs="+", type=_run_dir, help="results/runs/<run-id> directories")
    rep.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("report.html"),
        metavar="FILE",
        help="the HTML file to write (default: %(default)s)",
    )
    rep.add_argument(
        "--bucket",
        type=float,
        default=1.0,
        metavar="S",
        help="time bucket of the over-time figures, in seconds (default: %(default)s)",
    )


def cmd_report(args: argparse.Namespace) -> int:
    from archlab.analysis.compare import warning_text
    from archlab.figures.report import write_report

    diffs = write_report(args.runs, args.output, bucket_s=args.bucket)
    if diffs:
        print(warning_text(diffs), file=sys.stderr)
    print(f"written: {args.output}")
    return 0


def _parse_validate(sub: Subparsers) -> None:
    val = sub.add_parser(
        "validate",
        help="check run directories against the results schema",
        description="Check each RUN_DIR against results/README.md (files, CSV headers and "
        "rows, meta.json and summary.json fields); exit 1 if any problem is found.",
    )
    val.add_argument("runs", nargs="+", type=_run_dir, help="results/runs/<run-id> directories")


def cmd_validate(args: argparse.Namespace) -> int:
    bad = 0
    for run_dir in args.runs:
        problems = validate.validate_run(run_dir)
        if problems:
            bad += 1
            print(f"{run_dir}: {len(problems)} problem(s)")
            for problem in problems:
                print(f"  - {problem}")
        else:
            print(f"{run_dir}: ok")
    return 1 if bad else 0


def _parse_gc_pause(sub: Subparsers) -> None:
    gcp = sub.add_parser(
        "gc-pause",
        help="time a full GC collection of the recommendation engine's real heap",
        description="Load the recommendations context from a dataset as a variant does, then "
        "time gc.collect() (a full collection) REPEATS times in this process.",
    )
    gcp.add_argument(
        "--size", choices=SIZES, default="small", help="dataset size (default: %(default)s)"
    )
    gcp.add_argument("--seed", type=int, default=1, help="dataset seed (default: %(default)s)")
    gcp.add_argument("--repeats", type=int, default=5, help="collections timed (default: 5)")


def cmd_gc_pause(args: argparse.Namespace) -> int:
    print(f"loading the recommendation model at size {args.size} ...", file=sys.stderr)
    print(json.dumps(gcpause.measure(args.size, args.seed, args.repeats), indent=2))
    return 0


def _parse_bench(sub: Subparsers) -> None:
    bench = sub.add_parser(
        "bench",
        help="micro-benchmarks (hop: one contract call in-process vs IPC vs HTTP; engine: the "
        "recommendation model rebuilt in Python and in Rust; server: the monolith against the "
        "bare HTTP stack under each server; instruments: the telemetry's own cost; floor: the "
        "lab's load generator against the bare endpoint, cross-checked by a stdlib client)",
        description="hop: time the same catalog calls as a method call, through the msgpack "
        "codec alone, over a Unix socket to another process (the multiprocess variant's IPC), "
        "over HTTP to a service under each HTTP server (the distributed variant's transport) "
        "and with urllib3 as the client, each against its floor (a raw echo over the same "
        "socket), in --rounds interleaved rounds; and one recommendation call into each "
        "engine. engine: rebuild the recommendation model in a "
        "process of each engine over the same store, alternating, at each --sizes, and read "
        "each process's memory. server: wrk drives the monolith's GET /products/{id} and the "
        "bare endpoint (the same server and framework, no domain) under each HTTP server, "
        "pinned, in --rounds interleaved rounds of --seconds. instruments: see its options. "
        "floor: the latency the lab reports when the server does nothing (the bare endpoint), "
        "at each --rates, and how much of it is the lab's generator; see its options.",
    )
    bench.add_argument(
        "which",
        choices=["hop", "engine", "server", "instruments", "floor"],
        help="which micro-benchmark",
    )
    bench.add_argument(
        "--calls", type=int, default=5000, help="hop: timed calls per hop and call, per round"
    )
    bench.add_argument(
        "--warmup", type=int, default=500, help="hop: untimed calls first, per round"
    )
    bench.add_argument(
        "--sizes", default="small,full", help="engine: dataset sizes, comma-separated"
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="hop: rounds, every hop once per round in turn; engine: rebuilds per engine; "
        "server: rounds of every (server, target) pair; floor: rounds of every rate "
        f"(default: 5; floor: {floor_bench.DEFAULT_ROUNDS})",
    )
    bench.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="server: seconds of wrk load per measurement; floor: measured seconds per rate "
        "and round, after a 1 s warm-up (default: %(default)s)",
    )
    bench.add_argument(
        "--threads",
        type=int,
        default=server_bench.DEFAULT_THREADS,
        help="server: request threads of the monolith and of the bare endpoint; granian admits "
        "as many requests at once (default: %(default)s, the placements' default)",
    )
    bench.add_argument(
        "--placements",
        default=",".join(hop.DEFAULT_PLACEMENTS),
        help="hop: where the client and the servers run, comma-separated, the first is the "
        "headline: "
        + "; ".join(f"{name}: {text}" for name, text in hop.PLACEMENTS.items())
        + " (default: %(default)s)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    instruments_bench.add_arguments(bench)
    floor_bench.add_arguments(bench)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.which == "instruments":
        return instruments_bench.main(args)
    if args.which == "floor":
        return floor_bench.main(args)
    if args.rounds is None:
        args.rounds = 5
    if args.which == "server":
        if args.rounds < 1 or args.seconds <= 0 or args.threads < 1:
            print("archlab: error: bench server: --rounds and --threads at least 1, --seconds "
                  "above 0", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        try:
            report = server_bench.measure(
                rounds=args.rounds,
                seconds=args.seconds,
                threads=args.threads,
                echo=lambda t: print(t, file=sys.stderr, flush=True),
            )
        except server_bench.BenchError as exc:
            print(f"archlab: error: bench server: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(json.dumps(report, indent=2) if args.json else server_bench.format_table(report))
        return 0
    if args.which == "engine":
        sizes = tuple(s.strip() for s in args.sizes.split(",") if s.strip())
        unknown = [s for s in sizes if s not in SIZES]
        if unknown or args.rounds < 1:
            print(f"error: --sizes from {', '.join(SIZES)}; --rounds at least 1", file=sys.stderr)
            return 2
        print(
            f"rebuilding the model {args.rounds} times per engine at {', '.join(sizes)} ...",
            file=sys.stderr,
        )
        report = engine_bench.measure(sizes, args.rounds, echo=lambda t: print(t, file=sys.stderr))
        print(json.dumps(report, indent=2) if args.json else engine_bench.format_table(report))
        return 0
    if args.rounds < 1 or args.calls < 1 or args.warmup < 0:
        print(
            "archlab: error: bench hop: --rounds and --calls at least 1, --warmup at least 0",
            file=sys.stderr,
        )
        return EXIT_USAGE
    placements = tuple(p.strip() for p in args.placements.split(",") if p.strip())
    try:
        hop.resolve_placements(placements, sorted(os.sched_getaffinity(0)))
    except ValueError as exc:
        print(f"archlab: error: bench hop: --placements: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"timing {args.calls} calls per hop in each of {args.rounds} rounds, placed "
        f"{', '.join(placements)} ...",
        file=sys.stderr,
    )
    report = hop.measure(
        n=args.calls,
        warmup=args.warmup,
        rounds=args.rounds,
        echo=lambda t: print(t, file=sys.stderr, flush=True),
        placements=placements,
    )
    print(json.dumps(report, indent=2) if args.json else hop.format_table(report))
    return 0


def _parse_blast(sub: Subparsers) -> None:
    bl = sub.add_parser(
        "blast",
        help="blast radius: each fault's effect on every endpoint, and time to recover",
        description="For each fault of each run (faults.csv) and each endpoint: error rate and "
        "p99 during the fault against the run's own baseline (after warm-up, before the first "
        "fault), and the time until the endpoint is back within tolerance (error rate <= "
        "baseline + 1 pp, p99 <= max(2 x baseline, baseline + 20 ms), 3 consecutive 1 s "
        "buckets). Definitions: archlab/analysis/blast.py.",
    )
    bl.add_argument("runs", nargs="+", type=_run_dir, help="results/runs/<run-id> directories")
    bl.add_argument("--csv", metavar="FILE", help="also write the matrix as CSV ('-': stdout)")


def cmd_blast(args: argparse.Namespace) -> int:
    for run_dir in args.runs:
        if stored(run_dir / REQUESTS) is None:
            raise FileNotFoundError(f"{run_dir} has no {REQUESTS}: no blast radius to compute")
    rows = blast.matrix(args.runs)
    machine = args.csv == "-"  # stdout carries only the CSV
    if not rows:
        print("no faults in these runs (no faults.csv rows)", file=sys.stderr if machine else None)
    elif not machine:
        print(blast.format_text(rows))
    if args.csv:
        _write_table(args.csv, blast.format_csv(rows), machine=machine)
    return 0


class Command(NamedTuple):
    """A subcommand: its options, and what it does with them (an exit code)."""

    add_parser: Callable[[Subparsers], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "placements": Command(_parse_placements, cmd_placements),
    "serve": Command(_parse_serve, cmd_serve),
    "run": Command(_parse_run, cmd_run),
    "reproduce": Command(_parse_reproduce, cmd_reproduce),
    "figures": Command(_parse_figures, cmd_figures),
    "reference": Command(_parse_reference, cmd_reference),
    "summarize": Command(_parse_summarize, cmd_summarize),
    "compare": Command(_parse_compare, cmd_compare),
    "report": Command(_parse_report, cmd_report),
    "validate": Command(_parse_validate, cmd_validate),
    "gc-pause": Command(_parse_gc_pause, cmd_gc_pause),
    "bench": Command(_parse_bench, cmd_bench),
    "blast": Command(_parse_blast, cmd_blast),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="archlab",
        description="Compare deployments of one shop workload by measurement: placements "
        "from a monolith through a process family to services (`archlab placements`).",
    )
    parser.add_argument("--version", action="version", version=f"archlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `archlab` console script."""
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows up at once through a pipe
    # Ctrl-C works even when started with SIGINT ignored (e.g. as a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        return COMMANDS[args.command].run(args)
    except BrokenPipeError:  # the reader went away (`archlab compare ... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; child processes stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except procs.ProcessError as exc:  # the lab ran and something in it failed
        print(f"archlab: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, FileExistsError, FileNotFoundError) as exc:  # a usage error
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"archlab: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
