"""`python -m variants.distributed.deploy [--check]`: (re)generate the deployment files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from variants.distributed.deploy import DEPLOY_DIR, check, write
from variants.distributed.topology import TOPOLOGY_FILE, TopologyError, load


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m variants.distributed.deploy",
        description="Generate docker-compose.yml, k8s/*.yaml and the Dockerfile from the topology.",
    )
    p.add_argument("--topology", type=Path, default=TOPOLOGY_FILE)
    p.add_argument("--out", type=Path, default=DEPLOY_DIR, help="folder to write into")
    p.add_argument("--check", action="store_true", help="only report files that differ")
    args = p.parse_args(argv)
    try:
        topology = load(args.topology)
    except TopologyError as exc:
        print(f"{args.topology}: {exc}", file=sys.stderr)
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
