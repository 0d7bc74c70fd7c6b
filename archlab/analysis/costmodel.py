"""What a measured variant would cost to run: per request, and provisioned for a target load.

Two views, both priced with `config/prices.toml`:

- **busy-only** (measured): the CPU-seconds and PSS GiB-seconds a request actually used, priced
  at the per-vCPU-hour and per-GiB-hour rates. The floor: what a perfectly packed,
  pay-per-use platform would charge. The inputs must come from unprofiled runs at the same
  offered load for every variant (a sampling profiler pauses the process it samples and
  inflates CPU per request; a different load spreads the fixed costs differently).
- **provisioned** (a MODEL, `MODEL`): the cores needed to serve `target_rps` within the SLO,
  from the per-core capacity a ramp measured (`throughput_at_slo / cpus_used`) times cores,
  linear, plus the memory footprint, paid every hour whether busy or not. What a fixed
  deployment costs; `one_host_per_service` adds the rounding up of each service to the
  smallest host one can rent. A prefork design reaches more cores with more children, each
  with its own private memory: `memory_at` reads its footprint at that many children off the
  totals measured at a few (the copy-on-write study).

Pure functions (no pandas, no matplotlib), so the tests check them on hand-computed inputs.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archlab.rundir import repo_root

PRICES_FILE = Path("config") / "prices.toml"
SECONDS_PER_HOUR = 3600.0
GIB = 2**30
MODEL = "model: capacity per core x cores, linear"
"""How `cores_needed` reaches the target load; every figure or reading that sizes for it says
so: measured capacity per core, scaled by whole cores with nothing lost to contention (a
replica per core that shares nothing), optimistic beyond the cores measured."""


@dataclass(frozen=True)
class Prices:
    """A price table with where it came from (the file's `[price]`, `[host]` and `[slo]`)."""

    vcpu_hour: float
    gib_hour: float
    source: str
    url: str
    as_of: str
    note: str = ""
    currency: str = "USD"
    min_host_vcpus: int = 1
    min_host_gib: float = 1.0
    target_rps: float = 1000.0  # sized for this load at the ramps' SLO (ramp.SLO_P99_MS)

    def label(self) -> str:
        """'prices: GCE N2 ... (as of 2024-06; USD 0.0316/vCPU-h, 0.0042/GiB-h)' for captions
        (no '$': matplotlib would read a pair of them as math)."""
        return (
            f"prices: {self.source} (as of {self.as_of}; {self.currency} "
            f"{self.vcpu_hour:.4f}/vCPU-h, {self.gib_hour:.4f}/GiB-h)"
        )


def prices_path() -> Path:
    """config/prices.toml of the checkout (the file is data of the lab, not of the package)."""
    return (repo_root() or Path.cwd()) / PRICES_FILE


def load_prices(path: Path | None = None) -> Prices:
    """Read the price table. The SLO is not in it: capacity is measured at ramp.SLO_P99_MS, and
    a second number here could only disagree with it."""
    data: dict[str, Any] = tomllib.loads((path or prices_path()).read_text())
    price, host, slo = data["price"], data.get("host", {}), data.get("slo", {})
    return Prices(
        vcpu_hour=float(price["vcpu_hour"]),
        gib_hour=float(price["gib_hour"]),
        source=str(price["source"]),
        url=str(price["url"]),
        as_of=str(price["as_of"]),
        note=str(price.get("note", "")),
        currency=str(price.get("currency", "USD")),
        min_host_vcpus=int(host.get("min_host_vcpus", 1)),
        min_host_gib=float(host.get("min_host_gib", 1.0)),
        target_rps=float(slo.get("target_rps", 1000.0)),
    )


def cpu_seconds_per_request(cpu_s: float, requests: int) -> float:
    """CPU-seconds one request cost: all the variant's processes' CPU over the requests served
    in the same window (so a gateway's or a broker's share counts too)."""
    return cpu_s / requests if requests else math.nan


def step_cpu_seconds_per_request(server_cpu_percent: float, seconds: float, requests: int) -> float:
    """CPU-seconds per request in one ramp step: the server's CPU share over the step (percent
    of one CPU, summary.json's `server_cpu_percent`) times its length, over its requests."""
    return server_cpu_percent / 100 * seconds / requests if requests else math.nan


def memory_gib_seconds_per_request(pss_mean_bytes: float, window_s: float, requests: int) -> float:
    """GiB-seconds of memory held per request: the mean PSS (shared pages split fairly between
    the processes) held for the window, spread over the requests of that window."""
    return (pss_mean_bytes / GIB) * window_s / requests if requests else math.nan


def linear_fit(points: Mapping[int, float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through {x: y} (two x at least): the
    fixed and the per-child part of a prefork design's memory, from totals at several N."""
    if len(points) < 2:
        raise ValueError("a line needs two points")
    xs, ys = list(points), list(points.values())
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - slope * mx, slope


def memory_at(totals: Mapping[int, float], children: int) -> float:
    """A prefork design's memory with `children` children: the total measured at that N, else
    the least-squares line through the measured ones (linear in N: each child adds its private
    pages, the shared ones are held once), never below the smallest measured total."""
    if children in totals:
        return float(totals[children])
    if len(totals) < 2:
        raise ValueError(f"no total at N = {children} and too few to draw a line through")
    intercept, slope = linear_fit(totals)
    return max(intercept + slope * children, min(totals.values()))


def cores_needed(target_rps: float, throughput_at_slo_rps: float, cpus_used: float) -> int:
    """Whole cores to serve target_rps within the SLO, scaling the measured per-core capacity
    (throughput at the SLO / cores it ran on) linearly (`MODEL`): ceil(target / per-core).
    Optimistic past the measured core count; 0 capacity gives a ValueError."""
    if throughput_at_slo_rps <= 0 or cpus_used <= 0:
        raise ValueError("no measured capacity at the SLO")
    per_core = throughput_at_slo_rps / cpus_used
    return math.ceil(target_rps / per_core - 1e-9)


def cost_per_hour(cores: float, memory_gib: float, prices: Prices) -> float:
    """What the provisioned cores and memory cost per hour, busy or idle."""
    return cores * prices.vcpu_hour + memory_gib * prices.gib_hour


def cost_per_million(cores: float, memory_gib: float, target_rps: float, prices: Prices) -> float:
    """$ per million requests of a deployment sized for target_rps and kept busy at it:
    (cores x vCPU-hour + GiB x GiB-hour) / (millions of requests served in an hour)."""
    return cost_per_hour(cores, memory_gib, prices) / (target_rps * SECONDS_PER_HOUR / 1e6)


def busy_cost_per_million(
    cpu_s_per_request: float, gib_s_per_request: float, prices: Prices
) -> float:
    """$ per million requests counting only what requests used (CPU-s and GiB-s), priced per
    second: the floor any deployment of the variant pays, idle capacity excluded."""
    per_request = (
        cpu_s_per_request * prices.vcpu_hour + gib_s_per_request * prices.gib_hour
    ) / SECONDS_PER_HOUR
    return per_request * 1e6


@dataclass(frozen=True)
class Host:
    """One rented host of a one-host-per-service deployment."""

    service: str
    vcpus: int
    gib: float
    per_hour: float


def host_for(service: str, cores: float, gib: float, prices: Prices) -> Host:
    """The host one service gets: its needs rounded up to whole vCPUs and to the min host."""
    vcpus = max(prices.min_host_vcpus, math.ceil(cores - 1e-9))
    mem = max(prices.min_host_gib, gib)
    return Host(service, vcpus, mem, cost_per_hour(vcpus, mem, prices))


def one_host_per_service(services: Mapping[str, tuple[float, float]], prices: Prices) -> list[Host]:
    """Each service {name: (cores_needed, GiB)} on its own host, each rounded up to the smallest
    host: the fixed cost of isolation, which a single shared host does not pay."""
    return [host_for(name, cores, gib, prices) for name, (cores, gib) in services.items()]


def one_host(services: Mapping[str, tuple[float, float]], prices: Prices) -> Host:
    """All services packed on one host (summed needs, rounded up once): the comparison."""
    cores = sum(c for c, _ in services.values())
    gib = sum(g for _, g in services.values())
    return host_for("all", cores, gib, prices)
