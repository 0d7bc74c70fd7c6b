"""Notebook 04: what each variant costs, per request and provisioned for a target load.

Per variant, from the run set:

- **per request**: CPU ms per request and PSS (peak and mean, summed over the variant's
  processes: `summary.json` `server.total`) of the `profile` run, an open loop at one fixed rate
  for every variant (the fairest per-request comparison); without one, of the latency ramp.
- **capacity**: throughput at the SLO (`ramp.throughput_at_slo`) per core it ran on, the best
  over the variant's scaling and latency ramps (an unpinned run counts all usable CPUs). When
  every step of that ramp met the SLO the ramp never bent: the capacity is a lower bound and
  the cores an upper bound.
- **cost**: `costmodel.cores_needed` for the target load, memory held at the measured PSS peak,
  priced with `config/prices.toml` (provisioned); and busy-only from CPU-s and GiB-s per
  request. A prefork design (the monolith's workers, the family's backends) reaches its cores
  with one child per core: its memory is then the copy-on-write study's total at that many
  children, with its default knobs (`cow.memory_for`: measured, or on the line through the
  measured N), where the run set has the study; else the per-request run's PSS peak.
- **distributed**: PSS and CPU share per service (`server.roles`, `<svc>-master` folded into
  its service); one host per service (each rounded up to the smallest host) vs all on one host.
- **HTTP server**: each variant's CPU per request and p99 under each server of the `server`
  knob at one offered load, and the share of the distributed variant's extra CPU that is the
  server (`archlab.figures.servers`, figure `server_sensitivity`).
- **copy-on-write**: each prefork design's private MiB per child over time and its total at
  N children under each `fork_gc` setting (`archlab.figures.cow`, figure `copy_on_write`).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from archlab.analysis import costmodel as cm
from archlab.analysis import cow, ramp
from archlab.analysis.runset import Run, RunSet
from archlab.figures import cow as cow_figure
from archlab.figures import servers
from archlab.figures.style import caption, color, new_figure

MIB = 2**20
NOT_SERVICES = ("launcher", "root", "unlabelled")  # harness-side roles: no host of their own


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


def _per_request_run(rs: RunSet, variant: str) -> Run | None:
    """The fixed-rate profile run, else the latency ramp, with server telemetry."""
    for kind in ("profile", "latency"):
        for run in rs.of(kind, variant):
            if run.summary.get("server", {}).get("total") and _requests(run):
                return run
    return None


def capacity(rs: RunSet, variant: str) -> dict[str, Any] | None:
    """The best measured per-core throughput at the SLO over the variant's ramps."""
    runs = {r.tag: r for kind in ("scaling", "latency") for r in rs.of(kind, variant)}
    best: dict[str, Any] | None = None
    for run in runs.values():
        steps = ramp.ramp_steps(run)
        if steps.empty:
            continue
        tp = ramp.throughput_at_slo(run)
        cpus = _cpus_used(run, rs)
        row = {
            "capacity_run": run.tag,
            "capacity_cpus": cpus,
            "throughput_at_slo_rps": tp,
            "rps_per_core": tp / cpus,
            "lower_bound": bool(steps["meets_slo"].all()),
        }
        if best is None or row["rps_per_core"] > best["rps_per_core"]:
            best = row
    return best


def cost_table(rs: RunSet, prices: cm.Prices | None = None) -> pd.DataFrame:
    """One row per variant: per-request cost, capacity, cores and $ per million requests."""
    prices = prices or _prices()
    rows = []
    for variant in rs.variants():
        run = _per_request_run(rs, variant)
        if run is None:
            continue
        total = run.summary["server"]["total"]
        n = _requests(run)
        window_s = float(run.summary["window"]["seconds"])
        cpu_s_req = cm.cpu_seconds_per_request(float(total["cpu_s"]), n)
        gib_s_req = cm.memory_gib_seconds_per_request(float(total["pss_mean_bytes"]), window_s, n)
        row: dict[str, Any] = {
            "variant": variant,
            "per_request_run": run.tag,
            "per_request_kind": "profile" if "profile" in run.kinds else "latency",
            "achieved_rps": run.summary.get("load", {}).get("achieved_rps"),
            "processes": total.get("processes"),
            "cpu_ms_per_request": 1000 * cpu_s_req,
            "pss_peak_mib": total["pss_peak_bytes"] / MIB,
            "pss_mean_mib": total["pss_mean_bytes"] / MIB,
            "gib_s_per_request": gib_s_req,
            "busy_usd_per_million": cm.busy_cost_per_million(cpu_s_req, gib_s_req, prices),
        }
        cap = capacity(rs, variant) or {}
        row.update(cap)
        cores = None
        if cap.get("throughput_at_slo_rps"):
            cores = cm.cores_needed(
                prices.target_rps, cap["throughput_at_slo_rps"], cap["capacity_cpus"]
            )
        gib = total["pss_peak_bytes"] / cm.GIB
        row["memory_basis"] = f"PSS peak of {run.tag}"
        replicated = cow.memory_for(rs, variant, cores) if cores is not None else None
        if replicated is not None:
            gib = replicated[0] / cm.GIB
            row["memory_basis"] = f"copy-on-write study, {replicated[1]}"
        row["memory_gib"] = gib
        row["cores_needed"] = cores
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


