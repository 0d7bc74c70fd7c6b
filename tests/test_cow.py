"""Copy-on-write in the prefork designs: the `fork_gc` and `preload` knobs, a real measurement of
what `gc.freeze()` keeps shared, and the study (`archlab.analysis.cow`, figure
04-copy_on_write) on a synthetic run set.

The synthetic runs are written the way the harness writes them (rundir's column constants,
`summarize_run`): an open loop at RATE for SECONDS, one master process (PSS MASTER_MIB) and N
children. Child k of N ends the run with private (USS) PRIVATE[design, setting] + k - (N-1)/2
MiB, having grown to it over the first half of the run from half of it, and holds 5 MiB more
PSS than private; so the children's mean private is the PRIVATE value, their min-max is
+-(N-1)/2, and the variant's total PSS is MASTER_MIB + N x (PRIVATE + 5): a line through the
totals with MASTER_MIB as its base and PRIVATE + 5 MiB per child.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import select
import signal
import struct
import warnings
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from support import synthetic_manifest, write_csv

from archlab import reproduce as repro
from archlab.analysis import costmodel as cm
from archlab.analysis import cow
from archlab.analysis.runset import RunSet, load_runset
from archlab.analysis.summary import summarize_run
from archlab.analysis.validate import validate_csv
from archlab.deployers import VARIANTS
from archlab.figures import cost, figure_functions
from archlab.figures import cow as fig
from archlab.measure.sampler import smaps_rollup
from archlab.rundir import (
    MANIFEST,
    META,
    PROCESS_COLUMNS,
    PROCESS_COLUMNS_V1,
    PROCESS_COLUMNS_V2,
    PROCESSES,
    RECORD_COLUMNS,
    REQUESTS,
    SAMPLED_TICK,
    SUMMARY,
    write_json,
)
from variants import forkgc
from variants.monolith import __main__ as monolith_main
from variants.multiprocess import __main__ as family_main
from variants.multiprocess import process
from workloads.shop import dataset, wiring
from workloads.shop.config import ShopConfig

MIB = 2**20

# ---------------------------------------------------------------- a real fork


HEAP_OBJECTS = 300_000  # one-element lists: ~90 bytes each with their GC header, ~26 MiB
MARGIN = 0.3  # of the heap: how much more the unfrozen child must have copied


def _dirty_after_collect(setting: str) -> tuple[int, int, tuple[int, int, int]]:
    """Fork a child with `fork_gc` = setting; the child runs a full collection and reports its
    Private_Dirty bytes before and after it, and its collection thresholds. Always reaped."""
    r, w = os.pipe()
    forkgc.before_fork(setting)
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running anything of pytest's
        try:
            os.close(r)
            forkgc.in_child(setting)
            before = (smaps_rollup(os.getpid()) or {}).get("Private_Dirty", -1)
            gc.collect()
            after = (smaps_rollup(os.getpid()) or {}).get("Private_Dirty", -1)
            os.write(w, struct.pack("5q", before, after, *gc.get_threshold()))
        finally:
            os._exit(0)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], 60)
        data = os.read(r, 40) if ready else b""
    finally:
        os.close(r)
        if not data:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        gc.unfreeze()  # this process's objects back into the collector's generations
    assert len(data) == 40, "the child did not report"
    before, after, *thresholds = struct.unpack("5q", data)
    return before, after, (thresholds[0], thresholds[1], thresholds[2])


@pytest.mark.skipif(smaps_rollup(os.getpid()) is None, reason="no /proc/PID/smaps_rollup")
def test_a_child_forked_after_gc_freeze_keeps_the_parents_heap_shared_through_a_collection() -> (
    None
):
    dirty_before = (smaps_rollup(os.getpid()) or {})["Private_Dirty"]
    heap = [[i] for i in range(HEAP_OBJECTS)]
    heap_bytes = (smaps_rollup(os.getpid()) or {})["Private_Dirty"] - dirty_before
    assert heap_bytes > 10 * MIB  # the heap is really there
    base = gc.get_threshold()
    try:
        results = {s: _dirty_after_collect(s) for s in forkgc.SETTINGS}
    finally:
        del heap
    as_is, frozen, raised = results[forkgc.AS_IS], results[forkgc.FREEZE], results["thresholds"]
    # the collection walked the unfrozen child's copy of the heap: every page written, copied
    assert as_is[1] - as_is[0] > 0.7 * heap_bytes
    for setting, (_, after, _) in ((forkgc.FREEZE, frozen), (forkgc.THRESHOLDS, raised)):
        assert as_is[1] - after >= MARGIN * heap_bytes, (setting, as_is, after, heap_bytes)
    assert as_is[2] == frozen[2] == base and raised[2] == forkgc.RAISED_THRESHOLDS
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == base  # the parent as it was


def test_the_family_fork_freezes_only_when_told() -> None:
    gc.unfreeze()
    for setting, frozen in ((forkgc.AS_IS, False), (forkgc.FREEZE, True)):
        try:
            pid = process.fork("test", "cow test", lambda: 0, telemetry=False, fork_gc=setting)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert (gc.get_freeze_count() > 0) is frozen, setting
        finally:
            gc.unfreeze()


# ---------------------------------------------------------------- knobs


def test_the_knobs_defaults_and_flags() -> None:
    mono, family = VARIANTS["monolith"], VARIANTS["multiprocess"]
    assert mono.knobs["fork_gc"].default == forkgc.AS_IS
    assert family.knobs["fork_gc"].default == forkgc.FREEZE  # what the family always did
    assert mono.knobs["fork_gc"].choices == family.knobs["fork_gc"].choices == forkgc.SETTINGS
    assert mono.knobs["preload"].default == "off" and "preload" not in family.knobs
    assert "fork_gc" not in VARIANTS["distributed"].knobs
    with pytest.raises(ValueError, match="--fork-gc must be one of as-is, freeze, thresholds"):
        mono.resolve_knobs({"fork_gc": "off"})
    with pytest.raises(ValueError, match="no knob"):
        VARIANTS["distributed"].resolve_knobs({"fork_gc": "freeze"})
    knobs = mono.resolve_knobs(cow.knobs("monolith-preload", "thresholds", 4))
    cmd = mono.command(port=1, size="tiny", seed=1, state_dir=Path("/s"), knobs=knobs)
    assert cmd[cmd.index("--fork-gc") + 1] == "thresholds"
    assert cmd[cmd.index("--preload") + 1] == "on" and cmd[cmd.index("--workers") + 1] == "4"
    args = monolith_main.parse_args(["--fork-gc", "freeze", "--preload", "on"])
    assert (args.fork_gc, args.preload) == ("freeze", "on")
    assert monolith_main.parse_args([]).fork_gc == forkgc.AS_IS
    args, _ = family_main.parse_args(["--fork-gc", "thresholds"])
    assert args.fork_gc == "thresholds" and family_main.parse_args([])[0].fork_gc == "freeze"
    with pytest.raises(ValueError, match="fork_gc must be one of"):
        forkgc.before_fork("never")


def test_preloaded_state_holds_no_connection_and_is_what_the_contexts_start_from(
    tmp_path: Path,
) -> None:
    dataset.prepare_state(dataset.ensure("tiny"), tmp_path)

    def open_dbs() -> set[str]:
        found = set()
        for fd in Path("/proc/self/fd").iterdir():
            with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
                found.add(os.readlink(fd))
        return found & {str(p) for p in tmp_path.iterdir()}

    before = open_dbs()
    preloaded = wiring.preload(dataset.CONTEXTS, tmp_path)
    assert open_dbs() == before  # nothing open that a fork would hand to every child
    assert preloaded.catalog is not None and preloaded.recommendations is not None
    baskets = list(preloaded.recommendations.baskets)
    hosted = wiring.build(dataset.CONTEXTS, tmp_path, {}, ShopConfig(), preloaded=preloaded)
    try:
        recs = hosted.served["recommendations"]
        assert hosted.served["catalog"] is preloaded.catalog
        assert recs._model is preloaded.recommendations.model
        assert recs.related(1, 3) == preloaded.recommendations.model.related(1, 3)
        recs.rebuild()  # a rebuild builds a new model; the preloaded one is left as it was
        assert recs._model is not preloaded.recommendations.model
        assert preloaded.recommendations.baskets == baskets
    finally:
        hosted.close()
    assert wiring.preload(["inventory"], tmp_path) == wiring.Preloaded()


def test_old_process_files_still_validate(tmp_path: Path) -> None:
    row = (1.0, 10, 1, "monolith", "python", 0.5, 1.0, 0.1, "", 100, 50, 60, 0, 8, 1, 1)
    versions = (
        (PROCESS_COLUMNS_V1, ()),
        (PROCESS_COLUMNS_V2, (1, 2, 3, 4)),
        (PROCESS_COLUMNS, (1, 2, 3, 4, SAMPLED_TICK)),
    )
    for columns, extra in versions:
        path = tmp_path / PROCESSES
        write_csv(path, columns, [(*row, *extra)])
        assert validate_csv(path) == []


# ---------------------------------------------------------------- the study, synthetic

T0 = 1_800_000_000.0
RATE = 50.0
SECONDS = 20
MASTER_MIB = 20.0
SHARED_MIB = 30.0
PRIVATE = {  # (design, setting) -> the children's mean private MiB at the end
    ("monolith", "as-is"): 200.0,
    ("monolith", "freeze"): 195.0,
    ("monolith-preload", "as-is"): 100.0,
    ("monolith-preload", "freeze"): 90.0,
    ("multiprocess", "as-is"): 14.0,
    ("multiprocess", "freeze"): 10.0,
}
COUNTS = (1, 2, 4)


def _proc(t: float, pid: int, role: str, private_mib: float, pss_mib: float) -> tuple:
    private, pss, shared = int(private_mib * MIB), int(pss_mib * MIB), int(SHARED_MIB * MIB)
    return (T0 + t, pid, 1, role, "python", T0 - 5, 1.0, 0.1, "", private + shared, private,
            pss, 0, 8, 0, 0, 6 * MIB, shared - 6 * MIB, 0, private, SAMPLED_TICK)  # fmt: skip


def _write_run(root: Path, design: str, setting: str, n: int, *, knobs: dict | None = None) -> str:
    name = cow.tag(design, setting, n)
    run = root / "runs" / name
    times = [i / RATE for i in range(int(SECONDS * RATE))]
    requests = [(T0 + t, "/products/{id}", 2.0, 200, "", T0 + t) for t in times]
    write_csv(run / REQUESTS, RECORD_COLUMNS, requests)
    placement = cow.DESIGN_PLACEMENT[design]
    child = "monolith" if placement == "monolith" else "backend"
    master = "monolith-master" if placement == "monolith" else "postmaster"
    mean = PRIVATE[(design, setting)]
    samples = []
    for s in range(-3, SECONDS + 2):
        samples.append(_proc(s, 10, master, MASTER_MIB, MASTER_MIB))
        grown = min(1.0, 0.5 + max(s, 0) / SECONDS)
        for k in range(n):
            private = (mean + k - (n - 1) / 2) * grown
            samples.append(_proc(s, 100 + k, child, private, private + 5))
    write_csv(run / PROCESSES, PROCESS_COLUMNS, samples)
    meta = {
        "schema_version": 3,
        "run_id": name,
        "status": "completed",
        "variant": placement,
        "placement": {"name": placement, "edge": child},
        "scenario": {"name": "open"},
        "knobs": knobs if knobs is not None else cow.knobs(design, setting, n),
        "warmup_s": 1.0,
        "duration_s": SECONDS,
        "dataset_size": "tiny",
        "load": {"loop": "open", "offered_rps": RATE, "users": cow.STREAMS},
        "profile": {"enabled": False},
        "shop_config": {"rebuild_interval_s": 60.0},
    }
    write_json(run / META, meta)
    write_json(run / SUMMARY, summarize_run(run, warmup_s=1.0))
    return name


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> RunSet:
    root = tmp_path_factory.mktemp("cow")
    tags = [_write_run(root, d, s, n) for (d, s) in PRIVATE for n in COUNTS]
    return load_runset(synthetic_manifest(root, tags, cow.KIND))


def _total(design: str, setting: str, n: int) -> float:
    return MASTER_MIB + n * (PRIVATE[(design, setting)] + 5)


def test_tags_name_design_setting_and_count() -> None:
    for design in cow.DESIGNS:
        for setting in cow.SETTINGS:
            assert cow.parse_tag(cow.tag(design, setting, 8)) == (design, setting, 8)
    assert cow.tag("monolith-preload", "as-is", 2) == "cow-monolith-preload-as-is-n2"
    assert cow.parse_tag("server-monolith-granian-r1") is None


def test_each_run_is_its_childrens_private_at_the_end_and_the_total(study: RunSet) -> None:
    t = cow.table(study).set_index(["design", "setting", "n"])
    assert len(t) == len(PRIVATE) * len(COUNTS)
    for (design, setting), mean in PRIVATE.items():
        for n in COUNTS:
            row = t.loc[(design, setting, n)]
            assert row["children"] == n
            assert row["private_mib"] == pytest.approx(mean, abs=1e-3)
            assert row["private_min_mib"] == pytest.approx(mean - (n - 1) / 2, abs=1e-3)
            assert row["private_max_mib"] == pytest.approx(mean + (n - 1) / 2, abs=1e-3)
            assert row["private_dirty_mib"] == pytest.approx(mean, abs=1e-3)
            assert row["shared_mib"] == pytest.approx(SHARED_MIB, abs=1e-3)
            assert row["total_mib"] == pytest.approx(_total(design, setting, n), abs=1e-3)


def test_the_line_through_the_totals_is_the_base_and_the_cost_per_child(study: RunSet) -> None:
    base, slope = cow.per_child_cost(cow.table(study), "monolith", "as-is") or (0, 0)
    assert (base, slope) == pytest.approx((MASTER_MIB, 205.0), abs=1e-3)
    assert cm.linear_fit({1: 3.0, 3: 7.0}) == pytest.approx((1.0, 2.0))
    assert cm.memory_at({1: 3.0, 3: 7.0}, 3) == 7.0 and cm.memory_at({1: 3.0, 3: 7.0}, 5) == 11
    with pytest.raises(ValueError):
        cm.memory_at({1: 3.0}, 2)
    # the cost model's memory: the variant's default knobs (monolith as-is, family freeze)
    got = cow.memory_for(study, "monolith", 8)
    assert got is not None and got[0] / MIB == pytest.approx(_total("monolith", "as-is", 8))
    assert got[1] == "monolith, as-is: N = 8 on the line through N = 1, 2, 4"
    got = cow.memory_for(study, "multiprocess", 2)
    assert got is not None and got[0] / MIB == pytest.approx(_total("multiprocess", "freeze", 2))
    assert got[1] == "multiprocess, freeze: measured at N = 2"
    assert cow.memory_for(study, "distributed", 2) is None


def test_the_timeline_is_the_childrens_mean_and_range_per_tick(study: RunSet) -> None:
    line = cow.timeline(study, "monolith-preload", "freeze", 4)
    assert len(line) == SECONDS + 5 and set(line["children"]) == {4}
    start, end = line.iloc[0], line.iloc[-1]
    assert start["t"] == pytest.approx(-3.0, abs=1e-3)
    assert start["mean"] == pytest.approx(45.0, abs=1e-3)  # half of it before the load
    assert (end["mean"], end["min"], end["max"]) == pytest.approx((90.0, 88.5, 91.5), abs=1e-3)
    assert cow.timeline(study, "monolith", "thresholds", 4).empty


def test_a_run_whose_knobs_disagree_with_its_tag_is_not_used(tmp_path: Path) -> None:
    tags = [
        _write_run(tmp_path, "monolith", "as-is", 2),
        _write_run(tmp_path, "monolith", "freeze", 2, knobs={"workers": 2}),  # ran as-is
        _write_run(tmp_path, "monolith-preload", "as-is", 2, knobs={"workers": 2}),  # no preload
        _write_run(tmp_path, "multiprocess", "freeze", 2, knobs={"backends": 2}),  # the default
    ]
    rs = load_runset(synthetic_manifest(tmp_path, tags, cow.KIND))
    used = [(d, s, n) for d, s, n, _ in cow.study_runs(rs)]
    assert used == [("monolith", "as-is", 2), ("multiprocess", "freeze", 2)]


def test_the_figure_has_a_timeline_and_a_totals_panel_per_design(study: RunSet) -> None:
    assert figure_functions()["04-copy_on_write"] is fig.fig_copy_on_write
    assert cost.FIGURES["copy_on_write"] is cost.fig_copy_on_write
    f = fig.fig_copy_on_write(study)
    assert isinstance(f, Figure) and len(f.axes) == 2 * len(cow.DESIGNS)
    titles = [ax.get_title() for ax in f.axes[:3]]
    assert all(t.endswith("N = 4") for t in titles) and "--preload on" in titles[1]
    legend = [t.get_text() for t in f.axes[3].get_legend().get_texts()]
    assert legend == ["as-is: +205 MiB per child", "freeze: +200 MiB per child"]
    assert "monolith: 200 vs 195 MiB/child at N=4" in f.get_suptitle()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. constrained layout giving up
        f.savefig(io.BytesIO(), format="png", dpi=60)


def test_the_reading_gives_private_per_child_with_and_without_freeze(study: RunSet) -> None:
    text = cost.reading(study)
    assert "**Copy-on-write** (open loop at 50 req/s over 16 streams" in text
    assert (
        "- monolith --workers N --preload on, per child at N = 4: as-is 100 (98-102) private, "
        "30 shared; total 125, 230, 440 MiB at N = 1, 2, 4 (+105 MiB per added child)"
    ) in text
    assert "monolith +5.0 MiB private and +0.0 MiB shared per child, +20 MiB total at N = 4" in text
    assert "multiprocess +4.0 MiB private and +0.0 MiB shared per child, +16 MiB total" in text
    assert "as-is: 840 vs 440 MiB at N = 4 (-48%)" in text
    # children started 5 s before the load and were last sampled 1 s after its end
    assert "lived at most 26 s, less than the model's rebuild interval (60 s)" in text


def test_the_cost_model_holds_a_prefork_designs_memory_at_one_child_per_core(
    study: RunSet, tmp_path: Path
) -> None:
    """The monolith's per-request run (1 worker, 512 MiB) and a ramp at 300 req/s on 1 CPU: 4
    cores for 1000 req/s, so 4 workers' memory from the study, 20 + 4 x 205 MiB."""
    root = tmp_path / "rs"
    tags = [_write_run(root, d, s, n) for (d, s) in PRIVATE for n in COUNTS]
    per_request = "server-monolith-gunicorn-gthread-r1"  # unprofiled, at the study's rate
    for name in (per_request, "scaling-monolith-1cpu"):
        (root / "runs" / name).mkdir(parents=True)
    meta = {"variant": "monolith", "status": "completed", "scenario": {"name": "open"},
            "knobs": {"server": "gunicorn-gthread"}}  # fmt: skip
    write_json(root / "runs" / per_request / META, meta)
    write_json(root / "runs" / per_request / SUMMARY, {
        "endpoints": {"ALL": {"count": 10_000}}, "window": {"seconds": 100.0},
        "load": {"achieved_rps": 100.0},
        "server": {"total": {"processes": 2, "cpu_s": 20.0, "pss_mean_bytes": 256 * MIB,
                             "pss_peak_bytes": 512 * MIB}},
    })  # fmt: skip
    write_json(root / "runs" / "scaling-monolith-1cpu" / META,
               {"variant": "monolith", "status": "completed", "scenario": {"name": "ramp"},
                "cpu_pinning": {"server": [0]}})  # fmt: skip
    rows = [
        {"index": i, "seconds": 10.0, "offered_rps": o,
         "endpoints": {"ALL": {"count": int(o * 10), "throughput_rps": o, "errors": 0,
                               "latency_corrected_ms": {"p50": 1, "p90": 2, "p99": p99}}}}
        for i, (o, p99) in enumerate(((100, 10), (300, 20), (400, 250)))
    ]  # fmt: skip
    write_json(root / "runs" / "scaling-monolith-1cpu" / SUMMARY, {"windows": {"rows": rows}})
    synthetic_manifest(root, tags, cow.KIND)
    manifest = load_runset(root).manifest
    manifest["steps"] += [
        {"tag": per_request, "kinds": ["server"], "run": f"runs/{per_request}",
         "cpus": None, "status": "completed"},
        {"tag": "scaling-monolith-1cpu", "kinds": ["scaling"],
         "run": "runs/scaling-monolith-1cpu", "cpus": 1, "status": "completed"},
    ]  # fmt: skip
    write_json(root / MANIFEST, manifest)
    prices = cm.Prices(vcpu_hour=0.03, gib_hour=0.004, source="t", url="https://x.invalid",
                       as_of="2024")  # fmt: skip
    row = cost.cost_table(load_runset(root), prices).set_index("variant").loc["monolith"]
    gib = (MASTER_MIB + 4 * 205) / 1024
    assert row["cores_needed"] == 4 and row["memory_gib"] == pytest.approx(gib)
    assert row["memory_basis"] == "copy-on-write study, monolith, as-is: measured at N = 4"
    assert row["provisioned_usd_per_hour"] == pytest.approx(4 * 0.03 + gib * 0.004)
    assert row["pss_peak_mib"] == 512  # the per-request figure still shows the measured run


