"""Notebook 04: what each variant costs, per request and provisioned for a target load.

Per variant, from the run set:

- **per request** (measured): CPU ms per request, PSS (peak and mean, summed over the variant's
  processes: `summary.json` `server.total`) and GiB-s per request, from unprofiled runs at the
  same offered load for every variant: the HTTP server study's runs under the default server
  (`servers.KIND`, `servers.DEFAULT_SERVER`), the median over its rounds with its 95 %
  interval (`rounds.Spread`). Never the `profile` run: py-spy pauses the process it samples
  (10-15 % of the throughput lost), which inflates CPU per request unevenly across variants.
  A run set without that study falls back to each latency ramp's step at a rate every ramp ran
  (the study's rate when they all did, else the lowest common one), and the captions say so.
- **capacity** (measured): throughput at the SLO (`ramp.throughput_at_slo`, the knee over a
  ramp's repetitions) per core it ran on, the best over the variant's scaling and latency
  ramps (an unpinned run counts all usable CPUs). When the top step tried still held, the
  capacity is a lower bound and the cores an upper bound.
- **cost at the target** (a MODEL, `costmodel.MODEL`): `costmodel.cores_needed` for the target
  load scales the capacity per core linearly; memory held at the measured PSS peak, priced with
  `config/prices.toml` (provisioned). A prefork design (the monolith's workers, the family's
  backends) reaches its cores with one child per core: its memory is then the copy-on-write
  study's total at that many children, with its default knobs (`cow.memory_for`: measured, or
  on the line through the measured N), where the run set has the study. Drawn hatched and
  labelled as the model; the busy-only cost (measured CPU-s and GiB-s per request) solid.
- **distributed**: PSS and CPU share per service (`server.roles`, `<svc>-master` folded into
  its service) of the same per-request runs; one host per service (each rounded up to the
  smallest host) vs all on one host, at the modelled cores.
- **HTTP server**: each variant's CPU per request and p99 under each server of the `server`
  knob at one offered load, and the share of the distributed variant's extra CPU that is the
  server (`archlab.figures.servers`, figure `server_sensitivity`).
- **copy-on-write**: each prefork design's private MiB per child over time and its total at
  N children under each `fork_gc` setting (`archlab.figures.cow`, figure `copy_on_write`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from archlab.analysis import costmodel as cm
from archlab.analysis import cow, ramp
from archlab.analysis import servers as study
from archlab.analysis.rounds import Spread
from archlab.analysis.runset import Run, RunSet
from archlab.figures import cow as cow_figure
from archlab.figures import servers
from archlab.figures.style import caption, color, nan_float, new_figure

MIB = 2**20
NOT_SERVICES = ("launcher", "root", "unlabelled")  # harness-side roles: no host of their own
SERVER_STUDY = "server study"
RAMP_STEP = "latency step"
MODEL_LOOK: dict[str, Any] = {"alpha": 0.35, "hatch": "//", "linestyle": "--", "linewidth": 1.2}


def _prices() -> cm.Prices:
    return cm.load_prices()


def _cap(rs: RunSet, prices: cm.Prices) -> str:
    target = f"target {prices.target_rps:.0f} req/s at p99 <= {ramp.SLO_P99_MS:.0f} ms"
    return f"{target}\n{prices.label()}"


def _requests(run: Run) -> int:
    return int(run.summary.get("endpoints", {}).get("ALL", {}).get("count", 0))


def _cpus_used(run: Run, rs: RunSet) -> int:
    """Cores the server ran on: its pinning, else every usable CPU of the machine."""
    if run.cpus:
        return run.cpus
    pinned = (run.meta.get("cpu_pinning") or {}).get("server")
    if pinned:
        return len(pinned)
    machine = run.meta.get("machine") or rs.machine
    return len(machine.get("usable_cpus") or []) or int(machine.get("cpu_count_logical") or 1)


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _profiled(run: Run) -> bool:
    return bool((run.meta.get("profile") or {}).get("enabled"))


# --- per request: unprofiled runs at one offered load -------------------------------------


def _study_runs(rs: RunSet, variant: str | None = None) -> list[Run]:
    """The server study's runs under the default server, unprofiled, in round order."""
    found = [
        (round_no, run)
        for v, server, round_no, run in study.study_runs(rs)
        if server == study.DEFAULT_SERVER
        and (variant is None or v == variant)
        and not _profiled(run)
    ]
    return [run for _, run in sorted(found, key=lambda x: (x[0], x[1].tag))]


