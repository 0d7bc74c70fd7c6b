"""`python -m variants.multiprocess`: run the process family on 127.0.0.1 until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from variants import cli
from variants.multiprocess.config import (
    DEFAULT_CALL_TIMEOUTS_MS,
    DEFAULT_POLICIES,
    POLICIES,
    ROLES,
    FamilyConfig,
    available_cpus,
)
from variants.multiprocess.postmaster import Options, Postmaster


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.deployer_parser(
        "python -m variants.multiprocess",
        "The PostgreSQL-style process family: a postmaster, request backends and one "
        "auxiliary process per stateful context.",
        "the mutable databases, the sockets and lifecycle.jsonl",
    )
    p.add_argument(
        "--backends",
        type=int,
        default=available_cpus(),
        help="request backend processes (default: the CPUs this process may use, %(default)s)",
    )
    p.add_argument("--threads", type=int, default=8, help="request threads per backend")
    for role in ROLES:
        p.add_argument(
            f"--policy-{role}",
            choices=POLICIES,
            default=DEFAULT_POLICIES[role],
            help=f"what a crash of {'a backend' if role == 'backend' else 'the ' + role} "
            "process restarts (default %(default)s)",
        )
    p.add_argument(
        "--config",
        type=Path,
        help="JSON file re-read on SIGHUP (and at start) whose fields override these options: "
        "backends, threads, policies, call_timeouts_ms, log_level "
        "(default: <state-dir>/multiprocess.json)",
    )
    p.add_argument(
        "--call-timeout-ms",
        action="append",
        default=[],
        metavar="ROLE=MS",
        help="how long a backend waits for an auxiliary (defaults: "
        + ", ".join(f"{r}={ms}" for r, ms in DEFAULT_CALL_TIMEOUTS_MS.items())
        + ")",
    )
    p.add_argument("--ready-timeout", type=float, default=900.0, help="seconds a child may load")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def family_config(args: argparse.Namespace) -> FamilyConfig:
    timeouts = dict(DEFAULT_CALL_TIMEOUTS_MS)
    for item in args.call_timeout_ms:
        role, _, ms = item.partition("=")
        if role not in timeouts or not ms.isdigit():
            raise SystemExit(f"--call-timeout-ms wants ROLE=MS with ROLE in {list(timeouts)}")
        timeouts[role] = int(ms)
    config = FamilyConfig(
        backends=args.backends,
        threads=args.threads,
        policies={role: getattr(args, f"policy_{role}") for role in ROLES},
        call_timeouts_ms=timeouts,
        log_level=args.log_level.upper(),
    )
    config.validate()
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = family_config(args)
    with cli.state_folder(args.state_dir, "archlab-multiprocess-") as state_dir:
        config_path = args.config or state_dir / "multiprocess.json"
        config = base.overlaid(config_path)
        logging.basicConfig(
            level=config.log_level,
            format="%(asctime)s [%(process)d] postmaster %(levelname)s %(name)s %(message)s",
        )
        options = Options(
            port=args.port,
            size=args.size,
            seed=args.seed,
            state_dir=state_dir,
            config=base,
            shop=cli.shop_config(args),
            config_path=config_path,
            ready_timeout_s=args.ready_timeout,
        )
        return Postmaster(options).run()


if __name__ == "__main__":
    sys.exit(main())
