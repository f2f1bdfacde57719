"""Chaos soak parts: a seeded fault plan, supervised Airflow components, and the lag timeline.

`bench/chaos_soak.py` runs the pipeline under load while many faults hit it together; this
module holds what it needs that is not tied to one run:

* `plan_faults`: the faults, at moments drawn from a fixed seed (pure: same seed, same plan);
* `Component` and `Supervisor`: Airflow processes each leading a session of its own, restarted
  a few seconds after they die, as `restart: always` does for a container. A container dies
  whole when its main process dies, so before a restart whatever is left of the component's
  session (a killed scheduler's LocalExecutor workers and their tasks) is killed too;
* `lag_timeline` and `recovered_at`: the pipeline's lag over time, from the lake after the run
  (pure). At moment t the lag is t minus the log timestamp of the oldest entry logged by t and
  not yet committed at t (0 when nothing is waiting): how far behind the pipeline is then.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Fault kinds, as the timeline names them.
KILL_SCHEDULER = "kill scheduler"
KILL_DAG_PROCESSOR = "kill dag-processor"
KILL_API_SERVER = "kill api-server"
KILL_TASK = "kill task"
BROKER_DOWN = "broker down"
POSTGRES_RESTART = "postgres restart"
LOG_5XX = "log 5xx"
LOG_TAMPER = "log tampered entry"


@dataclass(frozen=True)
class Fault:
    """One fault: `kind` at `at_s` seconds after growth began, lasting `duration_s` (0: an
    instant, such as a SIGKILL). The log faults name their log's index in the log list's
    order (`target`), drawn by the plan too."""

    at_s: float
    kind: str
    duration_s: float = 0.0
    target: int | None = None

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s


def plan_faults(seed: int, window_s: float, *, kills_each: int, task_kills: int, logs: int,
                classic_logs: Sequence[int], start_s: float = 30.0) -> list[Fault]:
    """The faults of one soak, every one starting in [start_s, window_s) and ending by
    window_s, in time order:

    * `kills_each` SIGKILLs of the scheduler, of the dag-processor and of the API server;
    * `task_kills` SIGKILLs of a running task process;
    * the broker down twice, 30-60 s each, never both at once;
    * PostgreSQL restarted once;
    * one log (of `logs`) answering 5xx for 2 minutes;
    * one classic log (`classic_logs`: indexes of the RFC 6962 logs) serving a tampered entry once.

    Kinds may overlap one another, as faults do in production; the same seed gives the same plan.
    """
    if window_s - start_s < 180:
        raise ValueError(f"a fault window of {window_s - start_s:.0f} s is too short: the 5xx lasts 120 s")
    if not classic_logs:
        raise ValueError("the tampered entry needs a classic (RFC 6962) log")
    rng = random.Random(f"chaos:{seed}")

    def at(duration: float = 0.0) -> float:
        return round(rng.uniform(start_s, window_s - duration), 1)

    faults = [Fault(at(), kind) for kind in (KILL_SCHEDULER, KILL_DAG_PROCESSOR, KILL_API_SERVER)
              for _ in range(kills_each)]
    faults += [Fault(at(), KILL_TASK) for _ in range(task_kills)]
    first_len, second_len = (round(rng.uniform(30, 60), 1) for _ in range(2))
    while True:  # two outages that do not overlap (a gap of 20 s at least)
        first, second = at(first_len), at(second_len)
        if second >= first + first_len + 20 or first >= second + second_len + 20:
            break
    faults += [Fault(first, BROKER_DOWN, first_len), Fault(second, BROKER_DOWN, second_len)]
    faults.append(Fault(at(), POSTGRES_RESTART))
    faults.append(Fault(at(120.0), LOG_5XX, 120.0, rng.randrange(logs)))
    faults.append(Fault(at(), LOG_TAMPER, 0.0, rng.choice(list(classic_logs))))
    return sorted(faults, key=lambda f: (f.at_s, f.kind))


# --------------------------------------------------------------------------- processes


def process_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session) of a live process (Linux /proc), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[3])


def process_title(pid: int) -> str:
    """The command line, or the title Airflow set (setproctitle rewrites argv)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def task_runners(session: int) -> dict[int, str]:
    """{pid: task instance id} of the task runners among `session`'s processes: the child of
    a LocalExecutor worker whose title is `airflow worker -- LocalExecutor: <ti id>`."""
    from ctlib.localsvc.run import session_members

    members = {pid: process_title(pid) for pid in session_members(session)}
    runners = {}
    for pid in members:
        stat = process_stat(pid)
        parent = members.get(stat[1], "") if stat else ""
        if "LocalExecutor: " in parent:
            runners[pid] = parent.rsplit("LocalExecutor: ", 1)[1].split()[0]
    return runners


