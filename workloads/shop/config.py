"""The domain's knobs. Every variant passes them through unchanged and records them."""

from __future__ import annotations

import msgspec


class ShopConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rebuild_interval_s: float = 60.0
    """How often recommendations rebuild their model from new orders (0: never)."""
    sink_latency_ms: float = 2.0
    """Round-trip time of the notification gateway, per message sent."""
    drain_interval_s: float = 0.2
    """How often notifications poll the orders outbox."""
    drain_batch: int = 100
