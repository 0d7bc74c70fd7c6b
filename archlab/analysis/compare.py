"""`archlab compare RUN...`: runs side by side, one column per run, one row per measure.

Reads each run's summary.json (recomputing it from the raw files when it is missing) and
meta.json. Rows: what ran (variant, knobs, load, pinning), throughput, errors, p50/p99/p99.9
per endpoint (and corrected p99 for open-loop runs), server CPU per request and memory, GC pause
totals and maxima per role, and the load generator's state. Cells a run lacks (an older schema,
no such endpoint or role) read "-". Output as a text table, CSV or Markdown.

`differences(metas)` says how the runs differ beyond the variant (dataset, seed, scenario, load
shape, duration, CPU pinning, shared knobs, profiling, GC telemetry, process sampler, domain
config, machine):
`archlab compare` and `archlab report` print it as a warning. `headline` and `ratios` give the
few measures a report sets against the first run (run i / run 1).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from archlab.analysis.summary import ALL, summarize_run
from archlab.rundir import REQUESTS, SUMMARY, read_json, read_meta, stored, warmup_of

Row = tuple[str, list[str]]


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(meta, summary) of a run directory."""
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is not a run directory")
    meta = read_meta(run_dir) or {"run_id": run_dir.name}
    summary = read_json(run_dir / SUMMARY)
    if summary is None:
        if stored(run_dir / REQUESTS) is None:
            raise ValueError(f"{run_dir} has neither {SUMMARY} nor {REQUESTS}")
        summary = summarize_run(run_dir, warmup_s=warmup_of(meta))
    return meta, summary


