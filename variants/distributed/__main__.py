"""`python -m variants.distributed`: every service on this machine until SIGTERM/SIGINT.

The gateway serves the public API on 127.0.0.1:PORT; the services listen on free loopback
ports (or, with `--netns on`, each on its own address in its own network namespace).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from variants import telemetry
from variants.distributed.launcher import Launcher
from variants.distributed.topology import TOPOLOGY_FILE, TopologyError, load
from workloads.shop import dataset
from workloads.shop.config import ShopConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = ShopConfig()
    p = argparse.ArgumentParser(
        prog="python -m variants.distributed",
        description="The distributed shop: a service per bounded context behind a gateway.",
    )
    p.add_argument("--port", type=int, default=8000, help="gateway port on 127.0.0.1")
    p.add_argument("--size", default="tiny", choices=sorted(dataset.SIZES), help="dataset size")
    p.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
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
    p.add_argument("--topology", type=Path, default=TOPOLOGY_FILE, help="the topology file")
    p.add_argument(
        "--state-dir",
        type=Path,
        help="folder for the databases and lifecycle.jsonl (kept across restarts; default: a "
        "temp folder removed at exit)",
    )
    p.add_argument("--rebuild-interval", type=float, default=defaults.rebuild_interval_s)
    p.add_argument("--sink-latency-ms", type=float, default=defaults.sink_latency_ms)
    p.add_argument("--ready-timeout", type=float, default=600.0, help="seconds per start level")
    args = p.parse_args(argv)
    if args.threads < 1 or args.replicas < 1:
        p.error("--threads and --replicas must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s launcher[%(process)d] %(name)s %(message)s"
    )
    telemetry.install("launcher")
    try:
        topology = load(args.topology)
    except TopologyError as exc:
        print(f"{args.topology}: {exc}", file=sys.stderr)
        return 2
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="archlab-distributed-"))
    try:
        dataset.ensure(args.size, args.seed)  # once here, not five times in parallel
        launcher = Launcher(
            topology,
            args.topology.resolve(),
            port=args.port,
            state_dir=state_dir.resolve(),
            size=args.size,
            seed=args.seed,
            threads=args.threads,
            replicas=args.replicas,
            config=ShopConfig(
                rebuild_interval_s=args.rebuild_interval, sink_latency_ms=args.sink_latency_ms
            ),
            netns=args.netns == "on",
            ready_timeout_s=args.ready_timeout,
        )
        return launcher.run()
    finally:
        if args.state_dir is None:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
