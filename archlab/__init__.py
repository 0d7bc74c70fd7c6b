"""archlab: the harness that starts variants, drives load against them and records the results.

The harness never contains domain logic: it starts a variant as a subprocess, talks to it over
HTTP, and turns what it measured into files under `results/runs/<run-id>/`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("archlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
