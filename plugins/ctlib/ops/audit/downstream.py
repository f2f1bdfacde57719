"""The downstream side of the audit: every certificate below ct_score's watermark was scored,
once.

ct_score keeps a watermark per log (ctlib.downstream.progress: the Variable
`ct_downstream__score__<slug>`, JSON with `next_index`). For a log with one, over
[first_index, next_index) of the score watermark (first_index: the ingest state's):

- every certificate with a name (a DNS name, else a subject CN) has scores rows;
- no (index, name) is in `scores` twice (any index: manual runs' cells too);
- every alerts row is a scores row (alerts are a subset of scores).

The lake is read through its live files (ctlib.lake.manifest) as pyarrow datasets registered
with DuckDB (ctlib.lake.reading): any filesystem, a local disk or an object store, and no
DuckDB extension. Findings name the log, the consumer and the first missing or doubled index.

This module reads the watermark's JSON itself (`score_watermarks`): ops and downstream do
not import each other (tests/unit/test_layers.py), and the audit needs only `next_index`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ctlib.lake import layout
from ctlib.lake.files import Lake
from ctlib.lake.manifest import live_files
from ctlib.lake.reading import register
from ctlib.ops.audit.report import DownstreamAudit

CONSUMER = "score"
PREFIX = f"ct_downstream__{CONSUMER}__"
"""The Variables of ct_score's watermarks (ctlib.downstream.progress.progress_key)."""


class WatermarkError(ValueError):
    """A downstream watermark that cannot be read; the message names its Variable."""


def score_watermark(value: Any, key: str) -> int:
    """`next_index` of a score watermark stored as `value` (a dict or its JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise WatermarkError(f"{key} is not JSON: {err}") from None
    next_index = value.get("next_index") if isinstance(value, dict) else None
    if isinstance(next_index, bool) or not isinstance(next_index, int) or next_index < 0:
        raise WatermarkError(f"{key} has no next_index (a non-negative integer): {value!r:.200}")
    return next_index


def score_watermarks(values: Mapping[str, Any]) -> dict[str, int]:
    """{slug: next_index} of every score watermark among `values` (Variables by key, as
    `airflow variables export` writes them; other keys ignored)."""
    return {key[len(PREFIX):]: score_watermark(value, key) for key, value in values.items()
            if key.startswith(PREFIX) and key[len(PREFIX):]}


def score_watermarks_from_airflow_db(slug: str | None = None) -> dict[str, int]:
    """The score watermarks in Airflow Variables, read with `airflow.models` (the metadata
    database and AIRFLOW_VAR_*; with `slug`, that log's Variable, from secrets backends too)."""
    from ctlib.variables import variables_by_prefix

    values = variables_by_prefix((PREFIX,), [f"{PREFIX}{slug}"] if slug is not None else None)
    return score_watermarks(values)


# The names a certificate is scored under (ctlib.downstream.scoring.names_of): its DNS names,
# else its subject CN; trimmed, lower-cased, without a trailing dot; empty ones dropped.
_NAMED = """
with named as (
  select index, rtrim(lower(trim(unnest(case when len(dns_names) > 0 then dns_names
                                             else [subject_cn] end))), '.') as name
  from certs where index >= ? and index < ?
)
select distinct index from named where name is not null and name <> ''
"""

_CHECK = f"""
with expected as ({_NAMED}),
scored as (select distinct index from scores where index >= ? and index < ?)
select count(*), count(s.index), min(case when s.index is null then e.index end)
from expected e left join scored s using (index)
"""

_DOUBLED = """
select count(*), min(struct_pack(index := index, name := name)) from (
  select index, name from scores group by index, name having count(*) > 1
)
"""

_STRAY = """
select count(*), min(struct_pack(index := index, name := name)) from (
  select index, name from alerts except select index, name from scores
)
"""


def audit_downstream(lake: str | Lake, slug: str, first_index: int, next_index: int, con=None) -> DownstreamAudit:
    """The downstream verdict for `slug` (module docstring) over [first_index, next_index) of
    ct_score's watermark `next_index`."""
    import duckdb

    if con is None:
        with duckdb.connect() as own:
            return audit_downstream(lake, slug, first_index, next_index, own)
    lake = lake if isinstance(lake, Lake) else Lake.open(lake)
    certs = [f for f in live_files(lake, layout.CERTS, slug=slug)
             if f.span is None or (f.span[0] < next_index and first_index < f.span[1])]
    register(con, "certs", lake, layout.CERTS, certs)
    register(con, "scores", lake, layout.SCORES, live_files(lake, layout.SCORES, slug=slug))
    register(con, "alerts", lake, layout.ALERTS, live_files(lake, layout.ALERTS, slug=slug))
    try:
        certificates, scored, first_missing = con.execute(
            _CHECK, [first_index, next_index, first_index, next_index]).fetchall()[0]
        doubled, first_doubled = con.execute(_DOUBLED).fetchall()[0]
        stray, first_stray = con.execute(_STRAY).fetchall()[0]  # all: a pending result blocks unregister
    finally:
        for view in ("certs", "scores", "alerts"):
            con.unregister(view)
    return DownstreamAudit(
        CONSUMER, first_index, next_index, certificates=certificates, scored=scored,
        missing=certificates - scored, first_missing=first_missing, doubled=doubled,
        first_doubled=(first_doubled["index"], first_doubled["name"]) if first_doubled else None,
        stray_alerts=stray, first_stray_alert=(first_stray["index"], first_stray["name"]) if first_stray else None)
