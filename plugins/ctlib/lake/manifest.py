"""Which files of the lake hold its rows: the compaction manifest, and the live files that
every reader reads so that it sees each entry once, on a local disk or an object store.

A day partition of `certs` or `errors` (`<table>/log=<slug>/date=<day>/`) holds:

* range files, `<start>-<end>.parquet` (or a backfill window's `<start>-<end>.w<ms>-<ms>.parquet`),
  written whole by ingest and backfills under names fixed by what they hold (ctlib.lake.layout);
* once compacted, a merged file `<first>-<end>.c<generation>.parquet` and the partition's
  manifest `_manifest.json`:

      {"format": 1, "generation": 3, "file": "<the merged file>", "rows": 81234,
       "first": 1200, "end": 98000, "absorbed": ["<range file>", ...], "written_at": "..."}

  `absorbed` names every range file whose rows the merged file holds (transitively, over
  the generations).

**The rule** (`live_names`): a partition's live files are the manifest's merged file and every
range file the manifest has not absorbed. A merged file the manifest does not name is never
live: it is a compaction that stopped before writing its manifest, or an older generation
waiting to be deleted. Without a manifest every range file is live. Every other table's
files are all live. Hidden names (`.`: temporaries) and `_` names are never data.

Why this is exactly once on an object store, where nothing can be renamed atomically: a
compaction writes its merged file under a new generation's name (not live yet), then the
manifest in one PUT (or one rename on a local disk). Before that PUT a reader following the
manifest reads the old files; after it, the merged file; never both and never neither. The
absorbed files are deleted only later (ctlib.lake.compaction), so a reader that listed just
before the PUT still finds every file it chose. A range file written again under an absorbed
name (a retried or repeated backfill of the same cell or window: the same rows) stays
hidden behind the merged file; a new one (a backfill of entries the day did not hold yet) is
live beside it until the next compaction merges it in.

Readers: `live_files` here; ctlib.lake.query builds its DuckDB views on them; the audit, the
downstream DAGs, health and the monitor read them too. Outside ctlib, read the files
`python -m ctlib.query --files <table>` prints (docs/lake.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pyarrow.fs as pafs

from ctlib.lake import layout
from ctlib.lake.files import Lake, read_json, write_json

FORMAT = 1


class ManifestError(RuntimeError):
    """A manifest that cannot be trusted (unreadable, or not one); the message names it."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one compaction of a day partition made live (see the module docstring)."""

    generation: int
    file: str
    """The merged file's name (layout.merged_file_name)."""
    rows: int
    first: int
    end: int
    absorbed: frozenset[str]
    written_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict:
        return {"format": FORMAT, "generation": self.generation, "file": self.file, "rows": self.rows,
                "first": self.first, "end": self.end, "absorbed": sorted(self.absorbed),
                "written_at": self.written_at.isoformat()}

    @classmethod
    def from_json(cls, obj: object, where: str) -> Manifest:
        try:
            if not isinstance(obj, dict) or obj.get("format") != FORMAT:
                raise ValueError(f"not a format {FORMAT} manifest")
            manifest = cls(generation=int(obj["generation"]), file=str(obj["file"]), rows=int(obj["rows"]),
                           first=int(obj["first"]), end=int(obj["end"]),
                           absorbed=frozenset(str(n) for n in obj["absorbed"]),
                           written_at=datetime.fromisoformat(obj["written_at"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ManifestError(f"{where}: {err}") from None
        if layout.parse_merged(manifest.file) is None:
            raise ManifestError(f"{where}: {manifest.file!r} is not a merged file name")
        return manifest


def is_data_name(name: str) -> bool:
    """A Parquet file a reader may read: not hidden (temporaries), not `_` (manifests)."""
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def live_names(names: Iterable[str], manifest: Manifest | None) -> list[str]:
    """The live files among a partition's file `names`, given its manifest (the module's
    rule), sorted. Pure."""
    live = []
    for name in names:
        if not is_data_name(name):
            continue
        if layout.parse_merged(name) is not None:
            if manifest is not None and name == manifest.file:
                live.append(name)
        elif manifest is None or name not in manifest.absorbed:
            live.append(name)
    return sorted(live)


def superseded_names(names: Iterable[str], manifest: Manifest | None) -> list[str]:
    """The data files among `names` that no reader following `manifest` reads: what compaction
    may delete once the manifest has been out long enough. Empty without a manifest. Pure."""
    if manifest is None:
        return []
    live = set(live_names(names, manifest))
    return sorted(n for n in names if is_data_name(n) and n not in live)


def manifest_path(directory: str) -> str:
    return f"{directory}/{layout.MANIFEST}"


def read_manifest(lake: Lake, directory: str) -> Manifest | None:
    """The manifest of the partition at `directory`, None when it has none; ManifestError
    when there is one that cannot be read as one (a reader must not guess then)."""
    path = manifest_path(directory)
    try:
        info = lake.filesystem.get_file_info(path)
    except OSError as err:
        raise ManifestError(f"{path}: {err}") from None
    if info.type == pafs.FileType.NotFound:
        return None
    obj = read_json(lake, path)
    if obj is None:
        raise ManifestError(f"{path}: unreadable")
    return Manifest.from_json(obj, path)


def write_manifest(lake: Lake, directory: str, manifest: Manifest) -> str:
    """Put `manifest` in place whole (one object PUT, or one rename on a local disk)."""
    return write_json(lake, manifest_path(directory), manifest.to_json())


# --------------------------------------------------------------------------- live files


@dataclass(frozen=True, slots=True)
class LiveFile:
    """A file a reader must read, with where it lies in the lake."""

    path: str
    """Path on the lake's filesystem (ctlib.lake.files.Lake)."""
    table: str
    slug: str | None
    """The log of a LOG_TABLES file."""
    day: date | None
    """The day partition, where the table has one."""
    size: int
    mtime: datetime | None

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def span(self) -> tuple[int, int] | None:
        """[start, end) of the entry indexes a range or merged file may hold (from its name)."""
        merged = layout.parse_merged(self.name)
        return merged[:2] if merged else layout.parse_range(self.name)


def _partition_of(table: str, relative: str) -> tuple[str | None, date | None] | None:
    """(slug, day) from a file's directory relative to its table directory; None for a
    directory that is not one of the table's partitions (hidden, misnamed)."""
    parts = [p for p in relative.split("/") if p]
    if table in layout.LOG_TABLES:
        if len(parts) != 2 or not parts[0].startswith("log="):
            return None
        day = layout.parse_day_dir(parts[1])
        return (parts[0][len("log="):], day) if day else None
    if table in layout.DAY_TABLES:
        day = layout.parse_day_dir(parts[0]) if len(parts) == 1 else None
        return (None, day) if day else None
    return (None, None) if not parts else None


def _listing(lake: Lake, base: str) -> dict[str, list[pafs.FileInfo]]:
    """The files under `base` (recursively), by directory."""
    try:
        infos = lake.filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return {}
    by_directory: dict[str, list[pafs.FileInfo]] = {}
    for info in infos:
        if info.type == pafs.FileType.File:
            by_directory.setdefault(info.path.rpartition("/")[0], []).append(info)
    return by_directory


def live_files(lake: Lake, table: str, *, slug: str | None = None,
               days: Iterable[date] | None = None) -> list[LiveFile]:
    """The live files of `table` (the module's rule), of one log with `slug` and of the given
    `days` only with `days` (a LOG_TABLES table needs `slug` for `days`), sorted by path.
    ManifestError when a partition's manifest cannot be read."""
    if table not in layout.SCHEMAS:
        raise ValueError(f"no table {table!r}")
    table_dir = layout.table_dir(lake.root, table)
    if days is not None:
        if table in layout.LOG_TABLES and slug is None:
            raise ValueError("days need a slug in a table partitioned by log")
        bases = [layout.partition_dir(lake.root, table, slug, d) if slug is not None and table in layout.LOG_TABLES
                 else layout.day_dir(lake.root, table, d) for d in sorted(set(days))]
    elif slug is not None and table in layout.LOG_TABLES:
        bases = [layout.log_dir(lake.root, table, slug)]
    else:
        bases = [table_dir]
    found: list[LiveFile] = []
    for base in bases:
        for directory, infos in _listing(lake, base).items():
            found += _live_in(lake, table, table_dir, directory, infos)
    return sorted(found, key=lambda f: f.path)


def _live_in(lake: Lake, table: str, table_dir: str, directory: str, infos: Sequence[pafs.FileInfo]) -> Iterator[LiveFile]:
    partition = _partition_of(table, directory[len(table_dir):]) if directory.startswith(table_dir) else None
    if partition is None:
        return
    by_name, manifest = _with_manifest(lake, directory, {info.base_name: info for info in infos})
    for name in live_names(by_name, manifest):
        info = by_name[name]
        yield LiveFile(path=info.path, table=table, slug=partition[0], day=partition[1], size=info.size or 0,
                       mtime=info.mtime)


def _list_partition(lake: Lake, directory: str) -> dict[str, pafs.FileInfo]:
    try:
        infos = lake.filesystem.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    except FileNotFoundError:
        infos = []
    return {info.base_name: info for info in infos if info.type == pafs.FileType.File}


def _with_manifest(lake: Lake, directory: str,
                   by_name: dict[str, pafs.FileInfo]) -> tuple[dict[str, pafs.FileInfo], Manifest | None]:
    """The partition's files as listed (`by_name`) and its manifest. When the manifest names
    a file the listing lacks, a compaction wrote its merged file and then the manifest
    between the listing and the read: the partition is listed again (the merged file is
    always there before the manifest names it); still missing, ManifestError."""
    manifest = read_manifest(lake, directory) if layout.MANIFEST in by_name else None
    if manifest is not None and manifest.file not in by_name:
        by_name = _list_partition(lake, directory)
        manifest = read_manifest(lake, directory) if layout.MANIFEST in by_name else None
        if manifest is not None and manifest.file not in by_name:
            raise ManifestError(f"{manifest_path(directory)} names {manifest.file}, which is not there")
    return by_name, manifest


def partition_listing(lake: Lake, directory: str) -> tuple[dict[str, pafs.FileInfo], Manifest | None]:
    """Every file of one partition directory by name (hidden ones too) and its manifest, the
    two consistent (`_with_manifest`); ManifestError for a manifest that cannot be trusted."""
    return _with_manifest(lake, directory, _list_partition(lake, directory))

