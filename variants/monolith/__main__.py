"""`python -m variants.monolith`: serve the monolith on 127.0.0.1 until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

from variants.monolith.server import MonolithServer
from workloads.shop import dataset
from workloads.shop.config import ShopConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = ShopConfig()
    p = argparse.ArgumentParser(
        prog="python -m variants.monolith",
        description="The threaded single-process monolith: all five contexts in one process.",
    )
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    p.add_argument("--size", default="tiny", choices=sorted(dataset.SIZES), help="dataset size")
    p.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
    p.add_argument("--threads", type=int, default=8, help="request threads per process")
    p.add_argument(
        "--workers", type=int, default=1, help="replicas of the whole process (default 1)"
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        help="folder for the mutable databases (kept across restarts; default: a temp folder "
        "removed at exit)",
    )
    p.add_argument("--rebuild-interval", type=float, default=defaults.rebuild_interval_s)
    p.add_argument("--sink-latency-ms", type=float, default=defaults.sink_latency_ms)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ShopConfig(
        rebuild_interval_s=args.rebuild_interval, sink_latency_ms=args.sink_latency_ms
    )
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="archlab-monolith-"))
    try:
        dataset.prepare_state(dataset.ensure(args.size, args.seed), state_dir)
        MonolithServer(
            port=args.port,
            workers=args.workers,
            threads=args.threads,
            state_dir=state_dir,
            config=config,
        ).run()
    finally:
        if args.state_dir is None:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
