"""The cost model on hand-computable inputs, and the price file it reads; the sizing of a
whole run set worked out by hand."""

from __future__ import annotations

import math

import pytest
from support import ramp_windows

from archlab.analysis import costmodel as cm
from archlab.analysis import servers
from archlab.analysis.runset import RunSet, load_runset
from archlab.figures import cost
from archlab.rundir import MANIFEST, META, RUNS_DIR, SUMMARY, Status, write_json

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
    assert "as of" in prices.label()


# ------------------------------------------------------------------ sizing a synthetic run set
#
# A run set written by hand (manifest.json + runs/<tag>/meta.json and summary.json, only the
# fields the cost figures read), so that every figure of `archlab.figures.cost` can be worked
# out on paper. Prices: PRICES above ($0.03 per vCPU-hour, $0.004 per GiB-hour, smallest host
# 2 vCPUs / 8 GiB), sized for 1000 req/s.

MIB = 2**20
GIB = 2**30
STEP_S = 10.0


def _ramp(*steps: tuple[float, float, float]) -> list[dict]:
    """summary.json's windows, one per (offered req/s, achieved req/s, p99 ms) step."""
    return ramp_windows(steps, STEP_S)


def _server(cpu_s: float, pss_mean: float, pss_peak: float, roles: dict | None = None) -> dict:
    total = {"processes": 2, "cpu_s": cpu_s, "pss_mean_bytes": pss_mean, "pss_peak_bytes": pss_peak}
    return {"total": total, "roles": roles or {}}


def _role(cpu_s: float, pss_peak: float) -> dict:
    return {"processes": 1, "cpu_s": cpu_s, "pss_peak_bytes": pss_peak, "pss_mean_bytes": pss_peak}


def _fixed_rate(requests: int, window_s: float, server: dict) -> dict:
    """summary.json of an open loop at one rate: the server study's runs and the profile run."""
    return {
        "endpoints": {"ALL": {"count": requests}},
        "window": {"seconds": window_s},
        "load": {"offered_rps": requests / window_s, "achieved_rps": requests / window_s},
        "server": server,
    }


def _study(variant: str, round_no: int) -> str:
    return servers.tag(variant, servers.DEFAULT_SERVER, round_no)


PROFILED = {"profile": {"enabled": True}}
STUDY = {"knobs": {"server": servers.DEFAULT_SERVER}}
RUNS: dict[str, tuple[str, tuple[str, ...], int | None, dict, dict]] = {
    # tag: variant, kinds, CPUs pinned to (None: unpinned, both CPUs), summary.json, meta.json
    # The profiled runs read more CPU per request than the server study's (py-spy pauses the
    # process it samples): the cost must not read them.
    "profile-monolith": (
        "monolith",
        ("profile",),
        None,
        _fixed_rate(10_000, 100.0, _server(29.0, 300 * MIB, 600 * MIB)),
        PROFILED,
    ),
    # the server study at 100 req/s, three rounds: 19, 20 and 22 CPU-s over 10,000 requests,
    # a median of 2.0 CPU-ms each; 256 MiB mean, 512 MiB peak
    **{
        _study("monolith", r): (
            "monolith",
            (servers.KIND,),
            None,
            _fixed_rate(10_000, 100.0, _server(cpu_s, 256 * MIB, 512 * MIB)),
            STUDY,
        )
        for r, cpu_s in ((1, 19.0), (2, 20.0), (3, 22.0))
    },
    "scaling-monolith-1cpu": (
        "monolith",
        ("scaling",),
        1,
        {
            "windows": {
                "rows": _ramp((100, 100, 10), (200, 200, 12), (300, 300, 20), (400, 330, 250))
            }
        },
        {},
    ),
    "latency-monolith": (
        "monolith",
        ("latency",),
        None,  # 400 req/s within the SLO on 2 CPUs: 200 per core, less than pinned to one
        {"windows": {"rows": _ramp((200, 200, 10), (400, 400, 30), (600, 500, 400))}},
        {},
    ),
    "profile-multiprocess": (
        "multiprocess",
        ("profile",),
        None,
        _fixed_rate(10_000, 100.0, _server(35.0, 300 * MIB, 400 * MIB)),
        PROFILED,
    ),
    _study("multiprocess", 1): (
        "multiprocess",
        (servers.KIND,),
        None,
        _fixed_rate(10_000, 100.0, _server(25.0, 300 * MIB, 400 * MIB)),
        STUDY,
    ),
    "scaling-multiprocess-1cpu": (
        "multiprocess",
        ("scaling",),
        1,  # no step within the SLO: no capacity measured
        {"windows": {"rows": _ramp((100, 100, 150), (200, 150, 900))}},
        {},
    ),
    "profile-distributed": (
        "distributed",
        ("profile",),
        None,
        _fixed_rate(10_000, 100.0, _server(70.0, GIB, 12 * GIB + 210 * MIB)),
        PROFILED,
    ),
    _study("distributed", 1): (
        "distributed",
        (servers.KIND,),
        None,
        _fixed_rate(
            10_000,
            100.0,
            _server(
                50.0,
                GIB,
                12 * GIB + 210 * MIB,
                roles={
                    "gateway": _role(30.0, 100 * MIB),
                    "gateway-master": _role(0.0, 20 * MIB),
                    "catalog": _role(5.0, 60 * MIB),
                    "recommendations": _role(15.0, 12 * GIB),
                    "launcher": _role(0.0, 30 * MIB),
                },
            ),
        ),
        STUDY,
    ),
    "scaling-distributed-1cpu": (
        "distributed",
        ("scaling",),
        1,  # every step met the SLO: 100 req/s per core is a lower bound
        {"windows": {"rows": _ramp((50, 50, 20), (100, 100, 40))}},
        {},
    ),
}


