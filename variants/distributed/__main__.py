"""`python -m variants.distributed`: every service on this machine until SIGTERM/SIGINT.

The gateway serves the public API on 127.0.0.1:PORT; the services listen on free loopback
ports (or, with `--netns on`, each on its own address in its own network namespace).
`--placement` names a placement (default distributed) or a placement file; it must be one
the launcher runs (`Placement.supervisor == "launcher"`), else one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

import setproctitle

from variants import cli, telemetry
from variants.distributed.launcher import Launcher
from variants.distributed.topology import DEFAULT_PLACEMENT, Topology, TopologyError, from_placement
from workloads.shop import dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.deployer_parser(
        "python -m variants.distributed",
        "The distributed shop: a service per bounded context behind a gateway (--port is "
        "the gateway's).",
        "the databases and lifecycle.jsonl",
        placement=DEFAULT_PLACEMENT,
    )
    p.add_argument("--threads", type=int, default=8, help="request threads per service process")
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="processes per scalable service (gateway, catalog, recommendations; default 1)",
    )
    p.add_argument(
        "--netns",
        nargs="?",
        const="on",
        default="off",
        choices=("off", "on"),
        help="run each service in its own network namespace (needs root; default off)",
    )
    p.add_argument("--ready-timeout", type=float, default=600.0, help="seconds per start level")
    known, _ = p.parse_known_args(argv)
    cli.add_group_options(p, cli.load_placement(known.placement, "launcher"))
    args = p.parse_args(argv)
    if args.threads < 1 or args.replicas < 1:
        p.error("--threads and --replicas must be at least 1")
    return args


def topology_of(args: argparse.Namespace) -> Topology:
    """The placement `args` name as services; a one-line error and exit 2 if it cannot be."""
    placement = cli.chosen_placement(args, cli.load_placement(args.placement, "launcher"))
    try:
        return from_placement(placement)
    except TopologyError as exc:
        print(f"error: {placement.path}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    topology = topology_of(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s launcher[%(process)d] %(name)s %(message)s"
    )
    telemetry.install("launcher")
    setproctitle.setproctitle(telemetry.process_title("launcher"))
    with cli.state_folder(args.state_dir, "archlab-distributed-") as state_dir:
        dataset.ensure(args.size, args.seed)  # once here, not five times in parallel
        launcher = Launcher(
            topology,
            port=args.port,
            state_dir=state_dir.resolve(),
            size=args.size,
            seed=args.seed,
            threads=args.threads,
            replicas=args.replicas,
            config=cli.shop_config(args),
            netns=args.netns == "on",
            ready_timeout_s=args.ready_timeout,
        )
        return launcher.run()


if __name__ == "__main__":
    sys.exit(main())
