"""Airflow Variables: read inside a task (`task_variable`), and as a process outside a task
sees them (`variables_by_prefix`: the audit CLI, scripts).

Inside a task, Airflow 3.3's Task SDK answers "not found" for a Variable it could not *read*:
its Execution-API secrets backend turns every error of the API server (down, restarting,
refusing connections) into "not found", and `Variable.get(key, default=None)` returns the
default. For a watermark that is the worst answer there is: a log's stored state read as
"none yet" would be planned afresh from CT_START_AT (`latest` skips everything between the
real watermark and now; `beginning` ingests the log again). `task_variable` asks the same
supervisor channel the SDK's backend asks and keeps the two answers apart.

Outside a task, Variables are read with `airflow.models`, so from the metadata database,
AIRFLOW_VAR_* and secrets backends (the Task SDK reads no metadata database outside a task).
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def variables_by_prefix(prefixes: Sequence[str], keys: Sequence[str] | None = None) -> dict[str, str]:
    """{key: raw value} of the Variables whose key starts with one of `prefixes`: of `keys`
    when given (looked up anywhere, secrets backends too), else every such key of the metadata
    database and of AIRFLOW_VAR_* (secrets backends cannot be listed). Missing ones are left out."""
    from airflow.models import Variable

    wanted = tuple(prefixes)
    if keys is None:
        from airflow.utils.session import create_session
        from sqlalchemy import or_, select

        with create_session() as session:
            keys = list(session.scalars(select(Variable.key).where(or_(*(Variable.key.like(f"{p}%") for p in wanted)))))
        env_prefixes = tuple(f"AIRFLOW_VAR_{p.upper()}" for p in wanted)
        keys += [name[len("AIRFLOW_VAR_"):].lower() for name in os.environ if name.startswith(env_prefixes)]
    values = {}
    for key in sorted({k for k in keys if k.startswith(wanted)}):  # LIKE's '_' matches any character
        raw = Variable.get(key, default_var=None)
        if raw is not None:
            values[key] = raw
    return values


class VariableUnavailable(RuntimeError):
    """A Variable could not be read (the API server did not answer): not the same as missing."""


def task_variable(key: str) -> str | None:
    """The raw value of Variable `key` inside a task (also under `dag.test()`); None only
    when the API server says there is no such Variable. VariableUnavailable, naming the key
    and the error, when it could not be asked or did not answer: the task fails and its retry
    reads again, instead of going on as if the Variable did not exist. Outside a task (no
    supervisor channel) it is `Variable.get(key, default=None)`."""
    from airflow.sdk import Variable
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable, VariableResult

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    if comms is None:
        return Variable.get(key, default=None)
    try:
        answer = comms.send(GetVariable(key=key))
    except Exception as err:  # the channel itself failed: as unreadable as an API error
        raise VariableUnavailable(f"cannot read the Variable {key}: {type(err).__name__}: {err}") from None
    if isinstance(answer, VariableResult):
        return answer.value
    if isinstance(answer, ErrorResponse) and answer.error == ErrorType.VARIABLE_NOT_FOUND:
        return None
    what = f"{answer.error.value} {answer.detail}" if isinstance(answer, ErrorResponse) else type(answer).__name__
    raise VariableUnavailable(f"cannot read the Variable {key}: {what}; not taking it as missing")