def kill_session(session: int, sig: int = signal.SIGKILL) -> int:
    """Send `sig` to every live process of `session`; how many were signalled."""
    from ctlib.localsvc.run import session_members

    members = session_members(session)
    for pid in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return len(members)


class Component:
    """One long-running process (an Airflow component), leader of a session of its own, its
    output appended to `<log_dir>/<name>.log`. `extra_env` is called at every start (a
    scheduler takes a fresh log-serving port: a killed one's may still be held)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, *, cwd: Path | None = None,
                 extra_env: Callable[[], dict[str, str]] | None = None) -> None:
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.log_path = log_dir / f"{name}.log"
        self.extra_env = extra_env
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**self.env, **(self.extra_env() if self.extra_env else {})}
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True, cwd=self.cwd)
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sigkill(self) -> None:
        """SIGKILL the component's own process only (not its children): the fault."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the leader, then SIGTERM and SIGKILL to whatever is left of its session."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not kill_session(self.proc.pid, sig):
                break
            time.sleep(2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def tail(self, chars: int = 3000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        return f"--- {self.name}, last {chars} chars ---\n{text[-chars:]}"


@dataclass
class Supervisor:
    """Restarts every component whose process exited, `restart_delay` seconds after it was
    seen dead, once the rest of its session is killed (a container dies whole). `on_event`
    gets (component name, what happened) for the timeline."""

    components: list[Component]
    restart_delay: float = 3.0
    on_event: Callable[[str, str], None] = lambda name, what: None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Supervisor:
        for component in self.components:
            component.start()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for component in self.components:
                if component.alive() or self._stop.is_set():
                    continue
                code = component.proc.returncode if component.proc else None
                left = kill_session(component.pid) if component.pid else 0
                self.on_event(component.name, f"exited ({code}); {left} process(es) of its session killed; "
                                              f"restarting in {self.restart_delay:.0f} s")
                if self._stop.wait(self.restart_delay):
                    return
                component.start()
                self.on_event(component.name, f"restarted (start {component.starts})")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        for component in reversed(self.components):
            component.stop()


# --------------------------------------------------------------------------- lag


@dataclass(frozen=True)
class Batch:
    """Entries of one log committed together: the oldest one's log timestamp (`logged`) and
    the moment they became visible in the lake (`committed`), epoch seconds."""

    logged: float
    committed: float


def lag_timeline(batches: Iterable[Batch], start: float, end: float, step: float = 5.0) -> list[tuple[float, float]]:
    """[(t - start, lag at t)] for t = start, start + step, ... <= end: at t, the age of the
    oldest entry logged by t and not committed at t, 0 when none waits. Each batch stands for
    its oldest entry (the rest of it is younger, so no older)."""
    waiting = sorted((b for b in batches if b.committed > start and b.logged <= end), key=lambda b: b.logged)
    out = []
    t = start
    while t <= end + 1e-9:
        oldest = next((b.logged for b in waiting if b.logged <= t < b.committed), None)
        out.append((round(t - start, 1), round(t - oldest, 1) if oldest is not None else 0.0))
        t += step
    return out


def recovered_at(timeline: Sequence[tuple[float, float]], after_s: float, threshold_s: float) -> float | None:
    """The first moment (seconds, as in the timeline) at or after `after_s` from which the lag
    stays below `threshold_s` to the end of the timeline; None if it never does."""
    candidate = None
    for t, lag in timeline:
        if t < after_s:
            continue
        if lag >= threshold_s:
            candidate = None
        elif candidate is None:
            candidate = t
    return candidate
