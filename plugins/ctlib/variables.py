"""Airflow Variables as a process outside a task sees them (the audit CLI, scripts): read with
`airflow.models`, so from the metadata database, AIRFLOW_VAR_* and secrets backends (the Task
SDK reads no metadata database outside a task)."""

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
