"""A run set as the figures read it: the manifest of a reproduction and its runs, lazily loaded.

Figure functions take a `RunSet` and never look at folders themselves, so the notebooks, the
`reproduce` command and the tests draw the same figures from the same data. Raw files may be
gzipped (the committed reference keeps `requests.csv.gz`, ...): pandas reads both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from archlab.rundir import (
    COMPLETED_STATUSES,
    ENGINE_BENCH,
    FAULTS,
    GC,
    HOP,
    LIFECYCLE,
    MANIFEST,
    META,
    PROCESSES,
    REQUESTS,
    SUMMARY,
    USABLE_STEP_STATUSES,
    read_json,
    read_jsonl,
    read_meta,
    results_root,
    stored,
)

ENV_RUNSET = "ARCHLAB_RUNSET"  # a run set folder; set by `archlab reproduce` for the notebooks
VARIANT_ORDER = ("monolith", "multiprocess", "distributed")
ENDPOINT_ORDER = (
    "/products?q",
    "/products/{id}",
    "/products/{id}/recommendations",
    "POST /orders",
    "/orders/{id}",
)
SETUP_ENDPOINT = "/products (setup)"
# the contexts each endpoint calls (variants/edge/app.py): a fault or a pause in one of them can
# reach the endpoint; the gateway, backends and monolith front every endpoint
ENDPOINT_COMPONENTS: dict[str, tuple[str, ...]] = {
    "/products?q": ("catalog",),
    "/products/{id}": ("catalog", "inventory"),
    "/products/{id}/recommendations": ("catalog", "recommendations"),
    "POST /orders": ("orders", "catalog", "inventory"),
    "/orders/{id}": ("orders",),
}


@dataclass
class Run:
    """One run folder: meta and summary at once, raw records when asked."""

    tag: str
    path: Path
    kinds: tuple[str, ...] = ()
    cpus: int | None = None  # scaling: CPUs the server was pinned to; None = all, unpinned
    step: str = ""  # the matrix step this run repeats (its tag without the round); "" = tag
    round: int = 1  # which repetition of the step (1-based; interleaved with other steps)

    def __post_init__(self) -> None:
        self.step = self.step or self.tag

    @cached_property
    def meta(self) -> dict[str, Any]:
        return read_meta(self.path)

    @cached_property
    def summary(self) -> dict[str, Any]:
        return read_json(self.path / SUMMARY) or {}

    @property
    def variant(self) -> str:
        return str(self.meta["variant"])

    @property
    def scenario(self) -> str:
        return str(self.meta["scenario"]["name"])

    @property
    def finished(self) -> bool:
        return self.meta.get("status") in COMPLETED_STATUSES and bool(self.summary)

    def file(self, name: str) -> Path | None:
        return stored(self.path / name)

    def _csv(self, name: str) -> pd.DataFrame:
        path = self.file(name)
        if path is None:
            return pd.DataFrame()
        return pd.read_csv(path, on_bad_lines="skip")

    @cached_property
    def _requests_file(self) -> pd.DataFrame:
        """requests.csv as written, read once for `requests` and `origin`."""
        return self._csv(REQUESTS)

    @cached_property
    def requests(self) -> pd.DataFrame:
        """requests.csv without the setup fetch, with `t` (s after the first request),
        `end_time`, `is_error` and `corrected_ms` (latency from the intended start)."""
        df = self._requests_file
        if df.empty:
            return df
        df = df[df["endpoint"] != SETUP_ENDPOINT].copy()
        df["error"] = df["error"].astype("string").fillna("")
        df["is_error"] = (df["status"] == 0) | (df["status"] >= 500) | (df["error"] != "")
        lag = (df["start_time"] - df.get("intended_time", df["start_time"])).fillna(0.0)
        df["corrected_ms"] = df["latency_ms"] + lag.clip(lower=0) * 1000
        df["end_time"] = df["start_time"] + df["latency_ms"] / 1000
        df["t"] = df["start_time"] - self.origin
        return df.sort_values("start_time").reset_index(drop=True)

    @cached_property
    def origin(self) -> float:
        """Epoch seconds of the run's first request: every figure's time axis starts here."""
        df = self._requests_file
        return float(df["start_time"].min()) if not df.empty else 0.0

    @cached_property
    def gc(self) -> pd.DataFrame:
        df = self._csv(GC)
        if not df.empty:
            df["t"] = df["start"] - self.origin
        return df

    @cached_property
    def processes(self) -> pd.DataFrame:
        df = self._csv(PROCESSES)
        if not df.empty:
            df["t"] = df["time"] - self.origin
        return df

    @cached_property
    def faults(self) -> pd.DataFrame:
        df = self._csv(FAULTS)
        if not df.empty:
            df["t_start"] = df["start"] - self.origin
            df["t_end"] = df["end"] - self.origin
        return df

    @cached_property
    def lifecycle(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / LIFECYCLE)


@dataclass
class RunSet:
    """A reproduction: its manifest, its runs by tag, the hop benchmark."""

    path: Path
    manifest: dict[str, Any]
    runs: dict[str, Run] = field(default_factory=dict)

    @property
    def scale(self) -> str:
        """test, quick or full (a run set made before the rename says "profile")."""
        scale = self.manifest.get("scale") or self.manifest.get("profile") or {}
        return str(scale.get("name", "?"))

    @property
    def machine(self) -> dict[str, Any]:
        return dict(self.manifest.get("machine") or {})

    @property
    def cpus(self) -> int:
        """The machine's usable CPUs: where an unpinned run ran."""
        m = self.machine
        return len(m.get("usable_cpus") or []) or int(m.get("cpu_count_logical") or 1)

    def machine_label(self) -> str:
        """'2 CPUs, AMD EPYC ..., 24 GiB' for plot captions."""
        m = self.machine
        cpus = self.cpus if m else "?"
        mem = (m.get("memory_total_bytes") or 0) / 2**30
        return f"{cpus} CPUs, {m.get('cpu_model', '?')}, {mem:.0f} GiB"

    def of(self, kind: str, variant: str | None = None) -> list[Run]:
        """Finished runs that serve figures of `kind`, in variant order."""
        found = [
            r
            for r in self.runs.values()
            if kind in r.kinds and r.finished and (variant is None or r.variant == variant)
        ]
        return sorted(
            found, key=lambda r: (_variant_rank(r.variant), r.cpus or 10**6, r.step, r.round)
        )

    def repeated(self, kind: str, variant: str | None = None) -> dict[str, list[Run]]:
        """Finished runs of `kind` grouped by the step they repeat (in variant order), each
        group in round order: what a median over repetitions is taken of."""
        groups: dict[str, list[Run]] = {}
        for run in self.of(kind, variant):
            groups.setdefault(run.step, []).append(run)
        return {step: sorted(runs, key=lambda r: r.round) for step, runs in groups.items()}

    def first_round(self, kind: str, variant: str | None = None) -> list[Run]:
        """One run per step of `kind` (its lowest round): for figures that draw one run."""
        return [runs[0] for runs in self.repeated(kind, variant).values()]

    def variants(self) -> list[str]:
        seen = {r.variant for r in self.runs.values() if r.finished}
        return [v for v in VARIANT_ORDER if v in seen] + sorted(seen - set(VARIANT_ORDER))

    @cached_property
    def hop(self) -> dict[str, Any] | None:
        return read_json(self.path / (self.manifest.get("hop") or HOP))

    @cached_property
    def engine_bench(self) -> dict[str, Any] | None:
        """`archlab bench engine`: the model rebuilt by each engine (None: not run)."""
        return read_json(self.path / ENGINE_BENCH)


