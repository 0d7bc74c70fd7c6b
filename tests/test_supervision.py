"""Supervision: the restart backoff of both supervisors, and the crash policies a run records.

The delay is computed inline where a death is handled (`Postmaster._on_exit`,
`Launcher._supervise`), so these tests drive those real code paths in-process, with children
that are only records (no process is started or signalled): the postmaster gets a real
control segment and deaths handed to `_on_exit`; the launcher gets fake processes and a fake
clock in place of `time`, so its poll loop runs through minutes of restarts in milliseconds.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from archlab import cli as archlab_cli
from archlab.deployers import get_variant
from archlab.run.plan import RunPlan
from archlab.run.runner import _Run
from archlab.rundir import read_meta
from variants import placement as placements
from variants.distributed import launcher as launcher_mod
from variants.distributed import topology
from variants.multiprocess import __main__ as mp_main
from variants.multiprocess import postmaster as pm_mod
from variants.multiprocess.config import FamilyConfig, default_policies, roles
from variants.placement import POLICIES
from workloads.shop.config import ShopConfig

FAMILY = placements.load("multiprocess")
ROLES = roles(FAMILY)
DEFAULT_POLICIES = default_policies(FAMILY)

NOT_A_CHILD = 2**22 + 17  # a pid the postmaster is told about but never signals (not in children)


def _events(path: Path, *names: str) -> list[dict]:
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in events if e["event"] in names]


# ------------------------------------------------------------------ the postmaster's backoff


@pytest.fixture
def make_postmaster(tmp_path: Path) -> Iterator:
    """A postmaster in a given phase, with a real control segment and no children."""
    made: list[pm_mod.Postmaster] = []

    def make(
        phase: pm_mod.PMState = pm_mod.PMState.RUNNING, policies: dict[str, str] | None = None
    ) -> pm_mod.Postmaster:
        config = FamilyConfig(backends=2, policies={**DEFAULT_POLICIES, **(policies or {})})
        state = tmp_path / f"pm{len(made)}"
        state.mkdir()
        options = pm_mod.Options(
            port=0,
            size="tiny",
            seed=1,
            state_dir=state,
            config=config,
            shop=ShopConfig(),
            placement=FAMILY,
        )
        pm = pm_mod.Postmaster(options)
        pm.control = pm._new_control(1)
        pm.phase = phase
        made.append(pm)
        return pm

    yield make
    for pm in made:
        assert pm.children == {}  # nothing was ever started, nothing can have been signalled
        assert pm.control is not None
        pm.control.close()
        os.close(pm.wake_r)
        os.close(pm.wake_w)


def _die(
    pm: pm_mod.Postmaster, role: str, *, code: int = -9, ready_for_s: float | None = None
) -> None:
    """Hand the postmaster the death of a `role` child that had been ready `ready_for_s`
    before it died (None: it died before it was ever ready)."""
    number = 1 if role == "backend" else 0
    now = pm_mod.time.monotonic()
    assert pm.control is not None
    slot = pm.control.claim(role, number, NOT_A_CHILD)
    child = pm_mod.Child(
        pid=NOT_A_CHILD,
        role=role,
        number=number,
        kind=pm.kinds[role],
        slot=slot,
        generation=pm.control.generation,
        started=now - (ready_for_s or 0.0) - 1.0,
        ready_fd=None,
        ready_at=None if ready_for_s is None else now - ready_for_s,
    )
    pm._on_exit(child, code)


def _scheduled(pm: pm_mod.Postmaster) -> list[tuple[float, str]]:
    return [(e["delay_s"], e["reason"]) for e in _events(pm.lifecycle_path, "restart-scheduled")]


def test_postmaster_doubles_a_restart_delay_from_a_tenth_of_a_second_up_to_ten_seconds(
    make_postmaster,
) -> None:
    pm = make_postmaster()
    for _ in range(10):
        _die(pm, "orders")
    delays = [d for d, _ in _scheduled(pm)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]
    assert {reason for _, reason in _scheduled(pm)} == {"restart-one"}
    assert set(pm.pending) == {("orders", 0)}  # only the dead process waits for a restart
    assert len(_events(pm.lifecycle_path, "exit")) == 10


def test_postmaster_starts_the_backoff_afresh_after_ten_seconds_of_health(
    make_postmaster,
) -> None:
    pm = make_postmaster()
    _die(pm, "inventory")  # never ready
    _die(pm, "inventory", ready_for_s=0.0)
    _die(pm, "inventory", ready_for_s=9.5)  # healthy, but not long enough
    _die(pm, "inventory", ready_for_s=10.0)  # healthy long enough: the count starts over
    _die(pm, "inventory")
    assert [d for d, _ in _scheduled(pm)] == [0.1, 0.2, 0.4, 0.1, 0.2]


def test_postmaster_counts_crashes_per_process(make_postmaster) -> None:
    pm = make_postmaster()
    _die(pm, "orders")
    _die(pm, "orders")
    _die(pm, "notifications")
    assert [d for d, _ in _scheduled(pm)] == [0.1, 0.2, 0.1]


def test_a_clean_exit_is_restarted_at_once_and_leaves_the_crash_count_alone(
    make_postmaster,
) -> None:
    pm = make_postmaster()
    _die(pm, "recommendations")
    _die(pm, "recommendations", code=0)
    _die(pm, "recommendations")
    assert _scheduled(pm) == [(0.1, "restart-one"), (0.0, "clean exit"), (0.2, "restart-one")]


def test_a_backend_crash_restarts_all_backends_after_the_same_backoff(make_postmaster) -> None:
    pm = make_postmaster()  # default policy: backend crash-restart-all
    _die(pm, "backend")
    assert pm.phase is pm_mod.PMState.RECOVERING and pm.recovery is not None
    assert pm.recovery.restart == []  # no auxiliary is restarted with the backends
    pm.recovery, pm.phase = None, pm_mod.PMState.RUNNING  # as `_advance_recovery` leaves it
    _die(pm, "backend")
    restarts = _events(pm.lifecycle_path, "crash-restart-all")
    assert [(e["role"], e["delay_s"]) for e in restarts] == [("backend", 0.1), ("backend", 0.2)]
    assert _scheduled(pm) == []  # not a single-process restart


def test_each_roles_crash_policy_decides_what_its_death_restarts(make_postmaster) -> None:
    pm = make_postmaster(policies={"backend": "restart-one", "orders": "crash-restart-all"})
    _die(pm, "backend")
    assert _scheduled(pm) == [(0.1, "restart-one")]
    assert pm.phase is pm_mod.PMState.RUNNING and pm.recovery is None
    _die(pm, "orders")
    restarts = _events(pm.lifecycle_path, "crash-restart-all")
    assert [(e["role"], e["delay_s"]) for e in restarts] == [("orders", 0.1)]
    assert pm.recovery is not None and pm.recovery.restart == [("orders", 0)]
    assert pm.phase is pm_mod.PMState.RECOVERING


def test_no_crash_restarts_all_while_the_family_starts(make_postmaster) -> None:
    pm = make_postmaster(phase=pm_mod.PMState.STARTUP)
    _die(pm, "backend")
    assert _scheduled(pm) == [(0.1, "crash-restart-all")]
    assert _events(pm.lifecycle_path, "crash-restart-all") == []


def test_an_auxiliary_that_dies_five_times_while_starting_aborts_the_start(
    make_postmaster,
) -> None:
    pm = make_postmaster(phase=pm_mod.PMState.STARTUP)
    for _ in range(5):
        _die(pm, "orders")
    assert [d for d, _ in _scheduled(pm)] == [0.1, 0.2, 0.4, 0.8]
    give_up = _events(pm.lifecycle_path, "give-up")
    assert [(e["role"], e["failures"]) for e in give_up] == [("orders", 5)]
    assert pm.exit_code == 1 and pm.phase is pm_mod.PMState.DONE


def test_a_death_the_postmaster_asked_for_is_not_restarted(make_postmaster) -> None:
    pm = make_postmaster(phase=pm_mod.PMState.STOP_AUXILIARIES)
    _die(pm, "orders")
    assert [e["role"] for e in _events(pm.lifecycle_path, "exit")] == ["orders"]
    assert _scheduled(pm) == [] and pm.pending == {}


# ------------------------------------------------------------------ the launcher's backoff


class _Clock:
    """Stands in for the launcher's `time`: sleeping advances it at once."""

    def __init__(self) -> None:
        self.now = 5000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class _DeadAt:
    """A service process as the launcher sees it: poll() answers once the clock passes."""

    def __init__(self, clock: _Clock, pid: int, dies_at: float) -> None:
        self.clock, self.pid, self.dies_at = clock, pid, dies_at
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.clock.now >= self.dies_at:
            self.returncode = -9
        return self.returncode