@pytest.fixture(scope="module")
def runset(tmp_path_factory: pytest.TempPathFactory) -> RunSet:
    root = tmp_path_factory.mktemp("runset")
    machine = {"usable_cpus": [0, 1], "cpu_model": "test", "memory_total_bytes": 8 * GIB}
    steps = []
    for tag, (variant, kinds, cpus, summary, extra) in RUNS.items():
        run = root / RUNS_DIR / tag
        run.mkdir(parents=True)
        meta = {
            "variant": variant,
            "status": Status.COMPLETED,
            "scenario": {"name": "ramp" if "windows" in summary else "steady"},
            "cpu_pinning": {"server": list(range(cpus)) if cpus else None},
            "machine": machine,
        } | extra
        write_json(run / META, meta)
        write_json(run / SUMMARY, summary)
        steps.append(
            {"tag": tag, "kinds": list(kinds), "cpus": cpus, "run": f"{RUNS_DIR}/{tag}"}
            | {"status": Status.COMPLETED}
        )
    write_json(root / MANIFEST, {"scale": {"name": "test"}, "machine": machine, "steps": steps})
    return load_runset(root)


def _row(runset: RunSet, variant: str) -> dict:
    table = cost.cost_table(runset, PRICES)
    assert list(table["variant"]) == ["monolith", "multiprocess", "distributed"]
    return table.set_index("variant").loc[variant].to_dict()


def test_capacity_is_the_best_rate_per_core_within_the_slo_over_the_ramps(runset) -> None:
    # pinned to 1 CPU: 300 req/s met the SLO (400 did not); unpinned: 400 on 2 CPUs
    assert cost.capacity(runset, "monolith") == {
        "capacity_run": "scaling-monolith-1cpu",
        "capacity_runs": 1,
        "capacity_cpus": 1,
        "throughput_at_slo_rps": 300.0,
        "rps_per_core": 300.0,
        "lower_bound": False,
    }


def test_cost_table_sizes_a_variant_as_computed_by_hand(runset) -> None:
    row = _row(runset, "monolith")
    assert row["per_request_kind"] == cost.SERVER_STUDY and row["rounds"] == 3
    assert row["per_request_run"] == "server-monolith-gunicorn-gthread-r1"
    assert row["per_request_offered_rps"] == 100
    assert row["cpu_ms_per_request"] == pytest.approx(2.0, rel=1e-12)
    assert row["pss_peak_mib"] == 512 and row["pss_mean_mib"] == 256
    # 0.25 GiB held for 100 s over 10,000 requests
    assert row["gib_s_per_request"] == pytest.approx(0.0025, rel=1e-12)
    # busy-only: (0.002 CPU-s x $0.03 + 0.0025 GiB-s x $0.004) per hour-second, x 1e6
    assert row["busy_usd_per_million"] == pytest.approx(
        (0.002 * 0.03 + 0.0025 * 0.004) / 3600 * 1e6, rel=1e-9
    )
    # 1000 req/s at 300 per core: ceil(3.33) = 4 cores. Sizing reads the capacity at the SLO,
    # not CPU time: 1000 req/s x 2 CPU-ms would have said 2 cores.
    assert row["cores_needed"] == 4 != math.ceil(1000 * 0.002)
    # 4 cores and the 0.5 GiB peak, paid every hour, for 3.6 million requests an hour
    assert row["provisioned_usd_per_hour"] == pytest.approx(4 * 0.03 + 0.5 * 0.004, rel=1e-9)
    assert row["provisioned_usd_per_million"] == pytest.approx(0.122 / 3.6, rel=1e-9)


def test_a_ramp_that_never_missed_the_slo_sizes_an_upper_bound(runset) -> None:
    row = _row(runset, "distributed")
    assert row["lower_bound"] is True and row["rps_per_core"] == 100
    assert row["cpu_ms_per_request"] == pytest.approx(5.0, rel=1e-12)
    assert row["cores_needed"] == 10
    gib = 12 + 210 / 1024
    assert row["provisioned_usd_per_hour"] == pytest.approx(10 * 0.03 + gib * 0.004, rel=1e-9)