def in_order(df: pd.DataFrame, orders: Mapping[str, Sequence[str] | None]) -> pd.DataFrame:
    """`df` sorted by each column of `orders` in turn: by its place in the order given, or by
    value where the order is None (a study's table reads in the order its design names)."""
    keys = []
    for i, (column, order) in enumerate(orders.items()):
        if order is None:
            keys.append(column)
            continue
        key = f"_order{i}"
        df = df.assign(**{key: df[column].map({name: k for k, name in enumerate(order)})})
        keys.append(key)
    dropped = [k for k in keys if k not in orders]
    return df.sort_values(keys).drop(columns=dropped).reset_index(drop=True)


def round_tag(tag: str, round_no: int) -> str:
    """A repeated step's run tag: `<step>-r<round>` (the studies' tags end the same way)."""
    return f"{tag}-r{round_no}"


def split_round(tag: str) -> tuple[str, int]:
    """(step, round) of a run tag; a tag without a round is its own step, round 1."""
    m = re.fullmatch(r"(.+)-r(\d+)", tag)
    return (m[1], int(m[2])) if m else (tag, 1)


def _variant_rank(variant: str) -> int:
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)


def load_runset(path: Path | str) -> RunSet:
    path = Path(path)
    manifest = read_json(path / MANIFEST)
    if manifest is None:
        raise FileNotFoundError(f"{path} is not a run set (no {MANIFEST}); see `archlab reproduce`")
    rs = RunSet(path=path, manifest=manifest)
    for step in manifest.get("steps", []):
        run_dir = path / step["run"]
        if (run_dir / META).exists():
            base, round_no = split_round(step["tag"])
            rs.runs[step["tag"]] = Run(
                tag=step["tag"],
                path=run_dir,
                kinds=tuple(step["kinds"]),
                cpus=step.get("cpus"),
                step=step.get("step", base),
                round=int(step.get("round", round_no)),
            )
    return rs


def default_runset_path() -> Path:
    """$ARCHLAB_RUNSET, else the newest reproduction with finished runs, else the reference."""
    if os.environ.get(ENV_RUNSET):
        return Path(os.environ[ENV_RUNSET])
    candidates = []
    for manifest in (results_root() / "repro").glob(f"*/{MANIFEST}"):
        data = read_json(manifest) or {"steps": []}
        if any(s.get("status") in USABLE_STEP_STATUSES for s in data["steps"]):
            candidates.append((manifest.stat().st_mtime, manifest.parent))
    if candidates:
        return max(candidates)[1]
    return results_root() / "reference"


def default_runset() -> RunSet:
    return load_runset(default_runset_path())
