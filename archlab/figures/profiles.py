"""Where the time goes per variant: py-spy stacks sorted into what the work is for.

Every sampled stack of the profile runs (kind "profile") gets one category:

- walk the stack from the innermost frame outward; the first frame that matches a category
  decides (stdlib plumbing such as socket, selectors, threading, queue and concurrent.futures
  never decides). Categories: `domain` (workloads/shop), `serialization` (msgspec, json, the
  rpc Codec, encode/decode helpers in variants/), `transport` (variants/multiprocess/ipc.py,
  variants/distributed/http.py, the rpc client stubs, http.client), `server` (gunicorn, falcon,
  wsgiref, variants/edge and the variants' service/backend modules);
- a stack whose innermost frame is a blocking wait (select/epoll, accept, recv, lock and
  condition waits, an idle thread-pool worker, gunicorn's arbiter sleep) is `idle`, unless the
  deciding frame is transport: a client waiting for its reply is the cost of the hop;
- anything else is `other`.

GC is invisible to py-spy (the collecting thread shows the frame that allocated), so `gc` is
taken from `gc.csv`: the pauses of the role's processes inside the profiled interval, in
seconds, next to the sampled thread-seconds. py-spy records without `--idle`, so most idle
threads are dropped already; the `idle` left is what it could not tell apart.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from archlab.analysis.runset import VARIANT_ORDER, Run, RunSet
from archlab.figures.style import caption, color, new_figure
from archlab.measure.profiler import load_speedscope, short_file
from archlab.rundir import PROFILE_DIR, ROLES, SPEEDSCOPE

KIND = "profile"
BUSY = ("domain", "serialization", "transport", "server", "gc", "other")
CATEGORIES = (*BUSY, "idle")
CATEGORY_COLORS = {
    "domain": "#2ca02c",
    "serialization": "#9467bd",
    "transport": "#ff7f0e",
    "server": "#1f77b4",
    "gc": "#d62728",
    "other": "#bbbbbb",
    "idle": "#eeeeee",
}
MIN_ROLE_SHARE = 0.03  # roles below this share of a variant's busy time are not drawn alone

_NEUTRAL = re.compile(
    r"^(socket\.py|selectors\.py|threading\.py|queue\.py|concurrent/|ssl\.py|contextlib\.py)"
)
_WAIT = [
    ("selectors.py", re.compile(r"select$")),
    ("socket.py", re.compile(r"(accept|readinto|recv\w*)$")),
    ("threading.py", re.compile(r"(wait|_wait_for_tstate_lock|acquire|join)$")),
    ("queue.py", re.compile(r"get$")),
    ("concurrent/futures/thread.py", re.compile(r"^_worker$")),
    ("gunicorn/arbiter.py", re.compile(r"(sleep|wait_for_signals)$")),
    ("variants/multiprocess/ipc.py", re.compile(r"recv_frame$")),
]
_CLIENT = re.compile(r"UdsTransport|HttpTransport|ConnectionPool|_remote_method|HTTPConnection")


def _category(name: str, file: str) -> str | None:
    """The category one frame stands for, None when it does not decide."""
    if _NEUTRAL.match(file):
        return None
    if (
        "msgspec" in file
        or file.startswith("json/")
        or name.startswith("Codec.")
        or (
            file.startswith("variants/") and re.search(r"(^|[._])(encode|decode|dumps|loads)", name)
        )
    ):
        return "serialization"
    if file.startswith(("variants/multiprocess/ipc.py", "variants/distributed/http.py")) or (
        file.startswith(("http/client.py", "urllib3/")) or _CLIENT.search(name)
    ):
        return "transport"
    if file.startswith("workloads/shop/"):
        return "domain"
    if file.startswith(("gunicorn/", "falcon/", "wsgiref/", "variants/")):
        return "server"
    return None


def _is_wait(name: str, file: str) -> bool:
    return any((file.startswith(f) or file.endswith(f)) and rx.search(name) for f, rx in _WAIT)


def classify_stack(frames: list[tuple[str, str]]) -> str:
    """One stack (outermost first, (function, short file) pairs) -> its category (see module)."""
    if not frames:
        return "other"
    frames = [(name, file.removeprefix("site-packages/")) for name, file in frames]
    decided = None
    client = False
    for name, file in reversed(frames):
        if decided is None:
            decided = _category(name, file)
        if _CLIENT.search(name) or file.startswith("http/client.py"):
            client = True
    leaf_name, leaf_file = frames[-1]
    if _is_wait(leaf_name, leaf_file):
        return "transport" if decided == "transport" and client else "idle"
    return decided or "other"


# ---------------------------------------------------------------- run -> tables


def pid_roles(run: Run) -> dict[int, str]:
    """pid -> role from roles.csv, else the last role processes.csv saw."""
    path = run.file(ROLES)
    if path is not None:
        df = pd.read_csv(path)
        if not df.empty:
            return {int(p): str(r) for p, r in zip(df["pid"], df["role"], strict=True)}
    procs = run.processes
    if procs.empty:
        return {}
    last = procs.sort_values("time").groupby("pid")["role"].last()
    return {int(p): str(r) for p, r in last.items()}


def stack_seconds(run: Run) -> pd.DataFrame:
    """Per role, function path and category: sampled thread-seconds (weights of the samples).

    Columns: role, category, leaf_function, leaf_file, seconds, samples.
    """
    path = run.file(f"{PROFILE_DIR}/{SPEEDSCOPE}")
    if path is None:
        return pd.DataFrame()
    data: dict[str, Any] = load_speedscope(path)
    frames = data["shared"]["frames"]
    keys: list[tuple[str, str] | None] = [
        None
        if not f.get("file") and re.match(r"(process|thread) ", f.get("name", ""))
        else (f.get("name", "?"), short_file(f.get("file", "")))
        for f in frames
    ]
    roles = pid_roles(run)
    acc: dict[tuple[str, str, str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    cache: dict[tuple[int, ...], tuple[str, str, str]] = {}
    for profile in data.get("profiles", []):
        match = re.match(r"Process (\d+) Thread", profile.get("name", ""))
        role = roles.get(int(match.group(1)), "unknown") if match else "unknown"
        weights = profile.get("weights") or [1.0] * len(profile.get("samples", []))
        for stack, weight in zip(profile.get("samples", []), weights, strict=False):
            key = tuple(stack)
            if key not in cache:
                named = [keys[i] for i in stack if keys[i] is not None]
                leaf = named[-1] if named else ("?", "?")
                cache[key] = (classify_stack(named), *leaf)  # type: ignore[arg-type]
            cat, fn, file = cache[key]
            slot = acc[(role, cat, fn, file)]
            slot[0] += float(weight)
            slot[1] += 1
    rows = [
        {
            "role": k[0],
            "category": k[1],
            "leaf_function": k[2],
            "leaf_file": k[3],
            "seconds": v[0],
            "samples": int(v[1]),
        }  # fmt: skip
        for k, v in acc.items()
    ]
    return pd.DataFrame(rows)


def gc_seconds(run: Run) -> dict[str, float]:
    """Per role: GC pause seconds inside the profiled interval (meta.profile started/ended)."""
    info = run.meta.get("profile") or {}
    start, end = info.get("started_at"), info.get("ended_at")
    gc = run.gc
    if gc.empty or start is None or end is None:
        return {}
    inside = gc[(gc["start"] >= start) & (gc["start"] <= end)]
    return {str(r): float(v) / 1000 for r, v in inside.groupby("role")["duration_ms"].sum().items()}


BREAKDOWN_COLUMNS = ("variant", "tag", "role", "category", "seconds", "busy_seconds",
                     "share_of_busy")  # fmt: skip
TOP_COLUMNS = ("variant", "rank", "function", "file", "category", "seconds", "self_share")


def breakdown_table(rs: RunSet) -> pd.DataFrame:
    """One row per variant, role and category: seconds and share of the role's busy time.

    Role "ALL" sums the variant's roles. Busy = every category but idle; `gc` comes from gc.csv.
    """
    rows = []
    for run in rs.of(KIND):
        stacks = stack_seconds(run)
        if stacks.empty:
            continue
        per = stacks.groupby(["role", "category"])["seconds"].sum()
        table: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(CATEGORIES, 0.0))
        for (role, cat), sec in per.items():
            table[str(role)][str(cat)] += float(sec)
        for role, sec in gc_seconds(run).items():
            if role in table:  # only roles the profile saw
                table[role]["gc"] += sec
        total = dict.fromkeys(CATEGORIES, 0.0)
        for cats in table.values():
            for cat, sec in cats.items():
                total[cat] += sec
        for role, cats in [("ALL", total), *sorted(table.items())]:
            busy = sum(cats[c] for c in BUSY)
            for cat in CATEGORIES:
                rows.append(
                    {
                        "variant": run.variant,
                        "tag": run.tag,
                        "role": role,
                        "category": cat,
                        "seconds": cats[cat],
                        "busy_seconds": busy,
                        "share_of_busy": cats[cat] / busy if busy and cat != "idle" else math.nan,
                    }
                )
    return pd.DataFrame(rows, columns=list(BREAKDOWN_COLUMNS))  # columns even with no profile


def top_functions_table(rs: RunSet, limit: int = 10) -> pd.DataFrame:
    """Per variant: the `limit` functions with the largest self time over all its roles.

    Idle stacks are left out (they are waits, not work); share = of the variant's busy samples
    (gc excluded: it has no function).
    """
    rows = []
    for run in rs.of(KIND):
        stacks = stack_seconds(run)
        if stacks.empty:
            continue
        busy = stacks[stacks["category"] != "idle"]
        total = busy["seconds"].sum()
        top = (
            busy.groupby(["leaf_function", "leaf_file", "category"])["seconds"]
            .sum()
            .sort_values(ascending=False)
            .head(limit)
        )
        for rank, ((fn, file, cat), sec) in enumerate(top.items(), start=1):
            rows.append(
                {
                    "variant": run.variant,
                    "rank": rank,
                    "function": fn,
                    "file": file,
                    "category": cat,
                    "seconds": float(sec),
                    "self_share": float(sec) / total if total else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=list(TOP_COLUMNS))


# ---------------------------------------------------------------- figures


def _variants(df: pd.DataFrame) -> list[str]:
    seen = list(dict.fromkeys(df["variant"]))
    return [v for v in VARIANT_ORDER if v in seen] + [v for v in seen if v not in VARIANT_ORDER]


def time_breakdown(rs: RunSet) -> Figure | None:
    """Stacked bars: per variant (ALL) and its main roles, shares of busy time by category."""
    df = breakdown_table(rs)
    if df.empty:
        return None
    bars: list[tuple[str, str, str]] = []  # (variant, role, label)
    for variant in _variants(df):
        sub = df[(df["variant"] == variant) & (df["category"] == "domain")]
        all_busy = float(sub[sub["role"] == "ALL"]["busy_seconds"].iloc[0])
        bars.append((variant, "ALL", f"{variant} (all)"))
        for row in sub[sub["role"] != "ALL"].sort_values("busy_seconds").iloc[::-1].itertuples():
            if all_busy and row.busy_seconds / all_busy >= MIN_ROLE_SHARE and row.role != "ALL":
                bars.append((variant, str(row.role), f"   {row.role}"))
    fig, ax = new_figure(width=9, height=1.2 + 0.32 * len(bars))
    for y, (variant, role, _) in enumerate(bars):
        sub = df[(df["variant"] == variant) & (df["role"] == role)].set_index("category")
        left = 0.0
        for cat in BUSY:
            share = float(sub.loc[cat, "share_of_busy"]) if cat in sub.index else 0.0
            share = 0.0 if np.isnan(share) else share
            ax.barh(y, 100 * share, left=left, color=CATEGORY_COLORS[cat],
                    label=cat if y == 0 else None, edgecolor="white", lw=0.5,
                    height=0.8 if role == "ALL" else 0.6)  # fmt: skip
            if share >= 0.08:
                ax.text(left + 50 * share, y, f"{100 * share:.0f}", ha="center", va="center",
                        fontsize=7)  # fmt: skip
            left += 100 * share
        busy = float(sub["busy_seconds"].iloc[0])
        ax.text(101, y, f"{busy:.1f} s", va="center", fontsize=7)
    ax.set_yticks(range(len(bars)), [b[2] for b in bars], fontsize=8)
    for tick, (variant, role, _) in zip(ax.get_yticklabels(), bars, strict=True):
        tick.set_color(color(variant))
        if role == "ALL":
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("% of busy time (sampled thread-seconds + GC pause seconds; idle excluded)")
    fig.legend(loc="outside right upper", fontsize=7, title="category", title_fontsize=7)
    ax.set_title("Where the busy time goes (py-spy; right: busy seconds)", fontsize=10)
    return caption(fig, rs, f"roles under {100 * MIN_ROLE_SHARE:.0f} % of their variant not shown")


def top_functions(rs: RunSet) -> Figure | None:
    """Per variant: the ten functions with the largest self time, coloured by category."""
    df = top_functions_table(rs)
    if df.empty:
        return None
    variants = _variants(df)
    fig, axes = new_figure(1, len(variants), width=9, height=2.8, squeeze=False)
    for ax, variant in zip(axes[:, 0], variants, strict=True):
        sub = df[df["variant"] == variant].sort_values("rank")
        y = np.arange(len(sub))
        ax.barh(y, 100 * sub["self_share"], color=[CATEGORY_COLORS[c] for c in sub["category"]])
        labels = [
            f"{f}  ({file})"[:70] for f, file in zip(sub["function"], sub["file"], strict=True)
        ]
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(variant, fontsize=9, loc="left", color=color(variant))
        ax.grid(True, axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("% of the variant's busy samples (self time, idle stacks excluded)")
    from matplotlib.patches import Patch

    handles = [Patch(color=CATEGORY_COLORS[c], label=c) for c in CATEGORIES if c != "gc"]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, title="category",
               title_fontsize=7)  # fmt: skip
    fig.suptitle("Top self-time functions per variant", fontsize=10)
    return caption(fig, rs)


FIGURES = {"time_breakdown": time_breakdown, "top_functions": top_functions}


# ---------------------------------------------------------------- reading


def reading(rs: RunSet) -> str:
    """Shares of busy time per variant, computed from the profiles."""
    df = breakdown_table(rs)
    if df.empty:
        return "No profile runs with a py-spy profile in this run set: nothing to read here."
    total = df[df["role"] == "ALL"].pivot_table(
        index="variant", columns="category", values="share_of_busy", aggfunc="sum"
    )
    busy = df[df["role"] == "ALL"].groupby("variant")["busy_seconds"].first()
    lines = ["**Share of busy time per variant** (idle excluded):", ""]
    for variant in _variants(df):
        row = total.loc[variant]
        parts = ", ".join(f"{c} {100 * row.get(c, 0):.0f} %" for c in BUSY)
        lines.append(f"- {variant} ({busy[variant]:.1f} busy s): {parts}")
    hop = {v: 100 * (total.loc[v].get("transport", 0) + total.loc[v].get("serialization", 0))
           for v in total.index}  # fmt: skip
    lines.append("")
    if "monolith" in hop:
        others = [f"{hop[v]:.0f} % in the {v} variant" for v in _variants(df) if v != "monolith"]
        lines.append(
            "Transport + serialization: "
            + "; ".join(others + [f"{hop['monolith']:.0f} % in the monolith"])
            + "."
        )
    else:
        lines.append(
            "Transport + serialization: "
            + "; ".join(f"{hop[v]:.0f} % in {v}" for v in _variants(df))
            + "."
        )
    lines.append(
        "GC comes from gc.csv, not from the samples; a profile of a few seconds at a low rate "
        "has few samples per role, so small shares are noisy. msgspec encodes and decodes in C, "
        "which py-spy (Python frames only) charges to the calling Python function: a "
        "serialization share near 0 means it is too cheap to be sampled, and the hop benchmark "
        "(notebook 01, '+ msgpack codec' vs 'in-process') measures it directly."
    )
    return "\n".join(lines)