def test_without_the_runs_there_is_no_figure_and_the_reading_says_so(tmp_path: Path) -> None:
    rs = load_runset(synthetic_manifest(tmp_path, [], cow.KIND))
    assert fig.fig_copy_on_write(rs) is None and cow.table(rs).empty
    assert "no copy-on-write runs in this run set" in cost.reading(rs)


# ---------------------------------------------------------------- the reproduce steps


def test_the_full_scale_runs_every_design_setting_and_count() -> None:
    scale = repro.SCALES["full"]
    steps = [s for s in repro.plan_steps(scale, [0, 1]) if s.kinds == (cow.KIND,)]
    settings = scale.cow_settings
    assert set(settings) >= {"as-is", "freeze"}  # what prefork servers do, and the remedy
    counts = scale.cow_counts
    assert 1 in counts and max(counts) >= 8  # one child, and the most the machine holds here
    assert len(steps) == len(cow.DESIGNS) * len(settings) * len(counts)
    found = {cow.parse_tag(s.tag) for s in steps}
    assert found == {(d, s, n) for d in cow.DESIGNS for s in settings for n in counts}
    for step in steps:
        design, setting, n = cow.parse_tag(step.tag) or ("", "", 0)
        plan = step.plan
        assert plan.variant == cow.DESIGN_PLACEMENT[design] and plan.scenario == cow.SCENARIO
        assert plan.rate == cow.RATE and plan.users == cow.STREAMS
        assert plan.duration_s == scale.cow_s and dict(plan.knobs) == cow.knobs(design, setting, n)
        assert step.fingerprint()["users"] == cow.STREAMS
    test = [s for s in repro.plan_steps(repro.SCALES["test"], [0, 1]) if s.kinds == (cow.KIND,)]
    assert [s.tag for s in test] == [
        "cow-monolith-preload-as-is-n2",
        "cow-monolith-preload-freeze-n2",
    ]
