"""Writing files into the lake (where they go: ctlib.lake.layout), and opening it.

File names depend only on what a file holds (the log, the range, the day; a compaction's
generation), so a retried task rewrites the same files: deterministic names, each written
whole once and overwritten whole on a retry (exactly-once in the lake). How "whole" is
kept depends on the filesystem:

* a local disk: each file is written under a hidden temporary name
  (`.<name>.<host>-<pid>.<uuid>.tmp`) and renamed into place, so a reader never sees a partial
  file. A writer killed between the two (SIGKILL, OOM, power loss) leaves its temporary
  behind; the next writer of the same file removes it (see `remove_stale_temporaries`).
* an object store (S3 and what speaks its API): no temporary and no rename (a "move" there is
  a copy and a delete, neither atomic nor cheap). The file is made in memory and sent to its
  final name in one call (one PUT, or one multipart upload): the object appears whole when
  the upload completes, or not at all, and a retry replaces it whole. A writer killed during
  an upload leaves at most an incomplete multipart upload, which no reader sees (a bucket
  lifecycle rule that aborts incomplete uploads after a day cleans those up). No directory
  marker objects are made: object stores have no directories.

`Lake.open` opens a lake location: a local path, or `s3://bucket/prefix` with the standard
AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, read by
pyarrow) or the Airflow AWS connection CT_LAKE_CONN_ID names. No key ever appears in a
`Lake`'s repr, a log line or an error (LakeError names the location only).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ctlib import settings as _settings
from ctlib.lake import layout

log = logging.getLogger(__name__)

STALE_TEMPORARY_SECONDS = 3600.0
"""A temporary whose writer cannot be checked (another host, an unattributed name) counts as
dead once it has not changed for this long (writing one file takes seconds)."""

# This host as it appears in temporary names: no '-' or '.', which separate the name's parts.
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:63] or "host"


class LakeError(RuntimeError):
    """The lake cannot be opened: a missing bucket, refused credentials, a missing
    connection. The message names the lake's location and never a key."""


def renames_atomically(filesystem: pafs.FileSystem) -> bool:
    """True for a local disk (also under a SubTreeFileSystem), where a rename replaces a file
    in one step; False for object stores and anything else, which are written directly."""
    while isinstance(filesystem, pafs.SubTreeFileSystem):
        filesystem = filesystem.base_fs
    return isinstance(filesystem, pafs.LocalFileSystem)


@dataclass(frozen=True, slots=True)
class Lake:
    """A lake: its pyarrow filesystem and the root path on it. The repr shows the location
    only (a filesystem built from a connection holds its keys)."""

    filesystem: pafs.FileSystem = field(repr=False)
    root: str

    @classmethod
    def open(cls, location: str, *, conn_id: str | None = None) -> Lake:
        """A local path or any pyarrow filesystem URI (s3://bucket/prefix, gs://..., file://...).

        `s3://` uses the Airflow AWS connection `conn_id` (None: CT_LAKE_CONN_ID; "" or unset:
        none) when there is one, else the standard AWS variables; its bucket is checked: a
        missing bucket or refused credentials raise LakeError naming `location`."""
        if "://" not in location:
            return cls(pafs.LocalFileSystem(), os.path.abspath(location))
        shown = location.split("?", 1)[0]  # a URI's query may carry options (even keys): never shown
        scheme = shown.split("://", 1)[0].lower()
        if scheme == "s3":
            conn_id = _settings.lake_conn_id() if conn_id is None else conn_id.strip()
            bucket_and_prefix = shown.split("://", 1)[1].strip("/")
            if conn_id:
                lake = cls(_s3_from_connection(conn_id, shown), bucket_and_prefix)
            else:
                try:
                    filesystem, root = pafs.FileSystem.from_uri(location)
                except (OSError, ValueError) as err:  # e.g. resolving the bucket's region
                    raise LakeError(f"lake {shown}: cannot open it with the AWS variables: "
                                    f"{_scrub(str(err), None)}") from None
                lake = cls(filesystem, root.rstrip("/"))
            _check_bucket(lake, shown, conn_id)
            return lake
        filesystem, root = pafs.FileSystem.from_uri(location)
        return cls(filesystem, root.rstrip("/"))

    def __repr__(self) -> str:
        return f"Lake({self.location!r})"

    @property
    def location(self) -> str:
        """Where the lake is, as a user gives it: a local path or `s3://bucket/prefix`."""
        return self.uri(self.root)

    @property
    def on_object_store(self) -> bool:
        """Files are PUT whole under their final names (no temporary, no rename)."""
        return not renames_atomically(self.filesystem)

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def uri(self, path: str) -> str:
        """What downstream readers get in asset events: a path they can open."""
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            return path
        return f"{self.filesystem.type_name}://{path}"

    def path_of(self, uri: str) -> str:
        """Inverse of `uri`."""
        return uri.split("://", 1)[1] if "://" in uri else uri