def _service(role: str) -> str:
    return role.removesuffix("-master")


def footprint_table(rs: RunSet, prices: cm.Prices | None = None) -> pd.DataFrame:
    """Distributed: one row per service, PSS and CPU share, and the host it would get alone.

    A service's cores at the target load are the variant's cores needed times the service's
    share of the CPU-seconds of the per-request run. Empty without a distributed run.
    """
    prices = prices or _prices()
    run = _per_request_run(rs, "distributed")
    if run is None or not run.summary["server"].get("roles"):
        return pd.DataFrame()
    costs = cost_table(rs, prices)
    dist = costs[costs["variant"] == "distributed"]
    cores_total = dist["cores_needed"].iloc[0] if not dist.empty else None
    roles = pd.DataFrame(
        [
            {"role": role, **{k: s.get(k, 0) for k in ("processes", "cpu_s", "pss_peak_bytes")}}
            | {"pss_mean_bytes": s.get("pss_mean_bytes", 0)}
            for role, s in run.summary["server"]["roles"].items()
        ]
    )
    roles["service"] = roles["role"].map(_service)
    df = roles.groupby("service", as_index=False)[
        ["processes", "cpu_s", "pss_peak_bytes", "pss_mean_bytes"]
    ].sum()
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
    """Distributed at the target load: $/h and $/million, one host per service vs one host."""
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


def _bars(ax: Any, variants: list[str], values: list[float], fmt: str) -> None:
    bars = ax.bar(variants, values, color=[color(v) for v in variants])
    ax.bar_label(bars, labels=[fmt.format(v) if not math.isnan(v) else "-" for v in values])
    ax.margins(y=0.15)


def fig_cost_per_request(rs: RunSet) -> Figure | None:
    prices = _prices()
    df = cost_table(rs, prices)
    if df.empty:
        return None
    fig, (ax_cpu, ax_mem) = new_figure(2, width=5.0, height=3.8)
    variants = list(df["variant"])
    _bars(ax_cpu, variants, list(df["cpu_ms_per_request"]), "{:.2f}")
    ax_cpu.set_ylabel("server CPU ms per request (all processes)")
    ax_cpu.set_title("CPU per request")
    x = range(len(variants))
    peak = ax_mem.bar(
        [i - 0.2 for i in x], df["pss_peak_mib"], 0.4, color=[color(v) for v in variants]
    )
    mean = ax_mem.bar(
        [i + 0.2 for i in x],
        df["pss_mean_mib"],
        0.4,
        color=[color(v) for v in variants],
        alpha=0.45,
        hatch="//",
    )
    ax_mem.bar_label(peak, fmt="%.0f", fontsize=8)
    ax_mem.bar_label(mean, fmt="%.0f", fontsize=8)
    ax_mem.set_xticks(list(x), variants)
    ax_mem.set_ylabel("PSS MiB (sum over the variant's processes)")
    ax_mem.set_title("memory footprint: peak (solid), mean (hatched)")
    ax_mem.margins(y=0.15)
    kinds = ", ".join(sorted(set(df["per_request_kind"])))
    fig.suptitle(f"What one request costs (from the {kinds} runs)")
    return caption(fig, rs, _cap(rs, prices))


