"""Placement as data: which contexts share a process, and how callers reach each process.

A placement file (TOML) names process *groups*. Each group hosts some bounded contexts; one
group, the *edge* group, also serves the public API. Every other group says how its callers
reach it: `ipc` (the process family's msgpack frames over Unix sockets, supervised by the
postmaster) or `http` (a service with its own port, its callers' breaker, retries and
deadline). The edge group's own contexts are `inproc` to it. The domain's dependencies come
from `workloads.shop.wiring.NEEDS`; a group depends on the groups hosting what its contexts
need, and groups start in that order, the edge last.

Which supervisor runs a placement follows from its shape (`Placement.supervisor`):

- `monolith`: one group, the edge, hosting every context (gunicorn's arbiter);
- `launcher`: every other group `http` and the edge hosting no context (the distributed
  launcher; what compose and Kubernetes run too);
- `family`: anything else (the postmaster; `http` groups become its children too). Within a
  family the catalog, when the edge hosts it and another group needs it, is read by every
  process from one sealed shared-memory segment instead of being called.

The named placements live in `variants/placements/<name>.toml`; the migration path is
monolith → recs-process → multiprocess → recs-service → distributed, each a small diff of
the one before. `load` validates a file and raises `PlacementError` with one line that names
the field.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import msgspec

from variants import native
from variants.edge import servers
from workloads.shop.dataset import CONTEXTS, SIZES
from workloads.shop.wiring import NEEDS

PLACEMENTS_DIR = Path(__file__).resolve().parent / "placements"
PATH = ("monolith", "recs-process", "multiprocess", "recs-service", "distributed")
"""The migration path, in order: each step is a small diff of the one before."""

Transport = Literal["inproc", "ipc", "http"]
TRANSPORTS: tuple[str, ...] = ("inproc", "ipc", "http")
Policy = Literal["restart-one", "crash-restart-all"]
POLICIES: tuple[str, ...] = ("restart-one", "crash-restart-all")
Supervisor = Literal["monolith", "family", "launcher"]
RESERVED_ROLES = ("postmaster", "launcher", "catalog-builder", "harness", "generator")
_ROLE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class PlacementError(ValueError):
    """The placement file is malformed or inconsistent; the message names the field."""


class Group(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One process group: what it hosts, how many processes, how callers reach it."""

    contexts: tuple[str, ...] = ()
    edge: bool = False
    transport: Transport | None = None
    replicas: int | Literal["cpus"] = 1
    """Processes of this group; "cpus": as many as the CPUs available (the family's edge)."""
    policy: Policy | None = None
    """The family's crash policy (default: crash-restart-all for the edge, else restart-one)."""
    engine: str = "python"
    """What serves the group's context: the shop's Python code, or a native program behind
    the same contract (`variants.native`; "rust" for recommendations)."""
    server: str = servers.DEFAULT_SERVER
    """The HTTP server under the group's WSGI app, for a group that serves HTTP (the edge, an
    http group): one of `variants.edge.servers.SERVERS`."""
    bulkhead: int = 0
    """At most this many calls in flight from one process of the group to each context it
    calls in another process; the rest are refused at once (`variants.bulkhead`). 0: off. A
    group that calls no other process has none (a `[defaults]` value does not reach it)."""
    cpus: tuple[int, ...] = ()
    """The CPUs the group's processes run on (affinity, inherited by what they fork and
    exec); empty: every CPU the supervisor was given."""
    # http groups: the callers' policy, and what compose/Kubernetes give the service
    scalable: bool = False
    stateful: bool = False
    timeout_s: float = 5.0
    connect_timeout_s: float = 0.5
    attempts: int = 3
    backoff_s: float = 0.02
    breaker_failures: int = 5
    breaker_reset_s: float = 1.0
    cpu_m: int = 250
    memory_mib: int = 128
    cpu_limit_m: int = 1000
    memory_limit_mib: int = 512


