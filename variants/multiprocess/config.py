"""The process family's settings: roles, crash policies, call timeouts.

The family's shape (which groups exist, what each hosts, their start order) is the
placement's (`variants/placement.py`); the roles are its group names.

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
its fields, e.g. `{"policies": {"backend": "restart-one"}, "backends": 4}`. `engines` swaps a
group's engine live: `{"engines": {"recommendations": "rust"}}` then SIGHUP starts the native
program on the same state, and once it is ready the old process finishes its calls and stops.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import msgspec

from variants.native import ENGINES
from variants.peers import DEFAULT_CALL_TIMEOUTS_MS
from variants.placement import POLICIES, Placement, Policy

MAX_BACKENDS = 128  # the process table has room for twice that (replacements on SIGHUP)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), the default number of backends."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def roles(placement: Placement) -> tuple[str, ...]:
    """The family's roles: the edge group's backends, then the other groups in start order."""
    return (placement.edge, *placement.start_order)


def default_policies(placement: Placement) -> dict[str, Policy]:
    return {role: placement.policy(role) for role in roles(placement)}  # type: ignore[misc]


class FamilyConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Settings the postmaster applies at start and again on SIGHUP."""

    backends: int
    threads: int = 8
    policies: dict[str, Policy] = msgspec.field(default_factory=dict)
    """role -> crash policy; a role not named here takes the placement's."""
    call_timeouts_ms: dict[str, int] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_CALL_TIMEOUTS_MS)
    )
    """context -> how long an IPC caller waits for it."""
    log_level: str = "INFO"
    engines: dict[str, str] = msgspec.field(default_factory=dict)
    """role -> engine ("python", "rust"), over the placement's (see `Placement.with_engines`)."""

    def validate(self, known_roles: Iterable[str]) -> None:
        if not 1 <= self.backends <= MAX_BACKENDS or self.threads < 1:
            raise ValueError(f"backends must be 1 to {MAX_BACKENDS}, threads at least 1")
        known = tuple(known_roles)
        unknown = (set(self.policies) | set(self.engines)) - set(known)
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {', '.join(known)}")
        unknown = set(self.call_timeouts_ms) - set(DEFAULT_CALL_TIMEOUTS_MS)
        if unknown:
            raise ValueError(
                f"unknown context(s) {sorted(unknown)} in call_timeouts_ms; contexts are "
                f"{', '.join(DEFAULT_CALL_TIMEOUTS_MS)}"
            )
        for role, policy in self.policies.items():
            if policy not in POLICIES:
                raise ValueError(
                    f"crash policy of {role} must be one of {', '.join(POLICIES)}, got {policy!r}"
                )
        for role, engine in self.engines.items():
            if engine not in ENGINES:
                raise ValueError(f"engine of {role} must be one of {', '.join(ENGINES)}")
        if any(ms <= 0 for ms in self.call_timeouts_ms.values()):
            raise ValueError("call timeouts must be positive")

    def policy(self, role: str, placement: Placement) -> str:
        return self.policies.get(role) or placement.policy(role)

    def overlaid(self, path: Path | None, known_roles: Iterable[str]) -> FamilyConfig:
        """This config with the fields set in the JSON file at `path` (if it exists) replaced."""
        if path is None or not path.exists():
            return self
        changes = msgspec.json.decode(path.read_bytes(), type=dict)
        merged = msgspec.to_builtins(self)
        for key in ("policies", "call_timeouts_ms", "engines"):
            merged[key] = {**merged[key], **changes.pop(key, {})}
        merged.update(changes)
        config = msgspec.convert(merged, FamilyConfig)
        config.validate(known_roles)
        return config

    def describe(self) -> str:
        return json.dumps(msgspec.to_builtins(self), sort_keys=True)
