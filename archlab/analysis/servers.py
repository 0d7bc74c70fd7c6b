"""The HTTP server under each variant: the `server` knob's runs, their tags and measures.

The cost figure shows the distributed variant spending more CPU per request than the monolith;
part of that is work every extra hop pays to the HTTP server (parsing, a worker thread's
hand-off), not to the split itself. `archlab reproduce` therefore runs every variant of
`VARIANTS` under every server of `SERVERS` (the `server` knob: nothing else differs) at one
offered load, `RATE`, for a number of rounds. The rounds are interleaved (round 1 runs every
variant under every server, then round 2 ...) and alternate the servers' order, so what drifts
on a shared machine shows as a spread between rounds, not as a difference between servers.
Figure `04-server_sensitivity` and notebook 04's reading draw on this module
(`archlab.figures.servers`).

Definitions (the table, the figure and the reading use them):

- a run's *server* is its `server` knob as meta.json recorded it (`DEFAULT_SERVER` for a run
  made before the knob existed); a run whose variant or server disagrees with its tag is not
  used;
- *CPU ms per request*: summary.json's `server.total.cpu_ms_per_request`, every process of
  the variant (the cost figure's measure), never the load generator's; *p50/p99*: all
  endpoints, corrected from the intended start (`ramp.latency`); *achieved*: `load.achieved_rps`;
- per (variant, server): the median over rounds and the min-max range;
- the *gap*: `COSTLIEST`'s CPU ms per request minus `BASE`'s, per round (the two runs of a round
  ran minutes apart, so pairing them cancels what drifts between rounds): median and min-max;
- the server's *share* of the gap: 1 - gap(server) / gap(`DEFAULT_SERVER`), from the median
  gaps; its range is the widest the two gaps' ranges allow;
- *distinguishable*: two sets of rounds whose min-max ranges do not overlap. With fewer than
  two rounds on a side no spread was measured, and nothing is judged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from archlab.analysis.ramp import latency
from archlab.analysis.rounds import Spread
from archlab.analysis.runset import VARIANT_ORDER, Run, RunSet, in_order
from archlab.analysis.summary import ALL, KEEPING_UP
from variants.edge.servers import DEFAULT_SERVER, SERVERS

KIND = "server"  # the manifest kind of every run of the study
KNOB = "server"
VARIANTS = VARIANT_ORDER
BASE = VARIANT_ORDER[0]  # monolith: the others' extra cost is measured against it
COSTLIEST = VARIANT_ORDER[-1]  # distributed
ALTERNATIVES = tuple(s for s in SERVERS if s != DEFAULT_SERVER)
RATE = 50.0
"""The offered load (requests/s, open loop): the migration path's (`reproduce.PATH_RATE`), for
its reason: well below every variant's knee, the distributed variant using a quarter of a CPU
on 2 CPUs. Nearer its knee the distributed p99 measures its queue, and a server that queues
differently would read as a server that costs differently."""
MEASURES = ("cpu_ms_per_request", "p50_ms", "p99_ms", "achieved_rps")
RUN_COLUMNS = ("variant", "server", "round", "tag", "requests", "errors", "offered_rps",
               *MEASURES)  # fmt: skip
_TAG = re.compile(
    rf"^{KIND}-(?P<variant>.+)-(?P<server>{'|'.join(map(re.escape, SERVERS))})-r(?P<round>\d+)$"
)


def tag(variant: str, server: str, round_no: int) -> str:
    """The run's tag (and folder) in a run set: `server-<variant>-<server>-r<round>`."""
    return f"{KIND}-{variant}-{server}-r{round_no}"


def server_order(round_no: int) -> tuple[str, ...]:
    """The servers in the order a round runs them: reversed every other round, so neither
    server always runs first (after another variant) or second (after its twin)."""
    return SERVERS if round_no % 2 else SERVERS[::-1]


# ---------------------------------------------------------------- runs


def server_of(run: Run) -> str:
    """The HTTP server a run's processes served with, as its meta.json recorded the knob."""
    return str((run.meta.get("knobs") or {}).get(KNOB) or DEFAULT_SERVER)


def parse_tag(name: str) -> tuple[str, str, int] | None:
    """(variant, server, round) of a study tag; None for any other tag."""
    m = _TAG.match(name)
    return (m["variant"], m["server"], int(m["round"])) if m else None