def _connection(conn_id: str, location: str) -> Any:
    """The Airflow connection `conn_id` by the Task SDK (in a task: through the API server;
    elsewhere AIRFLOW_CONN_* and secrets backends), and when that finds none, by
    airflow.models, which outside a task also reads the metadata database (as
    ctlib.kafka does): tasks and `python -m ctlib.query` see the same connections."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        pass
    try:
        from airflow.models.connection import Connection

        return Connection.get_connection_from_secrets(conn_id)
    except Exception:  # AirflowNotFoundException, no metadata database here, ...
        raise LakeError(f"lake {location}: the Airflow connection {conn_id!r} (CT_LAKE_CONN_ID) is not defined") from None


def _s3_from_connection(conn_id: str, location: str) -> pafs.S3FileSystem:
    """An S3 filesystem from an Airflow AWS connection, read as the Amazon provider's `aws`
    connection is (without needing that provider): login = access key id, password = secret
    key (or extra aws_access_key_id / aws_secret_access_key), extra `region_name`,
    `endpoint_url` (http(s)://host[:port]; or under service_config.s3) and `aws_session_token`.
    What the connection leaves out comes from the AWS variables (the endpoint from
    AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) and the AWS SDK's default credential chain."""
    conn = _connection(conn_id, location)
    extra = conn.extra_dejson or {}
    options: dict[str, Any] = {}
    access_key = conn.login or extra.get("aws_access_key_id")
    secret_key = conn.password or extra.get("aws_secret_access_key")
    if bool(access_key) != bool(secret_key):
        raise LakeError(f"lake {location}: the Airflow connection {conn_id!r} has an access key id "
                        "or a secret key, not both (login and password)")
    if access_key:
        options.update(access_key=str(access_key), secret_key=str(secret_key))
        if extra.get("aws_session_token"):
            options["session_token"] = str(extra["aws_session_token"])
    if extra.get("region_name"):
        options["region"] = str(extra["region_name"])
    service = extra.get("service_config")
    s3_config = service.get("s3") if isinstance(service, dict) else None
    # pyarrow's S3FileSystem(), unlike FileSystem.from_uri, does not read AWS_ENDPOINT_URL itself.
    endpoint = str(extra.get("endpoint_url") or (s3_config or {}).get("endpoint_url")
                   or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "").strip()
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc + parts.path.rstrip("/"), scheme=parts.scheme or "https")
    try:
        return pafs.S3FileSystem(**options)
    except Exception as err:  # pyarrow's message may quote what it was given: keep only its type
        raise LakeError(f"lake {location}: the Airflow connection {conn_id!r} cannot configure S3 "
                        f"({type(err).__name__})") from None


