"""Every setting of ct-airflow, read from the environment in this one place.

Each setting is an environment variable with a documented default (README, "Settings").
`Settings.from_env()` is cheap and pure given its mapping, so tests pass their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# plugins/ctlib/settings.py -> the project root (also right for the docker layout,
# where plugins/ and include/ sit side by side under the Airflow home).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LOG_LIST = PROJECT_ROOT / "include" / "log_list.json"
DEFAULT_LAKE = PROJECT_ROOT / "data"
DEFAULT_LOG_LIST_SNAPSHOT = PROJECT_ROOT / ".cache" / "log_list.json"
DEFAULT_LOG_LIST_PUBKEY = PROJECT_ROOT / "include" / "google_log_list_pubkey.pem"
DEFAULT_LOG_LIMITS = PROJECT_ROOT / "include" / "log_limits.yaml"
DEFAULT_WATCHLIST = PROJECT_ROOT / "include" / "watchlist.txt"
USER_AGENT_PRODUCT = "ct-airflow/0.1"
GOOGLE_LOG_LIST_URL = "https://www.gstatic.com/ct/log_list/v3/log_list.json"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} is below its minimum {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise SettingsError(f"{name}={value} must be {'non-negative' if allow_zero else 'positive'}")
    return value


def _contact(env: Mapping[str, str]) -> str:
    raw = env.get("CT_CONTACT", "").strip()
    if not raw:
        return ""
    if any(ch in raw for ch in "()\\") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise SettingsError(f"CT_CONTACT={raw!r}: no parentheses, backslashes or control characters")
    if not ("@" in raw or raw.startswith(("http://", "https://"))) or any(ch.isspace() for ch in raw):
        raise SettingsError(f"CT_CONTACT={raw!r}: give an e-mail address or an http(s) URL")
    return raw


def lake_conn_id(env: Mapping[str, str] | None = None) -> str:
    """CT_LAKE_CONN_ID of `env` (default os.environ), "" when unset: read here for
    Settings and for ctlib.lake.files.Lake.open, which every task calls with CT_LAKE only."""
    env = os.environ if env is None else env
    return env.get("CT_LAKE_CONN_ID", "").strip()


def user_agent(contact: str) -> str:
    """The User-Agent sent to logs when CT_USER_AGENT does not set one: the product and, as
    CT log operators ask of monitors, whom to contact about this reader."""
    return f"{USER_AGENT_PRODUCT} (CT monitor; contact: {contact})" if contact else f"{USER_AGENT_PRODUCT} (CT monitor)"


def _shown(value: Any) -> str:
    """`value` for an error message: its repr, cut short (a Param may hold megabytes)."""
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4,300 digits has no repr
        text = f"<a {type(value).__name__} too long to show>"
    return text if len(text) <= 100 else text[:100] + "..."


def parse_utc(text: str, what: str) -> datetime:
    """An ISO-8601 time as an aware datetime; UTC when `text` names no zone."""
    try:
        if not text.strip().isprintable():  # CPython's fromisoformat ignores a trailing NUL
            raise ValueError(text)
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        # OverflowError: a time near year 1 or 9999 whose zone moves it out of datetime's range.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise SettingsError(f"{what}={_shown(text)}: not an ISO-8601 time such as 2026-12-01T09:00:00Z") from None


def parse_index(value: Any, what: str) -> int:
    """A log index given by a person (a Param): a non-negative integer, or a string of decimal
    digits; SettingsError naming `what` for anything else (a bool, a float, a negative number)."""
    digits = value.strip() if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 30:  # int() refuses 4,300 digits and more
        return int(digits)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise SettingsError(f"{what}={_shown(value)}: not a log index (an integer >= 0)")


def _start_at(raw: str) -> str:
    text = raw.strip()
    if text.lower() in {"", "latest", "beginning"}:
        return text.lower() or "latest"
    if not text[:1].isdigit():
        raise SettingsError(f"CT_START_AT={text!r}: use latest, beginning or an ISO-8601 time (UTC)")
    return parse_utc(text, "CT_START_AT").isoformat()


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


@dataclass(frozen=True)
class Settings:
    log_list: str
    """CT_LOG_LIST: path or http(s) URL of a Google log list v3 JSON."""
    log_list_pinned: bool
    """True when CT_LOG_LIST is set to a local file: the operator pinned the list."""
    log_list_default_url: str
    """CT_LOG_LIST_URL: what the refresh DAG follows when CT_LOG_LIST is not set (Google's list)."""
    log_list_sig_url: str
    """CT_LOG_LIST_SIG_URL: the detached signature; default: the list URL with .json -> .sig."""
    log_list_pubkey: Path
    """CT_LOG_LIST_PUBKEY: PEM RSA key that signs the list (Google's, bundled in include/)."""
    log_list_verify: bool
    """CT_LOG_LIST_VERIFY: refuse a downloaded list whose signature does not verify."""
    log_list_snapshot: Path
    """CT_LOG_LIST_SNAPSHOT: local copy the DAG factory reads when CT_LOG_LIST is a URL."""
    lake: str
    """CT_LAKE: root of the Parquet lake, a local path or a pyarrow filesystem URI."""
    lake_conn_id: str
    """CT_LAKE_CONN_ID: Airflow AWS connection of an `s3://` lake (login: access key id,
    password: secret key, extra `region_name`, `endpoint_url`); empty (default): the standard
    AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL)."""
    start_at: str
    """CT_START_AT, for a log with no stored state: `latest` (its current tree size),
    `beginning` (index 0), or an ISO-8601 time (UTC unless it names a zone, normalized here to
    `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`): the first entry logged at or after it."""
    schedule: str
    """CT_SCHEDULE: cron expression (UTC) of the ingest DAGs of logs that can still grow."""
    schedule_spread: bool
    """CT_SCHEDULE_SPREAD: each log's DAG starts at its own fixed offset after each tick of its
    cron (a hash of its slug, below the cron's shortest gap and at most an hour), so the logs
    do not all start at second :00; false: every DAG starts on the tick."""
    frozen_schedule: str
    """CT_FROZEN_SCHEDULE: cron expression (UTC) of the ingest DAGs of frozen logs (read-only,
    retired, or past their temporal interval and MMD); they also run on their wake-up asset."""
    entries_per_run: int
    """CT_ENTRIES_PER_RUN: most entries one run fetches; a backlog drains over several runs."""
    entries_per_task: int
    """CT_ENTRIES_PER_TASK: entries per mapped fetch task (one Parquet file per range and day)."""
    max_tasks_per_run: int
    """CT_MAX_TASKS_PER_RUN: most mapped fetch tasks in one run."""
    fetch_parallelism: int
    """CT_FETCH_PARALLELISM: fetch tasks of one run that run at the same time."""
    inline_entries: int
    """CT_INLINE_ENTRIES: a run whose backlog fits in one range of at most this many entries is
    fetched and committed by its `ingest` task alone (one task instance instead of three: the
    Airflow overhead of a task, not the entries, dominates a per-minute run); 0 always maps
    fetch tasks. Default: CT_ENTRIES_PER_TASK."""
    http_timeout: float
    """CT_HTTP_TIMEOUT: seconds to wait for a log's answer (read timeout)."""
    http_connect_timeout: float
    """CT_HTTP_CONNECT_TIMEOUT: seconds to wait for a connection."""
    http_retries: int
    """CT_HTTP_RETRIES: attempts per request before the task fails."""
    http_backoff: float
    """CT_HTTP_BACKOFF: first back-off in seconds; doubles per attempt, with jitter."""
    http_max_backoff: float
    """CT_HTTP_MAX_BACKOFF: cap on one back-off or Retry-After wait, in seconds."""
    http_in_flight: int
    """CT_HTTP_IN_FLIGHT: most requests in flight to one log from one fetch task."""
    http_max_body_mb: int
    """CT_HTTP_MAX_BODY_MB: largest answer accepted from a log, in MiB; a larger one fails the
    request (a get-entries answer is a few MB). Bounds memory against a hostile log: a fetch
    task holds at most CT_HTTP_IN_FLIGHT answers being read."""
    get_entries_batch: int
    """CT_GET_ENTRIES_BATCH: entries asked per get-entries request until the log's cap is learnt."""
    user_agent: str
    """CT_USER_AGENT: User-Agent header sent to logs; default `ct-airflow/0.1 (CT monitor;
    contact: <CT_CONTACT>)`."""
    contact: str
    """CT_CONTACT: the operator's e-mail address or URL, put in the User-Agent so log operators
    can reach whoever runs this reader (Sunlight logs throttle anonymous readers)."""
    log_limits: Path | None
    """CT_LOG_LIMITS: the operator's limits file (requests per second, entries per request, by
    operator or log slug), laid over the bundled include/log_limits.yaml; None: bundled only."""
    kafka_conn_id: str
    """CT_KAFKA_CONN_ID: Airflow connection of the Kafka cluster; empty turns publishing off."""
    kafka_topic: str
    """CT_KAFKA_TOPIC: topic of the certificate messages."""
    kafka_alerts_topic: str
    """CT_KAFKA_ALERTS_TOPIC: topic of names scored at or above the alert threshold."""
    kafka_enriched_topic: str
    """CT_KAFKA_ENRICHED_TOPIC: topic of enrichment results."""
    enrich_ttl: float
    """CT_ENRICH_TTL: seconds during which an enriched domain is not asked about again."""
    downstream_max_per_run: int
    """CT_DOWNSTREAM_MAX_PER_RUN: entries of one log a ct_score, ct_watch or ct_enrich run takes
    at most past its watermark (ctlib.downstream.progress); a DAG that is far behind catches
    up over several runs of bounded size."""
    enrich_pool: str
    """CT_ENRICH_POOL: Airflow pool capping concurrent calls to the threat-intel APIs."""
    backfill_pool: str
    """CT_BACKFILL_POOL: Airflow pool every task of a backfill run goes to (scheduled runs
    never), so a long backfill cannot take the executor slots live ingestion needs."""
    backfill_disorder: float
    """CT_BACKFILL_DISORDER: seconds by which an entry's timestamp may be below that of an
    entry before it; a backfill by time reads that much more on each side of its window and
    fails, naming the index, where a log shows more (ctlib.ingest.timeindex)."""
    kafka_flush_timeout: float
    """CT_KAFKA_FLUSH_TIMEOUT: seconds to wait for every delivery report of a range."""
    store_der: bool
    """CT_STORE_DER: also store each certificate's DER in the `certs` table."""
    partial_tile_wait: float
    """CT_PARTIAL_TILE_WAIT: seconds after a run first saw a tiled log's last tile partial
    before a run reads it as a partial tile (full tiles are cheaper; the wait bounds the
    freshness lag). The default 30 lets the next run of a per-minute schedule read it."""
    task_retries: int
    """CT_TASK_RETRIES: Airflow retries of a failed ingest task."""
    task_retry_delay: float
    """CT_TASK_RETRY_DELAY: seconds before the first retry (doubling after)."""
    health_max_lag_seconds: float
    """CT_HEALTH_MAX_LAG_SECONDS: the health check fails when a log's oldest entry not yet
    ingested is older than this."""
    health_stall_seconds: float
    """CT_HEALTH_STALL_SECONDS: the health check fails when a log with a backlog (or an
    unreachable log) has not advanced its watermark for this long."""
    watchlist: Path
    """CT_WATCHLIST: the watchlist file of ct_watch (certspotter's format), re-read every run."""
    notify_webhook_conn: str
    """CT_NOTIFY_WEBHOOK_CONN: HTTP connection of the generic JSON webhook; notified when it exists."""
    notify_slack_conn: str
    """CT_NOTIFY_SLACK_CONN: Slack incoming-webhook connection; notified when it exists."""
    notify_smtp_conn: str
    """CT_NOTIFY_SMTP_CONN: SMTP connection of the e-mail notifications; sent when it exists."""
    notify_email_to: tuple[str, ...]
    """CT_NOTIFY_EMAIL_TO: the e-mail notifications' recipients (comma-separated)."""
    notify_min_score: float
    """CT_NOTIFY_MIN_SCORE: phishing alerts at or above this score are notified (one message
    per ct_score run and channel); alerts below it go to the lake and Kafka only."""
    metrics_open: bool
    """CT_METRICS_OPEN: serve `/ct/metrics` (Prometheus) without authentication, for a scraper
    on a trusted network; false (default): it asks for Airflow's own authentication, like the
    rest of the API (a JWT from `/auth/token` as a bearer token, or the UI's session)."""

    def default_args(self) -> dict:
        """Airflow default_args shared by every ct-airflow DAG: owner and retry policy."""
        from datetime import timedelta

        return {
            "owner": "ct-airflow",
            "retries": self.task_retries,
            "retry_delay": timedelta(seconds=self.task_retry_delay),
            "retry_exponential_backoff": True,
        }

    @property
    def start_at_time(self) -> datetime | None:
        """CT_START_AT as a time, None when it is `latest` or `beginning`."""
        return None if self.start_at in {"latest", "beginning"} else datetime.fromisoformat(self.start_at)

    @property
    def kafka_enabled(self) -> bool:
        return bool(self.kafka_conn_id)

    @property
    def log_list_is_url(self) -> bool:
        return self.log_list.startswith(("http://", "https://"))

    @property
    def log_list_refresh_url(self) -> str | None:
        """Where the refresh DAG downloads the list from; None when a local file is pinned."""
        if self.log_list_is_url:
            return self.log_list
        return None if self.log_list_pinned else self.log_list_default_url

    @property
    def log_list_signature_url(self) -> str | None:
        url = self.log_list_refresh_url
        if url is None:
            return None
        return self.log_list_sig_url or (url[: -len(".json")] + ".sig" if url.endswith(".json") else url + ".sig")

    @property
    def log_list_path(self) -> Path:
        """The local file the DAG factory reads: a pinned file; else the downloaded snapshot,
        or, before the first download, the bundled list."""
        if self.log_list_pinned:
            return Path(self.log_list)
        if self.log_list_is_url or self.log_list_snapshot.exists():
            return self.log_list_snapshot
        return DEFAULT_LOG_LIST

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        start_at = _start_at(env.get("CT_START_AT", ""))
        lake = env.get("CT_LAKE", "").strip() or str(DEFAULT_LAKE)
        contact = _contact(env)
        return cls(
            log_list=env.get("CT_LOG_LIST", "").strip() or str(DEFAULT_LOG_LIST),
            log_list_pinned=bool(env.get("CT_LOG_LIST", "").strip())
            and not env.get("CT_LOG_LIST", "").strip().startswith(("http://", "https://")),
            log_list_default_url=env.get("CT_LOG_LIST_URL", "").strip() or GOOGLE_LOG_LIST_URL,
            log_list_sig_url=env.get("CT_LOG_LIST_SIG_URL", "").strip(),
            log_list_pubkey=Path(env.get("CT_LOG_LIST_PUBKEY", "").strip() or DEFAULT_LOG_LIST_PUBKEY),
            log_list_verify=_bool(env, "CT_LOG_LIST_VERIFY", True),
            log_list_snapshot=Path(
                env.get("CT_LOG_LIST_SNAPSHOT", "").strip() or DEFAULT_LOG_LIST_SNAPSHOT
            ),
            lake=lake,
            lake_conn_id=lake_conn_id(env),
            start_at=start_at,
            schedule=env.get("CT_SCHEDULE", "").strip() or "* * * * *",
            schedule_spread=_bool(env, "CT_SCHEDULE_SPREAD", True),
            frozen_schedule=env.get("CT_FROZEN_SCHEDULE", "").strip() or "0 * * * *",
            entries_per_run=_int(env, "CT_ENTRIES_PER_RUN", 50_000),
            entries_per_task=_int(env, "CT_ENTRIES_PER_TASK", 10_000),
            max_tasks_per_run=_int(env, "CT_MAX_TASKS_PER_RUN", 8),
            fetch_parallelism=_int(env, "CT_FETCH_PARALLELISM", 2),
            inline_entries=_int(env, "CT_INLINE_ENTRIES", _int(env, "CT_ENTRIES_PER_TASK", 10_000), minimum=0),
            http_timeout=_float(env, "CT_HTTP_TIMEOUT", 30.0),
            http_connect_timeout=_float(env, "CT_HTTP_CONNECT_TIMEOUT", 10.0),
            http_retries=_int(env, "CT_HTTP_RETRIES", 8),
            http_backoff=_float(env, "CT_HTTP_BACKOFF", 0.5),
            http_max_backoff=_float(env, "CT_HTTP_MAX_BACKOFF", 60.0),
            http_in_flight=_int(env, "CT_HTTP_IN_FLIGHT", 4),
            http_max_body_mb=_int(env, "CT_HTTP_MAX_BODY_MB", 64),
            get_entries_batch=_int(env, "CT_GET_ENTRIES_BATCH", 1024),
            user_agent=env.get("CT_USER_AGENT", "").strip() or user_agent(contact),
            contact=contact,
            log_limits=Path(env["CT_LOG_LIMITS"].strip()) if env.get("CT_LOG_LIMITS", "").strip() else None,
            kafka_conn_id=env.get("CT_KAFKA_CONN_ID", "kafka_default").strip(),
            kafka_topic=env.get("CT_KAFKA_TOPIC", "").strip() or "ct-certs",
            kafka_alerts_topic=env.get("CT_KAFKA_ALERTS_TOPIC", "").strip() or "ct-alerts",
            kafka_enriched_topic=env.get("CT_KAFKA_ENRICHED_TOPIC", "").strip() or "ct-enriched",
            enrich_ttl=_float(env, "CT_ENRICH_TTL", 7 * 86400.0, allow_zero=True),
            downstream_max_per_run=_int(env, "CT_DOWNSTREAM_MAX_PER_RUN", 200_000),
            enrich_pool=env.get("CT_ENRICH_POOL", "").strip() or "ct_enrichment",
            backfill_pool=env.get("CT_BACKFILL_POOL", "").strip() or "ct_backfill",
            backfill_disorder=_float(env, "CT_BACKFILL_DISORDER", 10.0, allow_zero=True),
            kafka_flush_timeout=_float(env, "CT_KAFKA_FLUSH_TIMEOUT", 60.0),
            store_der=_bool(env, "CT_STORE_DER", False),
            partial_tile_wait=_float(env, "CT_PARTIAL_TILE_WAIT", 30.0, allow_zero=True),
            task_retries=_int(env, "CT_TASK_RETRIES", 3, minimum=0),
            task_retry_delay=_float(env, "CT_TASK_RETRY_DELAY", 20.0),
            health_max_lag_seconds=_float(env, "CT_HEALTH_MAX_LAG_SECONDS", 900.0),
            health_stall_seconds=_float(env, "CT_HEALTH_STALL_SECONDS", 1800.0),
            watchlist=Path(env.get("CT_WATCHLIST", "").strip() or DEFAULT_WATCHLIST),
            notify_webhook_conn=env.get("CT_NOTIFY_WEBHOOK_CONN", "").strip() or "ct_webhook",
            notify_slack_conn=env.get("CT_NOTIFY_SLACK_CONN", "").strip() or "ct_slack",
            notify_smtp_conn=env.get("CT_NOTIFY_SMTP_CONN", "").strip() or "ct_smtp",
            notify_email_to=tuple(a.strip() for a in env.get("CT_NOTIFY_EMAIL_TO", "").split(",") if a.strip()),
            notify_min_score=_float(env, "CT_NOTIFY_MIN_SCORE", 90.0, allow_zero=True),
            metrics_open=_bool(env, "CT_METRICS_OPEN", False),
        )
