"""The command-line contract every deployer shares with the harness.

`python -m variants.<name> --port P --size S --seed N --state-dir DIR` plus the domain's
knobs (`ShopConfig`, one flag per field): one definition here, parsed by the deployers and
rendered by the harness, so neither can drift from the other.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from variants import isolation, native, placement
from variants.edge import servers
from variants.placement import Placement
from workloads.shop import dataset
from workloads.shop.config import ShopConfig

# ShopConfig field -> the flag every deployer takes for it
SHOP_FLAGS = {
    "rebuild_interval_s": "--rebuild-interval",
    "sink_latency_ms": "--sink-latency-ms",
    "drain_interval_s": "--drain-interval",
    "drain_batch": "--drain-batch",
}
assert set(SHOP_FLAGS) == set(ShopConfig.__struct_fields__), "a flag for every ShopConfig field"


def deployer_parser(
    prog: str, description: str, state_help: str, placement: str | None = None
) -> argparse.ArgumentParser:
    """A parser with the shared options (and `--placement`, defaulting to `placement`)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    if placement is not None:
        p.add_argument(
            "--placement",
            default=placement,
            help=f"a named placement or a placement file (default {placement}; the named ones "
            "are in variants/placements/)",
        )
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    p.add_argument("--size", default="tiny", choices=sorted(dataset.SIZES), help="dataset size")
    p.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
    p.add_argument(
        "--state-dir",
        type=Path,
        help=f"folder for {state_help} (kept across restarts; default: a temp folder removed "
        "at exit)",
    )
    add_shop_options(p)
    return p


def load_placement(text: str, supervisor: str) -> Placement:
    """The placement `text` names, if this deployer runs it; else a one-line exit (status 2)."""
    try:
        found = placement.load(text)
        if found.supervisor != supervisor:
            raise placement.PlacementError(
                f"placement {found.name} is run by the {found.supervisor} deployer, "
                f"not the {supervisor} one"
            )
    except placement.PlacementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return found


def group_dest(setting: str, group: str) -> str:
    """The parsed name of a group's `--<setting>-<group>` option, which is also the harness's
    knob: (`policy`, `inv-orders`) -> `policy_inv_orders`."""
    return f"{setting}_{group.replace('-', '_')}"


def engine_dest(group: str) -> str:
    return group_dest("engine", group)


def add_group_options(p: argparse.ArgumentParser, found: Placement) -> None:
    """`--server`, for the groups that serve HTTP, `--engine-<group>` for each group that
    could run on a native engine, and, where processes call each other, `--bulkhead` and
    `--cpu-isolation`."""
    p.add_argument(
        "--server",
        choices=servers.SERVERS,
        default=found.server,
        help="the HTTP server under every Python process that serves HTTP (the edge, each http "
        "group): gunicorn's threaded worker or granian's Rust server (default: the placement's, "
        "%(default)s)",
    )
    for group in found.native_capable:
        p.add_argument(
            f"--engine-{group}",
            dest=engine_dest(group),
            choices=native.ENGINES,
            default=found.groups[group].engine,
            help=f"what serves the {group} group: the shop's Python code or a native program "
            "behind the same contract (default: the placement's, %(default)s)",
        )
    if found.callers:
        p.add_argument(
            "--bulkhead",
            type=int,
            default=found.bulkhead,
            help="at most this many calls in flight from one process to each context it calls "
            "in another process; the rest are refused at once (503, or degraded "
            "recommendations); 0: off (default: the placement's, %(default)s)",
        )
        p.add_argument(
            "--cpu-isolation",
            choices=(isolation.OFF, *found.isolatable),
            default=isolation.OFF,
            help="confine one group to the last CPU this deployer may use and every other "
            "group to the rest (affinity), e.g. the recommendation engine apart from the "
            "front; off: the placement's own `cpus` (default %(default)s)",
        )


def configured(
    found: Placement,
    *,
    engines: Mapping[str, str],
    server: str | None = None,
    bulkhead: int | None = None,
    alone: str = isolation.OFF,
    cpus: Sequence[int] | None = None,
) -> Placement:
    """The placement as its deployer's knobs run it: each group on its engine, every group that
    serves HTTP on `server`, every calling group with `bulkhead`, the group `alone` on the last
    of `cpus` (default: this process's). One function for the deployer and for the harness's
    record of it (`VariantSpec.placement_with`), so the two cannot drift."""
    p = found.with_engines(engines)
    if server is not None:
        p = p.with_server(server)
    if bulkhead is not None:
        p = p.with_bulkhead(bulkhead)
    if alone != isolation.OFF:
        p = p.with_cpus(isolation.split(p, alone, cpus))
    return p


def chosen_placement(args: argparse.Namespace, found: Placement) -> Placement:
    """The placement with the knobs chosen on the command line; one-line exit 2 if bad."""
    try:
        return configured(
            found,
            engines={g: getattr(args, engine_dest(g)) for g in found.native_capable},
            server=args.server,
            bulkhead=args.bulkhead if found.callers else None,
            alone=args.cpu_isolation if found.callers else isolation.OFF,
        )
    except (placement.PlacementError, isolation.IsolationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def add_shop_options(p: argparse.ArgumentParser) -> None:
    """One flag per ShopConfig field (a deployer, or a process a deployer starts)."""
    defaults = ShopConfig()
    for name, flag in SHOP_FLAGS.items():
        default = getattr(defaults, name)
        p.add_argument(
            flag,
            dest=name,
            type=type(default),
            default=default,
            help=f"the domain's {name} (ShopConfig; default {default})",
        )


def shop_config(args: argparse.Namespace) -> ShopConfig:
    """The domain's configuration from a deployer's parsed command line."""
    return ShopConfig(**{name: getattr(args, name) for name in SHOP_FLAGS})


def shop_args(config: ShopConfig) -> list[str]:
    """The command-line flags that give a deployer `config` (every field, defaults too)."""
    return [a for name, flag in SHOP_FLAGS.items() for a in (flag, str(getattr(config, name)))]


@contextmanager
def state_folder(given: Path | None, prefix: str) -> Iterator[Path]:
    """`given`, or a temporary folder removed on exit (a throwaway `serve`)."""
    folder = given or Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        if given is None:
            shutil.rmtree(folder, ignore_errors=True)
