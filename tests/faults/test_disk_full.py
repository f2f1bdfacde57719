"""The lake's disk fills up in the middle of a Parquet write.

A 2 MiB tmpfs is mounted on the lake (root may mount; where mounting is not permitted the
`tmpfs` case is skipped) and filled up to a few KiB; the `emulated` case makes pyarrow's
write fail with ENOSPC after half a file instead. Either way the fetch task fails, no
partial or temporary file is left for a `*.parquet` glob (files are written under a hidden
temporary name and renamed), and the watermark stays. Once space returns, the next run
completes and the audit finds nothing lost and nothing doubled.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from ctlib.testing.ctlog import Faults
from tests.support.airflow import configure, failure_lines, ingest_dag, run_dag, run_until_caught_up, state_of
from tests.support.audit import assert_audit_clean

pytestmark = pytest.mark.integration


def _mount_tmpfs(path: Path, size: str = "2m") -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)
    return done.returncode == 0


def _unmount(path: Path) -> None:
    import gc

    gc.collect()  # drop what still holds a file of the lake open
    done = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}") and os.readlink(f"/proc/self/fd/{fd}").startswith(str(path))]
        print("UMOUNT FAILED", done.stderr, held)
        subprocess.run(["umount", "-l", str(path)], check=False)  # detach it anyway


def _fill(path: Path, leave: int) -> Path:
    """Fill the filesystem of `path` until `leave` bytes are free."""
    filler = path / "filler.bin"
    with open(filler, "wb") as fh:
        while True:
            free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
            if free <= leave:
                break
            try:
                fh.write(b"\0" * min(free - leave, 256 * 1024))
                fh.flush()
            except OSError as err:
                assert err.errno == errno.ENOSPC
                break
    return filler


def _emulate_enospc(monkeypatch) -> None:
    """pyarrow's write of a lake file writes half of it, then fails as a full disk does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    real = pq.write_table

    def half_then_enospc(table, where, *args, **kwargs):
        sink = pa.BufferOutputStream()
        real(table, sink, *args, **{k: v for k, v in kwargs.items() if k != "filesystem"})
        data = sink.getvalue().to_pybytes()
        with kwargs["filesystem"].open_output_stream(where) as out:
            out.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, f"[emulated] No space left on device writing {where}")

    monkeypatch.setattr(pq, "write_table", half_then_enospc)


def _lake_files(lake: Path) -> tuple[set[str], list[str]]:
    everything = [p for p in lake.rglob("*") if p.is_file() and p.name != "filler.bin"]
    parquet = {str(p.relative_to(lake)) for p in lake.rglob("*.parquet")}
    leftovers = [str(p.relative_to(lake)) for p in everything if str(p.relative_to(lake)) not in parquet]
    return parquet, leftovers


@pytest.mark.parametrize("how", ["tmpfs", "emulated"])
def test_disk_full_fails_the_task_leaves_no_partial_file_and_recovers(how, airflow_db, ct_server, tmp_path,
                                                                     monkeypatch, capfd):
    lake_dir = tmp_path / "lake"
    lake_dir.mkdir()
    mounted = False
    if how == "tmpfs":
        mounted = _mount_tmpfs(lake_dir)
        if not mounted:
            pytest.skip("mounting a tmpfs is not permitted here (the emulated case covers ENOSPC)")
    try:
        log = ct_server.add_log(f"Local Fault Disk Full {how}", initial_size=60, faults=Faults(cap=40))
        lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_TASK_RETRIES="0")
        assert lake == lake_dir
        dag = ingest_dag(log.slug)
        run_until_caught_up(dag, capfd, log)
        files_before, _ = _lake_files(lake)
        assert files_before

        log.grow(200)
        log.publish()
        watermark = state_of(log.slug)
        filler = None
        with monkeypatch.context() as patch:
            if mounted:
                filler = _fill(lake, leave=8 * 1024)  # room for the start of a file, not all of it
            else:
                _emulate_enospc(patch)
            state, output = run_dag(dag, capfd)
        assert state == "failed"
        assert "No space left on device" in output, failure_lines(output)
        assert state_of(log.slug) == watermark, "the watermark stays"
        files_after, leftovers = _lake_files(lake)
        assert leftovers == [], f"temporary files left behind: {leftovers}"
        assert files_after == files_before, "no new (partial) file is visible to a *.parquet glob"

        if filler is not None:
            filler.unlink()  # space returns
        run_until_caught_up(dag, capfd, log)
        assert state_of(log.slug)["next_index"] == 260
        assert_audit_clean(lake, log.slug)
    finally:
        if mounted:
            _unmount(lake_dir)