def _supervise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lifetimes: list[float]
) -> tuple[list[dict], list[_DeadAt]]:
    """Run the launcher's supervision loop over one service whose successive processes live
    `lifetimes` seconds each: the restarts it asked `_spawn` for, and the processes."""
    clock = _Clock()
    fake_time = types.SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep)
    monkeypatch.setattr(launcher_mod, "time", fake_time)
    topo = topology.load()
    launcher = launcher_mod.Launcher(
        topo,
        port=0,
        state_dir=tmp_path,
        size="tiny",
        seed=1,
        threads=1,
        replicas=1,
        config=ShopConfig(),
    )
    child = launcher_mod.Child(topo.services["orders"], "127.0.0.1", 1, 1)
    launcher.children = {"orders": child}
    lives = iter(lifetimes)
    restarts: list[dict] = []
    processes: list[_DeadAt] = []

    def spawn(child: launcher_mod.Child, event: str, **extra: object) -> None:
        """What `Launcher._spawn` does to the child, with a fake process."""
        if event == "restart":
            restarts.append({"at": clock.now, **extra})
        life = next(lives, None)
        if life is None:  # every planned process has died and been restarted
            launcher._stopping = True
            return
        processes.append(_DeadAt(clock, 1000 + len(processes), clock.now + life))
        child.proc = processes[-1]  # type: ignore[assignment]
        child.started_at = clock.now
        child.restart_at = None

    monkeypatch.setattr(launcher, "_spawn", spawn)
    spawn(child, "start")
    launcher._supervise()
    exits = _events(tmp_path / launcher_mod.LIFECYCLE_FILE, "exit")
    assert [(e["role"], e["pid"], e["expected"]) for e in exits] == [
        ("orders", p.pid, False) for p in processes
    ]
    return restarts, processes