def study_runs(rs: RunSet) -> list[tuple[str, str, int, Run]]:
    """The finished runs of the study whose variant and server agree with their tag."""
    found = []
    for name, run in rs.runs.items():
        parsed = parse_tag(name)
        if parsed is None or KIND not in run.kinds or not run.finished:
            continue
        variant, server, round_no = parsed
        if run.variant == variant and server_of(run) == server:
            found.append((variant, server, round_no, run))
    return found


def measures(run: Run) -> dict[str, Any]:
    """What one run's summary.json says: requests, errors, offered/achieved rate, CPU, p50/p99."""
    summary = run.summary
    stats = (summary.get("endpoints") or {}).get(ALL) or {}
    lat = latency(stats)
    total = (summary.get("server") or {}).get("total") or {}
    load = summary.get("load") or {}
    return {
        "requests": int(stats.get("count") or 0),
        "errors": int(stats.get("errors") or 0),
        "offered_rps": _num(load.get("offered_rps")),
        "cpu_ms_per_request": _num(total.get("cpu_ms_per_request")),
        "p50_ms": _num(lat.get("p50")),
        "p99_ms": _num(lat.get("p99")),
        "achieved_rps": _num(load.get("achieved_rps")),
    }


def runs_table(rs: RunSet) -> pd.DataFrame:
    """One row per usable run (RUN_COLUMNS), by round, variant and server."""
    rows = [
        {"variant": v, "server": s, "round": r, "tag": run.tag, **measures(run)}
        for v, s, r, run in study_runs(rs)
    ]
    df = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    if df.empty:
        return df
    return in_order(df, {"round": None, "variant": VARIANTS, "server": SERVERS})


def has_runs(rs: RunSet) -> bool:
    return bool(study_runs(rs))


# ---------------------------------------------------------------- medians over rounds


def spread(rs: RunSet, variant: str, server: str, measure: str) -> Spread | None:
    """One measure of one variant under one server, over its rounds."""
    df = runs_table(rs)
    sel = df[(df["variant"] == variant) & (df["server"] == server)] if len(df) else df
    return Spread.of(sel[measure]) if len(sel) else None


def table(rs: RunSet) -> pd.DataFrame:
    """Per (variant, server) measured: rounds, each measure's median with `_min` and `_max`,
    and whether every round achieved its offered load (`keeping_up`, summary's KEEPING_UP)."""
    df = runs_table(rs)
    rows = []
    for variant in present(df["variant"], VARIANTS) if len(df) else []:
        for server in present(df["server"], SERVERS):
            sel = df[(df["variant"] == variant) & (df["server"] == server)]
            if sel.empty:
                continue
            row: dict[str, Any] = {"variant": variant, "server": server, "rounds": len(sel)}
            for m in MEASURES:
                s = Spread.of(sel[m])
                row |= {m: s.median if s else None, f"{m}_min": s.low if s else None,
                        f"{m}_max": s.high if s else None}  # fmt: skip
            offered = sel["offered_rps"].to_numpy(dtype=float)
            achieved = sel["achieved_rps"].to_numpy(dtype=float)
            row["offered_rps"] = float(np.nanmedian(offered)) if len(offered) else None
            known = not np.isnan(offered).any()
            row["keeping_up"] = bool(np.all(achieved >= KEEPING_UP * offered)) if known else None
            row["errors"] = int(sel["errors"].sum())
            rows.append(row)
    return pd.DataFrame(rows)


def offered_rates(rs: RunSet) -> list[float]:
    """The distinct offered rates of the study's runs (one, unless plans were mixed)."""
    df = runs_table(rs)
    return sorted({float(r) for r in df["offered_rps"].dropna()}) if len(df) else []


def rounds(rs: RunSet) -> list[int]:
    """The rounds with at least one usable run."""
    df = runs_table(rs)
    return sorted({int(r) for r in df["round"]}) if len(df) else []


# ---------------------------------------------------------------- the server's share


@dataclass(frozen=True)
class Effect:
    """One variant's measure under the default server and under another."""

    variant: str
    measure: str
    server: str
    default: Spread
    other: Spread

    @property
    def ratio(self) -> float | None:
        """other / default of the medians."""
        return self.other.median / self.default.median if self.default.median else None

    @property
    def apart(self) -> bool | None:
        return self.default.apart(self.other)