def test_a_variant_with_no_step_within_the_slo_gets_no_cores_but_a_busy_cost(runset) -> None:
    row = _row(runset, "multiprocess")
    assert row["throughput_at_slo_rps"] == 0
    # None in the table's row, which pandas shows as NaN next to the other variants' numbers
    assert math.isnan(row["cores_needed"]) and math.isnan(row["provisioned_usd_per_million"])
    assert row["busy_usd_per_million"] == pytest.approx(
        (0.0025 * 0.03 + (300 / 1024) * 100 / 10_000 * 0.004) / 3600 * 1e6, rel=1e-9
    )


def test_one_host_per_service_as_computed_by_hand(runset) -> None:
    """10 cores shared by CPU-seconds (gateway 60 %, catalog 10 %, recommendations 30 %).

    The catalog's 1 core is rounded up to the smallest host (2 vCPUs, 8 GiB); the
    recommendations' 12 GiB, not the smallest host, decide its memory.
    """
    df = cost.footprint_table(runset, PRICES).set_index("service")
    assert set(df.index) == {"gateway", "catalog", "recommendations", "launcher"}
    assert df.loc["gateway", "pss_peak_mib"] == 120  # its master folded in
    assert not df.loc["launcher", "own_host"]
    hosts = {
        s: (df.loc[s, "host_vcpus"], df.loc[s, "host_gib"], df.loc[s, "host_usd_per_hour"])
        for s in ("gateway", "catalog", "recommendations")
    }
    assert hosts == {
        "gateway": (6, 8.0, pytest.approx(6 * 0.03 + 8 * 0.004, rel=1e-9)),
        "catalog": (2, 8.0, pytest.approx(2 * 0.03 + 8 * 0.004, rel=1e-9)),
        "recommendations": (3, 12.0, pytest.approx(3 * 0.03 + 12 * 0.004, rel=1e-9)),
    }
    dep = cost.deployments(runset, PRICES)
    assert dep is not None
    per_service = 0.212 + 0.092 + 0.138
    one_host_gib = (120 + 60) / 1024 + 12  # summed needs, rounded up once: 10 vCPUs
    one_host = 10 * 0.03 + one_host_gib * 0.004
    assert dep["services"] == 3 and dep["per_service_vcpus"] == 11
    assert dep["per_service_gib"] == 28 and dep["one_host_vcpus"] == 10
    assert dep["one_host_gib"] == pytest.approx(one_host_gib, rel=1e-12)
    assert dep["per_service_usd_per_hour"] == pytest.approx(per_service, rel=1e-9)
    assert dep["one_host_usd_per_hour"] == pytest.approx(one_host, rel=1e-9)
    assert dep["per_service_usd_per_million"] == pytest.approx(per_service / 3.6, rel=1e-9)
    assert dep["one_host_usd_per_million"] == pytest.approx(one_host / 3.6, rel=1e-9)


def test_cost_reads_the_unprofiled_server_study_not_the_profile_run(runset) -> None:
    table = cost.cost_table(runset, PRICES).set_index("variant")
    # the profile runs read 2.9, 3.5 and 7.0 CPU-ms per request
    assert dict(table["cpu_ms_per_request"]) == pytest.approx(
        {"monolith": 2.0, "multiprocess": 2.5, "distributed": 5.0}, rel=1e-12
    )
    assert not any("profile" in runs for runs in table["per_request_runs"])
    assert set(table["per_request_kind"]) == {cost.SERVER_STUDY}
    mono = table.loc["monolith"]
    assert mono["per_request_runs"] == ", ".join(_study("monolith", r) for r in (1, 2, 3))
    assert 1.9 <= mono["cpu_ms_ci_low"] <= 2.0 <= mono["cpu_ms_ci_high"] <= 2.2
    assert mono["cpu_ms_text"].endswith("n=3")
    assert table.loc["multiprocess", "cpu_ms_text"] == "2.50 ms (n=1)"
    assert cost.per_request_basis(runset) == (cost.SERVER_STUDY, 100.0)


def _caption(fig) -> str:
    return fig._supxlabel.get_text().replace("\n", " ")


def test_the_sized_figures_label_the_model_and_its_assumption(runset, monkeypatch) -> None:
    monkeypatch.setattr(cost, "_prices", lambda: PRICES)
    per_request = cost.fig_cost_per_request(runset)
    assert "unprofiled HTTP server study" in _caption(per_request)
    assert "model" not in _caption(per_request)
    sized = cost.fig_cores_and_cost(runset)
    text = _caption(sized)
    assert "model: capacity per core x cores, linear" in text
    assert "cores = ceil(target / capacity per core), measured on 1 CPU(s)" in text
    legends = [t.get_text() for ax in sized.axes for t in ax.get_legend().get_texts()]
    assert cm.MODEL in legends and "busy-only: measured per request" in legends
    hatched = [p for p in sized.axes[0].patches if p.get_hatch()]
    assert len(hatched) == 3  # every cores bar is the model
    footprint = cost.fig_service_footprint(runset)
    assert "model: capacity per core x cores, linear" in _caption(footprint)
    reading = cost.reading(runset)
    assert "Model (model: capacity per core x cores, linear): 4 cores" in reading
    assert "the cores and the provisioned dollars are a model" in reading
