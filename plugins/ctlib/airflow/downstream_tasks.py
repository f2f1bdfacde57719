"""Task bodies of the downstream DAGs (ct_score, ct_watch, ct_enrich). Imported only when a
task runs.

Each consumer keeps its own watermark per log over the lake (ctlib.downstream.progress):
an asset event only wakes its DAG, it never says what to do. A run plans, for every log of
the log list with an ingest state, the range after the consumer's watermark (or the pending
range of an attempt that did not commit), saves it as pending, reads its rows from the
lake's live files (ctlib.downstream.ranges), does the work, publishes to Kafka and notifies,
and only then commits the watermark. A log with nothing new costs two Variable reads.

A manual run with the Params `log`, `start_index` and `end_index` processes that range,
rounded out to whole cells of ctlib.ingest.run.BACKFILL_CELL, without touching the watermark
(`_manual_plan`): backfilled history below the log's first_index for ct_score (whose files
are named by range: a cell never meets a watermark range), any committed entries for
ct_watch, any alerts for ct_enrich.

A log whose range cannot be read (the lake misses committed entries, a damaged manifest)
fails the task once the other logs are committed; its retry redoes that range.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ctlib.downstream.progress import ENRICH, SCORE, WATCH, Progress, ProgressStore, Work
from ctlib.lake.files import Lake
from ctlib.ops import counters
from ctlib.settings import Settings, parse_index

log = logging.getLogger(__name__)

DEFAULT_MMD = 86400
"""Seconds of MMD assumed for a log the log list no longer names."""


def _publish(settings: Settings, topic: str, messages: Iterable[tuple[bytes, bytes]], what: str) -> int:
    if not settings.kafka_enabled:
        return 0
    from ctlib.kafka import producer_from_connection, publish

    return publish(producer_from_connection(settings.kafka_conn_id), topic, messages,
                   timeout=settings.kafka_flush_timeout, what=what)


# --------------------------------------------------------------------------- planning


@dataclass
class Planned:
    """One range of one log a run processes: `progress` is the watermark with this range
    pending (None: a manual run's cell, which moves no watermark); `since` the day to list
    from (None: every day); `newest_day` is filled in once the range has been read."""

    work: Work
    progress: Progress | None
    since: date | None
    mmd: int
    day_at_end: date | None = None
    """enrich: the score watermark's day, true of every alert below the range's end when the
    range ends at the score watermark."""
    newest_day: date | None = field(default=None)

    @property
    def slug(self) -> str:
        return self.work.slug

    @property
    def manual(self) -> bool:
        return self.progress is None

    def label(self) -> str:
        how = " (manual)" if self.manual else (" (pending range of an attempt that did not commit)"
                                               if self.work.reused else "")
        return f"{self.slug} [{self.work.start}, {self.work.end}){how}"


def _log_mmds(settings: Settings) -> dict[str, int]:
    """{slug: MMD seconds} of every log of the configured list (any state: a retired log's
    committed entries are still processed); none before a list given by URL was downloaded."""
    from ctlib.ct.loglist import load_log_list

    path = settings.log_list_path
    if not path.exists() and settings.log_list_is_url:
        return {}
    return {ctlog.slug: ctlog.mmd for ctlog in load_log_list(path).logs}


def _plan(consumer: str, settings: Settings, progress_store: ProgressStore, params: Mapping[str, Any]) -> list[Planned]:
    """This run's ranges: a manual run's cells when `params` name a log, else each log's
    next range after `consumer`'s watermark (saved as pending before it is returned)."""
    from ctlib.downstream.progress import begun, plan_range
    from ctlib.ingest.state import VariableStateStore

    ingest_store = VariableStateStore()
    mmds = _log_mmds(settings)
    if params.get("log"):
        return _manual_plan(consumer, params, ingest_store, progress_store, mmds)
    planned = []
    for slug in sorted(mmds):
        state = ingest_store.load(slug)
        if state is None:
            continue
        score: Progress | None = None
        if consumer == ENRICH:  # only alerts of committed scoring
            score = progress_store.load(SCORE, slug)
            if score is None:
                continue
        available = score.next_index if score is not None else state.next_index
        progress, work = plan_range(slug, progress_store.load(consumer, slug), first_index=state.first_index,
                                    available=available, cap=settings.downstream_max_per_run)
        if work is None:
            continue
        if not work.reused:
            progress = begun(progress, work)
            progress_store.save(consumer, slug, progress)
        day_at_end = score.day if score is not None and work.end == score.next_index else None
        planned.append(Planned(work, progress, progress.day, mmds[slug], day_at_end=day_at_end))
        log.info("%s: %s of %d entries", consumer, planned[-1].label(), work.size)
    return planned


def _manual_plan(consumer: str, params: Mapping[str, Any], ingest_store: Any, progress_store: ProgressStore,
                 mmds: Mapping[str, int]) -> list[Planned]:
    """A manual run's cells of [start_index, end_index) of `log` (module docstring)."""
    from ctlib.downstream.progress import manual_cells
    from ctlib.ingest.run import BACKFILL_CELL

    slug, start, end = str(params["log"]), params.get("start_index"), params.get("end_index")
    # The slug becomes a Variable key: refuse what no log list gives (ctlib.ct.loglist.slugify)
    # before it reaches the API, and say which Param is wrong.
    if not re.fullmatch(r"[a-z0-9_]{1,100}", slug):
        raise ValueError(f"log={slug[:100]!r}: not a log's slug (lower-case letters, digits and _)")
    if start is None or end is None:
        raise ValueError(f"a manual run of {slug} needs start_index and end_index")
    first, last = parse_index(start, "start_index"), parse_index(end, "end_index")
    state = ingest_store.load(slug)
    if state is None:
        raise ValueError(f"{slug}: no ingest state (ct_state__{slug}): nothing of this log is committed")
    if consumer == SCORE:
        limit, what = state.first_index, "its first_index"
    elif consumer == WATCH:
        limit, what = state.next_index, "its ingest watermark"
    else:
        score = progress_store.load(SCORE, slug)
        limit, what = (score.next_index, "its score watermark") if score else (state.first_index, "its first_index")
    try:
        cells = manual_cells(first, last, limit, BACKFILL_CELL)
    except ValueError as err:
        raise ValueError(f"{slug}: {err} ({what}, {limit})") from None
    log.info("%s: manual run of %s [%s, %s) as %d cell(s) of %d; no watermark is touched", consumer, slug, start,
             end, len(cells), BACKFILL_CELL)
    return [Planned(Work(slug, s, e), None, None, mmds.get(slug, DEFAULT_MMD)) for s, e in cells]


def _commit(consumer: str, progress_store: ProgressStore, planned: Iterable[Planned]) -> dict[str, list[int]]:
    """Move the watermark of every watermark range over it; {slug: [start, end]} committed."""
    from ctlib.downstream.progress import committed

    done = {}
    for p in planned:
        if p.progress is None:
            continue
        newest = p.newest_day if p.day_at_end is None else max(d for d in (p.newest_day, p.day_at_end) if d)
        progress_store.save(consumer, p.slug, committed(p.progress, p.work, newest))
        done[p.slug] = [p.work.start, p.work.end]
    if done:
        log.info("%s: watermarks committed: %s", consumer,
                 ", ".join(f"{slug} -> {end}" for slug, (_, end) in sorted(done.items())))
    return done


def _raise_failures(consumer: str, failures: Mapping[str, str]) -> None:
    if failures:
        raise RuntimeError(f"ct_{consumer}: {len(failures)} log(s) could not be processed (the others are "
                           "committed; a retry redoes these ranges): " + "; ".join(failures.values()))


def _today() -> date:
    return datetime.now(UTC).date()


def _read_errors() -> tuple[type[BaseException], ...]:
    from ctlib.downstream.ranges import RangeError
    from ctlib.lake.manifest import ManifestError

    return RangeError, ManifestError


# --------------------------------------------------------------------------- ct_score


def score_task(params: Mapping[str, Any], *, dag_id: str, run_id: str, try_number: int) -> dict[str, Any]:
    """Score the certificates of each log's next range (module docstring), write scores/ and
    alerts/ (`score_range`), send the alerts to Kafka, notify alerts at or above
    CT_NOTIFY_MIN_SCORE at once (`_notify_now`; `channels` lists those that failed, for their
    notify tasks), then commit. Each distinct (name, issuer) is scored once per run."""
    import pyarrow.compute as pc

    from ctlib.downstream.progress import VariableProgressStore
    from ctlib.downstream.ranges import read_entries
    from ctlib.downstream.score import Scorer
    from ctlib.downstream.scoring import CERT_COLUMNS, DistinctScores, alert_messages, score_range

    settings = Settings.from_env()
    store = VariableProgressStore()
    planned = _plan(SCORE, settings, store, params)
    lake = Lake.open(settings.lake)
    scorer = Scorer()
    distinct = DistinctScores(scorer)
    entries = names = alerts_written = sent = 0
    alert_files: list[str] = []
    notable: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    done: list[Planned] = []
    for p in planned:
        try:
            rows = read_entries(lake, p.slug, p.work.start, p.work.end, columns=[*CERT_COLUMNS, "tbs_sha256"],
                                since=p.since, today=_today(), mmd_seconds=p.mmd, complete=not p.manual)
        except _read_errors() as err:
            log.error("%s: %s", p.label(), err)
            failures[p.slug] = str(err)
            continue
        before = distinct.scored
        scored, alerts = score_range(lake, p.slug, p.work.start, p.work.end, rows.rows, scorer, distinct=distinct)
        sent += _publish(settings, settings.kafka_alerts_topic, alert_messages(alerts), f"alerts of {p.label()}")
        p.newest_day = rows.newest_day
        done.append(p)
        entries += rows.rows.num_rows
        names += scored.names
        alerts_written += scored.alerts
        alert_files += [lake.uri(path) for path in scored.alerts_files]
        top = alerts.filter(pc.greater_equal(alerts.column("score"), settings.notify_min_score))
        if top.num_rows:
            tbs = dict(zip(rows.rows.column("index").to_pylist(), rows.rows.column("tbs_sha256").to_pylist()))
            notable += [{**row, "tbs_sha256": tbs[row["index"]]} for row in top.to_pylist()]
        log.info("%s: %d certificates, %d names scored (%d distinct, %d new to this run), %d alerts", p.label(),
                 rows.rows.num_rows, scored.names, scored.distinct, distinct.scored - before, scored.alerts)
    failed = (_notify_now(settings, lambda: _phishing_notices_of(settings, notable), batched=True,
                          dag_id=dag_id, run_id=run_id, try_number=try_number) if notable else [])
    committed = _commit(SCORE, store, done)
    counters.record_quietly(dag_id, run_id, {counters.ALERTS: alerts_written})
    _raise_failures(SCORE, failures)
    return {
        "ranges": {p.slug: [p.work.start, p.work.end] for p in done if not p.manual},
        "manual": [[p.slug, p.work.start, p.work.end] for p in done if p.manual],
        "committed": committed,
        "entries": entries,
        "names": names,
        "alerts": alerts_written,
        "alert_files": alert_files,
        "kafka_messages": sent,
        "notable_alerts": len(notable),
        "channels": failed,
    }


def _notify_now(settings: Settings, notices: Callable[[], list], *, batched: bool, dag_id: str, run_id: str,
                try_number: int) -> list[str]:
    """Deliver `notices()` on every configured channel from the task that found them (one
    task and one scheduling step fewer than a notify task each); the channels that failed,
    for their own notify tasks to retry, fail visibly and name the channel."""
    from ctlib.downstream.notify import NotificationError, configured_channels, deliver

    channels = configured_channels(settings)
    if not channels:
        return []
    lake, found, failed = Lake.open(settings.lake), notices(), []
    for channel in channels:
        try:
            deliver(lake, channel, found, settings=settings, dag_id=dag_id, run_id=run_id, try_number=try_number,
                    batched=batched)
        except NotificationError as err:
            log.warning("%s; its notify task tries again", err)
            failed.append(channel)
    return failed


CHANNEL_LABEL = "ct_channel"
"""Context key a notify task's map_index_template shows: its channel, not a bare map index."""


def _notify(channel: str, notices: list, *, batched: bool, dag_id: str, run_id: str, try_number: int) -> dict[str, Any]:
    from airflow.sdk import get_current_context

    from ctlib.downstream.notify import deliver

    try:
        get_current_context()[CHANNEL_LABEL] = channel  # type: ignore[literal-required]
    except RuntimeError:  # called outside a running task (tests): no label to show
        pass
    settings = Settings.from_env()
    report = deliver(Lake.open(settings.lake), channel, notices, settings=settings, dag_id=dag_id, run_id=run_id,
                     try_number=try_number, batched=batched)
    return {"channel": channel, "notices": len(notices), "sent": report.sent, "skipped": report.skipped,
            "messages": report.messages}


def _phishing_notices_of(settings: Settings, rows: list[dict[str, Any]]) -> list:
    from ctlib.downstream.notify import phishing_notices

    return phishing_notices(rows, settings.notify_min_score)


def notify_phishing_task(job: dict[str, Any], *, dag_id: str, run_id: str, try_number: int) -> dict[str, Any]:
    """Notify `job["channel"]` (which failed in the score task) of this run's phishing alerts
    (in `job["alert_files"]`) at or above CT_NOTIFY_MIN_SCORE, in one message; an issuance
    already notified (its precertificate's alert) is left out."""
    settings = Settings.from_env()
    rows = _notable_alerts(Lake.open(settings.lake), settings, job["alert_files"])
    return _notify(job["channel"], _phishing_notices_of(settings, rows), batched=True, dag_id=dag_id,
                   run_id=run_id, try_number=try_number)


def _notable_alerts(lake: Lake, settings: Settings, alert_files: list[str]) -> list[dict[str, Any]]:
    """The rows of `alert_files` at or above CT_NOTIFY_MIN_SCORE, each with its certificate's
    tbs_sha256 (the issuance), read from the live certs files of the same log and day."""
    import pyarrow.parquet as pq

    from ctlib.downstream.ranges import read_indexes
    from ctlib.lake import layout

    rows = []
    for uri in alert_files:
        path = lake.path_of(uri)
        alerts = pq.read_table(path, filesystem=lake.filesystem,
                               filters=[("score", ">=", settings.notify_min_score)]).to_pylist()
        if not alerts:
            continue
        day = layout.parse_day_dir(path.rsplit("/", 2)[1])
        certs = read_indexes(lake, layout.CERTS, alerts[0]["log_slug"], sorted({a["index"] for a in alerts}),
                             columns=["tbs_sha256"], days=[day] if day else None)
        tbs = dict(zip(certs.column("index").to_pylist(), certs.column("tbs_sha256").to_pylist()))
        rows += [{**a, "tbs_sha256": tbs[a["index"]]} for a in alerts if a["index"] in tbs]
    return rows


def announce_alerts(summary: dict[str, Any], outlet_event: Any) -> list[dict[str, Any]]:
    """Emit the `ct://alerts` event only when this run wrote alerts (it wakes ct_enrich, which
    reads the committed alerts after its own watermark; else skip, and the notify tasks with
    it); one notification job per channel the score task failed to notify."""
    if not summary["alert_files"]:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("no alert in this run")
    outlet_event.extra = {"alerts": summary["alerts"], "ranges": summary["ranges"]}
    return [{"channel": channel, "alert_files": summary["alert_files"]} for channel in summary["channels"]]


# --------------------------------------------------------------------------- ct_watch


def watch_task(params: Mapping[str, Any], *, dag_id: str, run_id: str, try_number: int) -> list[dict[str, Any]]:
    """Match the certificates of each log's next range (module docstring) against the
    watchlist (CT_WATCHLIST, read anew), keep watch_matches, notify what this run found
    (`_notify_now`), then commit; one job for each channel that failed, for its notify task."""
    from ctlib.downstream.progress import VariableProgressStore
    from ctlib.downstream.ranges import read_entries
    from ctlib.downstream.watching import RANGE_COLUMNS, range_matches, record_matches, rows_of_run
    from ctlib.downstream.watchlist import load_watchlist

    settings = Settings.from_env()
    watchlist = load_watchlist(settings.watchlist)
    store = VariableProgressStore()
    planned = _plan(WATCH, settings, store, params)
    lake = Lake.open(settings.lake)
    matches: list[dict[str, Any]] = []
    entries = 0
    failures: dict[str, str] = {}
    done: list[Planned] = []
    for p in planned:
        try:
            rows = read_entries(lake, p.slug, p.work.start, p.work.end, columns=RANGE_COLUMNS, since=p.since,
                                today=_today(), mmd_seconds=p.mmd, complete=not p.manual)
            found = range_matches(lake, p.slug, rows, watchlist)
        except _read_errors() as err:
            log.error("%s: %s", p.label(), err)
            failures[p.slug] = str(err)
            continue
        p.newest_day = rows.newest_day
        done.append(p)
        matches += found
        entries += rows.rows.num_rows
        log.info("%s: %d certificates, %d matches", p.label(), rows.rows.num_rows, len(found))
    # Rows an earlier run found in a range this run redoes (it failed before notifying them)
    # are notified again here; the delivery record keeps what was already sent from going twice.
    redone = {p.slug: [[p.work.start, p.work.end]] for p in done if p.work.reused}
    result = record_matches(lake, matches, watchlist, run_id, entries=entries, also=redone)
    log.info("watchlist %s: %d items; %s", settings.watchlist, len(watchlist.items), result.to_json())
    jobs: list[dict[str, Any]] = []
    if result.files:
        failed = _notify_now(settings, lambda: _watch_notices(lake, result.files, run_id, redone), batched=False,
                             dag_id=dag_id, run_id=run_id, try_number=try_number)
        jobs = [{"channel": channel, "files": result.files, "redone": redone} for channel in failed]
    _commit(WATCH, store, done)
    # The monitor's count: this run's rows (a retried attempt's too, which `result.new` misses).
    counters.record_quietly(dag_id, run_id, {counters.WATCH_MATCHES: len(rows_of_run(lake, result.files, run_id))})
    _raise_failures(WATCH, failures)
    return jobs


def _watch_notices(lake: Lake, files: list[str], run_id: str, redone: Mapping[str, list[list[int]]]) -> list:
    from ctlib.downstream.notify import watch_notices
    from ctlib.downstream.watching import rows_of_run

    return watch_notices(rows_of_run(lake, files, run_id, also=redone))


def notify_watch_task(job: dict[str, Any], *, dag_id: str, run_id: str, try_number: int) -> dict[str, Any]:
    """Notify `job["channel"]` (which failed in the match task) of the issuances this run
    added to watch_matches (in `job["files"]`), one message each; what the delivery record
    holds is not sent again."""
    lake = Lake.open(Settings.from_env().lake)
    notices = _watch_notices(lake, job["files"], run_id, job.get("redone") or {})
    return _notify(job["channel"], notices, batched=False, dag_id=dag_id, run_id=run_id, try_number=try_number)


# --------------------------------------------------------------------------- ct_enrich


ENRICH_COLUMNS = ["registered_domain", "name", "score", "cert_sha256", "log_slug"]


def enrichment_plan(params: Mapping[str, Any], batch_size: int = 25) -> dict[str, Any]:
    """The alerts of each log's range after ct_enrich's watermark, up to ct_score's (only
    committed alerts), or a manual run's cells: their registered domains not enriched
    within the TTL, in batches (one pooled task each; each domain with its best score and
    evidence), and the ranges for `enrichment_commit` once every batch is done."""
    from ctlib.downstream.enrich import normalize_domain
    from ctlib.downstream.enrich.cache import recently_enriched
    from ctlib.downstream.progress import VariableProgressStore
    from ctlib.downstream.ranges import read_rows
    from ctlib.lake import layout

    settings = Settings.from_env()
    store = VariableProgressStore()
    planned = _plan(ENRICH, settings, store, params)
    lake = Lake.open(settings.lake)
    domains: dict[str, dict[str, Any]] = {}
    alerts = 0
    for p in planned:
        found = read_rows(lake, layout.ALERTS, p.slug, p.work.start, p.work.end, columns=ENRICH_COLUMNS,
                          since=p.since, today=_today(), mmd_seconds=p.mmd)
        p.newest_day = found.newest_day
        alerts += found.rows.num_rows
        for row in found.rows.to_pylist():
            domain = normalize_domain(row["registered_domain"])
            best = domains.setdefault(domain, {"domain": domain, "score": row["score"], "names": [],
                                               "cert_sha256": row["cert_sha256"], "log_slug": row["log_slug"]})
            if row["score"] > best["score"]:
                best.update(score=row["score"], cert_sha256=row["cert_sha256"], log_slug=row["log_slug"])
            if row["name"] not in best["names"] and len(best["names"]) < 20:
                best["names"].append(row["name"])
    fresh = recently_enriched(lake, list(domains), settings.enrich_ttl)
    todo = [domains[d] for d in sorted(domains) if d not in fresh]
    log.info("%d alerts of %d range(s): %d alerted domains; %d enriched within the TTL, %d to enrich",
             alerts, len(planned), len(domains), len(fresh), len(todo))
    commit = []
    for p in planned:
        if p.progress is not None:
            newest = max((d for d in (p.newest_day, p.day_at_end) if d), default=None)
            commit.append({"slug": p.slug, "start": p.work.start, "end": p.work.end, "progress": p.progress.to_json(),
                           "newest_day": newest.isoformat() if newest else None})
    return {"batches": [{"number": i, "domains": todo[i:i + batch_size]} for i in range(0, len(todo), batch_size)],
            "commit": commit}


def enrichment_commit(ranges: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Move ct_enrich's watermarks over the ranges `enrichment_plan` planned, once every
    enrichment batch of the run succeeded (or there was none)."""
    from ctlib.downstream.progress import Progress, VariableProgressStore, progress_key

    store = VariableProgressStore()
    planned = []
    for item in ranges:
        progress = Progress.from_json(item["progress"], progress_key(ENRICH, item["slug"]))
        newest = date.fromisoformat(item["newest_day"]) if item["newest_day"] else None
        planned.append(Planned(Work(item["slug"], item["start"], item["end"]), progress, progress.day, DEFAULT_MMD,
                               newest_day=newest))
    return _commit(ENRICH, store, planned)


def enrich_batch(batch: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Ask PassiveTotal and ThreatStream about each domain of the batch (a provider without
    a connection is skipped), combine the risk, write `enrichment/` and `ct-enriched`."""
    import json
    import re

    from ctlib.downstream.enrich.cache import EnrichmentRecord, write_enrichment
    from ctlib.downstream.enrich.connections import PASSIVETOTAL, THREATSTREAM, credentials_for
    from ctlib.downstream.enrich.passivetotal import PassiveTotalClient
    from ctlib.downstream.enrich.risk import combined_risk
    from ctlib.downstream.enrich.threatstream import ThreatStreamClient
    from ctlib.downstream.score import Scorer

    settings = Settings.from_env()
    threshold = Scorer().threshold
    pt_creds, ts_creds = credentials_for(PASSIVETOTAL), credentials_for(THREATSTREAM)
    pt = PassiveTotalClient(pt_creds) if pt_creds else None
    ts = ThreatStreamClient(ts_creds) if ts_creds else None
    records = []
    for item in batch["domains"]:
        domain = item["domain"]
        pt_result = pt.lookup(domain) if pt else None
        ts_result = ts.lookup(domain) if ts else None
        now = datetime.now(UTC)
        risk, reasons = combined_risk(item["score"], threshold, pt_result, ts_result, now.date())
        records.append(EnrichmentRecord.build(
            domain, enriched_at=now, score=item["score"], risk=risk, risk_reasons=reasons,
            pt=pt_result, ts=ts_result, cert_sha256=item["cert_sha256"], log_slug=item["log_slug"],
            names=item["names"],
        ))
        log.info("%s: risk %.1f (%s); PassiveTotal %s, ThreatStream %s", domain, risk, ", ".join(reasons),
                 pt_result.status if pt_result else "skipped", ts_result.status if ts_result else "skipped")
    # Named by run and batch: a retried task replaces its own file.
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{run_id}-{batch['number']:04d}")
    files = write_enrichment(Lake.open(settings.lake), records, name)
    messages = ((r.domain.encode(), json.dumps(r.row(), default=str, separators=(",", ":")).encode()) for r in records)
    sent = _publish(settings, settings.kafka_enriched_topic, messages, f"enrichment batch {batch['number']}")
    counters.record_quietly("ct_enrich", run_id,  # batches run at once: a counters document each
                            counters.enrichment_counts(s for r in records for s in (r.pt_status, r.ts_status)),
                            shard=batch["number"])
    return {"domains": len(records), "files": files, "kafka_messages": sent,
            "high_risk": sorted(r.domain for r in records if r.risk >= 60)}
