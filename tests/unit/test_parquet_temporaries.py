"""Temporary files of the lake writer (ctlib.lake.files.write_file): a writer killed
between creating its hidden temporary and renaming it leaves the temporary behind; the next
writer of the same file removes it, unless its writer may still be alive."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from ctlib.lake import files as parquet
from ctlib.lake.files import Lake, remove_stale_temporaries, write_file
from ctlib.lake.layout import range_file_name

NAME = range_file_name(0, 100)
TABLE = pa.table({"index": pa.array(range(100), pa.int64())})


def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def temporary(directory: Path, name: str = NAME, tag: str | None = None, age: float = 0.0) -> Path:
    """A leftover temporary of `name` (`tag` None: the old `.<name>.<uuid>.tmp` form)."""
    middle = f"{tag}.{uuid.uuid4().hex}" if tag is not None else uuid.uuid4().hex
    path = directory / f".{name}.{middle}.tmp"
    path.write_bytes(b"PAR1 half a file")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture
def lake(tmp_path: Path) -> tuple[Lake, Path]:
    directory = tmp_path / "certs" / "log=x" / "date=2026-01-01"
    directory.mkdir(parents=True)
    return Lake.open(str(tmp_path)), directory


def test_the_writer_names_its_temporary_after_this_host_and_process(lake, monkeypatch):
    lake_, directory = lake
    seen = []
    real = pq.write_table

    def spy(table, where, *args, **kwargs):
        seen.append(os.path.basename(where))
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", spy)
    write_file(lake_, str(directory), NAME, TABLE)
    [name] = seen
    assert name.startswith(f".{NAME}.{parquet._HOST}-{os.getpid()}.") and name.endswith(".tmp"), name
    assert hidden(directory) == [] and (directory / NAME).exists()


def test_a_sigkilled_writer_leaves_its_temporary_and_the_next_write_removes_it(lake):
    lake_, directory = lake
    # A real writer process, SIGKILLed by itself in the middle of pyarrow's write.
    script = f"""
import os, signal, pyarrow as pa, pyarrow.parquet as pq
from ctlib.lake.files import Lake, write_file
real = pq.write_table
def half_then_die(table, where, *args, **kwargs):
    with kwargs["filesystem"].open_output_stream(where) as out:
        out.write(b"PAR1 the first half of a file")
        out.flush()
        os.kill(os.getpid(), signal.SIGKILL)
pq.write_table = half_then_die
write_file(Lake.open({str(lake_.root)!r}), {str(directory)!r}, {NAME!r}, pa.table({{"index": [1]}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    [left] = hidden(directory)
    assert left.startswith(f".{NAME}.{parquet._HOST}-") and not (directory / NAME).exists()

    write_file(lake_, str(directory), NAME, TABLE)  # the retry of the same range
    assert hidden(directory) == [], "the dead writer's temporary is gone"
    assert pq.read_table(directory / NAME).num_rows == 100


def test_only_dead_or_old_temporaries_of_the_same_file_are_removed(lake):
    lake_, directory = lake
    here = parquet._HOST
    dead = temporary(directory, tag=f"{here}-{dead_pid()}")
    alive = temporary(directory, tag=f"{here}-{os.getpid()}")  # a concurrent writer (this process)
    other_host_fresh = temporary(directory, tag=f"otherhost-{dead_pid()}")
    other_host_old = temporary(directory, tag="otherhost-12345", age=parquet.STALE_TEMPORARY_SECONDS + 60)
    unattributed_fresh = temporary(directory)
    unattributed_old = temporary(directory, age=parquet.STALE_TEMPORARY_SECONDS + 60)
    alive_but_old = temporary(directory, tag=f"{here}-{os.getpid()}", age=parquet.STALE_TEMPORARY_SECONDS + 60)
    other_range = temporary(directory, name=range_file_name(100, 200), tag=f"{here}-{dead_pid()}")
    final = directory / NAME
    final.write_bytes(b"an older complete file")

    removed = remove_stale_temporaries(lake_, str(directory), NAME)
    gone = {dead, other_host_old, unattributed_old, alive_but_old}
    assert {Path(p) for p in removed} == gone
    assert not any(p.exists() for p in gone)
    assert all(p.exists() for p in (alive, other_host_fresh, unattributed_fresh, other_range, final))


def test_a_live_writers_temporary_does_not_stop_the_write(lake):
    lake_, directory = lake
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = temporary(directory, tag=f"{parquet._HOST}-{sleeper.pid}")
        write_file(lake_, str(directory), NAME, TABLE)
        assert live.exists(), "a live writer's temporary is left alone"
        assert pq.read_table(directory / NAME).num_rows == 100
    finally:
        sleeper.kill()
        sleeper.wait()
    write_file(lake_, str(directory), NAME, TABLE)
    assert not live.exists(), "removed once its writer is gone"


def test_missing_directory_and_listing_problems_are_not_errors(tmp_path):
    lake_ = Lake.open(str(tmp_path))
    assert remove_stale_temporaries(lake_, str(tmp_path / "nowhere"), NAME) == []


def test_without_a_name_every_dead_writers_temporary_goes_and_compaction_sweeps(tmp_path):
    from ctlib.lake.compaction import compact_log

    lake_ = Lake.open(str(tmp_path))
    today = tmp_path / "certs" / "log=x" / f"date={time.strftime('%Y-%m-%d', time.gmtime())}"
    today.mkdir(parents=True)
    write_file(lake_, str(today), NAME, TABLE)
    other = range_file_name(100, 200)  # never written again: only a sweep can remove it
    dead = temporary(today, other, tag=f"{parquet._HOST}-{dead_pid()}")
    alive = temporary(today, other, tag=f"{parquet._HOST}-{os.getpid()}")
    compact_log(lake_, "x", first_index=0, next_index=100, mmd_seconds=86400)
    assert not dead.exists() and alive.exists()
    assert hidden(today) == [alive.name] and (today / NAME).exists()


def test_on_an_object_store_nothing_is_written_under_a_temporary_name(s3_lake, monkeypatch):
    """S3 has no atomic rename: the file goes to its final name in one upload, so there is no
    temporary to leave behind and nothing for the sweep to do (it does not even list)."""
    lake_ = Lake.open(s3_lake)
    assert lake_.on_object_store
    directory = f"{lake_.root}/certs/log=x/date=2026-01-01"
    written = []
    real = pq.write_table

    def spy(table, where, *args, **kwargs):
        written.append(where)
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", spy)
    assert write_file(lake_, directory, NAME, TABLE) == f"{directory}/{NAME}"
    [where] = written
    assert not isinstance(where, str), "made in memory, not under a temporary path"
    leftover = f"{directory}/.{NAME}.{parquet._HOST}-{dead_pid()}.{uuid.uuid4().hex}.tmp"  # an older writer's
    with lake_.filesystem.open_output_stream(leftover) as out:
        out.write(b"PAR1 half a file")

    def no_listing(*args, **kwargs):
        raise AssertionError("listed")

    selector = pafs.FileSelector
    monkeypatch.setattr(pafs, "FileSelector", no_listing)
    assert remove_stale_temporaries(lake_, directory, NAME) == [] and remove_stale_temporaries(lake_, directory) == []
    monkeypatch.setattr(pafs, "FileSelector", selector)
    names = sorted(i.base_name for i in lake_.filesystem.get_file_info(pafs.FileSelector(directory)))
    assert names == sorted([NAME, os.path.basename(leftover)])
    assert pq.read_table(f"{directory}/{NAME}", filesystem=lake_.filesystem).num_rows == 100
