"""Keep the local log list snapshot fresh when CT_LOG_LIST is a URL.

The DAG factory never touches the network at parse time: it reads the snapshot this module
writes. `refresh_snapshot` replaces the snapshot atomically, and only with a list that parses
and checks; otherwise it raises and the old snapshot stays.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from ctlib.http import HttpPolicy, LogSession
from ctlib.loglist import LogList, LogListError, parse_log_list
from ctlib.settings import Settings

log = logging.getLogger(__name__)


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def refresh_snapshot(settings: Settings) -> LogList | None:
    """Download CT_LOG_LIST into CT_LOG_LIST_SNAPSHOT. None when CT_LOG_LIST is a local file."""
    if not settings.log_list_is_url:
        log.info("CT_LOG_LIST is the local file %s: nothing to download", settings.log_list)
        return None
    with LogSession("log-list", HttpPolicy.from_settings(settings)) as session:
        body = session.get(settings.log_list)
    try:
        loglist = parse_log_list(body)
    except LogListError as err:
        raise LogListError(f"refusing the log list from {settings.log_list}: {err}") from None
    if not loglist.monitored():
        raise LogListError(f"refusing the log list from {settings.log_list}: it has no log to monitor")
    write_atomically(settings.log_list_snapshot, body)
    log.info("log list version %s (%s) with %d monitored logs saved to %s",
             loglist.version, loglist.timestamp, len(loglist.monitored()), settings.log_list_snapshot)
    return loglist
