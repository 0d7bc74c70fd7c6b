"""`python -m variants.multiprocess`: run the process family on 127.0.0.1 until SIGTERM/SIGINT.

Any placement whose shape is a family (`Placement.supervisor == "family"`) runs here: the
edge group's backends, one auxiliary per `ipc` group, one service per `http` group.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from variants import cli, forkgc
from variants.multiprocess.config import FamilyConfig, available_cpus, default_policies, roles
from variants.multiprocess.postmaster import Options, Postmaster
from variants.peers import DEFAULT_CALL_TIMEOUTS_MS
from variants.placement import POLICIES, Placement


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Placement]:
    p = cli.deployer_parser(
        "python -m variants.multiprocess",
        "The PostgreSQL-style process family: a postmaster, request backends, and a process "
        "per other group of the placement.",
        "the mutable databases, the sockets and lifecycle.jsonl",
        placement="multiprocess",
    )
    known, _ = p.parse_known_args(argv)
    placement = cli.load_placement(known.placement, "family")
    p.add_argument(
        "--backends",
        type=int,
        default=placement.replicas(placement.edge, available_cpus()),
        help="request backend processes (default: the placement's, %(default)s)",
    )
    p.add_argument("--threads", type=int, default=8, help="request threads per backend")
    p.add_argument(
        "--fork-gc",
        choices=forkgc.SETTINGS,
        default=forkgc.FREEZE,
        help="what the collector does around each fork of a child (default %(default)s; "
        "see variants/forkgc.py)",
    )
    for role, policy in default_policies(placement).items():
        p.add_argument(
            f"--policy-{role}",
            choices=POLICIES,
            default=policy,
            help=f"what a crash of {'a backend' if role == placement.edge else 'the ' + role} "
            "process restarts (default %(default)s)",
        )
    p.add_argument(
        "--config",
        type=Path,
        help="JSON file re-read on SIGHUP (and at start) whose fields override these options: "
        "backends, threads, policies, call_timeouts_ms, log_level, engines (a changed engine "
        "is swapped live) "
        "(default: <state-dir>/multiprocess.json)",
    )
    p.add_argument(
        "--call-timeout-ms",
        action="append",
        default=[],
        metavar="CONTEXT=MS",
        help="how long an IPC caller waits for a context (defaults: "
        + ", ".join(f"{r}={ms}" for r, ms in DEFAULT_CALL_TIMEOUTS_MS.items())
        + ")",
    )
    p.add_argument("--ready-timeout", type=float, default=900.0, help="seconds a child may load")
    p.add_argument("--log-level", default="INFO")
    cli.add_group_options(p, placement)
    args = p.parse_args(argv)
    return args, cli.chosen_placement(args, placement)


def family_config(args: argparse.Namespace, placement: Placement) -> FamilyConfig:
    timeouts = dict(DEFAULT_CALL_TIMEOUTS_MS)
    for item in args.call_timeout_ms:
        context, _, ms = item.partition("=")
        if context not in timeouts or not ms.isdigit():
            raise SystemExit(f"--call-timeout-ms wants CONTEXT=MS with CONTEXT in {list(timeouts)}")
        timeouts[context] = int(ms)
    config = FamilyConfig(
        backends=args.backends,
        threads=args.threads,
        policies={role: getattr(args, cli.group_dest("policy", role)) for role in roles(placement)},
        call_timeouts_ms=timeouts,
        log_level=args.log_level.upper(),
    )
    config.validate(roles(placement))
    return config


def main(argv: list[str] | None = None) -> int:
    args, placement = parse_args(argv)
    base = family_config(args, placement)
    with cli.state_folder(args.state_dir, "archlab-multiprocess-") as state_dir:
        config_path = args.config or state_dir / "multiprocess.json"
        config = base.overlaid(config_path, roles(placement))
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
            placement=placement,
            config_path=config_path,
            ready_timeout_s=args.ready_timeout,
            fork_gc=args.fork_gc,
        )
        return Postmaster(options).run()


if __name__ == "__main__":
    sys.exit(main())