def fig_cores_and_cost(rs: RunSet) -> Figure | None:
    prices = _prices()
    df = cost_table(rs, prices)
    if df.empty or df["cores_needed"].isna().all():
        return None
    fig, (ax_c, ax_d) = new_figure(2, width=5.0, height=3.8)
    variants = list(df["variant"])
    cores = [float(c) if c is not None and not pd.isna(c) else math.nan for c in df["cores_needed"]]
    _bars(ax_c, variants, cores, "{:.0f}")
    for bar, lower in zip(ax_c.patches, df.get("lower_bound", [False] * len(df)), strict=False):
        if lower is True:
            bar.set_hatch("..")
    ax_c.set_ylabel(f"cores for {prices.target_rps:.0f} req/s within the SLO")
    ax_c.set_title("cores needed (dotted: SLO never missed, an upper bound)", fontsize=10)
    x = range(len(variants))
    prov = [
        float(v) if v is not None and not pd.isna(v) else math.nan
        for v in df["provisioned_usd_per_million"]
    ]
    busy = list(df["busy_usd_per_million"])
    b1 = ax_d.bar([i - 0.2 for i in x], prov, 0.4, color=[color(v) for v in variants])
    b2 = ax_d.bar(
        [i + 0.2 for i in x], busy, 0.4, color=[color(v) for v in variants], alpha=0.45, hatch="//"
    )
    ax_d.bar_label(b1, fmt="%.3f", fontsize=8)
    ax_d.bar_label(b2, fmt="%.3f", fontsize=8)
    ax_d.set_xticks(list(x), variants)
    ax_d.set_ylabel(f"{prices.currency} per million requests")
    ax_d.set_title("provisioned at target (solid) vs busy-only (hatched)", fontsize=10)
    ax_d.margins(y=0.15)
    fig.suptitle("Capacity at the SLO and what a million requests cost")
    return caption(fig, rs, _cap(rs, prices))


def fig_service_footprint(rs: RunSet) -> Figure | None:
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
    ax_m.set_title("distributed: fixed footprint per service", fontsize=10)
    ax_m.margins(x=0.35)
    if dep is None:
        ax_d.set_axis_off()
        ax_d.text(0.5, 0.5, "no capacity at the SLO measured", ha="center", va="center")
    else:
        names = [f"one host per service\n({dep['services']:.0f} hosts)", "all on one host"]
        vals = [dep["per_service_usd_per_million"], dep["one_host_usd_per_million"]]
        b = ax_d.bar(names, vals, color=[color("distributed"), "#888888"])
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
        ax_d.set_ylabel(f"{prices.currency} per million requests at target")
        ax_d.set_title(
            f"min host {prices.min_host_vcpus} vCPU / {prices.min_host_gib:g} GiB", fontsize=10
        )
        ax_d.margins(y=0.25)
    fig.suptitle("The distributed variant's fixed cost of isolation")
    return caption(fig, rs, _cap(rs, prices))


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
    return f"{a / b:.2f}x" if b else "-"


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
        no_runs = "No run with server telemetry in this run set."
        return "\n\n".join([*lines, no_runs, servers.reading(rs), cow_figure.reading(rs)])
    base = df.iloc[0]
    for r in df.itertuples():
        text = (
            f"- **{r.variant}** ({r.per_request_run}, {r.per_request_kind}): "
            f"{r.cpu_ms_per_request:.2f} CPU ms/request, PSS peak {r.pss_peak_mib:.0f} MiB "
            f"(mean {r.pss_mean_mib:.0f}) over {r.processes} processes"
        )
        if r.variant != base.variant:
            text += (
                f"; {_ratio(r.cpu_ms_per_request, base.cpu_ms_per_request)} the CPU and "
                f"{_ratio(r.pss_peak_mib, base.pss_peak_mib)} the memory of {base.variant}"
            )
        cores = getattr(r, "cores_needed", None)
        if cores is not None and not pd.isna(cores):
            text += (
                f". Capacity {r.rps_per_core:.0f} req/s per core at the SLO "
                f"({r.capacity_run}, {r.capacity_cpus} CPU)"
                + (
                    " — the ramp never missed the SLO, so this is a lower bound"
                    if r.lower_bound
                    else ""
                )
                + f": {cores:.0f} cores for the target and {r.memory_gib:.2f} GiB "
                f"({r.memory_basis}), "
                f"${r.provisioned_usd_per_million:.3f} per million provisioned, "
                f"${r.busy_usd_per_million:.4f} busy-only"
            )
        else:
            text += (
                f". No ramp step met the SLO: no capacity, busy-only "
                f"${r.busy_usd_per_million:.4f} per million"
            )
        lines.append(text + ".")
    dep = deployments(rs, prices)
    if dep is not None:
        lines.append(
            f"Distributed at the target: one host per service ({dep['services']:.0f} hosts, "
            f"{dep['per_service_vcpus']:.0f} vCPU, {dep['per_service_gib']:.0f} GiB) costs "
            f"${dep['per_service_usd_per_million']:.3f} per million vs "
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
        "Caveats: capacity is scaled linearly from the measured cores (optimistic beyond "
        f"them); {memory}; on a machine where the load generator shared the CPUs the per-core "
        "capacity is understated."
    )
    return "\n\n".join(lines)