def dig(data: Any, *path: str) -> Any:
    """data[path[0]][path[1]]...; None where a level is missing (an older run lacks the field)."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _num(value: Any, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def compare_rows(runs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[Row]:
    """The comparison as rows of (measure, one cell per run)."""

    def row(name: str, fn: Any) -> Row:
        return name, [fn(meta, summary) for meta, summary in runs]

    rows: list[Row] = [
        row("variant", lambda m, s: str(m.get("variant", "-"))),
        row(
            "knobs",
            lambda m, s: " ".join(f"{k}={v}" for k, v in (m.get("knobs") or {}).items()) or "-",
        ),
        row("scenario", lambda m, s: str(dig(m, "scenario", "name") or "-")),
        row("dataset", lambda m, s: str(m.get("dataset_size", "-"))),
        row(
            "load",
            lambda m, s: (
                f"open {_num(dig(m, 'load', 'offered_rps'), '{:g}')} req/s"
                if dig(m, "load", "loop") == "open" and dig(m, "load", "offered_rps")
                else f"{dig(m, 'load', 'loop') or 'closed'} {m.get('users', '-')} users"
            ),
        ),
        row("duration s", lambda m, s: _num(dig(s, "window", "seconds"))),
        row(
            "CPUs",
            lambda m, s: (
                "shared"
                if dig(m, "cpu_pinning", "shared") in (None, True)
                else f"sut {len(dig(m, 'cpu_pinning', 'server') or [])}"
                f" / gen {len(dig(m, 'cpu_pinning', 'generator') or [])}"
            ),
        ),
        row("profiled", lambda m, s: "yes" if dig(m, "profile", "enabled") else "no"),
        row("throughput req/s", lambda m, s: _num(dig(s, "endpoints", ALL, "throughput_rps"))),
        row("errors", lambda m, s: _num(dig(s, "endpoints", ALL, "errors"), "{:d}")),
        row(
            "error rate %",
            lambda m, s: _num((dig(s, "endpoints", ALL, "error_rate") or 0) * 100, "{:.2f}"),
        ),
    ]
    endpoints = sorted({ep for _, s in runs for ep in (s.get("endpoints") or {})} - {ALL})
    corrected = any(s.get("corrected") for _, s in runs)
    for ep in [ALL, *endpoints]:
        for key, label in (("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9")):
            rows.append(row(f"{label} ms {ep}", lambda m, s, e=ep, k=key: _lat(s, e, k)))
        if corrected:
            rows.append(
                row(
                    f"p99 corrected ms {ep}",
                    lambda m, s, e=ep: _num(dig(s, "endpoints", e, "latency_corrected_ms", "p99")),
                )
            )
    rows += [
        row(
            "server CPU ms/request",
            lambda m, s: _num(dig(s, "server", "total", "cpu_ms_per_request"), "{:.3f}"),
        ),
        row(
            "server cores used",
            lambda m, s: _num(dig(s, "server", "total", "mean_cores"), "{:.2f}"),
        ),
        row(
            "server processes",
            lambda m, s: _num(dig(s, "server", "total", "processes_peak"), "{:d}"),
        ),
        row("memory PSS peak MiB", lambda m, s: _mib(dig(s, "server", "total", "pss_peak_bytes"))),
        row("memory USS peak MiB", lambda m, s: _mib(dig(s, "server", "total", "uss_peak_bytes"))),
        row("memory RSS peak MiB", lambda m, s: _mib(dig(s, "server", "total", "rss_peak_bytes"))),
    ]
    roles = sorted({r for _, s in runs for r in (dig(s, "server", "roles") or {})})
    for role in roles:
        rows.append(
            row(
                f"PSS peak MiB {role}",
                lambda m, s, r=role: _mib(dig(s, "server", "roles", r, "pss_peak_bytes")),
            )
        )
        rows.append(
            row(
                f"CPU ms/request {role}",
                lambda m, s, r=role: _num(
                    dig(s, "server", "roles", r, "cpu_ms_per_request"), "{:.3f}"
                ),
            )
        )
    gc_roles = sorted(
        {r for _, s in runs for r in (dig(s, "gc", "roles") or {})}
        | {r for _, s in runs for r in (dig(s, "gc", "no_collector") or ())}
    )
    for role in gc_roles:
        rows.append(row(f"GC pause total ms (collections) {role}", lambda m, s, r=role: _gc(s, r)))
        rows.append(
            row(
                f"GC pause max ms {role}",
                lambda m, s, r=role: _num(dig(s, "gc", "roles", r, "max_pause_ms")),
            )
        )
    rows += [
        row("GC largest pause (whole run)", lambda m, s: _largest(s)),
        row(
            "generator CPU mean %",
            lambda m, s: _num(dig(s, "generator", "mean_cpu_percent"), "{:.0f}"),
        ),
        row(
            "generator CPU ms/request",
            lambda m, s: _num(dig(s, "generator", "cpu_ms_per_request"), "{:.3f}"),
        ),
        row(
            "generator saturated",
            lambda m, s: (
                "-"
                if dig(s, "generator", "saturated") is None
                else ("YES" if s["generator"]["saturated"] else "no")
            ),
        ),
    ]
    return rows


def _gc(summary: dict[str, Any], role: str) -> str:
    if role in (dig(summary, "gc", "no_collector") or ()):
        return "no collector"
    st = dig(summary, "gc", "roles", role)
    return "-" if not st else f"{st['total_pause_ms']:.1f} ({st['collections']})"


def _largest(summary: dict[str, Any]) -> str:
    largest = dig(summary, "gc", "largest_pause")
    return "-" if not largest else f"{largest['duration_ms']:.1f} ms {largest['role']}"


def _lat(summary: dict[str, Any], endpoint: str, key: str) -> str:
    return _num(dig(summary, "endpoints", endpoint, "latency_ms", key))


def headers(runs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    return [str(meta.get("run_id", f"run {i + 1}")) for i, (meta, _) in enumerate(runs)]


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_text(head: list[str], rows: list[Row]) -> str:
    """A fixed-width table; long cells (knobs) are clipped, CSV/Markdown keep them whole."""
    rows = [(name, [_clip(c) for c in cells]) for name, cells in rows]
    width = max(len(r[0]) for r in rows)
    cols = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join([" " * width, *(h.rjust(c) for h, c in zip(head, cols, strict=True))])]
    lines.append("-" * len(lines[0]))
    for name, cells in rows:
        lines.append(
            "  ".join([name.ljust(width), *(v.rjust(c) for v, c in zip(cells, cols, strict=True))])
        )
    return "\n".join(lines)


def format_csv(head: list[str], rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["measure", *head])
    for name, cells in rows:
        writer.writerow([name, *cells])
    return buf.getvalue()


def format_markdown(head: list[str], rows: list[Row]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| measure | " + " | ".join(esc(h) for h in head) + " |"]
    lines.append("|---|" + "---:|" * len(head))
    for name, cells in rows:
        lines.append(f"| {esc(name)} | " + " | ".join(esc(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def compare(run_dirs: Sequence[Path]) -> tuple[list[str], list[Row]]:
    runs = [load_run(Path(d)) for d in run_dirs]
    return headers(runs), compare_rows(runs)


# ---------------------------------------------------------------- do these runs differ, and how

Meta = dict[str, Any]


def _cpus(cpus: Any) -> str:
    return ",".join(str(c) for c in cpus) if cpus else "all"


def pinning(m: Meta) -> str | None:
    pin = m.get("cpu_pinning")
    if not isinstance(pin, dict):
        return None
    shared = "shared" if pin.get("shared") in (None, True) else "disjoint"
    procs = pin.get("generator_processes")
    gen = f" ({procs} locust processes)" if procs and procs > 1 else ""
    server, generator = _cpus(pin.get("server")), _cpus(pin.get("generator"))
    return f"server CPUs {server}, generator CPUs {generator}{gen}, {shared}"


def _load(m: Meta, key: str) -> Any:
    return dig(m, "load", key)


def _loop(m: Meta) -> str:
    return str(_load(m, "loop") or "closed")  # schema 1: closed loop, no load section


def _steps(m: Meta) -> str | None:
    if m.get("load") is None:
        return None
    steps = _load(m, "steps") or []
    return " ".join(str(s) for s in steps) if steps else "none (constant)"


def _if(cond: Callable[[Meta], bool], fn: Callable[[Meta], Any]) -> Callable[[Meta], Any]:
    return lambda m: fn(m) if cond(m) else None


def _open(m: Meta) -> bool:
    return _loop(m) == "open"


def _ramp(m: Meta) -> bool:
    return bool(_load(m, "steps"))


def _machine(m: Meta) -> str | None:
    mach = m.get("machine")
    if not isinstance(mach, dict):
        return None
    cpus = len(mach.get("usable_cpus") or []) or mach.get("cpu_count_logical") or "?"
    return f"{mach.get('hostname', '?')}: {cpus} CPUs, {mach.get('cpu_model', '?')}"


def _span(value: Any) -> str | None:
    if not value:
        return None
    return "-".join(f"{float(v):g}" for v in value) + " s"


# (what, how to read it from meta.json); None = not known or not applicable for that run
ASPECTS: tuple[tuple[str, Callable[[Meta], Any]], ...] = (
    ("dataset", lambda m: m.get("dataset_size")),
    ("seed", lambda m: m.get("seed")),
    ("scenario", lambda m: dig(m, "scenario", "name")),
    ("load loop", _loop),
    ("load users/streams", lambda m: _load(m, "users") or m.get("users")),
    ("load rate per stream req/s", _if(_open, lambda m: _load(m, "rate_per_user"))),
    ("load steps", _steps),
    ("load step s", _if(_ramp, lambda m: _load(m, "step_s"))),
    ("load think time", _if(lambda m: not _open(m), lambda m: _span(_load(m, "wait_time")))),
    ("load max in flight", _if(_open, lambda m: _load(m, "max_in_flight"))),
    ("duration s", lambda m: m.get("duration_s")),
    ("CPU pinning", pinning),
    ("profiled", lambda m: dig(m, "profile", "enabled")),
    ("GC telemetry", lambda m: dig(m, "telemetry", "gc")),
    ("process sampler", lambda m: dig(m, "telemetry", "process_sampler")),
    ("server telemetry", lambda m: m.get("server_telemetry")),
    ("machine", _machine),
)
# (what, the dict in meta.json): compared key by key, between the runs that have the key
KEYED_ASPECTS: tuple[tuple[str, Callable[[Meta], Any]], ...] = (
    ("knob", lambda m: m.get("knobs")),
    ("load task weight", lambda m: _load(m, "weights")),
    ("shop config", lambda m: m.get("shop_config")),
)


def _run_label(meta: Meta, i: int) -> str:
    return str(meta.get("run_id") or f"run {i + 1}")


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _differ(label: str, values: list[tuple[str, Any]]) -> str | None:
    """'label: a (run1, run2); b (run3)' when the known values are not all equal."""
    groups: dict[str, list[str]] = {}
    for run, value in values:
        if value is not None:
            groups.setdefault(_fmt_value(value), []).append(run)
    if len(groups) < 2:
        return None
    return f"{label}: " + "; ".join(f"{v} ({', '.join(runs)})" for v, runs in groups.items())


def differences(metas: Sequence[Meta]) -> list[str]:
    """How these runs differ beyond the variant: one line per aspect ([] = comparable).

    The variant is what a comparison compares, so it is never a difference. A knob counts only
    between runs that have it (monolith `workers` and multiprocess `backends` are not the same
    thing); a value a run does not record (an older schema) or that does not apply to it (think
    time of an open loop) is left out rather than reported as a difference.
    """
    labels = [_run_label(m, i) for i, m in enumerate(metas)]
    found = []
    for label, read in ASPECTS:
        line = _differ(label, [(run, read(m)) for run, m in zip(labels, metas, strict=True)])
        if line:
            found.append(line)
    for label, read in KEYED_ASPECTS:
        dicts = [
            (run, read(m) if isinstance(read(m), dict) else {})
            for run, m in zip(labels, metas, strict=True)
        ]
        for key in sorted({k for _, d in dicts for k in d}):
            line = _differ(f"{label} {key}", [(run, d.get(key)) for run, d in dicts])
            if line:
                found.append(line)
    return found


def warning_text(diffs: Sequence[str]) -> str:
    """The warning `archlab compare` prints (empty when the runs are comparable)."""
    if not diffs:
        return ""
    lines = ["WARNING: these runs differ in more than the variant; compare with care:"]
    return "\n".join([*lines, *(f"  - {d}" for d in diffs)])


# ---------------------------------------------------------------- headline measures, ratios

# (measure, where in summary.json); the first run is the base of the ratios
HEADLINE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("throughput req/s", ("endpoints", ALL, "throughput_rps")),
    ("error rate %", ("endpoints", ALL, "error_rate")),
    ("p50 ms", ("endpoints", ALL, "latency_ms", "p50")),
    ("p99 ms", ("endpoints", ALL, "latency_ms", "p99")),
    ("p99.9 ms", ("endpoints", ALL, "latency_ms", "p99_9")),
    ("p99 corrected ms", ("endpoints", ALL, "latency_corrected_ms", "p99")),
    ("server CPU ms/request", ("server", "total", "cpu_ms_per_request")),
    ("server cores used", ("server", "total", "mean_cores")),
    ("memory PSS peak MiB", ("server", "total", "pss_peak_bytes")),
    ("server processes", ("server", "total", "processes_peak")),
    ("GC largest pause ms", ("gc", "largest_pause", "duration_ms")),
    ("generator CPU mean %", ("generator", "mean_cpu_percent")),
)


def headline(summary: dict[str, Any]) -> dict[str, float | None]:
    """The headline measures of one summary (None when the run lacks one)."""
    out: dict[str, float | None] = {}
    for name, path in HEADLINE:
        value = dig(summary, *path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            out[name] = None
            continue
        if name == "error rate %":
            value *= 100
        elif "MiB" in name:
            value /= 2**20
        out[name] = float(value)
    return out


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, None when either is missing or the base is 0."""
    if value is None or base is None or base == 0:
        return None
    return value / base


def ratios(
    summaries: Sequence[dict[str, Any]],
) -> list[tuple[str, list[float | None], list[float | None]]]:
    """Per headline measure: each run's value and its ratio to the first run's."""
    heads = [headline(s) for s in summaries]
    rows = []
    for name, _ in HEADLINE:
        values = [h[name] for h in heads]
        if all(v is None for v in values):
            continue
        rows.append((name, values, [ratio(v, values[0]) for v in values]))
    return rows
