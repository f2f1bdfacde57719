"""Keep the local log list snapshot fresh: download Google's list (or CT_LOG_LIST's URL),
verify its detached signature, check it, and replace the snapshot atomically.

The DAG factory never touches the network at parse time: it reads the snapshot this module
writes. `refresh_snapshot` replaces the snapshot only with a list whose signature verifies
(RSA PKCS#1 v1.5 with SHA-256 over the raw JSON bytes, Google's key in include/) and that
parses and checks; otherwise it raises LogListError and the old snapshot stays.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path

from ctlib.ct.loglist import LogList, LogListError, frozen_reason, load_log_list, parse_log_list
from ctlib.http import HttpPolicy, HttpSession
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


def verify_signature(body: bytes, signature: bytes, public_key_pem: bytes) -> None:
    """Raise LogListError unless `signature` is the list key's RSA/SHA-256 signature of `body`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise LogListError("the log list key is not an RSA key")
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise LogListError("its signature does not verify with the log list key") from None


def refresh_snapshot(settings: Settings) -> LogList | None:
    """Download the list into CT_LOG_LIST_SNAPSHOT. None when CT_LOG_LIST pins a local file."""
    url = settings.log_list_refresh_url
    if url is None:
        log.info("CT_LOG_LIST pins the local file %s: nothing to download", settings.log_list)
        return None
    signature_url = settings.log_list_signature_url
    assert signature_url is not None  # set whenever the refresh URL is
    with HttpSession("log-list", HttpPolicy.from_settings(settings)) as session:
        body = session.get(url)
        signature = session.get(signature_url) if settings.log_list_verify else None
    try:
        if signature is not None:
            verify_signature(body, signature, settings.log_list_pubkey.read_bytes())
        loglist = parse_log_list(body)
        if not loglist.monitored():
            raise LogListError("it has no log to monitor")
    except LogListError as err:
        raise LogListError(f"refusing the log list from {url}: {err}; the snapshot stays as it was") from None
    write_atomically(settings.log_list_snapshot, body)
    log.info("log list version %s (%s) with %d monitored logs saved to %s (signature %s)",
             loglist.version, loglist.timestamp, len(loglist.monitored()), settings.log_list_snapshot,
             "verified" if signature is not None else "not checked: CT_LOG_LIST_VERIFY=false")
    return loglist


def installed_list(settings: Settings) -> LogList | None:
    """The list the DAG factory reads now; None when there is none or it does not parse."""
    try:
        return load_log_list(settings.log_list_path)
    except LogListError:
        return None


def woken_logs(before: LogList | None, after: LogList, now: datetime) -> list[str]:
    """Slugs of the logs to run once more after `after` replaced `before`: monitored in
    `after`, frozen as of `now` (ctlib.ct.loglist.frozen_reason; ctlib.ingest.schedule puts
    those on a wake-up asset), and whose state or temporal interval differs from `before`'s
    (a log new to the list gets a DAG of its own anyway). A log that was live until now runs
    every minute until the factory re-parses it; the event is for a log already on its hourly
    schedule."""
    if before is None:
        return []
    old = {log.slug: log for log in before.logs}
    return [
        log.slug for log in after.monitored()
        if log.slug in old and frozen_reason(log, now)
        and (log.state, log.interval_start, log.interval_end)
        != (old[log.slug].state, old[log.slug].interval_start, old[log.slug].interval_end)
    ]
