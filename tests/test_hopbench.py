"""The hop micro-benchmark measures every hop, and crossing a process costs more than a call."""

from __future__ import annotations

from archlab.bench import hop


def test_every_hop_is_measured_and_remote_hops_cost_more() -> None:
    report = hop.measure(n=200, warmup=20)
    for call, hops in report["results"].items():
        assert set(hops) == {
            "in-process",
            "in-process + msgpack codec",
            "IPC (Unix socket, msgpack)",
            "HTTP (loopback TCP, JSON)",
        }, call
        for stats in hops.values():
            assert 0 < stats["p50_us"] <= stats["p99_us"]
        assert hops["IPC (Unix socket, msgpack)"]["p50_us"] > hops["in-process"]["p50_us"]
        assert hops["HTTP (loopback TCP, JSON)"]["p50_us"] > hops["in-process"]["p50_us"]
    assert "catalog.get" in hop.format_table(report)