def fallback_rate(rs: RunSet) -> float | None:
    """The latency ramps' common step for the per-request cost without the server study: the
    study's rate when every variant's ramp ran it, else the lowest rate they all ran."""
    rates = []
    for variant in rs.variants():
        runs = [r for r in rs.of("latency", variant) if not _profiled(r)]
        steps = ramp.held_steps(runs) if runs else pd.DataFrame()
        if not steps.empty:
            rates.append(set(steps["offered_rps"]))
    common = set.intersection(*rates) if rates else set()
    if not common:
        return None
    return study.RATE if study.RATE in common else min(common)


def per_request_basis(rs: RunSet) -> tuple[str, float | None]:
    """Where every variant's per-request cost comes from, one source for all: (SERVER_STUDY,
    its rate) when the run set has the study's default-server runs, else (RAMP_STEP, the
    common step's rate), else ("", None)."""
    runs = _study_runs(rs)
    if runs:
        rates = sorted({_num((r.summary.get("load") or {}).get("offered_rps")) for r in runs})
        return SERVER_STUDY, rates[0] if len(rates) == 1 else None
    rate = fallback_rate(rs)
    return (RAMP_STEP, rate) if rate is not None else ("", None)


def _sample(run: Run, stats: dict[str, Any], seconds: float, cpu_s: float) -> dict[str, Any]:
    """One run's per-request measures from its request count and CPU over `seconds`."""
    server = run.summary.get("server") or {}
    total = server.get("total") or {}
    n = int(stats.get("count") or 0)
    pss_mean = _num(total.get("pss_mean_bytes"))
    return {
        "tag": run.tag,
        "requests": n,
        "cpu_s_per_request": cm.cpu_seconds_per_request(cpu_s, n),
        "pss_peak_bytes": _num(total.get("pss_peak_bytes")),
        "pss_mean_bytes": pss_mean,
        "gib_s_per_request": cm.memory_gib_seconds_per_request(pss_mean, seconds, n),
        "processes": total.get("processes"),
        "achieved_rps": _num(stats.get("throughput_rps")),
        "roles": server.get("roles") or {},
    }


def _study_sample(run: Run) -> dict[str, Any] | None:
    total = (run.summary.get("server") or {}).get("total") or {}
    stats = (run.summary.get("endpoints") or {}).get("ALL") or {}
    if not total or not stats.get("count"):
        return None
    seconds = _num((run.summary.get("window") or {}).get("seconds"))
    out = _sample(run, stats, seconds, _num(total.get("cpu_s")))
    return out | {"achieved_rps": _num((run.summary.get("load") or {}).get("achieved_rps"))}


def _step_sample(run: Run, rate: float) -> dict[str, Any] | None:
    """The ramp's step at `rate`: its CPU and requests; memory is the whole ramp's PSS."""
    if not (run.summary.get("server") or {}).get("total"):
        return None
    for w in (run.summary.get("windows") or {}).get("rows", []):
        stats = (w.get("endpoints") or {}).get("ALL") or {}
        if w.get("offered_rps") == rate and stats.get("count") and w.get("server_cpu_percent"):
            seconds = float(w["seconds"])
            return _sample(run, stats, seconds, float(w["server_cpu_percent"]) / 100 * seconds)
    return None


