"""`python -m ctlib.audit`: the options, where the states come from (a JSON file of Variables,
or Airflow's; both a read-only `MappingStateStore`, and ct_score's watermarks from the same
place), the report and the exit status (0 clean, 1 a gap, a duplicate or a certificate
below ct_score's watermark not scored once, 2 the audit could not be done)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ctlib.ingest.state import MappingStateStore, StateError
from ctlib.kafka import KafkaConfigError
from ctlib.ops.audit.downstream import WatermarkError, score_watermarks, score_watermarks_from_airflow_db
from ctlib.ops.audit.kafka_scan import kafka_config, parse_since
from ctlib.ops.audit.report import format_table
from ctlib.ops.audit.run import load_states, run_audit


def _log_ids_from_log_list(settings) -> dict[str, str]:
    try:
        from ctlib.ct.loglist import LogListError, load_log_list

        return {log.slug: log.log_id for log in load_log_list(settings.log_list_path).logs}
    except (LogListError, OSError):
        return {}


def _state_store(state_json: Path | None, slug: str | None) -> tuple[MappingStateStore, dict[str, int]]:
    """The states to audit and ct_score's watermarks ({slug: next_index}): the JSON file's,
    else Airflow's (metadata database)."""
    if state_json is not None:
        try:
            values = json.loads(state_json.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read {state_json}: {err}") from None
        store = MappingStateStore(values)
        return store, score_watermarks(values) if isinstance(values, dict) else {}
    try:
        return MappingStateStore.from_airflow_db(slug), score_watermarks_from_airflow_db(slug)
    except (StateError, WatermarkError):
        raise
    except Exception as err:  # no metadata database, no Airflow configured
        raise ValueError(f"cannot read the states from Airflow Variables ({type(err).__name__}: {err}); "
                         "run where Airflow is configured, or pass --state-json") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ctlib.audit",
        description="Prove the lake holds every index of [first_index, next_index) exactly once "
        "(certs and errors together), that every certificate below ct_score's watermark was scored once, "
        "and optionally that Kafka has every certificate's key.",
    )
    add = parser.add_argument
    add("--log", metavar="SLUG", help="audit this log only (default: every log with state)")
    add("--state-json", type=Path, metavar="FILE",
        help="read states from this JSON file ({'ct_state__<slug>': state, ...}) instead of Airflow Variables")
    add("--lake", help="lake root (default: CT_LAKE)")
    add("--kafka", action="store_true", help="also check the topic for a key <log_id>:<index> per certificate")
    add("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (default: the Airflow connection CT_KAFKA_CONN_ID)")
    add("--topic", help="topic (default: CT_KAFKA_TOPIC or ct-certs)")
    add("--since", help="Kafka window: an index, a duration back from now (6h, 2d) or an ISO-8601 time")
    add("--kafka-timeout", type=float, default=120.0, help="seconds without a message before giving up (default 120)")
    add("--json", action="store_true", help="print the findings as JSON instead of a table")
    args = parser.parse_args(argv)

    from ctlib.settings import Settings

    try:
        settings = Settings.from_env()
        since = parse_since(args.since)
        if args.since and not args.kafka:
            parser.error("--since applies to --kafka")
        store, scored = _state_store(args.state_json, args.log)
        states = load_states(store, [args.log] if args.log else store.slugs())
        if not states:
            where = str(args.state_json) if args.state_json else "Airflow Variables"
            raise ValueError(f"no stored state {'for ' + repr(args.log) if args.log else 'of any log'} in {where}")
        kafka = kafka_config(args.bootstrap, settings.kafka_conn_id) if args.kafka else None
        audits = run_audit(
            lake=args.lake or settings.lake, states=states, kafka=kafka,
            topic=args.topic or settings.kafka_topic, since=since,
            log_ids=_log_ids_from_log_list(settings) if args.kafka else None,
            kafka_timeout=args.kafka_timeout, scored=scored,
        )
    except (ValueError, ConnectionError, TimeoutError, StateError, KafkaConfigError) as err:
        print(f"audit: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([a.to_json() for a in audits], indent=2))
    else:
        print(format_table(audits))
    if any(a.problem for a in audits):
        return 2
    return 0 if all(a.ok for a in audits) else 1


if __name__ == "__main__":
    sys.exit(main())
