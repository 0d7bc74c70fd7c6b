"""The command-line contract every deployer shares with the harness.

`python -m variants.<name> --port P --size S --seed N --state-dir DIR` plus the domain's
knobs: one definition here, so the three deployers cannot drift apart on what the harness
passes them.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workloads.shop import dataset
from workloads.shop.config import ShopConfig


def deployer_parser(prog: str, description: str, state_help: str) -> argparse.ArgumentParser:
    """A parser with the shared options; the deployer adds its own knobs."""
    defaults = ShopConfig()
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    p.add_argument("--size", default="tiny", choices=sorted(dataset.SIZES), help="dataset size")
    p.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
    p.add_argument(
        "--state-dir",
        type=Path,
        help=f"folder for {state_help} (kept across restarts; default: a temp folder removed "
        "at exit)",
    )
    p.add_argument("--rebuild-interval", type=float, default=defaults.rebuild_interval_s)
    p.add_argument("--sink-latency-ms", type=float, default=defaults.sink_latency_ms)
    return p


def shop_config(args: argparse.Namespace) -> ShopConfig:
    return ShopConfig(
        rebuild_interval_s=args.rebuild_interval, sink_latency_ms=args.sink_latency_ms
    )


@contextmanager
def state_folder(given: Path | None, prefix: str) -> Iterator[Path]:
    """`given`, or a temporary folder removed on exit (a throwaway `serve`)."""
    folder = given or Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        if given is None:
            shutil.rmtree(folder, ignore_errors=True)