def per_request_samples(rs: RunSet, variant: str) -> list[dict[str, Any]]:
    """One dict per run the variant's per-request cost is the median of (`per_request_basis`)."""
    basis, rate = per_request_basis(rs)
    if basis == SERVER_STUDY:
        found = [_study_sample(r) for r in _study_runs(rs, variant)]
    elif basis == RAMP_STEP and rate is not None:
        runs = [r for r in rs.of("latency", variant) if not _profiled(r)]
        found = [_step_sample(r, rate) for r in runs]
    else:
        found = []
    return [s for s in found if s is not None]


def per_request(rs: RunSet, variant: str) -> dict[str, Any] | None:
    """The variant's measured cost of one request: medians over the samples, CPU with its
    interval; None without a sample."""
    samples = per_request_samples(rs, variant)
    if not samples:
        return None
    basis, rate = per_request_basis(rs)

    def median(key: str) -> float:
        s = Spread.of(x[key] for x in samples)
        return s.median if s else math.nan

    cpu = Spread.of(1000 * x["cpu_s_per_request"] for x in samples)
    return {
        "per_request_run": samples[0]["tag"],
        "per_request_runs": ", ".join(x["tag"] for x in samples),
        "per_request_kind": basis,
        "per_request_offered_rps": rate,
        "rounds": len(samples),
        "achieved_rps": median("achieved_rps"),
        "processes": samples[0]["processes"],
        "cpu_ms_per_request": cpu.median if cpu else math.nan,
        "cpu_ms_ci_low": cpu.ci_low if cpu else math.nan,
        "cpu_ms_ci_high": cpu.ci_high if cpu else math.nan,
        "cpu_ms_text": cpu.text("{:.2f}", "ms") if cpu else "-",
        "pss_peak_mib": median("pss_peak_bytes") / MIB,
        "pss_mean_mib": median("pss_mean_bytes") / MIB,
        "gib_s_per_request": median("gib_s_per_request"),
    }


def basis_text(rs: RunSet) -> str:
    """Where the per-request numbers come from, as captions and the reading say it."""
    basis, rate = per_request_basis(rs)
    at = f"{rate:g} req/s" if rate is not None else "mixed rates"
    if basis == SERVER_STUDY:
        return (
            f"per request: unprofiled HTTP server study runs under {study.DEFAULT_SERVER}, open "
            f"loop at {at} for every variant, median over rounds [95 % interval]"
        )
    if basis == RAMP_STEP:
        return (
            f"per request: this run set has no HTTP server study, so each latency ramp's step at "
            f"{at} (unprofiled; memory: the whole ramp's PSS)"
        )
    return "per request: no unprofiled run at a common offered load"


# --- capacity (measured) and the cost at the target (model) --------------------------------


def capacity(rs: RunSet, variant: str) -> dict[str, Any] | None:
    """The best measured per-core throughput at the SLO over the variant's ramps, each ramp
    read over its repetitions (`ramp.repetitions`)."""
    runs = {r.tag: r for kind in ("scaling", "latency") for r in rs.of(kind, variant)}
    best: dict[str, Any] | None = None
    for group in ramp.repetitions(runs.values()).values():
        k = ramp.knee(group)
        if k is None:
            continue
        tp = ramp.throughput_at_slo(group)
        cpus = _cpus_used(group[0], rs)
        row = {
            "capacity_run": group[0].tag,
            "capacity_runs": len(group),
            "capacity_cpus": cpus,
            "throughput_at_slo_rps": tp,
            "rps_per_core": tp / cpus,
            "lower_bound": not k["bent"],
        }
        if best is None or row["rps_per_core"] > best["rps_per_core"]:
            best = row
    return best


