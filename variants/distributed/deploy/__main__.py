"""`python -m variants.distributed.deploy [--placement NAME|FILE] [--check]`: (re)generate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from variants.distributed.deploy import DEPLOY_DIR, check, write
from variants.distributed.topology import DEFAULT_PLACEMENT, TopologyError, load


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m variants.distributed.deploy",
        description="Generate docker-compose.yml, k8s/*.yaml and the Dockerfile from a placement "
        "the distributed launcher runs.",
    )
    p.add_argument(
        "--placement",
        default=DEFAULT_PLACEMENT,
        help=f"a named placement or a placement file (default {DEFAULT_PLACEMENT})",
    )
    p.add_argument("--out", type=Path, default=DEPLOY_DIR, help="folder to write into")
    p.add_argument("--check", action="store_true", help="only report files that differ")
    args = p.parse_args(argv)
    try:
        topology = load(args.placement)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        differ = check(topology, args.out)
        for rel in differ:
            print(f"out of date: {args.out / rel}", file=sys.stderr)
        return 1 if differ else 0
    for rel in write(topology, args.out):
        print(f"wrote {args.out / rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
