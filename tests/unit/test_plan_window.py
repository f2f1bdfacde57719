"""plan_window against a real local log: the window's index range, the reads it takes, and
how the lake's points and the point cache save reads of the log."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from ctlib.ct.loglist import parse_log_list
from ctlib.ingest.run import commit_backfill, fetch_range, plan_window
from ctlib.ingest.state import MemoryPointStore, MemoryStateStore
from ctlib.lake.files import Lake
from ctlib.settings import Settings
from ctlib.testing.ctlog import LogServer

FAST = {"CT_HTTP_BACKOFF": "0.01", "CT_HTTP_MAX_BACKOFF": "0.05", "CT_HTTP_RETRIES": "3", "CT_BACKFILL_DISORDER": "4"}


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@pytest.mark.parametrize("tiled", [False, True], ids=["rfc6962", "tiled"])
def test_window_range_reads_and_what_saves_them(tiled: bool, tmp_path) -> None:
    endpoint = "data" if tiled else "get-entries"
    with LogServer() as server:
        log = server.add_log(f"Window Plan {'Tiled' if tiled else 'Classic'}", tiled=tiled, replay=True,
                             history=(2.0, 2.0), history_disorder=2.0)
        ctlog = parse_log_list(server.log_list()).by_slug(log.slug)
        stamps = [struct.unpack_from(">Q", log.entry(i)[0], 2)[0] for i in range(log.sth.tree_size)]
        settings = Settings.from_env({**FAST, "CT_LAKE": str(tmp_path / "lake")})
        store, lake, points = MemoryStateStore(), Lake.open(settings.lake), MemoryPointStore()

        def reads() -> int:
            return log.counts().by_endpoint.get(endpoint, 0)

        start, end = stamps[0] + 3_600_000, stamps[0] + 3_660_000  # one minute in the middle
        before = reads()
        plan = plan_window(ctlog, settings, store, lake, points, _at(start), _at(end))
        cold = reads() - before
        inside = [i for i, ts in enumerate(stamps) if start <= ts < end]
        (first, last), = [(plan.ranges[0][0], plan.ranges[-1][1])]
        assert first <= inside[0] and inside[-1] < last, "every entry logged in the window is read"
        assert last - first <= len(inside) + 2 * 2 * 8 * 2 + 2, "and little more: the disorder margin each side"
        assert 0 < cold <= (12 if tiled else 40), cold
        assert plan.keep is not None and plan.keep.below == log.sth.tree_size  # no state: the whole tree

        # The next minute: the cached points from the first search make it cheaper.
        before = reads()
        plan_window(ctlog, settings, store, lake, points, _at(end), _at(end + 60_000))
        warm = reads() - before
        assert warm < cold, (warm, cold)

        # Stored, then planned again with no cache: the lake's own points near the edges do.
        summaries = [fetch_range(ctlog, s, e, settings, lake, None, keep=plan.keep.clipped(s, e)) for s, e in plan.ranges]
        commit_backfill(ctlog, plan, summaries, lake, settings)
        assert sum(s.certs for s in summaries) == len(inside)
        (tmp_path / "lake" / ".backfills").rename(tmp_path / "markers")  # plan it as if new
        before = reads()
        again = plan_window(ctlog, settings, store, lake, MemoryPointStore(), _at(start + 5_000), _at(end - 5_000))
        assert reads() - before <= (2 if tiled else 6), "the lake knows where the window lies"
        assert again.keep is not None and sum(e - s for s, e in again.keep.held) > 0, "and what it holds already"
