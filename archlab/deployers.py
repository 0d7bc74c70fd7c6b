"""The registry of what the harness can start: one VariantSpec per placement.

A placement (`variants/placement.py`, a TOML file) says which contexts share a process and how
callers reach each process; its shape picks the deployer that runs it (`Placement.supervisor`):
the monolith, the process family or the distributed launcher. `spec_for` turns a placement
into the command line of that deployer, `python -m <module> --placement FILE --port P --size S
--seed N --state-dir DIR --<knob> V ...`, with the deployer's knobs. Each knob has a default
that is always passed explicitly, so meta.json records every knob's actual value.

`VARIANTS` holds a spec per named placement (`variants/placements/*.toml`), so the three
original variant names still name the same deployments and every existing run stays readable;
`get_variant` also accepts the path of any placement file.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from variants import forkgc, isolation, native
from variants import placement as placements
from variants.cli import configured, engine_dest, group_dest
from variants.edge import servers
from variants.multiprocess.config import available_cpus
from variants.placement import POLICIES, Placement
from workloads.shop.dataset import CONTEXTS as COMPONENTS
from workloads.shop.dataset import SIZES as DATASET_SIZES

SIZES = tuple(DATASET_SIZES)  # tiny, small, full
MODULES = {
    "monolith": "variants.monolith",
    "family": "variants.multiprocess",
    "launcher": "variants.distributed",
}
"""Placement.supervisor -> the deployer module that runs such a placement."""
DEFAULT_THREADS = 8


@dataclass(frozen=True)
class Knob:
    """A tuning option of a variant: an integer flag, or a string flag with `choices`."""

    default: int | str
    help: str
    minimum: int = 1
    choices: tuple[str, ...] | None = None
    default_is: str = ""  # where a computed default comes from, e.g. "the CPUs available"

    def check(self, name: str, value: int | str) -> None:
        flag = flag_name(name)
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{flag} must be one of {', '.join(self.choices)}, got {value}")
        elif not isinstance(value, int) or value < self.minimum:
            raise ValueError(f"{flag} must be at least {self.minimum}, got {value}")


def flag_name(knob: str) -> str:
    """The command-line flag of a knob: `policy_backend` -> `--policy-backend`."""
    return "--" + knob.replace("_", "-")


def policy_knob(group: str) -> str:
    """The knob of a group's crash policy: `inv-orders` -> `policy_inv_orders`."""
    return group_dest("policy", group)


@dataclass(frozen=True)
class VariantSpec:
    """How to start one placement: its deployer module and the knobs it accepts."""

    module: str
    description: str
    knobs: Mapping[str, Knob] = field(default_factory=dict)
    # component (bounded context) -> the role of the process(es) hosting it, for faults
    hosts: Mapping[str, str] = field(default_factory=lambda: {c: c for c in COMPONENTS})
    # the role of the top process when nothing of the variant restarts it: the harness does
    # (archlab/run/restart.py), as a process manager would; None: the variant supervises itself
    restarted_by_harness: str | None = None
    name: str = ""  # the placement's name: meta.json's `variant`, the run id's middle
    placement: Placement | None = None

    def host_role(self, component: str) -> str:
        """The role whose processes host `component` (see variants/faults.py)."""
        try:
            return self.hosts[component]
        except KeyError:
            raise KeyError(
                f"{self.name or self.module} hosts no component {component!r}; "
                f"known: {', '.join(self.hosts)}"
            ) from None

    def placement_with(
        self, knobs: Mapping[str, int | str], cpus: Sequence[int] | None = None
    ) -> Placement | None:
        """The placement as the knobs run it: each group on the engine its knob names, every
        HTTP-serving group on the server the `server` knob names, every calling group with the
        `bulkhead` knob's limit, and the `cpu_isolation` knob's group alone on the last of
        `cpus` (the CPUs the deployer may use; default: the harness's)."""
        p = self.placement
        if p is None:
            return None
        return configured(
            p,
            engines={
                g: str(knobs[engine_dest(g)]) for g in p.native_capable if engine_dest(g) in knobs
            },
            server=str(knobs["server"]) if "server" in knobs else None,
            bulkhead=int(knobs["bulkhead"]) if "bulkhead" in knobs else None,
            alone=str(knobs.get("cpu_isolation", isolation.OFF)),
            cpus=cpus,
        )

    def resolve_knobs(self, given: Mapping[str, int | str | None]) -> dict[str, int | str]:
        """Defaults overlaid with the knobs given; rejects knobs this variant does not have."""
        unknown = sorted(k for k, v in given.items() if v is not None and k not in self.knobs)
        if unknown:
            raise ValueError(
                f"{self.name or self.module} has no knob(s) {', '.join(unknown)}; "
                f"it accepts: {', '.join(self.knobs) or 'none'}"
            )
        resolved: dict[str, int | str] = {}
        for name, knob in self.knobs.items():
            value = given.get(name)
            if value is not None:
                knob.check(name, value)
            resolved[name] = knob.default if value is None else value
        return resolved

    def command(
        self,
        *,
        port: int,
        size: str,
        seed: int,
        state_dir: Path,
        knobs: Mapping[str, int | str],
    ) -> list[str]:
        """The argv that starts this variant (with the current interpreter)."""
        cmd = [sys.executable, "-m", self.module]
        if self.placement is not None:
            cmd += ["--placement", str(self.placement.path)]
        cmd += ["--port", str(port), "--size", size, "--seed", str(seed)]
        cmd += ["--state-dir", str(state_dir)]
        for name, value in knobs.items():
            cmd += [flag_name(name), str(value)]
        return cmd


