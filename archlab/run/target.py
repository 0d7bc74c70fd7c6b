"""`archlab run --target URL`: a deployment the harness did not start, driven and checked.

Someone deployed a placement (on this machine, in compose, on a cluster) and gives its URL.
The harness starts nothing but the load generator: the same locust load with the recorder
(requests.csv, ledger.csv), then the invariants checked through the public API
(`archlab.measure.integrity.check_through_api`), since its databases are out of reach.
Server-side telemetry (processes.csv, gc.csv, roles.csv, server.log, a profile) and faults
need the deployment's processes, so they are not collected (meta.json `server_telemetry`)
and not offered.

The URL must be explicit (`http(s)://HOST[:PORT]`, no path): the harness never looks for a
deployment by itself.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any
from urllib.parse import urlsplit

from archlab.host import procs
from archlab.host.cpus import CpuPlan, format_cpu_list

HEALTH_PATH = "/healthz"
POLL_S = 0.5


def target_url(text: str) -> str:
    """`text` as `scheme://host[:port]`; ValueError unless it is an explicit http(s) URL."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--target wants an explicit URL like http://127.0.0.1:8000, got {text!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("--target: no credentials in the URL (meta.json records it)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"--target: the shop's API is served at the root; give http(s)://HOST[:PORT] "
            f"without a path, got {text!r}"
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"--target: {exc} in {text!r}") from None
    return f"{parts.scheme}://{parts.netloc}"


def is_loopback(url: str) -> bool:
    """The target runs on this machine's loopback (so it shares this machine's CPUs)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan_generator_cpus(
    usable: list[int],
    url: str,
    *,
    generator: list[int] | None,
    processes: int | None,
    pin: bool,
) -> CpuPlan:
    """Only the generator can be pinned: the deployment's CPUs are not the harness's to know."""
    if processes is not None and processes < 1:
        raise ValueError("--processes must be at least 1")
    local = is_loopback(url)
    notes = [
        f"--target {url}: the harness did not start the deployment, so its CPU, memory, GC "
        "and roles were not recorded"
    ]
    if generator is None:
        if local:
            notes.append(
                "the target is on this machine's loopback: it shares the CPUs with the load "
                "generator; compare latency at equal offered load below saturation"
            )
        n = processes if processes is not None else 1
        return CpuPlan(sut=None, generator=None, processes=n, shared=local, notes=notes)
    if not pin:
        raise ValueError("--no-pin cannot be combined with --gen-cpus")
    if not set(generator) <= set(usable):
        raise ValueError(
            f"--gen-cpus {format_cpu_list(generator)} is not within the usable CPUs "
            f"{format_cpu_list(usable)}"
        )
    n = processes if processes is not None else (len(generator) if len(generator) > 1 else 1)
    return CpuPlan(sut=None, generator=sorted(generator), processes=n, shared=False, notes=notes)


def wait_healthy(url: str, timeout_s: float) -> dict[str, Any]:
    """Poll the target's /healthz until it answers 200; its body. ProcessError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        body, last = procs.health_once(url + HEALTH_PATH, 5.0)
        if body is not None:
            return body
        if time.monotonic() >= deadline:
            raise procs.ProcessError(
                f"the target {url} was not healthy at {HEALTH_PATH} after {timeout_s:.0f} s "
                f"(last: {last})"
            )
        time.sleep(POLL_S)
