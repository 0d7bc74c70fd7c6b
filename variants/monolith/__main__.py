"""`python -m variants.monolith`: serve the monolith on 127.0.0.1 until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging

from variants import cli, forkgc
from variants.monolith.server import MonolithServer
from workloads.shop import dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.deployer_parser(
        "python -m variants.monolith",
        "The threaded single-process monolith: all five contexts in one process.",
        "the mutable databases",
        placement="monolith",
    )
    p.add_argument("--threads", type=int, default=8, help="request threads per process")
    p.add_argument(
        "--workers", type=int, default=1, help="replicas of the whole process (default 1)"
    )
    p.add_argument(
        "--fork-gc",
        choices=forkgc.SETTINGS,
        default=forkgc.AS_IS,
        help="what the collector does around each fork of a worker (default %(default)s; "
        "see variants/forkgc.py)",
    )
    p.add_argument(
        "--preload",
        choices=("off", "on"),
        default="off",
        help="on: build the read-only state (catalog snapshot, recommendation model) in the "
        "master before forking the workers (default %(default)s)",
    )
    known, _ = p.parse_known_args(argv)
    cli.add_group_options(p, cli.load_placement(known.placement, "monolith"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    placement = cli.chosen_placement(args, cli.load_placement(args.placement, "monolith"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with cli.state_folder(args.state_dir, "archlab-monolith-") as state_dir:
        dataset.prepare_state(dataset.ensure(args.size, args.seed), state_dir)
        MonolithServer(
            port=args.port,
            workers=args.workers,
            threads=args.threads,
            state_dir=state_dir,
            config=cli.shop_config(args),
            placement=placement,
            fork_gc=args.fork_gc,
            preload=args.preload == "on",
        ).run()


if __name__ == "__main__":
    main()
