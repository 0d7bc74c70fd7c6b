"""The public HTTP API, shared by every variant: `create_app(shop, variant, health)`."""

from variants.edge.app import create_app
from variants.edge.openapi import build_openapi

__all__ = ["build_openapi", "create_app"]
