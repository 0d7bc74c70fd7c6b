"""The cost model on hand-computable inputs, and the price file it reads."""

from __future__ import annotations

import math

import pytest

from archlab.analysis import costmodel as cm
from archlab.analysis.ramp import SLO_P99_MS

PRICES = cm.Prices(
    vcpu_hour=0.03,
    gib_hour=0.004,
    source="test",
    url="https://example.invalid",
    as_of="2024-01",
    min_host_vcpus=2,
    min_host_gib=8.0,
)


def test_cost_per_million_by_hand() -> None:
    # 2 cores, 4 GiB at 1000 rps: $0.076/h for 3.6 M requests/h
    got = cm.cost_per_million(2, 4, 1000, PRICES)
    assert got == pytest.approx((0.06 + 0.016) / 3.6)


def test_cores_needed_rounds_up_per_core_capacity() -> None:
    assert cm.cores_needed(1000, 400, 2) == 5  # 200 rps per core
    assert cm.cores_needed(1000, 500, 1) == 2  # exactly 2, not 3
    assert cm.cores_needed(1000, 300, 1) == 4
    with pytest.raises(ValueError):
        cm.cores_needed(1000, 0, 2)


def test_per_request_quantities() -> None:
    assert cm.cpu_seconds_per_request(10.0, 1000) == pytest.approx(0.01)
    # 1 GiB held for 100 s over 1000 requests: 0.1 GiB-s each
    assert cm.memory_gib_seconds_per_request(2**30, 100.0, 1000) == pytest.approx(0.1)
    assert math.isnan(cm.cpu_seconds_per_request(1.0, 0))


def test_busy_cost_per_million() -> None:
    # 0.01 CPU-s and 0.1 GiB-s per request: (0.01*0.03 + 0.1*0.004)/3600 $ each
    got = cm.busy_cost_per_million(0.01, 0.1, PRICES)
    assert got == pytest.approx((0.0003 + 0.0004) / 3600 * 1e6)


def test_one_host_per_service_rounds_up_to_min_host() -> None:
    hosts = cm.one_host_per_service({"a": (0.3, 0.1), "b": (3.2, 10.0)}, PRICES)
    assert [(h.vcpus, h.gib) for h in hosts] == [(2, 8.0), (4, 10.0)]
    assert hosts[0].per_hour == pytest.approx(2 * 0.03 + 8 * 0.004)
    shared = cm.one_host({"a": (0.3, 0.1), "b": (3.2, 10.0)}, PRICES)
    assert (shared.vcpus, shared.gib) == (4, pytest.approx(10.1))
    assert shared.per_hour < sum(h.per_hour for h in hosts)


def test_price_file_loads_with_its_source() -> None:
    prices = cm.load_prices()
    assert prices.source and prices.url.startswith("https://") and prices.as_of
    assert prices.vcpu_hour > 0 and prices.gib_hour > 0
    assert prices.min_host_vcpus >= 1 and prices.min_host_gib > 0
    assert prices.target_rps > 0
    assert prices.slo_p99_ms == SLO_P99_MS  # the file does not override the ramp's SLO
    assert "as of" in prices.label()
