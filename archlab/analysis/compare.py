"""`archlab compare RUN...`: runs side by side, one column per run, one row per measure.

Reads each run's summary.json (recomputing it from the raw files when it is missing) and
meta.json. Rows: what ran (variant, knobs, load, pinning), throughput, errors, p50/p99/p99.9
per endpoint (and corrected p99 for open-loop runs), server CPU per request and memory, GC pause
totals and maxima per role, and the load generator's state. Cells a run lacks (an older schema,
no such endpoint or role) read "-". Output as a text table, CSV or Markdown.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
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


def _get(data: Any, *path: str) -> Any:
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
        row("scenario", lambda m, s: str(_get(m, "scenario", "name") or "-")),
        row("dataset", lambda m, s: str(m.get("dataset_size", "-"))),
        row(
            "load",
            lambda m, s: (
                f"open {_num(_get(m, 'load', 'offered_rps'), '{:g}')} req/s"
                if _get(m, "load", "loop") == "open" and _get(m, "load", "offered_rps")
                else f"{_get(m, 'load', 'loop') or 'closed'} {m.get('users', '-')} users"
            ),
        ),
        row("duration s", lambda m, s: _num(_get(s, "window", "seconds"))),
        row(
            "CPUs",
            lambda m, s: (
                "shared"
                if _get(m, "cpu_pinning", "shared") in (None, True)
                else f"sut {len(_get(m, 'cpu_pinning', 'server') or [])}"
                f" / gen {len(_get(m, 'cpu_pinning', 'generator') or [])}"
            ),
        ),
        row("profiled", lambda m, s: "yes" if _get(m, "profile", "enabled") else "no"),
        row("throughput req/s", lambda m, s: _num(_get(s, "endpoints", ALL, "throughput_rps"))),
        row("errors", lambda m, s: _num(_get(s, "endpoints", ALL, "errors"), "{:d}")),
        row(
            "error rate %",
            lambda m, s: _num((_get(s, "endpoints", ALL, "error_rate") or 0) * 100, "{:.2f}"),
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
                    lambda m, s, e=ep: _num(_get(s, "endpoints", e, "latency_corrected_ms", "p99")),
                )
            )
    rows += [
        row(
            "server CPU ms/request",
            lambda m, s: _num(_get(s, "server", "total", "cpu_ms_per_request"), "{:.3f}"),
        ),
        row(
            "server cores used",
            lambda m, s: _num(_get(s, "server", "total", "mean_cores"), "{:.2f}"),
        ),
        row(
            "server processes",
            lambda m, s: _num(_get(s, "server", "total", "processes_peak"), "{:d}"),
        ),
        row("memory PSS peak MiB", lambda m, s: _mib(_get(s, "server", "total", "pss_peak_bytes"))),
        row("memory USS peak MiB", lambda m, s: _mib(_get(s, "server", "total", "uss_peak_bytes"))),
        row("memory RSS peak MiB", lambda m, s: _mib(_get(s, "server", "total", "rss_peak_bytes"))),
    ]
    roles = sorted({r for _, s in runs for r in (_get(s, "server", "roles") or {})})
    for role in roles:
        rows.append(
            row(
                f"PSS peak MiB {role}",
                lambda m, s, r=role: _mib(_get(s, "server", "roles", r, "pss_peak_bytes")),
            )
        )
        rows.append(
            row(
                f"CPU ms/request {role}",
                lambda m, s, r=role: _num(
                    _get(s, "server", "roles", r, "cpu_ms_per_request"), "{:.3f}"
                ),
            )
        )
    gc_roles = sorted({r for _, s in runs for r in (_get(s, "gc", "roles") or {})})
    for role in gc_roles:
        rows.append(row(f"GC pause total ms (collections) {role}", lambda m, s, r=role: _gc(s, r)))
        rows.append(
            row(
                f"GC pause max ms {role}",
                lambda m, s, r=role: _num(_get(s, "gc", "roles", r, "max_pause_ms")),
            )
        )
    rows += [
        row("GC largest pause (whole run)", lambda m, s: _largest(s)),
        row(
            "generator CPU mean %",
            lambda m, s: _num(_get(s, "generator", "mean_cpu_percent"), "{:.0f}"),
        ),
        row(
            "generator CPU ms/request",
            lambda m, s: _num(_get(s, "generator", "cpu_ms_per_request"), "{:.3f}"),
        ),
        row(
            "generator saturated",
            lambda m, s: (
                "-"
                if _get(s, "generator", "saturated") is None
                else ("YES" if s["generator"]["saturated"] else "no")
            ),
        ),
    ]
    return rows


def _gc(summary: dict[str, Any], role: str) -> str:
    st = _get(summary, "gc", "roles", role)
    return "-" if not st else f"{st['total_pause_ms']:.1f} ({st['collections']})"


def _largest(summary: dict[str, Any]) -> str:
    largest = _get(summary, "gc", "largest_pause")
    return "-" if not largest else f"{largest['duration_ms']:.1f} ms {largest['role']}"


def _lat(summary: dict[str, Any], endpoint: str, key: str) -> str:
    return _num(_get(summary, "endpoints", endpoint, "latency_ms", key))


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