def cost_table(rs: RunSet, prices: cm.Prices | None = None) -> pd.DataFrame:
    """One row per variant: the measured per-request cost and capacity, and the model's cores
    and $ per million requests at the target (`cores_model` names the model)."""
    prices = prices or _prices()
    rows = []
    for variant in rs.variants():
        req = per_request(rs, variant)
        if req is None:
            continue
        cpu_s_req = req["cpu_ms_per_request"] / 1000
        row: dict[str, Any] = {"variant": variant, **req}
        row["busy_usd_per_million"] = cm.busy_cost_per_million(
            cpu_s_req, req["gib_s_per_request"], prices
        )
        cap = capacity(rs, variant) or {}
        row.update(cap)
        cores = None
        if cap.get("throughput_at_slo_rps"):
            cores = cm.cores_needed(
                prices.target_rps, cap["throughput_at_slo_rps"], cap["capacity_cpus"]
            )
        gib = req["pss_peak_mib"] * MIB / cm.GIB
        row["memory_basis"] = f"PSS peak of {_runs_label(req)}"
        replicated = cow.memory_for(rs, variant, cores) if cores is not None else None
        if replicated is not None:
            gib = replicated[0] / cm.GIB
            row["memory_basis"] = f"copy-on-write study, {replicated[1]}"
        row["memory_gib"] = gib
        row["cores_needed"] = cores
        row["cores_model"] = cm.MODEL if cores is not None else None
        row["provisioned_usd_per_hour"] = (
            cm.cost_per_hour(cores, gib, prices) if cores is not None else None
        )
        row["provisioned_usd_per_million"] = (
            cm.cost_per_million(cores, gib, prices.target_rps, prices)
            if cores is not None
            else None
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _runs_label(req: dict[str, Any]) -> str:
    if req["rounds"] > 1:
        return f"the {req['per_request_kind']}, median of {req['rounds']} rounds"
    return str(req["per_request_run"])


def model_text(rs: RunSet, df: pd.DataFrame) -> str:
    """The model and its assumption, as the captions of the sized figures say it."""
    measured = ""
    if "capacity_cpus" in df and df["capacity_cpus"].notna().any():
        cpus = sorted({int(c) for c in df["capacity_cpus"].dropna()})
        measured = f", measured on {', '.join(map(str, cpus))} CPU(s)"
    return (
        f"hatched = {cm.MODEL} (cores = ceil(target / capacity per core){measured}; "
        "optimistic beyond the cores measured: no contention, a replica per core)"
    )


def _service(role: str) -> str:
    return role.removesuffix("-master")


def footprint_table(rs: RunSet, prices: cm.Prices | None = None) -> pd.DataFrame:
    """Distributed: one row per service, PSS (median over the per-request runs) and CPU share
    (of their summed CPU-seconds), and the host it would get alone at the model's cores.

    A service's cores at the target load are the variant's cores needed times its CPU share.
    Empty without a distributed per-request run that recorded its roles.
    """
    prices = prices or _prices()
    samples = [s for s in per_request_samples(rs, "distributed") if s["roles"]]
    if not samples:
        return pd.DataFrame()
    costs = cost_table(rs, prices)
    dist = costs[costs["variant"] == "distributed"]
    cores_total = dist["cores_needed"].iloc[0] if not dist.empty else None
    columns = ["processes", "cpu_s", "pss_peak_bytes", "pss_mean_bytes"]
    frames = []
    for s in samples:
        roles = pd.DataFrame(
            [
                {"role": role, **{k: st.get(k, 0) for k in columns}}
                for role, st in s["roles"].items()
            ]
        )
        roles["service"] = roles["role"].map(_service)
        frames.append(roles.groupby("service", as_index=False)[columns].sum())
    df = (
        pd.concat(frames)
        .groupby("service", as_index=False, sort=False)
        .agg(
            processes=("processes", "median"),
            cpu_s=("cpu_s", "sum"),
            pss_peak_bytes=("pss_peak_bytes", "median"),
            pss_mean_bytes=("pss_mean_bytes", "median"),
        )
    )
    df["rounds"] = len(samples)
    df["pss_peak_mib"] = df["pss_peak_bytes"] / MIB
    df["pss_mean_mib"] = df["pss_mean_bytes"] / MIB
    df["cpu_share"] = df["cpu_s"] / df["cpu_s"].sum() if df["cpu_s"].sum() else 0.0
    df["own_host"] = ~df["service"].isin(NOT_SERVICES)
    if cores_total is not None and not pd.isna(cores_total):
        df["cores_at_target"] = df["cpu_share"] * float(cores_total)
        hosts = {
            h.service: h
            for h in cm.one_host_per_service(
                {
                    r.service: (r.cores_at_target, r.pss_peak_bytes / cm.GIB)
                    for r in df.itertuples()
                    if r.own_host
                },
                prices,
            )
        }
        df["host_vcpus"] = df["service"].map(lambda s: hosts[s].vcpus if s in hosts else None)
        df["host_gib"] = df["service"].map(lambda s: hosts[s].gib if s in hosts else None)
        df["host_usd_per_hour"] = df["service"].map(
            lambda s: hosts[s].per_hour if s in hosts else None
        )
    return df.sort_values("pss_peak_bytes", ascending=False).reset_index(drop=True)


def deployments(rs: RunSet, prices: cm.Prices | None = None) -> dict[str, float] | None:
    """Distributed at the target load (the model's cores): $/h and $/million, one host per
    service vs one host."""
    prices = prices or _prices()
    df = footprint_table(rs, prices)
    if df.empty or "host_usd_per_hour" not in df:
        return None
    own = df[df["own_host"]]
    services = {r.service: (r.cores_at_target, r.pss_peak_bytes / cm.GIB) for r in own.itertuples()}
    shared = cm.one_host(services, prices)
    per_host = float(own["host_usd_per_hour"].sum())
    millions_per_hour = prices.target_rps * cm.SECONDS_PER_HOUR / 1e6
    return {
        "services": float(len(own)),
        "per_service_usd_per_hour": per_host,
        "per_service_vcpus": float(own["host_vcpus"].sum()),
        "per_service_gib": float(own["host_gib"].sum()),
        "one_host_usd_per_hour": shared.per_hour,
        "one_host_vcpus": float(shared.vcpus),
        "one_host_gib": shared.gib,
        "per_service_usd_per_million": per_host / millions_per_hour,
        "one_host_usd_per_million": shared.per_hour / millions_per_hour,
    }


# --- figures -----------------------------------------------------------------------------


def _labels(values: list[float], fmt: str, prefix: list[str] | None = None) -> list[str]:
    prefix = prefix or [""] * len(values)
    return [
        p + fmt.format(v) if not math.isnan(v) else "-" for p, v in zip(prefix, values, strict=True)
    ]


def _model_bars(ax: Any, x: Any, values: list[float], width: float, variants: list[str]) -> Any:
    """Bars of the model: the variant's colour, faint, hatched, dashed edge."""
    colors = [color(v) for v in variants]
    return ax.bar(x, values, width, color=colors, edgecolor=colors, **MODEL_LOOK)


def _legend(ax: Any, model: str, measured: str | None = None) -> None:
    handles = [Patch(facecolor="#888888", edgecolor="#888888", label=model, **MODEL_LOOK)]
    if measured:
        handles.append(Patch(facecolor="#888888", label=measured))
    ax.legend(handles=handles, fontsize=7, loc="upper left")


def fig_cost_per_request(rs: RunSet) -> Figure | None:
    """Measured: CPU ms per request (median, whiskers its interval over rounds) and PSS."""
    prices = _prices()
    df = cost_table(rs, prices)
    if df.empty:
        return None
    fig, (ax_cpu, ax_mem) = new_figure(2, width=5.0, height=3.8)
    variants = list(df["variant"])
    x = np.arange(len(variants))
    cpu = df["cpu_ms_per_request"].astype(float).to_numpy()
    bars = ax_cpu.bar(x, cpu, color=[color(v) for v in variants])
    if (df["rounds"] > 1).any():
        err = np.vstack([cpu - df["cpu_ms_ci_low"], df["cpu_ms_ci_high"] - cpu]).clip(min=0)
        ax_cpu.errorbar(x, cpu, yerr=err, fmt="none", ecolor="#333333", capsize=4, lw=1)
    ax_cpu.bar_label(bars, labels=_labels(list(cpu), "{:.2f}"), padding=2)
    ax_cpu.set_xticks(list(x), variants)
    ax_cpu.set_ylabel("server CPU ms per request (all processes)")
    ax_cpu.set_title("CPU per request")
    ax_cpu.margins(y=0.15)
    peak = ax_mem.bar(x - 0.2, df["pss_peak_mib"], 0.4, color=[color(v) for v in variants])
    mean = ax_mem.bar(
        x + 0.2, df["pss_mean_mib"], 0.4, color=[color(v) for v in variants], alpha=0.45
    )
    ax_mem.bar_label(peak, fmt="%.0f", fontsize=8)
    ax_mem.bar_label(mean, fmt="%.0f", fontsize=8)
    ax_mem.set_xticks(list(x), variants)
    ax_mem.set_ylabel("PSS MiB (sum over the variant's processes)")
    ax_mem.set_title("memory footprint: peak (solid), mean (light)")
    ax_mem.margins(y=0.15)
    basis, rate = per_request_basis(rs)
    at = f" at {rate:g} req/s" if rate is not None else ""
    rounds = "/".join(str(n) for n in sorted(set(df["rounds"])))
    fig.suptitle(f"What one request costs (unprofiled, {basis}{at}, n={rounds})")
    return caption(fig, rs, f"{_cap(rs, prices)}\n{basis_text(rs)}")


def fig_cores_and_cost(rs: RunSet) -> Figure | None:
    """The model at the target (hatched): cores and provisioned $; busy-only $ measured."""
    prices = _prices()
    df = cost_table(rs, prices)
    if df.empty or df["cores_needed"].isna().all():
        return None
    fig, (ax_c, ax_d) = new_figure(2, width=5.0, height=3.8)
    variants = list(df["variant"])
    x = np.arange(len(variants))
    cores = [nan_float(c) for c in df["cores_needed"]]
    upper = ["≤" if b is True else "" for b in df.get("lower_bound", [False] * len(df))]
    bars = _model_bars(ax_c, x, cores, 0.8, variants)
    ax_c.bar_label(bars, labels=_labels(cores, "{:.0f}", upper))
    ax_c.set_xticks(list(x), variants)
    ax_c.set_ylabel(f"cores for {prices.target_rps:.0f} req/s within the SLO")
    ax_c.set_title("cores needed (model; ≤: SLO never missed)", fontsize=10)
    ax_c.margins(y=0.15)
    _legend(ax_c, cm.MODEL)
    prov = [nan_float(v) for v in df["provisioned_usd_per_million"]]
    busy = [nan_float(v) for v in df["busy_usd_per_million"]]
    b1 = _model_bars(ax_d, x - 0.2, prov, 0.4, variants)
    b2 = ax_d.bar(x + 0.2, busy, 0.4, color=[color(v) for v in variants])
    ax_d.bar_label(b1, labels=_labels(prov, "{:.3f}"), fontsize=8)
    ax_d.bar_label(b2, labels=_labels(busy, "{:.3f}"), fontsize=8)
    ax_d.set_xticks(list(x), variants)
    ax_d.set_ylabel(f"{prices.currency} per million requests")
    ax_d.set_title("provisioned at target (model) vs busy-only (measured)", fontsize=10)
    ax_d.margins(y=0.25)
    _legend(ax_d, "provisioned: " + cm.MODEL, "busy-only: measured per request")
    fig.suptitle("Capacity at the SLO and what a million requests cost")
    return caption(fig, rs, f"{_cap(rs, prices)}\n{model_text(rs, df)}\n{basis_text(rs)}")


def fig_service_footprint(rs: RunSet) -> Figure | None:
    """Measured PSS and CPU share per distributed service; the model's hosts at the target."""
    prices = _prices()
    df = footprint_table(rs, prices)
    if df.empty:
        return None
    dep = deployments(rs, prices)
    fig, (ax_m, ax_d) = new_figure(2, width=5.2, height=3.8)
    d = df.iloc[::-1]
    colors = [color("distributed") if own else "#bbbbbb" for own in d["own_host"]]
    bars = ax_m.barh(d["service"], d["pss_peak_mib"], color=colors)
    labels = [
        f"{m:.0f} MiB, {100 * s:.0f}% CPU"
        for m, s in zip(d["pss_peak_mib"], d["cpu_share"], strict=True)
    ]
    ax_m.bar_label(bars, labels=labels, fontsize=8, padding=2)
    ax_m.set_xlabel("PSS peak MiB (service + its master); grey: no host of its own")
    ax_m.set_title("distributed: fixed footprint per service (measured)", fontsize=10)
    ax_m.margins(x=0.35)
    if dep is None:
        ax_d.set_axis_off()
        ax_d.text(0.5, 0.5, "no capacity at the SLO measured", ha="center", va="center")
    else:
        names = [f"one host per service\n({dep['services']:.0f} hosts)", "all on one host"]
        vals = [dep["per_service_usd_per_million"], dep["one_host_usd_per_million"]]
        look = [color("distributed"), "#888888"]
        b = ax_d.bar(names, vals, color=look, edgecolor=look, **MODEL_LOOK)
        ax_d.bar_label(
            b,
            labels=[
                f"\\${vals[0]:.3f}\n{dep['per_service_vcpus']:.0f} vCPU, "
                f"{dep['per_service_gib']:.0f} GiB",
                f"\\${vals[1]:.3f}\n{dep['one_host_vcpus']:.0f} vCPU, "
                f"{dep['one_host_gib']:.1f} GiB",
            ],
            fontsize=8,
        )
        ax_d.set_ylabel(f"{prices.currency} per million at target")
        ax_d.set_title(
            f"model; min host {prices.min_host_vcpus} vCPU / {prices.min_host_gib:g} GiB",
            fontsize=10,
        )
        ax_d.margins(y=0.25)
    fig.suptitle("The distributed variant's fixed cost of isolation")
    text = f"{_cap(rs, prices)}\n{basis_text(rs)}"
    if dep is not None:
        text += f"\n{model_text(rs, cost_table(rs, prices))}; cores split by CPU share"
    return caption(fig, rs, text)


# drawn in archlab/figures/servers.py (its own analysis module); the notebook calls cost.fig_*
fig_server_sensitivity = servers.fig_server_sensitivity
fig_copy_on_write = cow_figure.fig_copy_on_write  # likewise (archlab/figures/cow.py)

FIGURES = {
    "cost_per_request": fig_cost_per_request,
    "cores_and_cost": fig_cores_and_cost,
    "service_footprint": fig_service_footprint,
    "server_sensitivity": fig_server_sensitivity,
    "copy_on_write": fig_copy_on_write,
}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and not (math.isnan(a) or math.isnan(b)) else "-"


def _mib(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f}"


def reading(rs: RunSet) -> str:
    """The notebook's conclusion, computed from the run set."""
    prices = _prices()
    df = cost_table(rs, prices)
    lines = [
        f"Prices: {prices.source}, as of {prices.as_of} ({prices.url}): "
        f"${prices.vcpu_hour}/vCPU-h, ${prices.gib_hour}/GiB-h. {prices.note}.",
        f"Target: {prices.target_rps:.0f} req/s with p99 <= {ramp.SLO_P99_MS:.0f} ms.",
    ]
    if df.empty:
        no_runs = (
            "No unprofiled run at a common offered load with server telemetry in this run set "
            "(the HTTP server study, else the latency ramps): no cost per request."
        )
        return "\n\n".join([*lines, no_runs, servers.reading(rs), cow_figure.reading(rs)])
    lines.append(basis_text(rs)[0].upper() + basis_text(rs)[1:] + ".")
    base = df.iloc[0]
    for r in df.itertuples():
        text = (
            f"- **{r.variant}** ({_runs_label(r._asdict())}): CPU per request {r.cpu_ms_text}, "
            f"PSS peak {_mib(r.pss_peak_mib)} MiB (mean {_mib(r.pss_mean_mib)}) over "
            f"{r.processes} processes"
        )
        if r.variant != base.variant:
            text += (
                f"; {_ratio(r.cpu_ms_per_request, base.cpu_ms_per_request)} the CPU and "
                f"{_ratio(r.pss_peak_mib, base.pss_peak_mib)} the memory of {base.variant}"
            )
        cores = getattr(r, "cores_needed", None)
        reps = getattr(r, "capacity_runs", None)
        if cores is not None and not pd.isna(cores):
            text += (
                f". Capacity {r.rps_per_core:.0f} req/s per core at the SLO "
                f"({r.capacity_run}, {r.capacity_cpus} CPU"
                + (f", {reps:.0f} repetitions" if reps and reps > 1 else "")
                + ")"
                + (
                    " — the ramp's top step still held, so this is a lower bound"
                    if r.lower_bound
                    else ""
                )
                + f". Model ({cm.MODEL}): {cores:.0f} cores for the target and "
                f"{r.memory_gib:.2f} GiB ({r.memory_basis}), "
                f"${r.provisioned_usd_per_million:.3f} per million provisioned; measured "
                f"busy-only ${r.busy_usd_per_million:.4f}"
            )
        elif pd.isna(getattr(r, "throughput_at_slo_rps", math.nan)):
            text += (
                f". No ramp in this run set: no capacity, busy-only "
                f"${r.busy_usd_per_million:.4f} per million"
            )
        else:
            text += (
                f". No ramp step held the SLO: no capacity, busy-only "
                f"${r.busy_usd_per_million:.4f} per million"
            )
        lines.append(text + ".")
    dep = deployments(rs, prices)
    if dep is not None:
        lines.append(
            f"Distributed at the target (model): one host per service ({dep['services']:.0f} "
            f"hosts, {dep['per_service_vcpus']:.0f} vCPU, {dep['per_service_gib']:.0f} GiB) "
            f"costs ${dep['per_service_usd_per_million']:.3f} per million vs "
            f"${dep['one_host_usd_per_million']:.3f} all on one host "
            f"({_ratio(dep['per_service_usd_per_million'], dep['one_host_usd_per_million'])}): "
            "the smallest-host rounding is the fixed price of isolation."
        )
    lines.append(servers.reading(rs))
    lines.append(cow_figure.reading(rs))
    replicated = cow.has_runs(rs)
    memory = (
        "a prefork design's memory is the copy-on-write study's total at one child per core "
        "(measured at a low load, 50 req/s: a busier child may touch, and so copy, more of "
        "what it inherited), the distributed variant's its PSS peak, not grown with cores"
        if replicated
        else "memory is held at the measured PSS peak, not grown with cores (a GIL-bound "
        "monolith reaches more cores only as replicas, `--workers N`, each with its own copy "
        "of the heap, which this does not count: the copy-on-write study measures it)"
    )
    lines.append(
        f"Caveats: the cores and the provisioned dollars are a model ({cm.MODEL}, from the "
        f"cores measured: optimistic beyond them); {memory}; on a machine where the load "
        "generator shared the CPUs the per-core capacity is understated."
    )
    return "\n\n".join(lines)