def test_launcher_doubles_a_restart_delay_from_half_a_second_up_to_thirty_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    restarts, processes = _supervise(tmp_path, monkeypatch, [1.0] * 10)
    assert [r["delay_s"] for r in restarts] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert [r["attempt"] for r in restarts] == list(range(1, 11))
    for restart, dead in zip(restarts, processes, strict=True):
        # restarted once its delay has passed since the death, at the next poll (fake clock)
        waited = restart["at"] - dead.dies_at
        assert restart["delay_s"] - 1e-9 <= waited <= restart["delay_s"] + 2 * launcher_mod.POLL_S


def test_launcher_resets_the_backoff_of_a_service_that_stayed_up_thirty_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifetimes = [1.0, 1.0, 1.0, 29.0, 31.0, 1.0, 1.0]  # seconds each process lived
    restarts, _ = _supervise(tmp_path, monkeypatch, lifetimes)
    assert [r["delay_s"] for r in restarts] == [0.5, 1, 2, 4, 0.5, 1, 2]


# ------------------------------------------------------------------ crash policies as knobs


MULTIPROCESS = get_variant("multiprocess")
POLICY_KNOBS = {f"policy_{role}" for role in ROLES}


def test_every_role_has_a_policy_knob_defaulting_to_the_familys_default() -> None:
    assert set(MULTIPROCESS.knobs) >= POLICY_KNOBS
    resolved = MULTIPROCESS.resolve_knobs({})
    assert set(resolved) == set(MULTIPROCESS.knobs)  # every knob, with its value
    assert {role: resolved[f"policy_{role}"] for role in ROLES} == DEFAULT_POLICIES


def test_every_policy_knob_is_passed_to_the_postmaster_and_applied(tmp_path: Path) -> None:
    given = {"policy_backend": "restart-one", "policy_orders": "crash-restart-all"}
    knobs = MULTIPROCESS.resolve_knobs(given)
    cmd = MULTIPROCESS.command(port=1, size="tiny", seed=1, state_dir=tmp_path, knobs=knobs)
    for role in ROLES:
        flag = cmd.index(f"--policy-{role}")
        assert cmd[flag + 1] == knobs[f"policy_{role}"]
    assert cmd[1:3] == ["-m", MULTIPROCESS.module]
    config = mp_main.family_config(*mp_main.parse_args(cmd[3:]))
    assert config.policies == {
        **DEFAULT_POLICIES,
        "backend": "restart-one",
        "orders": "crash-restart-all",
    }


def test_run_records_every_policy_in_meta_json_and_passes_it_to_the_server(
    tmp_path: Path,
) -> None:
    """`archlab run --policy-orders crash-restart-all`, up to the point where it would start
    the server: meta.json is written and the server command is built."""
    argv = ["run", "--variant", "multiprocess", "--policy-orders", "crash-restart-all"]
    args = archlab_cli.build_parser().parse_args(argv)
    plan = RunPlan(variant="multiprocess", knobs=archlab_cli._knobs(args), pin=False)
    run = _Run.start(plan, tmp_path, argv, echo=lambda _line: None)
    knobs = read_meta(run.run_dir)["knobs"]
    expected = {**DEFAULT_POLICIES, "orders": "crash-restart-all"}
    assert {role: knobs[f"policy_{role}"] for role in ROLES} == expected
    assert set(knobs) == set(MULTIPROCESS.knobs)
    for role in ROLES:
        flag = run.cmd.index(f"--policy-{role}")
        assert run.cmd[flag + 1] == expected[role]


def test_a_bad_policy_is_rejected_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="restart-everything") as err:
        MULTIPROCESS.resolve_knobs({"policy_backend": "restart-everything"})
    message = str(err.value)
    assert "policy" in message and "backend" in message
    assert all(choice in message for choice in POLICIES)


def test_the_command_line_refuses_a_bad_policy() -> None:
    with pytest.raises(SystemExit) as exit_info:
        archlab_cli.build_parser().parse_args(
            ["run", "--variant", "multiprocess", "--policy-orders", "restart-everything"]
        )
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        mp_main.parse_args(["--port", "1", "--policy-orders", "restart-everything"])
    assert exit_info.value.code == 2


def test_a_config_file_with_a_bad_policy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "multiprocess.json"
    path.write_text(json.dumps({"policies": {"orders": "restart-everything"}}))
    with pytest.raises(ValueError, match="restart-everything"):
        FamilyConfig(backends=2).overlaid(path, ROLES)


def test_a_family_config_with_an_unknown_crash_policy_is_refused_naming_role_and_choices() -> None:
    config = FamilyConfig(backends=1, policies={**DEFAULT_POLICIES, "orders": "bogus"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"orders.*restart-one, crash-restart-all.*bogus"):
        config.validate(ROLES)
