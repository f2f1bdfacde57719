"""What the chaos soak found about an API server that dies: a read it could not answer is not a
Variable that does not exist, and a write it made but never answered is not another writer's.

1. Airflow 3.3's Task SDK turns every error of the API server into "not found" for
   `Variable.get(key, default=None)`; `ctlib.variables.task_variable` keeps them apart, asking
   the supervisor channel with the SDK's own messages.
2. `commit_run` retried after its first try saved the watermark and lost the answer finds its
   own commit and returns it, where it used to refuse ("another writer moved it") and fail
   the run; a watermark moved by anything else is still refused.
"""

from __future__ import annotations

import pytest

from ctlib.ct.loglist import parse_log_list
from ctlib.ingest.run import commit_run, fetch_range, plan_run
from ctlib.ingest.state import LogState, MemoryStateStore, StateError
from ctlib.lake.files import Lake
from ctlib.settings import Settings
from ctlib.testing.ctlog import LogServer
from ctlib.variables import VariableUnavailable, task_variable

FAST = {"CT_HTTP_BACKOFF": "0.01", "CT_HTTP_MAX_BACKOFF": "0.05", "CT_HTTP_RETRIES": "3"}


class Channel:
    """Stands in for the task's supervisor channel: answers every request with `answer` (the
    Task SDK's own message types), or raises it."""

    def __init__(self, answer) -> None:
        self.answer, self.asked = answer, []

    def send(self, message):
        self.asked.append(message)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def channel(monkeypatch):
    from airflow.sdk.execution_time import task_runner

    def install(answer) -> Channel:
        fake = Channel(answer)
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", fake, raising=False)
        return fake

    return install


def test_a_variable_the_api_server_could_not_read_is_not_missing(channel) -> None:
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable, VariableResult

    down = channel(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"message": "[Errno 111] Connection refused"}))
    with pytest.raises(VariableUnavailable, match=r"ct_state__log_a: API_SERVER_ERROR .*Connection refused.*not taking it as missing"):
        task_variable("ct_state__log_a")
    assert down.asked == [GetVariable(key="ct_state__log_a")]

    channel(ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": "ct_state__log_a"}))
    assert task_variable("ct_state__log_a") is None

    channel(VariableResult(key="ct_state__log_a", value='{"next_index": 7}'))
    assert task_variable("ct_state__log_a") == '{"next_index": 7}'

    channel(BrokenPipeError("the supervisor went away"))
    with pytest.raises(VariableUnavailable, match="BrokenPipeError: the supervisor went away"):
        task_variable("ct_state__log_a")


def test_the_sdk_itself_would_have_said_missing(channel) -> None:
    """Why task_variable exists: the same answer through `Variable.get` is the default."""
    from airflow.sdk import Variable
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    channel(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"message": "Connection refused"}))
    assert Variable.get("ct_state__log_a", default=None) is None


class SavesThenLosesTheAnswer(MemoryStateStore):
    """Saves the state, then raises as the API server dying before it answered does, once."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_next = False

    def save(self, slug: str, state: LogState) -> None:
        super().save(slug, state)
        if self.lose_next:
            self.lose_next = False
            raise ConnectionError("API_SERVER_ERROR: [Errno 111] Connection refused")


def test_a_commit_retried_after_its_answer_was_lost_finds_its_own_commit(tmp_path) -> None:
    with LogServer() as server:
        log = server.add_log("Lost Answer Log", initial_size=40)
        ctlog = parse_log_list(server.log_list()).by_slug(log.slug)
        settings = Settings.from_env({**FAST, "CT_LAKE": str(tmp_path / "lake"), "CT_START_AT": "beginning"})
        store, lake = SavesThenLosesTheAnswer(), Lake.open(settings.lake)
        plan = plan_run(ctlog, settings, store, lake)
        assert plan.ranges and plan.start == 0
        summaries = [fetch_range(ctlog, s, e, settings, lake, None) for s, e in plan.ranges]

        store.lose_next = True
        with pytest.raises(ConnectionError):
            commit_run(ctlog, plan, summaries, store, lake, settings)
        saved = store.load(log.slug)
        assert saved is not None and saved.next_index == 40  # the first try's write landed

        # The task's retry: its own commit, returned as it is, not refused.
        assert commit_run(ctlog, plan, summaries, store, lake, settings) == saved

        # A watermark anything else moved is still refused.
        log.grow(5)
        log.publish()
        later = plan_run(ctlog, settings, store, lake)
        later_summaries = [fetch_range(ctlog, s, e, settings, lake, None) for s, e in later.ranges]
        commit_run(ctlog, later, later_summaries, store, lake, settings)  # the state is at 45 now
        with pytest.raises(StateError, match="stored next_index is 45, but this run planned from 0; another writer"):
            commit_run(ctlog, plan, summaries, store, lake, settings)
