"""CPU per entry of one fetch task's path, `ctlib.ingest.fetch_range`, whole and stage by stage.

Set-up, not timed: the local CT log (`ctlib.testing.ctlog.LogServer`) in a child process, as
a remote log would be (its CPU is not counted), one RFC 6962 log of --entries entries (10,000)
answering at most 256 entries per get-entries after 20 ms; a tansu broker
(`ctlib.localsvc.broker.LocalBroker`) and a producer with the sink's settings
(`SAFE_PRODUCER_CONFIG`: idempotent, acks=all).

Timed, as CPU time of this process with all its threads (`time.process_time`), best of
--repeats:
* `fetch_range` itself over [0, entries), as the fetch task runs it (Parquet into a fresh
  lake, every Kafka delivery checked);
* each stage alone over the same entries: download (HTTP, JSON and base64 together, as the
  client runs them), of it JSON parsing and base64 decoding by themselves, leaf parse
  (MerkleTreeLeaf and extra_data), x509 decode, hashing (leaf, certificate, TBS, chain),
  decode_entries whole (its remainder over the three before is row assembly and the Arrow
  build), Parquet write, Kafka encode (`rows_as_messages`), Kafka produce + flush (`publish`),
  the compact range.
"other" is fetch_range minus the stages it runs (download, decode, Parquet, Kafka, compact
range): table concatenation, logging, the overlap of threads.

    .venv/bin/python bench/fetch_path_bench.py                  # 10,000 entries, best of 3
    .venv/bin/python bench/fetch_path_bench.py --entries 20000 --repeats 5 --profile prof.txt

Writes bench/results/fetch_path.json.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import json
import os
import platform
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from catchup_bench import RemoteLog  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CAP, DELAY = 256, 0.02

# Stages that fetch_range runs (the rest of its CPU is "other"); the sub-stages of download
# and decode are shown indented under them.
TOP = ("download", "decode_entries", "parquet_write", "kafka_encode", "kafka_produce_flush", "compact_range")
SUB = {"download": ("json", "base64"), "decode_entries": ("leaf_parse", "x509_decode", "hashing")}


def best_cpu(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(least CPU seconds of `repeats` calls, the last call's result)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        began = time.process_time()
        result = fn()
        best = min(best, time.process_time() - began)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement; the best counts")
    parser.add_argument("--profile", type=Path, default=None, help="also write a cProfile of fetch_range here")
    parser.add_argument("--out", type=Path, default=RESULTS / "fetch_path.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ct-fetch-path-") as tmp:
        work = Path(tmp)
        remote = RemoteLog(args.entries, work / "log_list.json", cap=CAP, delay=DELAY)
        try:
            figures = measure(args, work, remote)
        finally:
            remote.stop()
    print_report(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


def measure(args: argparse.Namespace, work: Path, remote: RemoteLog) -> dict[str, Any]:
    from confluent_kafka import Producer

    from ctlib.ct.client import open_client
    from ctlib.decode.entries import ChainCache, LogRef, decode_entries
    from ctlib.ingest.run import fetch_range
    from ctlib.ct.leaf import parse_extra_data, parse_merkle_tree_leaf
    from ctlib.localsvc.broker import LocalBroker
    from ctlib.ct.loglist import load_log_list
    from ctlib.ct.merkle import CompactRange
    from ctlib.settings import Settings
    from ctlib.kafka import SAFE_PRODUCER_CONFIG, publish, rows_as_messages
    from ctlib.lake.files import Lake, write_range
    from ctlib.decode.x509 import cert_fields_and_tbs_sha256, certificate_serial, tbs_fields

    import pyarrow as pa

    n, repeats = args.entries, args.repeats
    topic = "ct-certs-fetch-path"
    settings = Settings.from_env({**os.environ, "CT_LOG_LIST": str(work / "log_list.json"), "CT_KAFKA_TOPIC": topic,
                                  "CT_LAKE": str(work / "lake"), "CT_ENTRIES_PER_TASK": str(n)})
    ctlog = next(log for log in load_log_list(settings.log_list_path).monitored() if log.slug == remote.slug)
    stages: dict[str, float] = {}
    with LocalBroker(topics=[topic]) as broker:
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, **SAFE_PRODUCER_CONFIG})
        lakes = iter(range(10**6))

        def whole() -> Any:
            return fetch_range(ctlog, 0, n, settings, Lake.open(str(work / f"lake-{next(lakes)}")), lambda: producer)

        whole()  # warm-up: imports, connections, the broker's topic metadata
        total, summary = best_cpu(whole, repeats)
        if summary.certs + summary.errors != n or summary.kafka_messages != summary.certs:
            raise SystemExit(f"fetch_range gave {summary}")

        client = open_client(ctlog, settings)
        client.tree_head()

        def download() -> list:
            return list(client.fetch_range(0, n, batch=settings.get_entries_batch, in_flight=settings.http_in_flight))

        stages["download"], windows = best_cpu(download, repeats)
        bodies = [client.session.get(client._url("get-entries"), {"start": w[0].index, "end": w[-1].index})
                  for w in windows]
        client.close()
        stages["json"], parsed = best_cpu(lambda: [json.loads(b) for b in bodies], repeats)
        texts = [(e["leaf_input"], e["extra_data"]) for body in parsed for e in body["entries"]]
        stages["base64"], _ = best_cpu(
            lambda: [(base64.b64decode(a, validate=True), base64.b64decode(b, validate=True)) for a, b in texts], repeats)
        entries = [e for w in windows for e in w]

        def leaf_parse() -> list:
            out = []
            for e in entries:
                leaf = parse_merkle_tree_leaf(e.leaf_input)
                out.append((leaf, parse_extra_data(leaf.entry_type, e.extra_data)))
            return out

        stages["leaf_parse"], leaves = best_cpu(leaf_parse, repeats)
        cache = ChainCache()

        def x509_decode() -> None:
            for leaf, extra in leaves:
                if leaf.entry_type == "x509":
                    cert_fields_and_tbs_sha256(leaf.cert_der)  # (its TBS hash counts here)
                else:
                    tbs_fields(leaf.tbs_der)
                    cache.issuer_info(extra.chain[0])
                    certificate_serial(extra.pre_certificate)

        stages["x509_decode"], _ = best_cpu(x509_decode, repeats)
        sha256 = hashlib.sha256

        def hashing() -> None:
            chain_cache = ChainCache()
            for e, (leaf, extra) in zip(entries, leaves, strict=True):
                sha256(b"\x00" + e.leaf_input).digest()
                sha256(leaf.cert_der if leaf.entry_type == "x509" else extra.pre_certificate).hexdigest()
                if leaf.entry_type == "precert":
                    sha256(leaf.tbs_der).hexdigest()
                [chain_cache.sha256_hex(c) for c in extra.chain]

        stages["hashing"], _ = best_cpu(hashing, repeats)
        ref, now = LogRef(ctlog.log_id, ctlog.slug), datetime.now(UTC)

        def decode_all() -> tuple[pa.Table, pa.Table, list[bytes]]:
            chain_cache = ChainCache()
            batches = [decode_entries(ref, w, now, chain_cache=chain_cache) for w in windows]
            return (pa.concat_tables([b.certs for b in batches]), pa.concat_tables([b.errors for b in batches]),
                    [h for b in batches for h in b.leaf_hashes])

        stages["decode_entries"], (certs, errors, leaf_hashes) = best_cpu(decode_all, repeats)

        def parquet() -> None:
            lake = Lake.open(str(work / f"lake-{next(lakes)}"))
            write_range(lake, "certs", ctlog.slug, 0, n, certs)
            write_range(lake, "errors", ctlog.slug, 0, n, errors)

        stages["parquet_write"], _ = best_cpu(parquet, repeats)
        stages["kafka_encode"], messages = best_cpu(lambda: rows_as_messages(certs), repeats)
        stages["kafka_produce_flush"], _ = best_cpu(
            lambda: publish(producer, topic, messages, timeout=60, what="bench"), repeats)
        stages["compact_range"], _ = best_cpu(lambda: CompactRange.from_leaf_hashes(0, leaf_hashes), repeats)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            whole()
            profiler.disable()
            with args.profile.open("w") as out:
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
        producer.flush(10)
    us = {k: round(v / n * 1e6, 1) for k, v in stages.items()}
    us["decode_rest"] = round(us["decode_entries"] - us["leaf_parse"] - us["x509_decode"] - us["hashing"], 1)
    us["download_rest"] = round(us["download"] - us["json"] - us["base64"], 1)
    us["fetch_range"] = round(total / n * 1e6, 1)
    us["other"] = round(us["fetch_range"] - sum(us[k] for k in TOP), 1)
    return {
        "benchmark": "fetch_path",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "entries": n, "certs": summary.certs, "errors": summary.errors, "cap": CAP, "delay_s": DELAY,
        "repeats": repeats,
        "cpu_us_per_entry": us,
    }


def print_report(figures: dict[str, Any]) -> None:
    us = figures["cpu_us_per_entry"]
    print(f"\nfetch_range over {figures['entries']:,} entries ({figures['certs']:,} certs, {figures['errors']} errors), "
          f"CPU us per entry, best of {figures['repeats']}:")
    for stage in TOP:
        print(f"  {stage:<24}{us[stage]:8.1f}")
        for sub in (*SUB.get(stage, ()), f"{stage.split('_')[0]}_rest") if stage in SUB else ():
            print(f"    {sub:<22}{us[sub]:8.1f}")
    print(f"  {'other':<24}{us['other']:8.1f}")
    print(f"  {'fetch_range (total)':<24}{us['fetch_range']:8.1f}   "
          f"= {us['fetch_range'] * 1000 / 1e6:.3f} CPU s per 1,000 entries")


if __name__ == "__main__":
    main()