def effect(rs: RunSet, variant: str, measure: str, server: str) -> Effect | None:
    """`measure` of `variant` under DEFAULT_SERVER against `server`; None without both."""
    a = spread(rs, variant, DEFAULT_SERVER, measure)
    b = spread(rs, variant, server, measure)
    return Effect(variant, measure, server, a, b) if a and b else None


def gap(rs: RunSet, server: str, measure: str = "cpu_ms_per_request") -> Spread | None:
    """COSTLIEST minus BASE under `server`, paired round by round (rounds with both)."""
    df = runs_table(rs)
    if df.empty:
        return None
    sel = df[df["server"] == server]
    by = {v: dict(zip(g["round"], g[measure], strict=True)) for v, g in sel.groupby("variant")}
    hi, lo = by.get(COSTLIEST, {}), by.get(BASE, {})
    diffs = [_sub(hi[r], lo[r]) for r in sorted(set(hi) & set(lo))]
    return Spread.of(diffs)


@dataclass(frozen=True)
class Share:
    """How much of COSTLIEST's extra CPU per request over BASE goes when both run `server`."""

    server: str
    default_gap: Spread  # under DEFAULT_SERVER, CPU ms per request
    other_gap: Spread  # under `server`

    @property
    def share(self) -> float | None:
        """1 - other / default of the median gaps; None when the default gap is not > 0."""
        d = self.default_gap.median
        return 1 - self.other_gap.median / d if d > 0 else None

    @property
    def bounds(self) -> tuple[float, float] | None:
        """The widest share the two gaps' min-max ranges allow (None unless the default gap's
        range is above 0)."""
        d, o = self.default_gap, self.other_gap
        if d.low <= 0:
            return None
        return 1 - o.high / d.low, 1 - o.low / d.high

    @property
    def distinguishable(self) -> bool | None:
        """Whether the two gaps' round ranges are apart (None: a side has one round)."""
        return self.default_gap.apart(self.other_gap)


def share(rs: RunSet, server: str) -> Share | None:
    """The share of the gap that `server` takes away; None without both gaps."""
    a, b = gap(rs, DEFAULT_SERVER), gap(rs, server)
    return Share(server, a, b) if a and b else None


def shares(rs: RunSet) -> list[Share]:
    return [s for s in (share(rs, server) for server in ALTERNATIVES) if s is not None]


def share_text(s: Share, *, short: bool = False) -> str:
    """The share as a sentence (short: for a figure's title), or why it is not stated."""
    d, o = s.default_gap, s.other_gap
    gaps = (
        f"{COSTLIEST} minus {BASE}: {_range(d)} CPU ms/request under {DEFAULT_SERVER}, "
        f"{_range(o)} under {s.server}"
    )
    extra = f"the {COSTLIEST} variant's extra CPU per request over the {BASE}"
    if s.share is None:
        head = f"no {extra} under {DEFAULT_SERVER} ({d.median:+.2f} ms): no share to put on it"
    else:
        pct = f"{100 * s.share:.0f} %"
        b = s.bounds
        if s.distinguishable is None:
            head = f"{pct} of {extra} is the server, from one round (no spread: not judged)"
        elif s.distinguishable is False:
            head = (
                f"the share of {extra} that is the server is not distinguishable (the gaps' "
                f"round ranges overlap; point estimate {pct})"
            )
        else:
            span = f" ({100 * b[0]:.0f} to {100 * b[1]:.0f} %)" if b else ""
            head = f"{pct}{span} of {extra} is the server: it goes when both run {s.server}"
    return head if short else f"{head}; {gaps}."


# ---------------------------------------------------------------- helpers


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(out) else out


def _sub(a: Any, b: Any) -> float | None:
    x, y = _num(a), _num(b)
    return None if x is None or y is None else x - y


def present(values: pd.Series, order: tuple[str, ...]) -> list[str]:
    """The names in `values`, `order` first, any other after (sorted)."""
    seen = set(values)
    return [n for n in order if n in seen] + sorted(seen - set(order))


def _range(s: Spread) -> str:
    return f"{s.median:.2f}" if s.rounds < 2 else f"{s.median:.2f} ({s.low:.2f}-{s.high:.2f})"
