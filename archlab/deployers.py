"""The registry of variants the harness can start, and how to build their command lines.

A variant is a deployer module run as `python -m <module> --port P --size S --seed N
--state-dir DIR --<knob> V ...`. Each knob has a default that is always passed explicitly, so
meta.json records every knob's actual value. Adding a variant means adding one entry here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from variants.multiprocess import config as mp
from workloads.shop.dataset import CONTEXTS as COMPONENTS
from workloads.shop.dataset import SIZES as DATASET_SIZES

SIZES = tuple(DATASET_SIZES)  # tiny, small, full


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


@dataclass(frozen=True)
class VariantSpec:
    """How to start one variant: its module and the knobs it accepts."""

    module: str
    description: str
    knobs: Mapping[str, Knob] = field(default_factory=dict)
    # component (bounded context) -> the role of the process(es) hosting it, for faults
    hosts: Mapping[str, str] = field(default_factory=lambda: {c: c for c in COMPONENTS})
    # the role of the top process when nothing of the variant restarts it: the harness does
    # (archlab/run/restart.py), as a process manager would; None: the variant supervises itself
    restarted_by_harness: str | None = None

    def host_role(self, component: str) -> str:
        """The role whose processes host `component` (see variants/faults.py)."""
        try:
            return self.hosts[component]
        except KeyError:
            raise KeyError(
                f"{self.module} hosts no component {component!r}; known: {', '.join(self.hosts)}"
            ) from None

    def resolve_knobs(self, given: Mapping[str, int | str | None]) -> dict[str, int | str]:
        """Defaults overlaid with the knobs given; rejects knobs this variant does not have."""
        unknown = sorted(k for k, v in given.items() if v is not None and k not in self.knobs)
        if unknown:
            raise ValueError(
                f"{self.module} has no knob(s) {', '.join(unknown)}; "
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
        cmd = [sys.executable, "-m", self.module, "--port", str(port), "--size", size]
        cmd += ["--seed", str(seed), "--state-dir", str(state_dir)]
        for name, value in knobs.items():
            cmd += [flag_name(name), str(value)]
        return cmd


VARIANTS: dict[str, VariantSpec] = {
    "monolith": VariantSpec(
        module="variants.monolith",
        description="one process, a thread pool, every bounded context in-process",
        hosts={c: "monolith" for c in COMPONENTS},
        restarted_by_harness="monolith-master",
        knobs={
            "threads": Knob(8, "request threads per worker process"),
            "workers": Knob(1, "worker processes (>1 gives the replicated-monolith baseline)"),
        },
    ),
    "distributed": VariantSpec(
        module="variants.distributed",
        description="one HTTP service per bounded context behind an API gateway",
        restarted_by_harness="launcher",
        knobs={
            "threads": Knob(8, "request threads per service process"),
            "replicas": Knob(
                1, "processes per scalable service (gateway, catalog, recommendations)"
            ),
            "netns": Knob(
                "off",
                "each service in its own network namespace (needs root)",
                choices=("off", "on"),
            ),
        },
    ),
    "multiprocess": VariantSpec(
        module="variants.multiprocess",
        description="a PostgreSQL-style family: postmaster, request backends, one auxiliary "
        "process per stateful context, the catalog in shared memory",
        hosts={c: "backend" if c == "catalog" else c for c in COMPONENTS},
        restarted_by_harness="postmaster",
        knobs={
            "backends": Knob(
                mp.available_cpus(), "request backend processes", default_is="the CPUs available"
            ),
            "threads": Knob(8, "request threads per backend process"),
            **{
                f"policy_{role}": Knob(
                    mp.DEFAULT_POLICIES[role],
                    f"crash policy of the {role} process(es)",
                    choices=mp.POLICIES,
                )
                for role in mp.ROLES
            },
        },
    ),
}


def get_variant(name: str) -> VariantSpec:
    """Look up a variant by name, with the known names in the error."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None


def all_knobs() -> dict[str, Knob]:
    """Every knob of every variant (the CLI offers each as an option)."""
    knobs: dict[str, Knob] = {}
    for spec in VARIANTS.values():
        for name, knob in spec.knobs.items():
            knobs.setdefault(name, knob)
    return knobs