class Deployment(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """What the compose and Kubernetes generators need beyond the groups."""

    image: str = "archlab-shop:0.1.0"
    port: int = 8080
    public_port: int = 8000
    size: str = "small"
    seed: int = 1
    threads: int = 8


class _File(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    description: str
    groups: dict[str, dict[str, Any]]
    defaults: dict[str, Any] = msgspec.field(default_factory=dict)
    deployment: Deployment = msgspec.field(default_factory=Deployment)


@dataclass(frozen=True)
class Placement:
    """A validated placement. Group names are the processes' roles."""

    name: str
    description: str
    groups: dict[str, Group]
    deployment: Deployment
    path: Path

    # -- shape -----------------------------------------------------------------------------

    @cached_property
    def edge(self) -> str:
        return next(name for name, g in self.groups.items() if g.edge)

    @cached_property
    def host(self) -> dict[str, str]:
        """context -> the group hosting it."""
        return {c: name for name, g in self.groups.items() for c in g.contexts}

    def transport(self, group: str) -> str:
        g = self.groups[group]
        return "inproc" if g.edge else str(g.transport)

    @cached_property
    def supervisor(self) -> Supervisor:
        others = [n for n in self.groups if n != self.edge]
        if not others:
            return "monolith"
        if not self.groups[self.edge].contexts and all(self.transport(n) == "http" for n in others):
            return "launcher"
        return "family"

    @cached_property
    def shared_catalog(self) -> bool:
        """The family reads the catalog from shared memory: the edge hosts it, others need it."""
        return (
            self.supervisor == "family"
            and self.host["catalog"] == self.edge
            and any("catalog" in self.needs_contexts(n) for n in self.groups if n != self.edge)
        )

    def maps_catalog(self, group: str) -> bool:
        """A process of `group` maps the shared catalog segment (it hosts the catalog, or
        needs it and does not host it)."""
        return self.shared_catalog and "catalog" in (
            *self.groups[group].contexts,
            *self.needs_contexts(group),
        )

    def needs_contexts(self, group: str) -> tuple[str, ...]:
        """Contexts the group's contexts need and it does not host itself."""
        hosted = set(self.groups[group].contexts)
        if self.groups[group].edge:
            return tuple(c for c in CONTEXTS if c not in hosted)  # the edge API calls all five
        return tuple(c for c in CONTEXTS if c not in hosted and any(c in NEEDS[h] for h in hosted))

    def peers(self, group: str) -> dict[str, str]:
        """context -> the group a process of `group` calls for it (shared catalog excluded)."""
        return {
            c: self.host[c]
            for c in self.needs_contexts(group)
            if not (c == "catalog" and self.shared_catalog)
        }

    def reach(self, context: str) -> str:
        """How a process outside the context's group calls it: its group's transport (ipc
        for a context the edge hosts: the family's backends serve it on a Unix socket too)."""
        host = self.host[context]
        return "ipc" if host == self.edge else self.transport(host)

    @cached_property
    def edge_serves(self) -> tuple[str, ...]:
        """Contexts the edge hosts that other groups call (over IPC, from the backends)."""
        return tuple(
            c
            for c in CONTEXTS
            if self.host[c] == self.edge
            and any(self.peers(n).get(c) == self.edge for n in self.groups if n != self.edge)
        )

    def depends_on(self, group: str) -> tuple[str, ...]:
        """Groups that must be up before `group` starts (the edge starts last: calls into it
        come from requests it serves, or from background jobs that retry)."""
        if self.groups[group].edge:
            return tuple(n for n in self.groups if n != group)
        return tuple(sorted(set(self.peers(group).values()) - {self.edge}))

    @cached_property
    def start_order(self) -> tuple[str, ...]:
        """Every group other than the edge, each after the groups it depends on."""
        done: list[str] = []
        pending = [n for n in self.groups if n != self.edge]
        while pending:
            ready = [n for n in pending if set(self.depends_on(n)) <= set(done)]
            if not ready:
                needs = "; ".join(f"{n} needs {', '.join(self.depends_on(n))}" for n in pending)
                raise PlacementError(
                    f"groups {', '.join(sorted(pending))} need each other, so no start order "
                    f"exists ({needs})"
                )
            done += ready
            pending = [n for n in pending if n not in ready]
        return tuple(done)

    def replicas(self, group: str, cpus: int) -> int:
        value = self.groups[group].replicas
        return cpus if value == "cpus" else value

    def policy(self, group: str) -> str:
        g = self.groups[group]
        if g.policy is not None:
            return g.policy
        return "crash-restart-all" if g.edge and self.supervisor == "family" else "restart-one"

    @cached_property
    def native_capable(self) -> tuple[str, ...]:
        """Groups that could run on a native engine (one context that has a program)."""
        return tuple(
            n
            for n, g in self.groups.items()
            if not g.edge and any(native.supports(e, g.contexts) for e in native.ENGINES[1:])
        )

    def with_engines(self, engines: Mapping[str, str]) -> Placement:
        """This placement with some groups' engines replaced (group -> engine); validated."""
        unknown = sorted(set(engines) - set(self.groups))
        if unknown:
            raise PlacementError(
                f"no group {', '.join(unknown)} in placement {self.name} "
                f"(groups: {', '.join(self.groups)})"
            )
        if all(self.groups[g].engine == e for g, e in engines.items()):
            return self
        groups = {
            n: msgspec.structs.replace(g, engine=engines.get(n, g.engine))
            for n, g in self.groups.items()
        }
        return self._with_groups(groups)

    def serves_http(self, group: str) -> bool:
        """Whether the group's processes serve HTTP with a Python server (the server knob's
        reach): the edge, and every http group the shop's Python code serves."""
        g = self.groups[group]
        return g.edge or (g.transport == "http" and g.engine == "python")

    @property
    def server(self) -> str:
        """The server under the edge's app (the `server` knob's value for this placement)."""
        return self.groups[self.edge].server

    def with_server(self, server: str) -> Placement:
        """This placement with every group that serves HTTP on `server`; validated."""
        if all(g.server == server for n, g in self.groups.items() if self.serves_http(n)):
            return self
        groups = {
            n: msgspec.structs.replace(g, server=server) if self.serves_http(n) else g
            for n, g in self.groups.items()
        }
        return self._with_groups(groups)

    @cached_property
    def callers(self) -> tuple[str, ...]:
        """Groups whose processes call another process (where a bulkhead has an effect)."""
        return tuple(n for n in self.groups if self.peers(n))

    @property
    def bulkhead(self) -> int:
        """The largest bulkhead of a calling group (the `bulkhead` knob's value)."""
        return max((self.groups[n].bulkhead for n in self.callers), default=0)

    @cached_property
    def isolatable(self) -> tuple[str, ...]:
        """Groups that can be given a CPU of their own (every group but the edge)."""
        return tuple(n for n in self.groups if n != self.edge)

    def with_bulkhead(self, limit: int) -> Placement:
        """This placement with a bulkhead of `limit` calls per downstream context in every
        group that calls another process (0: none); validated."""
        return self._with_groups(
            {
                n: msgspec.structs.replace(g, bulkhead=limit) if n in self.callers else g
                for n, g in self.groups.items()
            }
        )

    def with_cpus(self, cpus: Mapping[str, tuple[int, ...]]) -> Placement:
        """This placement with some groups confined to CPUs (group -> CPUs; () frees one)."""
        unknown = sorted(set(cpus) - set(self.groups))
        if unknown:
            raise PlacementError(f"no group {', '.join(unknown)} in placement {self.name}")
        return self._with_groups(
            {
                n: msgspec.structs.replace(g, cpus=cpus.get(n, g.cpus))
                for n, g in self.groups.items()
            }
        )

    def _with_groups(self, groups: dict[str, Group]) -> Placement:
        """This placement with its groups replaced; validated as a file's would be."""
        changed = dataclasses.replace(self, groups=groups)
        _check(changed)
        return changed

    def describe(self) -> dict[str, Any]:
        """The placement in full, as meta.json records it."""
        return {
            "name": self.name,
            "description": self.description,
            "supervisor": self.supervisor,
            "edge": self.edge,
            "shared_catalog": self.shared_catalog,
            "start_order": list(self.start_order),
            "groups": {
                name: {
                    **msgspec.json.decode(msgspec.json.encode(g)),  # lists, as JSON reads back
                    "transport": self.transport(name),
                    "policy": self.policy(name),
                    "depends_on": list(self.depends_on(name)),
                }
                for name, g in self.groups.items()
            },
        }


def _check(p: Placement) -> None:
    edges = [n for n, g in p.groups.items() if g.edge]
    if len(edges) != 1:
        raise PlacementError(f"exactly one group must have edge = true, got {edges or 'none'}")
    seen: dict[str, str] = {}
    for name, g in p.groups.items():
        where = f"groups.{name}"
        if not _ROLE.match(name) or name in RESERVED_ROLES or name.endswith("-master"):
            raise PlacementError(
                f"{where}: a group name is a process role: lowercase words joined by '-', "
                f"not {', '.join(RESERVED_ROLES)} nor ending in -master"
            )
        for c in g.contexts:
            if c not in CONTEXTS:
                raise PlacementError(
                    f"{where}.contexts: unknown context {c!r} (contexts are {', '.join(CONTEXTS)})"
                )
            if c in seen:
                raise PlacementError(f"context {c!r} is placed twice: groups.{seen[c]} and {where}")
            seen[c] = name
        if g.edge:
            if g.transport not in (None, "inproc"):
                raise PlacementError(f"{where}.transport: the edge group is inproc to itself")
        else:
            if g.transport is None:
                raise PlacementError(f"{where}.transport is required: one of ipc, http")
            if g.transport == "inproc":
                raise PlacementError(
                    f"{where}.transport: only the edge group is inproc; say ipc or http"
                )
            if not g.contexts:
                raise PlacementError(f"{where}.contexts: a group other than the edge hosts some")
        if g.engine not in native.ENGINES:
            raise PlacementError(
                f"{where}.engine: unknown engine {g.engine!r} (choose {', '.join(native.ENGINES)})"
            )
        if g.engine != "python" and (g.edge or not native.supports(g.engine, g.contexts)):
            served = sorted(c for e, c in native.NATIVE if e == g.engine)
            raise PlacementError(
                f"{where}.engine: the {g.engine} engine serves one context in a group of its "
                f"own, not the edge ({', '.join(served)}); this group hosts "
                f"{', '.join(g.contexts) or 'none'}"
            )
        if g.server not in servers.SERVERS:
            raise PlacementError(
                f"{where}.server: unknown server {g.server!r} (choose {', '.join(servers.SERVERS)})"
            )
        if g.bulkhead < 0:
            raise PlacementError(f"{where}.bulkhead must be 0 (off) or a number of calls")
        if any(c < 0 for c in g.cpus) or len(set(g.cpus)) != len(g.cpus):
            raise PlacementError(f"{where}.cpus: distinct CPU numbers, e.g. [1]")
        if g.transport == "http" and len(g.contexts) != 1:
            raise PlacementError(f"{where}.contexts: an http group hosts exactly one context")
        if isinstance(g.replicas, int) and g.replicas < 1:
            raise PlacementError(f'{where}.replicas must be at least 1 (or "cpus")')
        if g.replicas == "cpus" and not g.edge:
            raise PlacementError(f'{where}.replicas: "cpus" is only for the edge group')
        if g.replicas != 1 and not g.edge and g.transport == "ipc":
            raise PlacementError(f"{where}.replicas: an ipc group is one process")
        if g.replicas != 1 and g.transport == "http" and not g.scalable:
            raise PlacementError(f"{where}.replicas: only a scalable http group has replicas > 1")
    missing = [c for c in CONTEXTS if c not in seen]
    if missing:
        raise PlacementError(f"context(s) {', '.join(missing)} placed in no group")
    p.start_order  # noqa: B018 - raises on a cycle


def _invalid(exc: msgspec.ValidationError, prefix: str) -> PlacementError:
    """msgspec's "Expected `int`, got `str` - at `$.replicas`" as "<prefix>.replicas: ..."."""
    text, _, where = str(exc).partition(" - at `$")
    field = where.rstrip("`").lstrip(".")
    path = ".".join(p for p in (prefix, field) if p)
    if "enum value" in text and field == "transport":
        text += f" (choose {', '.join(TRANSPORTS)})"
    elif "enum value" in text and field == "policy":
        text += f" (choose {', '.join(POLICIES)})"
    return PlacementError(f"{path}: {text}" if path else text)


def parse(doc: dict[str, Any], name: str, path: Path) -> Placement:
    """Build and validate a Placement from a parsed TOML document."""
    try:
        raw = msgspec.convert(doc, _File)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, "") from None
    groups = {}
    for gname, table in raw.groups.items():
        try:
            groups[gname] = msgspec.convert({**raw.defaults, **table}, Group)
        except msgspec.ValidationError as exc:
            raise _invalid(exc, f"groups.{gname}") from None
    if raw.deployment.size not in SIZES:
        raise PlacementError(f"deployment.size must be one of {', '.join(SIZES)}")
    placement = Placement(name, raw.description, groups, raw.deployment, path)
    _check(placement)
    if any(g.bulkhead for n, g in groups.items() if n not in placement.callers):
        # a `[defaults]` bulkhead reaches every group; one that calls no other process has none
        placement = placement._with_groups(
            {
                n: g if n in placement.callers else msgspec.structs.replace(g, bulkhead=0)
                for n, g in placement.groups.items()
            }  # fmt: skip
        )
    return placement


def named() -> dict[str, Path]:
    """The named placements: name -> file, the migration path first."""
    found = {p.stem: p for p in sorted(PLACEMENTS_DIR.glob("*.toml"))}
    return {**{n: found[n] for n in PATH if n in found}, **found}


def is_file_name(text: str) -> bool:
    """`text` names a placement file (it has a '/' or ends .toml), not a named placement."""
    return "/" in text or text.endswith(".toml")


def load(name_or_path: str | Path) -> Placement:
    """A named placement, or the placement file at a path; PlacementError if it is bad."""
    text = str(name_or_path)
    path = None if is_file_name(text) else named().get(text)
    if path is None:
        path = Path(text)
        if not path.is_file():
            raise PlacementError(
                f"no placement {text!r}: not a file, nor one of {', '.join(named())}"
            )
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise PlacementError(f"{path}: {exc}") from None
    name = path.stem
    known = named().get(name)
    if known is not None and known.resolve() != path.resolve():
        name = f"file-{name}"  # never recorded under the name of a different, named placement
    try:
        return parse(doc, name, path.resolve())
    except PlacementError as exc:
        raise PlacementError(f"{path}: {exc}") from None