def _engine_knobs(p: Placement) -> dict[str, Knob]:
    """`engine_<group>` for each group that could run on a native engine."""
    return {
        engine_dest(group): Knob(
            p.groups[group].engine,
            f"what serves the {group} group: python, or the native program behind the same "
            "contract",
            choices=native.ENGINES,
        )
        for group in p.native_capable
    }


def _server_knob(p: Placement) -> dict[str, Knob]:
    return {
        "server": Knob(
            p.server,
            "the HTTP server under every Python process that serves HTTP (edge, http groups)",
            choices=servers.SERVERS,
        )
    }


def _isolation_knobs(p: Placement) -> dict[str, Knob]:
    """`bulkhead` and `cpu_isolation`, where processes of `p` call each other."""
    if not p.callers:
        return {}
    return {
        "bulkhead": Knob(
            p.bulkhead,
            "calls in flight from one process to each context it calls in another process; "
            "the rest are refused at once (0: off)",
            minimum=0,
        ),
        "cpu_isolation": Knob(
            isolation.OFF,
            "a group alone on the last CPU the deployer may use, every other group on the rest",
            choices=(isolation.OFF, *p.isolatable),
        ),
    }


def _knobs(p: Placement) -> dict[str, Knob]:
    """The knobs of the deployer that runs `p`, with the placement's values as defaults."""
    return {**_deployer_knobs(p), **_server_knob(p), **_engine_knobs(p), **_isolation_knobs(p)}


def _deployer_knobs(p: Placement) -> dict[str, Knob]:
    threads = Knob(DEFAULT_THREADS, "request threads per process")
    edge_replicas = p.replicas(p.edge, available_cpus())
    per_cpu = "the CPUs available" if p.groups[p.edge].replicas == "cpus" else ""
    fork_gc_help = "what the collector does around each fork (variants/forkgc.py)"
    if p.supervisor == "monolith":
        return {
            "threads": threads,
            "workers": Knob(
                edge_replicas,
                "copies of the whole process on one socket (>1: the replicated-monolith baseline)",
                default_is=per_cpu,
            ),
            "fork_gc": Knob(forkgc.AS_IS, fork_gc_help, choices=forkgc.SETTINGS),
            "preload": Knob(
                "off",
                "build the catalog snapshot and the recommendation model in the master, before "
                "the workers are forked (they inherit them copy-on-write)",
                choices=("off", "on"),
            ),
        }
    if p.supervisor == "family":
        return {
            "backends": Knob(
                edge_replicas, f"request backend processes (the {p.edge} group)", default_is=per_cpu
            ),
            "threads": threads,
            "fork_gc": Knob(forkgc.FREEZE, fork_gc_help, choices=forkgc.SETTINGS),
            **{
                policy_knob(group): Knob(
                    p.policy(group), f"crash policy of the {group} process(es)", choices=POLICIES
                )
                for group in p.groups
            },
        }
    return {
        "threads": threads,
        "replicas": Knob(1, "processes per scalable service (gateway, catalog, recommendations)"),
        "netns": Knob(
            "off", "each service in its own network namespace (needs root)", choices=("off", "on")
        ),
    }


def spec_for(name_or_path: str | Path) -> VariantSpec:
    """The spec of a named placement or a placement file; PlacementError if it is bad."""
    p = placements.load(name_or_path)
    restarted = {
        "monolith": f"{p.edge}-master",
        "family": "postmaster",
        "launcher": "launcher",
    }[p.supervisor]
    return VariantSpec(
        module=MODULES[p.supervisor],
        description=p.description,
        knobs=_knobs(p),
        hosts=dict(p.host),
        restarted_by_harness=restarted,
        name=p.name,
        placement=p,
    )


VARIANTS: dict[str, VariantSpec] = {name: spec_for(name) for name in placements.named()}


def get_variant(name: str) -> VariantSpec:
    """A named placement's spec, or a placement file's (a path: it has a '/' or ends .toml).

    KeyError naming the known placements for an unknown name; PlacementError (a ValueError
    naming the field) for a bad file.
    """
    if name in VARIANTS:
        return VARIANTS[name]
    if placements.is_file_name(name):
        return spec_for(name)
    raise KeyError(
        f"unknown placement {name!r}; known: {', '.join(VARIANTS)} (or a placement file)"
    )


def all_knobs() -> dict[str, Knob]:
    """Every knob of every named placement (the CLI offers each as an option)."""
    knobs: dict[str, Knob] = {}
    for spec in VARIANTS.values():
        for name, knob in spec.knobs.items():
            first = knobs.setdefault(name, knob)
            if first.choices is not None and knob.choices is not None:  # every placement's
                union = (*first.choices, *(c for c in knob.choices if c not in first.choices))
                knobs[name] = dataclasses.replace(first, choices=union)
    return knobs


def knob_owners(name: str) -> dict[str, Knob]:
    """placement -> its version of knob `name` (defaults differ between placements)."""
    return {v: spec.knobs[name] for v, spec in VARIANTS.items() if name in spec.knobs}
