"""Writing files into the lake (where they go: ctlib.lake.layout).

File names depend only on the log, the range and the day, so a retried task rewrites the
same files (exactly-once in the lake). Each file is written under a hidden temporary name
(`.<name>.<host>-<pid>.<uuid>.tmp`) and renamed into place, so a reader never sees a partial
file. A writer killed between the two (SIGKILL, OOM, power loss) leaves its temporary behind;
the next writer of the same file removes it (see `remove_stale_temporaries`).
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
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ctlib.lake import layout

log = logging.getLogger(__name__)

STALE_TEMPORARY_SECONDS = 3600.0
"""A temporary whose writer cannot be checked (another host, an unattributed name) counts as
dead once it has not changed for this long (writing one file takes seconds)."""

# This host as it appears in temporary names: no '-' or '.', which separate the name's parts.
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:63] or "host"


@dataclass(frozen=True, slots=True)
class Lake:
    filesystem: pafs.FileSystem
    root: str

    @classmethod
    def open(cls, location: str) -> Lake:
        """A local path or any pyarrow filesystem URI (s3://bucket/prefix, gs://..., file://...)."""
        if "://" in location:
            filesystem, root = pafs.FileSystem.from_uri(location)
        else:
            filesystem, root = pafs.LocalFileSystem(), os.path.abspath(location)
        return cls(filesystem, root.rstrip("/"))

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
    Returns the paths removed; a listing or deletion problem is logged, never raised."""
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
    """Write `table` to `directory/name` under a hidden temporary name, then rename it; first
    remove what dead writers of the same file left."""
    lake.filesystem.create_dir(directory, recursive=True)
    remove_stale_temporaries(lake, directory, name)
    return _write_whole(lake, directory, name,
                        lambda temporary: pq.write_table(table, temporary, filesystem=lake.filesystem, compression="zstd"))


def _write_whole(lake: Lake, directory: str, name: str, write: Callable[[str], object]) -> str:
    """`write(temporary)` under a hidden temporary name of this writer, then rename it to
    `directory/name`; the temporary is removed when anything fails."""
    final = f"{directory}/{name}"
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
    """`obj` as JSON at `path` (a small record), whole or not at all."""
    directory, _, name = path.rpartition("/")
    lake.filesystem.create_dir(directory, recursive=True)

    def write(temporary: str) -> None:
        with lake.filesystem.open_output_stream(temporary) as out:
            out.write(json.dumps(obj, sort_keys=True).encode())

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
