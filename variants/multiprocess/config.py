"""The process family's shape and settings: roles, dependencies, crash policies, timeouts.

Two crash policies, chosen per role:

- `restart-one`: restart only the process that died. Right for processes that only exchange
  messages: the auxiliaries never map the writable shared memory (the catalog segment they
  may read is sealed and mapped read-only), and their state is their own SQLite database,
  crash-safe through WAL and transactions, or is rebuilt when they start.
- `crash-restart-all`: PostgreSQL's crash-and-restart. A process that writes shared memory
  may have died half-way through an update or holding the lock that guards it, so the
  shared memory may be corrupt: terminate every process attached to it (all backends),
  reinitialise it, then start them again. Right for backends, which update the shared
  process table under its lock on every request.

`FamilyConfig` holds what SIGHUP may change; the file it is reloaded from is JSON with any of
its fields, e.g. `{"policies": {"backend": "restart-one"}, "backends": 4}`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import msgspec

Policy = Literal["restart-one", "crash-restart-all"]
POLICIES: tuple[Policy, ...] = ("restart-one", "crash-restart-all")

AUXILIARIES = ("inventory", "orders", "recommendations", "notifications")
"""The auxiliary roles in dependency order: each needs only those before it."""
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "inventory": (),
    "orders": ("inventory",),
    "recommendations": ("orders",),
    "notifications": ("orders",),
}
ROLES = ("backend", *AUXILIARIES)

DEFAULT_POLICIES: dict[str, Policy] = {
    "backend": "crash-restart-all",
    "inventory": "restart-one",
    "orders": "restart-one",
    "recommendations": "restart-one",
    "notifications": "restart-one",
}

DEFAULT_CALL_TIMEOUTS_MS: dict[str, int] = {
    "inventory": 2000,
    "orders": 5000,  # an order commits with an fsync and calls inventory in turn
    "recommendations": 1000,  # the edge answers without recommendations after this
    "notifications": 2000,
}
CONNECT_TIMEOUT_S = 0.5
MAX_BACKENDS = 128  # the process table has room for twice that (replacements on SIGHUP)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), the default number of backends."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class FamilyConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Settings the postmaster applies at start and again on SIGHUP."""

    backends: int
    threads: int = 8
    policies: dict[str, Policy] = msgspec.field(default_factory=lambda: dict(DEFAULT_POLICIES))
    call_timeouts_ms: dict[str, int] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_CALL_TIMEOUTS_MS)
    )
    log_level: str = "INFO"

    def validate(self) -> None:
        if not 1 <= self.backends <= MAX_BACKENDS or self.threads < 1:
            raise ValueError(f"backends must be 1 to {MAX_BACKENDS}, threads at least 1")
        unknown = (set(self.policies) - set(ROLES)) | (
            set(self.call_timeouts_ms) - set(AUXILIARIES)
        )
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
        for role, policy in self.policies.items():
            if policy not in POLICIES:
                raise ValueError(
                    f"crash policy of {role} must be one of {', '.join(POLICIES)}, got {policy!r}"
                )
        if any(ms <= 0 for ms in self.call_timeouts_ms.values()):
            raise ValueError("call timeouts must be positive")

    def overlaid(self, path: Path | None) -> FamilyConfig:
        """This config with the fields set in the JSON file at `path` (if it exists) replaced."""
        if path is None or not path.exists():
            return self
        changes = msgspec.json.decode(path.read_bytes(), type=dict)
        merged = msgspec.to_builtins(self)
        for key in ("policies", "call_timeouts_ms"):
            merged[key] = {**merged[key], **changes.pop(key, {})}
        merged.update(changes)
        config = msgspec.convert(merged, FamilyConfig)
        config.validate()
        return config

    def describe(self) -> str:
        return json.dumps(msgspec.to_builtins(self), sort_keys=True)
