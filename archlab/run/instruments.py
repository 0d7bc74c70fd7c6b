"""`archlab bench instruments`: what the lab's own instruments cost the system they measure.

Two instruments run inside every measured run: the variant's GC telemetry (a `gc.callbacks`
hook and a flush thread in each of its processes, `variants/telemetry.py`) and the harness's
process sampler (a thread reading every process of the variant each interval,
`archlab/measure/sampler.py`). Their cost is measured the only way that shows it: the same
open-loop run with both on and with both off (`ARCHLAB_TELEMETRY=0`, no sampler), repeated.

- The arms alternate in pairs, ON/OFF then OFF/ON (ABBA), across the variants: each repetition
  of a variant is one adjacent ON/OFF pair, so drift of a shared machine (another benchmark, a
  thermal or frequency change) lands on both arms of a pair, and a linear drift cancels over two
  repetitions.
- Open loop at a fixed rate well below saturation: the load is the same in both arms, so a
  cost shows as CPU per request and latency, not as a different load.
- CPU per request cannot come from the sampler (it is one of the arms); every run of both arms
  reads the variant's CPU instead with a `CpuBracket` (archlab/measure/cpubracket.py): two
  readings of its process tree, at the measured window's ends. The harness's own CPU (where the
  sampler's thread runs) is read at the same moments: `total` CPU is variant + harness, the
  machine's cost, since on a small machine both share its CPUs.
- The overhead of a metric is the ratio ON/OFF of its means over the repetitions, with a 95 %
  interval from a paired bootstrap over the repetitions (pairs resampled together, so a pair's
  shared drift stays shared). `scipy.stats.bootstrap` (percentile) when scipy is installed, else
  the same percentile bootstrap in numpy; the report says which.

Latency percentiles are the run's own, corrected for coordinated omission (open loop), over the
summary's window (after the warm-up).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archlab.analysis.records import read_records
from archlab.analysis.summary import ALL
from archlab.deployers import SIZES, get_variant
from archlab.host import procs
from archlab.host.machine import usable_cpus
from archlab.run.plan import RunPlan
from archlab.run.runner import execute
from archlab.rundir import (
    REQUESTS,
    SUMMARY,
    Status,
    default_runs_dir,
    iso,
    read_json,
    read_meta,
    utc_now,
    write_json,
)

ARMS = ("on", "off")
DEFAULT_VARIANTS = ("monolith", "multiprocess", "distributed")
DEFAULT_RATE = 100.0  # req/s: well below any variant's knee on 2 CPUs
DEFAULT_DURATION_S = 20  # measured seconds, after the warm-up
DEFAULT_WARMUP_S = 5  # seconds after the first request left out (the summary's warm-up)
DEFAULT_REPEATS = 5
GOAL = 0.02  # the instruments may cost at most 2 %
CONFIDENCE = 0.95
RESAMPLES = 10_000
READY_TIMEOUT_S = 180.0
REPORT = "instruments.json"
LOG = "bench.log"
MAX_FAILED_IN_A_ROW = 3  # then the bench itself is broken, not one run: stop

# (key, label, +1 when higher means costlier, -1 when lower does)
METRICS: tuple[tuple[str, str, int], ...] = (
    ("throughput_rps", "throughput req/s", -1),
    ("p50_ms", "p50 ms (corrected)", 1),
    ("p99_ms", "p99 ms (corrected)", 1),
    ("server_cpu_ms_per_req", "variant CPU ms/req", 1),
    ("total_cpu_ms_per_req", "variant+harness CPU ms/req", 1),
)

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Config:
    """One bench: which variants, what load, how many repetitions per arm."""

    variants: tuple[str, ...] = DEFAULT_VARIANTS
    rate: float = DEFAULT_RATE
    duration_s: int = DEFAULT_DURATION_S
    warmup_s: int = DEFAULT_WARMUP_S
    repeats: int = DEFAULT_REPEATS
    size: str = "tiny"
    seed: int = 1
    resamples: int = RESAMPLES

    def check(self) -> None:
        if not self.variants:
            raise ValueError("--variants: name at least one")
        if self.repeats < 2:
            raise ValueError("--repeats: at least 2 (an interval needs repetitions)")
        if self.rate <= 0 or self.duration_s < 1 or self.warmup_s < 0:
            raise ValueError("--rate positive, --duration at least 1 s, --warmup-s at least 0")


def schedule(variants: Sequence[str], repeats: int) -> list[tuple[int, str, str]]:
    """(repetition, variant, arm) in run order: per repetition each variant's ON/OFF pair,
    ON first and OFF first alternating (ABBA), so neither arm always runs first."""
    order = []
    for rep in range(repeats):
        for i, variant in enumerate(variants):
            arms = ARMS if (rep + i) % 2 == 0 else ARMS[::-1]
            order += [(rep, variant, arm) for arm in arms]
    return order


def run_plan(cfg: Config, variant: str, arm: str, run_id: str) -> RunPlan:
    """The open-loop run of one arm: the same in both but for the two instruments."""
    on = arm == "on"
    return RunPlan(
        variant=variant,
        scenario="open",
        rate=cfg.rate,
        duration_s=cfg.warmup_s + cfg.duration_s,
        warmup_s=cfg.warmup_s,
        size=cfg.size,
        seed=cfg.seed,
        run_id=run_id,
        ready_timeout_s=READY_TIMEOUT_S,
        keep_state=False,
        gc_telemetry=on,
        process_sampler=on,
        cpu_bracket=True,  # both arms: the CPU measured the same way
    )


def run_metrics(run_dir: Path) -> dict[str, Any]:
    """The measures of one finished run from its own files (meta.json, summary, requests)."""
    meta = read_meta(run_dir)
    summary = read_json(run_dir / SUMMARY) or {}
    out: dict[str, Any] = {"status": meta.get("status")}
    bracket = meta.get("cpu_bracket") or {}
    total = (summary.get("endpoints") or {}).get(ALL)
    if not total or not bracket.get("opened"):
        out["error"] = meta.get("error") or bracket.get("error") or "no summary"
        return out
    latency = total.get("latency_corrected_ms") or total["latency_ms"]
    start, end = bracket["start"], bracket["end"]
    inside = sum(1 for r in read_records(run_dir / REQUESTS) if start <= r.start_time < end)
    server, harness = bracket["server_cpu_s"], bracket["harness_cpu_s"]
    out.update(
        throughput_rps=summary["load"]["achieved_rps"],
        p50_ms=latency["p50"],
        p99_ms=latency["p99"],
        server_cpu_ms_per_req=round(1000 * server / inside, 4) if inside else None,
        harness_cpu_ms_per_req=round(1000 * harness / inside, 4) if inside else None,
        total_cpu_ms_per_req=round(1000 * (server + harness) / inside, 4) if inside else None,
        harness_cpu_pct=round(100 * harness / bracket["seconds"], 2),  # of one CPU
        errors=total["errors"],
        requests=total["count"],
        bracket_requests=inside,
        bracket_s=bracket["seconds"],
        sampler_cpu_ms_per_req=((summary.get("server") or {}).get("total") or {}).get(
            "cpu_ms_per_request"
        ),  # ON only: the sampler's view, a cross-check of the bracket
        gc_collections=(summary.get("gc") or {}).get("collections"),
    )
    return out


def interval_method() -> str:
    try:
        import scipy.stats  # noqa: F401
    except ImportError:
        return "numpy percentile bootstrap, paired (scipy not installed)"
    return "scipy.stats.bootstrap, percentile, paired"


def ratio_interval(
    on: Sequence[float],
    off: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean(on) / mean(off), low, high): the ratio with a percentile bootstrap interval.

    `on[i]` and `off[i]` are one repetition's pair; resampling draws pairs, not runs.
    """
    a, b = np.asarray(on, dtype=float), np.asarray(off, dtype=float)
    if a.shape != b.shape or a.size < 2:
        raise ValueError("ratio_interval: two equal-length samples of at least 2 pairs")
    ratio = float(a.mean() / b.mean())
    alpha = (1 - confidence) / 2
    try:
        from scipy import stats
    except ImportError:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, a.size, size=(resamples, a.size))
        boot = a[idx].mean(axis=1) / b[idx].mean(axis=1)
        low, high = np.quantile(boot, [alpha, 1 - alpha])
        return ratio, float(low), float(high)

    def stat(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x, axis=axis) / np.mean(y, axis=axis)

    options: dict[str, Any] = dict(
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # identical pairs: a degenerate (zero-width) interval
        try:
            res = stats.bootstrap((a, b), stat, rng=np.random.default_rng(seed), **options)
        except TypeError:  # scipy before 1.15 calls it random_state
            res = stats.bootstrap((a, b), stat, random_state=np.random.default_rng(seed), **options)
    return ratio, float(res.confidence_interval.low), float(res.confidence_interval.high)


def verdict(low_pct: float, high_pct: float, goal: float = GOAL) -> str:
    """Whether the overhead's interval is under the goal, over it, or straddles it."""
    if high_pct < 100 * goal:
        return f"< {100 * goal:g} %"
    if low_pct > 100 * goal:
        return f"> {100 * goal:g} %"
    return "undecided"


def overhead(
    on: Sequence[float], off: Sequence[float], direction: int, *, resamples: int = RESAMPLES
) -> dict[str, Any]:
    """One metric of one variant: means, the ratio ON/OFF with its interval, the overhead.

    The overhead is what the instruments cost, in percent: ratio - 1 for a metric where higher
    is costlier (latency, CPU), 1/ratio - 1 where lower is (throughput).
    """
    ratio, low, high = ratio_interval(on, off, resamples=resamples)

    def cost(r: float) -> float:
        return 100 * (r - 1 if direction > 0 else 1 / r - 1)

    lo_pct, hi_pct = sorted((cost(low), cost(high)))
    return {
        "n": len(on),
        "on_mean": round(float(np.mean(on)), 4),
        "off_mean": round(float(np.mean(off)), 4),
        "ratio": round(ratio, 4),
        "ratio_low": round(low, 4),
        "ratio_high": round(high, 4),
        "overhead_pct": round(cost(ratio), 2),
        "overhead_low_pct": round(lo_pct, 2),
        "overhead_high_pct": round(hi_pct, 2),
        "verdict": verdict(lo_pct, hi_pct),
        "pair_ratios": [round(x / y, 4) if y else None for x, y in zip(on, off, strict=True)],
    }


def overheads(runs: list[dict[str, Any]], cfg: Config) -> dict[str, dict[str, Any]]:
    """Per variant and metric, over the repetitions whose two runs both completed."""
    out: dict[str, dict[str, Any]] = {}
    for variant in cfg.variants:
        pairs: dict[int, dict[str, dict[str, Any]]] = {}
        for run in runs:
            if run["variant"] == variant and run["status"] == Status.COMPLETED:
                pairs.setdefault(run["rep"], {})[run["arm"]] = run["metrics"]
        full = [p for _, p in sorted(pairs.items()) if set(p) == set(ARMS)]
        per_metric: dict[str, Any] = {}
        for key, _, direction in METRICS:
            values = [(p["on"].get(key), p["off"].get(key)) for p in full]
            values = [(a, b) for a, b in values if a is not None and b]
            if len(values) < 2:
                per_metric[key] = {"n": len(values), "verdict": "too few pairs"}
                continue
            on, off = zip(*values, strict=True)
            per_metric[key] = overhead(on, off, direction, resamples=cfg.resamples)
        harness = {arm: [p[arm]["harness_cpu_pct"] for p in full] for arm in ARMS}
        if full:  # the harness's own CPU (the sampler's thread lives there), % of one CPU
            per_metric["harness_cpu_pct"] = {
                arm: round(float(np.mean(v)), 2) for arm, v in harness.items()
            }
        out[variant] = per_metric
    return out


def _line(metrics: dict[str, Any]) -> str:
    if "error" in metrics:
        return f"no measures: {str(metrics['error']).splitlines()[0]}"
    cpu = metrics["server_cpu_ms_per_req"]
    return (
        f"{metrics['throughput_rps']:.1f} req/s, p50 {metrics['p50_ms']:.2f} ms, "
        f"p99 {metrics['p99_ms']:.2f} ms, variant CPU "
        f"{'-' if cpu is None else f'{cpu:.3f}'} ms/req, errors {metrics['errors']}"
    )


def measure(cfg: Config, out: Path, *, echo: Echo, argv: list[str] | None = None) -> dict:
    """Every run of the schedule into `out/runs/`, the report into `out/instruments.json`.

    The report is rewritten after every run, so an interrupted bench keeps what it measured;
    each run stops everything it started (the runner's own cleanup), also on Ctrl-C.
    """
    cfg.check()
    order = schedule(cfg.variants, cfg.repeats)
    out = out.resolve()  # the report names every run folder by its absolute path
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = out / "runs"
    log = (out / LOG).open("a")
    started = time.monotonic()
    report: dict[str, Any] = {
        "bench": "instruments",
        "started_at": iso(utc_now()),
        "command": argv,
        "config": asdict(cfg),
        "machine": {"cpu_count": os.cpu_count(), "usable_cpus": usable_cpus()},
        "goal_pct": 100 * GOAL,
        "interval": {"method": interval_method(), "confidence": CONFIDENCE},
        "arms": {
            "on": "GC telemetry on, process sampler on, CPU bracket",
            "off": "ARCHLAB_TELEMETRY=0, no process sampler, CPU bracket",
        },
        "complete": False,
        "runs": [],
    }

    def save() -> None:
        report["runtime_s"] = round(time.monotonic() - started, 1)
        report["overhead"] = overheads(report["runs"], cfg)
        write_json(out / REPORT, report)

    def to_log(text: str) -> None:
        log.write(text + "\n")
        log.flush()

    try:
        for i, (rep, variant, arm) in enumerate(order, 1):
            run_id = f"{i:02d}-{variant}-{arm}-r{rep + 1}"
            echo(f"run {i}/{len(order)}: {variant} {arm} (repetition {rep + 1}) ...")
            t0 = time.monotonic()
            row: dict[str, Any] = {"index": i, "rep": rep, "variant": variant, "arm": arm}
            try:
                result = execute(
                    run_plan(cfg, variant, arm, run_id), runs_dir, echo=to_log, argv=argv
                )
                row["status"] = result.status
            except procs.ProcessError as exc:  # a run that failed: recorded, its pair dropped
                row["status"] = Status.FAILED
                row["error"] = str(exc).splitlines()[0]
            row["run_dir"] = str(runs_dir / run_id)
            row["metrics"] = run_metrics(runs_dir / run_id)
            row["seconds"] = round(time.monotonic() - t0, 1)
            report["runs"].append(row)
            echo(f"  {row['status']} in {row['seconds']:.0f} s: {_line(row['metrics'])}")
            save()
            failed = [r["status"] != Status.COMPLETED for r in report["runs"]]
            if len(failed) >= MAX_FAILED_IN_A_ROW and all(failed[-MAX_FAILED_IN_A_ROW:]):
                raise procs.ProcessError(
                    f"{MAX_FAILED_IN_A_ROW} runs in a row failed; stopped (see {out / LOG} and "
                    f"{row['run_dir']}/)"
                )
        report["complete"] = True
    finally:
        report["finished_at"] = iso(utc_now())
        save()
        log.close()
    return report


def _interval(m: dict[str, Any]) -> str:
    return (
        f"{m['overhead_pct']:+.2f} % [{m['overhead_low_pct']:+.2f}, {m['overhead_high_pct']:+.2f}]"
    )


def format_table(report: dict[str, Any]) -> str:
    """Per variant and metric: both arms' means and the overhead with its interval."""
    head = (
        f"{'variant':<13} {'metric':<27} {'ON':>9} {'OFF':>9} {'overhead [95% CI]':>28} "
        f"{'N':>2}  verdict"
    )
    lines = [head, "-" * len(head)]
    labels = {key: label for key, label, _ in METRICS}
    notes = []
    for variant, per_metric in report["overhead"].items():
        harness = per_metric.get("harness_cpu_pct")
        if harness:
            notes.append(
                f"{variant}: the harness process (samplers, bracket) used {harness['on']:.2f} % "
                f"of one CPU with the instruments on, {harness['off']:.2f} % off"
            )
        for key, m in per_metric.items():
            if key not in labels:
                continue
            if "ratio" not in m:
                dash = "-"
                lines.append(
                    f"{variant:<13} {labels[key]:<27} {dash:>9} {dash:>9} {dash:>28} "
                    f"{m['n']:>2}  {m['verdict']}"
                )
                continue
            lines.append(
                f"{variant:<13} {labels[key]:<27} {m['on_mean']:>9.3f} {m['off_mean']:>9.3f} "
                f"{_interval(m):>28} {m['n']:>2}  {m['verdict']}"
            )
    cfg = report["config"]
    lines.append(
        f"\nopen loop {cfg['rate']:g} req/s, {cfg['duration_s']} s measured after "
        f"{cfg['warmup_s']} s warm-up, size {cfg['size']}, {report['machine']['cpu_count']} CPUs; "
        f"overhead = ON vs OFF (positive: the instruments cost), goal < "
        f"{report['goal_pct']:g} %; interval: {report['interval']['method']}"
    )
    return "\n".join([*lines, *notes])


# --- the command line (`archlab bench instruments`, registered in archlab/cli.py) -----------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `bench instruments`, as their own group of `archlab bench`."""
    group = parser.add_argument_group(
        "instruments",
        "the same open-loop run with GC telemetry and the process sampler on and off, "
        "alternating, repeated per variant: their overhead with a 95 % interval",
    )
    group.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help="instruments: placements, comma-separated (default: %(default)s)",
    )
    group.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        metavar="RPS",
        help="instruments: open-loop rate (default: %(default)g)",
    )
    group.add_argument(
        "--duration",
        type=int,
        default=DEFAULT_DURATION_S,
        metavar="S",
        help="instruments: measured seconds per run, after the warm-up (default: %(default)s)",
    )
    group.add_argument(
        "--warmup-s",
        type=int,
        default=DEFAULT_WARMUP_S,
        metavar="S",
        help="instruments: warm-up seconds per run (default: %(default)s)",
    )
    group.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help="instruments: runs per arm and variant (default: %(default)s)",
    )
    group.add_argument(
        "--size", choices=SIZES, default="tiny", help="instruments: dataset (default: tiny)"
    )
    group.add_argument(
        "--out",
        type=Path,
        default=None,
        help="instruments: folder for runs/, bench.log and instruments.json (default: "
        "results/runs/instruments-<UTC time>)",
    )


def main(args: argparse.Namespace) -> int:
    """`archlab bench instruments`: progress on stderr, the table (or JSON) on stdout."""
    cfg = Config(
        variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
        rate=args.rate,
        duration_s=args.duration,
        warmup_s=args.warmup_s,
        repeats=args.repeats,
        size=args.size,
    )
    cfg.check()
    for variant in cfg.variants:
        get_variant(variant)  # an unknown placement is a usage error before any run starts
    out = args.out or default_runs_dir() / f"instruments-{utc_now():%Y%m%d-%H%M%S}"
    runs = 2 * cfg.repeats * len(cfg.variants)
    guess_min = math.ceil(runs * (cfg.warmup_s + cfg.duration_s + 15) / 60)
    print(
        f"{runs} runs ({cfg.repeats} per arm x {len(cfg.variants)} variants), about "
        f"{guess_min} min; run logs in {out / LOG}",
        file=sys.stderr,
    )
    report = measure(cfg, out, echo=lambda t: print(t, file=sys.stderr, flush=True), argv=sys.argv)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    print(f"written: {out / REPORT}", file=sys.stderr)
    return 0