def _scrub(text: str, lake: Lake | None) -> str:
    """`text` without any key of the AWS variables or of `lake`'s filesystem, should an
    error message ever echo one."""
    secrets = [os.environ.get(name, "") for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
    if lake is not None and isinstance(lake.filesystem, pafs.S3FileSystem):
        _, args = lake.filesystem.__reduce__()  # the options it was built with, keys included
        options = args[0] if args and isinstance(args[0], dict) else {}
        secrets += [str(options.get(k) or "") for k in ("access_key", "secret_key", "session_token")]
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _check_bucket(lake: Lake, location: str, conn_id: str) -> None:
    """One HEAD of the lake's bucket: LakeError naming `location` when it does not exist or
    the credentials are refused (a listing of a missing bucket would read as an empty lake)."""
    bucket = lake.root.split("/", 1)[0]
    how = f"the Airflow connection {conn_id!r}" if conn_id else "the AWS variables (AWS_ACCESS_KEY_ID, ...)"
    try:
        info = lake.filesystem.get_file_info(bucket)
    except OSError as err:
        raise LakeError(f"lake {location}: cannot read the bucket {bucket!r} with {how}: the credentials were "
                        f"refused or do not allow it, or the endpoint cannot be reached ({_scrub(str(err), lake)})") from None
    if info.type == pafs.FileType.NotFound:
        raise LakeError(f"lake {location}: the bucket {bucket!r} does not exist (credentials from {how})")


def _split_by_day(table: pa.Table, column: str) -> list[tuple[date, pa.Table]]:
    days = pc.cast(table[column], pa.date32()) if table.num_rows else pa.array([], pa.date32())
    days = pc.fill_null(days, pa.scalar(layout.UNKNOWN_DATE, pa.date32()))
    out = []
    for day in sorted(set(days.to_pylist())):
        out.append((day, table.filter(pc.equal(days, pa.scalar(day, pa.date32())))))
    return out


def write_range(
    lake: Lake, table_name: str, slug: str, start: int, end: int, table: pa.Table, *, day_column: str = "timestamp",
    window: tuple[int, int] | None = None,
) -> list[str]:
    """Write `table`'s rows of range [start, end) as one file per UTC day. Returns the paths.

    Idempotent: the same range always maps to the same paths, which are replaced whole.
    A backfill of the time `window` (start, end ms) names each day's file by the indexes its
    rows span and the window instead (layout.window_file_name): it keeps only some entries of
    its range, and the range itself depends on its search, but the same window's entries of
    the same range cell always give the same name.
    """
    paths = []
    for day, rows in _split_by_day(table, day_column):
        if window is not None:
            index = rows.column("index")
            name = layout.window_file_name(pc.min(index).as_py(), pc.max(index).as_py() + 1, *window)
        else:
            name = layout.range_file_name(start, end)
        paths.append(write_file(lake, layout.partition_dir(lake.root, table_name, slug, day), name, rows))
    return paths


def _writer_is_dead(tag: str) -> bool:
    """True when `tag` (`<host>-<pid>` from a temporary's name) is a process of this host that
    no longer runs. A live pid counts as the writer (even if reused: kept, to be safe)."""
    host, _, pid = tag.rpartition("-")
    if host != _HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, another user's
        return False
    return False


def remove_stale_temporaries(lake: Lake, directory: str, name: str | None = None, *,
                             now: float | None = None) -> list[str]:
    """Delete the temporaries of `directory/name` (of any file with `name` None: the
    compaction's sweep) left by writers that died before renaming:
    those of a process of this host that no longer runs, and any not modified for
    STALE_TEMPORARY_SECONDS. A live writer's temporary is kept: two attempts at one range can
    overlap (an orphaned task and its retry), and removing one's file would fail its rename.
    Returns the paths removed; a listing or deletion problem is logged, never raised.
    Nothing to do on an object store (no temporaries are written there): returns []."""
    if lake.on_object_store:
        return []
    prefix, suffix = (f".{name}." if name else "."), ".tmp"
    try:
        infos = lake.filesystem.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    except OSError as err:
        log.warning("%s: cannot list for stale temporaries of %s: %s", directory, name, err)
        return []
    now = time.time() if now is None else now
    removed = []
    for info in infos:
        base = info.base_name
        if info.type != pafs.FileType.File or not (base.startswith(prefix) and base.endswith(suffix)):
            continue
        # `<host>-<pid>` before the uuid ("" or a name part in the old `.<name>.<uuid>.tmp`).
        tag = base[len(prefix) : -len(suffix)].rpartition(".")[0]
        tag = tag if name else tag.rpartition(".")[2]
        old = info.mtime is not None and now - info.mtime.timestamp() > STALE_TEMPORARY_SECONDS
        if not (old or (tag and _writer_is_dead(tag))):
            continue
        try:
            lake.filesystem.delete_file(info.path)
        except FileNotFoundError:
            continue
        except OSError as err:
            log.warning("%s: cannot remove the stale temporary %s: %s", directory, base, err)
            continue
        removed.append(info.path)
    if removed:
        log.warning("%s/%s: removed %d temporary file(s) of writers that died before renaming: %s",
                    directory, name, len(removed), ", ".join(os.path.basename(p) for p in removed))
    return removed


def write_file(lake: Lake, directory: str, name: str, table: pa.Table) -> str:
    """Write `table` to `directory/name` whole (the module docstring): on a local disk under a
    hidden temporary name, then renamed, first removing what dead writers of the same file
    left; on an object store made in memory, then PUT under its name. Returns the path."""
    if lake.on_object_store:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return _put(lake, f"{directory}/{name}", sink.getvalue())
    lake.filesystem.create_dir(directory, recursive=True)
    remove_stale_temporaries(lake, directory, name)
    return _write_whole(lake, directory, name,
                        lambda temporary: pq.write_table(table, temporary, filesystem=lake.filesystem, compression="zstd"))


def write_streamed(lake: Lake, directory: str, name: str, write: Callable[[pa.NativeFile], object]) -> str:
    """`write(out)` streams a file of any size (e.g. a pq.ParquetWriter on `out`) to
    `directory/name`; returns the path. For large files no reader trusts until a later write
    names them (compaction's merged files, live once a manifest names them: ctlib.lake.manifest).

    Local disk: as `write_file`, under a hidden temporary name, then renamed: whole or not at
    all. Object store: streamed to the final name in a multipart upload (memory: a few parts),
    which completes when `write` returns. A writer killed half way leaves only an incomplete
    upload, which no reader sees. When `write` raises, pyarrow (which cannot abort an upload)
    completes it with what was written, so the object is deleted again before the error is
    raised: for that instant a truncated file exists under the name, harmless for a file
    no manifest names (and a retry rewrites it whole)."""
    if not lake.on_object_store:
        lake.filesystem.create_dir(directory, recursive=True)
        remove_stale_temporaries(lake, directory, name)

        def to_temporary(temporary: str) -> None:
            with lake.filesystem.open_output_stream(temporary) as out:
                write(out)

        return _write_whole(lake, directory, name, to_temporary)
    final = f"{directory}/{name}"
    try:
        with lake.filesystem.open_output_stream(final) as out:
            write(out)
    except BaseException:
        try:
            lake.filesystem.delete_file(final)
        except OSError:
            pass
        raise
    return final


def _put(lake: Lake, path: str, body: pa.Buffer | bytes) -> str:
    """`body` as the object at `path`, in one write: all of it was made before the upload
    starts, so a failure while making it sends nothing, and the upload completes whole or
    fails (then the object, if it existed, is unchanged)."""
    with lake.filesystem.open_output_stream(path) as out:
        out.write(body)
    return path


def _write_whole(lake: Lake, directory: str, name: str, write: Callable[[str], object]) -> str:
    """`write(path)` of `directory/name`, seen whole or not at all. On a local disk: under a
    hidden temporary name of this writer, then renamed (the temporary is removed when anything
    fails). On an object store `write` writes the final name directly: a rename there is a
    copy and a delete; `write` must send one whole object (see `_put`)."""
    final = f"{directory}/{name}"
    if lake.on_object_store:
        write(final)
        return final
    temporary = f"{directory}/.{name}.{_HOST}-{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        write(temporary)
        lake.filesystem.move(temporary, final)
    except BaseException:
        try:
            lake.filesystem.delete_file(temporary)
        except OSError:
            pass
        raise
    return final


def write_incident(lake: Lake, row: dict) -> str:
    """One incident row (INCIDENTS_SCHEMA) as its own file; returns its path."""
    detected = row["timestamp"]
    return write_file(
        lake,
        layout.partition_dir(lake.root, layout.INCIDENTS, row["log_slug"], detected.date()),
        layout.incident_file_name(detected, row["kind"]),
        pa.Table.from_pylist([row], schema=layout.INCIDENTS_SCHEMA),
    )


def write_json(lake: Lake, path: str, obj: dict) -> str:
    """`obj` as JSON at `path` (a small record), whole or not at all: one PUT on an object
    store, a temporary and a rename on a local disk."""
    body = json.dumps(obj, sort_keys=True).encode()
    if lake.on_object_store:
        return _put(lake, path, body)
    directory, _, name = path.rpartition("/")
    lake.filesystem.create_dir(directory, recursive=True)

    def write(temporary: str) -> None:
        with lake.filesystem.open_output_stream(temporary) as out:
            out.write(body)

    return _write_whole(lake, directory, name, write)


def read_json(lake: Lake, path: str) -> dict | None:
    """The JSON record at `path`, None when there is none (or it is unreadable)."""
    try:
        with lake.filesystem.open_input_stream(path) as source:
            return json.loads(source.read())
    except (FileNotFoundError, OSError, ValueError):
        return None


def delete_files(lake: Lake, uris: list[str]) -> None:
    """Remove files a failed run wrote (missing ones are fine)."""
    for uri in uris:
        try:
            lake.filesystem.delete_file(lake.path_of(uri))
        except (FileNotFoundError, OSError):
            pass
