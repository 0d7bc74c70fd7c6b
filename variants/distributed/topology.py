"""The topology file: which services exist, how they depend on each other, what they need.

One file (`deploy/topology.toml`) drives every target — the local launcher, the compose
file and the Kubernetes manifests — so they cannot disagree. It is validated on load: every
bounded context has exactly one service, each context's domain dependencies are declared
(the wiring in `service.py` needs them), and the dependency graph has no cycle.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from workloads.shop.dataset import CONTEXTS, SIZES

TOPOLOGY_FILE = Path(__file__).resolve().parent / "deploy" / "topology.toml"

# What each context's class is constructed with (see service.build_context); the gateway
# serves the whole edge API, so it calls every context.
NEEDS: dict[str, tuple[str, ...]] = {
    "catalog": (),
    "inventory": (),
    "orders": ("catalog", "inventory"),
    "recommendations": ("orders",),
    "notifications": ("orders",),
    "": CONTEXTS,
}


class TopologyError(ValueError):
    """The topology file is malformed or inconsistent."""


@dataclass(frozen=True)
class Service:
    """One service of the topology, with its defaults filled in."""

    name: str
    context: str
    depends_on: tuple[str, ...]
    replicas: int
    scalable: bool
    stateful: bool
    public: bool
    cpu_m: int
    memory_mib: int
    cpu_limit_m: int
    memory_limit_mib: int
    timeout_s: float
    connect_timeout_s: float
    attempts: int
    backoff_s: float
    breaker_failures: int
    breaker_reset_s: float

    @property
    def is_gateway(self) -> bool:
        return self.context == ""


@dataclass(frozen=True)
class Deployment:
    image: str
    port: int
    public_port: int
    size: str
    seed: int
    threads: int


@dataclass(frozen=True)
class Topology:
    deployment: Deployment
    services: dict[str, Service]

    @property
    def gateway(self) -> Service:
        return next(s for s in self.services.values() if s.is_gateway)

    def levels(self) -> list[list[str]]:
        """Services grouped so that each group depends only on earlier groups (start order)."""
        done: set[str] = set()
        levels: list[list[str]] = []
        while len(done) < len(self.services):
            level = sorted(
                name
                for name, svc in self.services.items()
                if name not in done and set(svc.depends_on) <= done
            )
            if not level:
                raise TopologyError(f"dependency cycle among {sorted(set(self.services) - done)}")
            levels.append(level)
            done.update(level)
        return levels

    def dependents(self, name: str) -> list[str]:
        return sorted(n for n, s in self.services.items() if name in s.depends_on)


_SERVICE_KEYS = {f.name for f in fields(Service)} - {"name"}
_DEFAULTABLE = _SERVICE_KEYS - {"context", "depends_on"}
_TYPES: dict[str, type] = {
    "replicas": int,
    "scalable": bool,
    "stateful": bool,
    "public": bool,
    "cpu_m": int,
    "memory_mib": int,
    "cpu_limit_m": int,
    "memory_limit_mib": int,
    "timeout_s": float,
    "connect_timeout_s": float,
    "attempts": int,
    "backoff_s": float,
    "breaker_failures": int,
    "breaker_reset_s": float,
}


def _value(where: str, key: str, raw: Any) -> Any:
    want = _TYPES[key]
    if want is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    if type(raw) is not want:
        raise TopologyError(f"{where}.{key} must be {want.__name__}, got {raw!r}")
    if want in (int, float) and raw <= 0 and key != "backoff_s":
        raise TopologyError(f"{where}.{key} must be positive, got {raw!r}")
    return raw


def parse(doc: dict[str, Any]) -> Topology:
    """Build and validate a Topology from the parsed TOML document."""
    unknown = set(doc) - {"deployment", "defaults", "services"}
    if unknown:
        raise TopologyError(f"unknown top-level table(s): {sorted(unknown)}")
    dep = dict(doc.get("deployment", {}))
    try:
        deployment = Deployment(
            image=str(dep.pop("image")),
            port=int(dep.pop("port")),
            public_port=int(dep.pop("public_port")),
            size=str(dep.pop("size")),
            seed=int(dep.pop("seed")),
            threads=int(dep.pop("threads")),
        )
    except KeyError as exc:
        raise TopologyError(f"[deployment] lacks {exc}") from None
    if dep:
        raise TopologyError(f"unknown [deployment] key(s): {sorted(dep)}")
    if deployment.size not in SIZES:
        raise TopologyError(f"[deployment] size must be one of {sorted(SIZES)}")

    defaults = dict(doc.get("defaults", {}))
    bad = set(defaults) - _DEFAULTABLE
    if bad:
        raise TopologyError(f"unknown [defaults] key(s): {sorted(bad)}")
    defaults.setdefault("public", False)
    services: dict[str, Service] = {}
    for name, table in doc.get("services", {}).items():
        where = f"services.{name}"
        bad = set(table) - _SERVICE_KEYS
        if bad:
            raise TopologyError(f"unknown {where} key(s): {sorted(bad)}")
        merged = {**defaults, **table}
        missing = _SERVICE_KEYS - set(merged)
        if missing:
            raise TopologyError(f"{where} lacks {sorted(missing)} (and [defaults] too)")
        values = {k: _value(where, k, merged[k]) for k in _TYPES}
        context = str(merged["context"])
        if context and context not in CONTEXTS:
            raise TopologyError(f"{where}.context {context!r} is not one of {CONTEXTS}")
        if values["replicas"] > 1 and not values["scalable"]:
            raise TopologyError(f"{where} is not scalable; it must have replicas = 1")
        services[name] = Service(
            name=name, context=context, depends_on=tuple(merged["depends_on"]), **values
        )
    _check(services)
    return Topology(deployment, services)


def _check(services: dict[str, Service]) -> None:
    by_context: dict[str, list[str]] = {}
    for svc in services.values():
        by_context.setdefault(svc.context, []).append(svc.name)
        for dep in svc.depends_on:
            if dep not in services:
                raise TopologyError(f"{svc.name} depends on unknown service {dep!r}")
    for context in (*CONTEXTS, ""):
        hosts = by_context.get(context, [])
        what = f"context {context!r}" if context else "the gateway"
        if len(hosts) != 1:
            raise TopologyError(f"{what} must be hosted by exactly one service, got {hosts}")
    context_of = {svc.context: svc.name for svc in services.values()}
    for svc in services.values():
        need = {context_of[c] for c in NEEDS[svc.context]}
        if not need <= set(svc.depends_on):
            raise TopologyError(f"{svc.name} must depend on {sorted(need - set(svc.depends_on))}")
        if svc.public != svc.is_gateway:
            raise TopologyError("exactly the gateway is public")
    Topology(Deployment("", 1, 1, "tiny", 1, 1), services).levels()  # raises on a cycle


def load(path: Path = TOPOLOGY_FILE) -> Topology:
    try:
        doc = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: {exc}") from None
    return parse(doc)
