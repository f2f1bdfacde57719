"""The chaos soak's parts (ctlib.testing.chaos): the seeded fault plan, the supervisor that
restarts killed components as a container runtime does, and the lag timeline."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ctlib.testing import chaos
from ctlib.testing.chaos import Batch, lag_timeline, plan_faults, recovered_at


def _plan(seed: int = 7, window: float = 600.0):
    return plan_faults(seed, window, kills_each=3, task_kills=8, logs=40, classic_logs=[0, 1, 2, 5])


def test_the_plan_has_every_fault_the_soak_promises_inside_the_window() -> None:
    plan = _plan()
    kinds = Counter(f.kind for f in plan)
    assert kinds == {chaos.KILL_SCHEDULER: 3, chaos.KILL_DAG_PROCESSOR: 3, chaos.KILL_API_SERVER: 3,
                     chaos.KILL_TASK: 8, chaos.BROKER_DOWN: 2, chaos.POSTGRES_RESTART: 1, chaos.LOG_5XX: 1,
                     chaos.LOG_TAMPER: 1}
    assert all(f.at_s >= 30.0 and f.end_s <= 600.0 for f in plan)
    assert [f.at_s for f in plan] == sorted(f.at_s for f in plan)
    outages = sorted((f for f in plan if f.kind == chaos.BROKER_DOWN), key=lambda f: f.at_s)
    assert all(30 <= f.duration_s <= 60 for f in outages)
    assert outages[1].at_s >= outages[0].end_s + 20, "the two broker outages overlap"
    (five_xx,) = [f for f in plan if f.kind == chaos.LOG_5XX]
    assert five_xx.duration_s == 120 and 0 <= (five_xx.target or 0) < 40
    (tamper,) = [f for f in plan if f.kind == chaos.LOG_TAMPER]
    assert tamper.target in (0, 1, 2, 5)


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert _plan(7) == _plan(7)
    assert _plan(7) != _plan(8)


def test_a_plan_that_cannot_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        plan_faults(1, 150.0, kills_each=1, task_kills=1, logs=4, classic_logs=[0])
    with pytest.raises(ValueError, match="classic"):
        plan_faults(1, 600.0, kills_each=1, task_kills=1, logs=4, classic_logs=[])


def test_lag_is_the_age_of_the_oldest_entry_waiting() -> None:
    start = 1000.0
    # Entries logged at +0 committed at +10; logged at +5 committed at +60 (an outage); logged
    # at +20 committed at +25.
    batches = [Batch(start + 0, start + 10), Batch(start + 5, start + 60), Batch(start + 20, start + 25)]
    timeline = dict(lag_timeline(batches, start, start + 70, step=5.0))
    assert timeline[0.0] == 0.0  # the first entry is logged at t and waits 0 s
    assert timeline[5.0] == 5.0  # the +0 entry waits
    assert timeline[10.0] == 5.0  # the +0 one is in; the +5 one is the oldest waiting
    assert timeline[55.0] == 50.0
    assert timeline[60.0] == 0.0  # everything logged by +60 is in
    assert max(timeline.values()) == 50.0


def test_lag_counts_only_what_was_logged_by_then() -> None:
    start = 0.0
    timeline = dict(lag_timeline([Batch(30.0, 100.0)], start, 120.0, step=10.0))
    assert timeline[20.0] == 0.0 and timeline[30.0] == 0.0 and timeline[40.0] == 10.0 and timeline[100.0] == 0.0


def test_recovery_is_the_first_moment_after_which_lag_stays_below_the_limit() -> None:
    timeline = [(0.0, 10.0), (10.0, 95.0), (20.0, 80.0), (30.0, 120.0), (40.0, 60.0), (50.0, 20.0)]
    assert recovered_at(timeline, 0.0, 90.0) == 40.0  # 20 s dipped below, then rose again
    assert recovered_at(timeline, 45.0, 90.0) == 50.0
    assert recovered_at([(0.0, 100.0), (10.0, 100.0)], 0.0, 90.0) is None


def _sleeper_with_child(tmp_path: Path) -> list[str]:
    """A leader that forks a child (as a scheduler forks its LocalExecutor workers), both sleeping."""
    script = tmp_path / "leader.py"
    script.write_text("import os, time\nif os.fork() == 0:\n    time.sleep(300)\nelse:\n    time.sleep(300)\n")
    return [sys.executable, str(script)]


def _wait(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_supervisor_restarts_a_killed_component_and_kills_what_its_session_left(tmp_path: Path) -> None:
    from ctlib.localsvc.run import session_members

    events: list[tuple[str, str]] = []
    component = chaos.Component("leader", _sleeper_with_child(tmp_path), dict(os.environ), tmp_path)
    supervisor = chaos.Supervisor([component], restart_delay=0.5, on_event=lambda n, e: events.append((n, e)))
    supervisor.start()
    try:
        first = component.pid
        assert first is not None
        _wait(lambda: len(session_members(first)) == 2)
        (orphan,) = [p for p in session_members(first) if p != first]
        component.sigkill()  # the fault: the leader alone
        _wait(lambda: component.starts == 2 and component.alive())
        assert component.pid != first
        stat = chaos.process_stat(orphan)
        assert stat is None or stat[0] in ("Z", "X"), "the killed leader's child survived the restart"
        assert [n for n, _ in events] == ["leader", "leader"]
        assert "exited (-9)" in events[0][1] and "1 process(es)" in events[0][1] and "restarted" in events[1][1]
    finally:
        supervisor.stop()
    assert not component.alive()


def test_task_runners_are_the_children_of_local_executor_workers(tmp_path: Path) -> None:
    """A process titled as a LocalExecutor worker, with a child: the child is the runner."""
    script = tmp_path / "worker.py"
    script.write_text(
        "import os, sys, time\n"
        "if os.fork() == 0:\n    time.sleep(300)\n"
        "else:\n    time.sleep(300)\n")
    import subprocess

    # exec -a sets argv[0], which is what /proc/<pid>/cmdline shows, as setproctitle does.
    proc = subprocess.Popen(["bash", "-c", f'exec -a "airflow worker -- LocalExecutor: ti-123" {sys.executable} {script}'],
                            start_new_session=True)
    try:
        _wait(lambda: len(chaos.task_runners(proc.pid)) == 1)
        ((pid, ti),) = chaos.task_runners(proc.pid).items()
        assert ti == "ti-123" and pid != proc.pid and chaos.process_stat(pid)[1] == proc.pid  # type: ignore[index]
    finally:
        chaos.kill_session(proc.pid, signal.SIGKILL)
        proc.wait(10)
