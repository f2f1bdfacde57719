"""ct_watch cost: entries per second and CPU seconds per 1,000 entries of
ctlib.downstream.watching.watch_files against a 1,000-item watchlist, over a lake of
realistic certs files, side by side with naive matching (every item tried on every name).

The lake (a temporary directory): a pool of real-shaped entries from the local CT log's
certificate factory (bench/corpus.py: precertificates followed a few entries later by their
final certificates), decoded once as the fetch task does, then written as certs files of
10,000 entries (the ingest's file size), each with its own indexes, timestamps (3,200
entries/s) and issuances (`tbs_sha256`, `cert_sha256` and `leaf_hash` tagged per file, so
every file brings new certificates; precertificate and final certificate stay one issuance).

The watchlist (certspotter's format): mostly `.domain` items and exact names, a few IPs and
networks; 12 registered domains, 3 names and one address are taken from the pool's
certificates (so matches and watch_matches writes happen in every file), the rest occur
nowhere in it.

watch_files is timed as ct_watch runs it: the files in runs of 19 (3,200 entries/s for a
minute), each run a fresh run_id, first over an empty watch_matches table (with --history N:
one already holding N rows of earlier days, as after weeks of running: the exactly-once
check reads the files of the batch's issuances), then again over the same files (a re-run: nothing new, the
cost of the exactly-once check). Wall time (perf_counter) and CPU time of this process
(process_time), pinned to one core. Then the matching alone on a sample: the watchlist's
index (watching.file_matches) and the naive way (each name normalized once, then
`WatchItem.matches_name` of every item in turn), asserted to find the same (row, item, names).

    .venv/bin/python bench/watch_bench.py            # 200,000 entries (20 certs files)
    .venv/bin/python bench/watch_bench.py --full     # 1,000,000 entries
    .venv/bin/python bench/watch_bench.py --history 100000   # watch_matches not empty
    .venv/bin/python bench/watch_bench.py --profile  # + cProfile of the first fresh run

Writes bench/results/watch.json. Target: >= 3,200 entries/s and <= 0.05 CPU s per 1,000
entries for new certificates.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import platform
import pstats
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tldextract

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
from ctlib.decode.entries import ChainCache, LogRef, decode_entries
from ctlib.downstream.watching import file_matches, watch_files
from ctlib.downstream.watchlist import Watchlist, normalize_name, parse_watchlist
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file, write_range

FILE_ENTRIES = 10_000  # entries per certs file, as the ingest writes them
POOL = FILE_ENTRIES  # distinct certificates: each file holds every one once
WINDOW = 1_000  # entries per decode call, as one get-entries window
SHORT, FULL = 200_000, 1_000_000
TARGET_RATE, TARGET_CPU_PER_1000 = 3_200, 0.05
RUN_FILES = round(TARGET_RATE * 60 / FILE_ENTRIES)  # 19: one minute of new entries per run
ITEMS, MATCHING_NAMES, MATCHING_DOMAINS = 1_000, 15, 12  # of the names: .domain items
NAIVE_SAMPLE = 20_000
SLUG, LOG_ID = "bench", "YmVuY2g="
RESULTS = Path(__file__).resolve().parent / "results"
_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)
_SYLLABLES = ("ka", "lor", "ven", "tri", "mo", "zan", "qui", "dor", "pex", "ul", "sa", "nth", "vo", "ryx",
              "bel", "cor", "ix", "fen", "gal", "hul", "jor", "wex", "yth", "op")
_TLDS = ("com", "com", "com", "net", "org", "de", "co.uk", "io", "fr", "eu", "bank", "cloud")
_HOSTS = ("www", "login", "mail", "api", "portal", "secure", "vpn", "pay", "auth", "sso")


def decode_pool(n: int, seed: int) -> pa.Table:
    """The certs rows (CERTS_SCHEMA) of `n` factory entries, decoded in get-entries windows."""
    entries = corpus.load(n, seed, progress=False)
    ref, cache, now = LogRef(LOG_ID, SLUG), ChainCache(), datetime.now(UTC)
    tables = []
    for offset in range(0, n, WINDOW):
        batch = decode_entries(ref, entries[offset:offset + WINDOW], now, chain_cache=cache)
        if batch.errors.num_rows:
            raise SystemExit(f"the pool does not decode: {batch.errors.to_pylist()[0]['reason']}")
        tables.append(batch.certs)
    return pa.concat_tables(tables).combine_chunks()


def certs_file(pool: pa.Table, number: int, t0_ms: int) -> pa.Table:
    """The pool as the `number`th file of the log: its indexes, timestamps at TARGET_RATE and
    issuances of its own (the last 8 hex digits of the hashes are the file's number; the
    first ones, which pick an issuance's watch_matches file, stay as random as real ones)."""
    first = number * pool.num_rows
    ms = [t0_ms + (first + i) * 1000 // TARGET_RATE for i in range(pool.num_rows)]
    tag = f"{number:08x}"
    columns = {
        "index": pa.array(range(first, first + pool.num_rows), pa.int64()),
        "timestamp": pa.array(ms, pa.int64()).cast(pool.schema.field("timestamp").type),
        **{name: pc.utf8_replace_slice(pool[name], 56, 64, tag) for name in ("tbs_sha256", "cert_sha256", "leaf_hash")},
    }
    for name, column in columns.items():
        pool = pool.set_column(pool.schema.get_field_index(name), pool.schema.field(name), column)
    return pool


def build_lake(lake: Lake, pool: pa.Table, files: int) -> list[str]:
    """Write `files` certs files of the pool; their paths, in index order."""
    t0_ms = int(datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0).timestamp() * 1000)
    paths = []
    for number in range(files):
        start = number * pool.num_rows
        written = write_range(lake, layout.CERTS, SLUG, start, start + pool.num_rows,
                              certs_file(pool, number, t0_ms))
        assert len(written) == 1, written  # one day: 1,000,000 entries span 5 minutes
        paths += written
    return [lake.uri(p) for p in paths]


def write_history(lake: Lake, rows: int, seed: int) -> None:
    """`rows` watch_matches rows of other issuances from earlier days, as weeks of ct_watch
    leave them: in the table's 256 files by issuance (layout.watch_bucket)."""
    rng = random.Random(seed)
    day = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    buckets: dict[str, list[dict]] = {}
    for number in range(rows):
        when = day - timedelta(days=1 + number // 5_000)
        tbs = rng.randbytes(32).hex()
        sha = rng.randbytes(32).hex()
        buckets.setdefault(layout.watch_bucket(lake.root, tbs), []).append({
            "watch_item": ".example.com", "tbs_sha256": tbs, "names": ["www.example.com"], "cert_sha256": sha,
            "precert_sha256": None, "entry_type": "x509", "log_slug": SLUG, "index": number, "timestamp": when,
            "issuer": "CN=R1", "not_before": when, "not_after": when + timedelta(days=90),
            "crtsh": f"https://crt.sh/?q={sha}", "run_id": "history", "matched_at": when, "updated_at": when})
    for path, bucket_rows in buckets.items():
        directory, _, name = path.rpartition("/")
        write_file(lake, directory, name, pa.Table.from_pylist(bucket_rows, schema=layout.WATCH_MATCHES_SCHEMA))


def _suffixes(name: str) -> list[str]:
    labels = name.removeprefix("*.").split(".")
    return [".".join(labels[k:]) for k in range(len(labels))]


def _brand(rng: random.Random) -> str:
    label = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randrange(2, 4)))
    return f"{label}-{rng.choice(_SYLLABLES)}{rng.choice(_SYLLABLES)}" if rng.random() < 0.3 else label


def build_watchlist(pool: pa.Table, seed: int) -> tuple[str, list[str]]:
    """A watchlist text of ITEMS items and the items among them that the pool matches:
    MATCHING_NAMES registered domains and names of its certificates and one of its IP
    addresses; the others occur nowhere in the pool."""
    rng = random.Random(seed)
    rows = [[normalize_name(n) for n in names] for names in pool["dns_names"].to_pylist()]
    occurring = {suffix for names in rows for name in names for suffix in _suffixes(name)}
    domain_rows: dict[str, set[int]] = {}
    for row, names in enumerate(rows):
        for name in names:
            domain = _EXTRACT(name.removeprefix("*.")).top_domain_under_public_suffix
            if domain:
                domain_rows.setdefault(domain, set()).add(row)
    # A registered domain of one to three certificates: a brand's own, not a shared platform.
    rare = sorted(d for d, found in domain_rows.items() if len(found) <= 3)
    domains = rng.sample(rare, MATCHING_DOMAINS)
    hosts = {f"www.{d}" for d in rare if d not in domains} & {n for names in rows for n in names}
    matching = [f".{d}" for d in domains] + rng.sample(sorted(hosts), MATCHING_NAMES - MATCHING_DOMAINS)
    addresses = sorted({a for ips in pool["ip_addresses"].to_pylist() for a in ips})
    matching.append(rng.choice(addresses))
    ips = ["10.20.30.40", "10.128.0.0/16", "172.16.5.0/24", "192.168.77.1", "100.64.12.0/22",
           "fd12:3456:789a::/48", "fd00:beef::1"]  # private ranges: the pool's are RFC 5737 / 3849
    others: set[str] = set()
    while len(matching) + len(ips) + len(others) < ITEMS:
        domain = f"{_brand(rng)}.{rng.choice(_TLDS)}"
        if domain in occurring:
            continue
        roll = rng.random()
        others.add(f".{domain}" if roll < 0.7 else f"{rng.choice(_HOSTS)}.{domain}" if roll < 0.95 else domain)
    lines = sorted(others) + ips
    for item in matching:  # spread through the file, as a list grown over time would be
        lines.insert(rng.randrange(len(lines) + 1), item)
    header = ["# ct_watch benchmark watchlist: brands, their hosts, a few addresses", ""]
    return "\n".join(header + lines) + "\n", matching


@dataclass(frozen=True)
class Pass:
    """One pass of watch_files over every file, in runs."""

    runs: int
    entries: int
    seconds: float  # wall
    cpu_seconds: float
    new: int
    updated: int
    certificates: int  # certificate rows that matched
    files_written: int  # watch_matches files created or replaced

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds

    @property
    def cpu_per_1000(self) -> float:
        return 1000 * self.cpu_seconds / self.entries

    @property
    def meets_target(self) -> bool:
        return self.entries_per_s >= TARGET_RATE and self.cpu_per_1000 <= TARGET_CPU_PER_1000

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "seconds": round(self.seconds, 3), "cpu_seconds": round(self.cpu_seconds, 3),
                "entries_per_s": round(self.entries_per_s), "cpu_s_per_1000_entries": round(self.cpu_per_1000, 4),
                "meets_target": self.meets_target}


def _written(lake: Lake) -> dict[str, tuple[int, int]]:
    """{path: (inode, mtime)} of the watch_matches files: a rewrite renames a new file in."""
    found = {}
    for folder, _, names in os.walk(layout.table_dir(lake.root, layout.WATCH_MATCHES)):
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            found[os.path.join(folder, name)] = (stat.st_ino, stat.st_mtime_ns)
    return found


def watch_pass(lake: Lake, runs: list[list[str]], watchlist: Watchlist, label: str,
               profiler: cProfile.Profile | None = None) -> Pass:
    before = _written(lake)
    new = updated = certificates = entries = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for number, files in enumerate(runs):
        if profiler and number == 0:
            profiler.enable()
        result = watch_files(lake, files, watchlist, f"asset_triggered__bench-{label}-{number:04d}")
        if profiler and number == 0:
            profiler.disable()
        new, updated = new + result.new, updated + result.updated
        certificates, entries = certificates + result.certificates, entries + result.entries
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = _written(lake)
    written = sum(1 for path, stamp in after.items() if before.get(path) != stamp)
    return Pass(len(runs), entries, wall, cpu, new, updated, certificates, written)


Found = dict[tuple[str, int, str], list[str]]
"""{(certs file, index, watch item): the row's names (or addresses) the item matched}."""


def index_matches(lake: Lake, files: list[str], watchlist: Watchlist) -> tuple[Found, float]:
    """What the watchlist's index finds in `files` (watching.file_matches), and its CPU seconds."""
    found: Found = {}
    began = time.process_time()
    for uri in files:
        for match in file_matches(lake, uri, watchlist)[0]:
            found[(uri, match["index"], match["watch_item"])] = match["names"]
    return found, time.process_time() - began


def naive_matches(lake: Lake, files: list[str], watchlist: Watchlist) -> tuple[Found, float]:
    """The same, every item tried on every certificate row's names one at a time."""
    found: Found = {}
    began = time.process_time()
    for uri in files:
        table = pq.read_table(lake.path_of(uri), columns=["index", "dns_names", "ip_addresses"],
                              filesystem=lake.filesystem)
        for index, names, ips in zip(table["index"].to_pylist(), table["dns_names"].to_pylist(),
                                     table["ip_addresses"].to_pylist(), strict=True):
            normalized = [normalize_name(n) for n in names]
            for item in watchlist.items:
                if item.kind == "ip":
                    if ips and any(item.matches_ip(a) for a in ips):
                        found[(uri, index, item.text)] = sorted({a for a in ips if item.matches_ip(a)})
                elif any(item.matches_name(n) for n in normalized):
                    found[(uri, index, item.text)] = sorted({n for n, norm in zip(names, normalized, strict=True)
                                                             if item.matches_name(norm)})
    return found, time.process_time() - began


def _disagreement(index: Found, naive: Found) -> str:
    only_index = sorted(set(index) - set(naive))[:3]
    only_naive = sorted(set(naive) - set(index))[:3]
    differ = sorted(k for k in set(index) & set(naive) if index[k] != naive[k])[:3]
    return f"only the index: {only_index}; only naive: {only_naive}; other names: {differ}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help=f"{FULL:,} entries (default {SHORT:,})")
    parser.add_argument("--entries", type=int, default=None, help="entries in the lake (overrides --full)")
    parser.add_argument("--run-files", type=int, default=RUN_FILES, help="certs files per ct_watch run")
    parser.add_argument("--naive-sample", type=int, default=NAIVE_SAMPLE, help="entries matched the naive way")
    parser.add_argument("--history", type=int, default=0, metavar="ROWS",
                        help="watch_matches rows of earlier days already in the table (default: empty)")
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the first fresh run")
    parser.add_argument("--out", type=Path, default=RESULTS / "watch.json")
    args = parser.parse_args()
    n_files = math.ceil((args.entries or (FULL if args.full else SHORT)) / FILE_ENTRIES)
    sample_files = max(1, min(n_files, math.ceil(args.naive_sample / FILE_ENTRIES)))

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as one task
    began = time.monotonic()
    pool = decode_pool(POOL, args.seed)
    text, matching = build_watchlist(pool, args.seed)
    watchlist = parse_watchlist(text, "bench-watchlist")
    assert len(watchlist.items) == ITEMS, len(watchlist.items)
    kinds = {kind: sum(1 for i in watchlist.items if i.kind == kind) for kind in ("domain", "name", "ip")}
    profiler = cProfile.Profile() if args.profile else None

    with tempfile.TemporaryDirectory(prefix="watch-bench-") as root:
        lake = Lake.open(root)
        files = build_lake(lake, pool, n_files)
        write_history(lake, args.history, args.seed)
        built = time.monotonic() - began
        print(f"lake: {n_files} certs files, {n_files * POOL:,} entries (pool of {POOL:,} decoded once), "
              f"{args.history:,} earlier watch_matches rows, watchlist of {ITEMS:,} items ({len(matching)} "
              f"occur in the pool); built in {built:.0f} s", flush=True)
        runs = [files[k:k + args.run_files] for k in range(0, len(files), args.run_files)]
        fresh = watch_pass(lake, runs, watchlist, "fresh", profiler)
        print(f"  new certificates: {fresh.entries_per_s:9,.0f} entries/s, {fresh.cpu_per_1000:.4f} CPU s / 1,000", flush=True)
        rerun = watch_pass(lake, runs, watchlist, "rerun")
        print(f"  re-run:           {rerun.entries_per_s:9,.0f} entries/s, {rerun.cpu_per_1000:.4f} CPU s / 1,000", flush=True)
        if fresh.new == 0 or fresh.files_written == 0:
            raise SystemExit("the fresh pass found nothing: the watchlist's matching items do not match")
        if rerun.new or rerun.updated or rerun.files_written or fresh.updated:
            raise SystemExit(f"the re-run changed watch_matches: {rerun}")

        sample = files[:sample_files]
        by_index, index_cpu = index_matches(lake, sample, watchlist)
        by_naive, naive_cpu = naive_matches(lake, sample, watchlist)
        if by_index != by_naive:
            raise SystemExit(f"index and naive matching disagree on the sample: {_disagreement(by_index, by_naive)}")
        if not by_index:
            raise SystemExit("nothing matched on the sample: the comparison would be empty")

    sample_entries = sample_files * POOL
    index_per_1000, naive_per_1000 = 1000 * index_cpu / sample_entries, 1000 * naive_cpu / sample_entries
    ratio = naive_per_1000 / index_per_1000
    figures = {
        "benchmark": "watch",
        "mode": "full" if n_files * POOL >= FULL else "short",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores_used": 1,
                    "python": platform.python_version(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
        "lake": {"certs_files": n_files, "entries_per_file": POOL, "entries": n_files * POOL,
                 "pool": {"entries": POOL, "seed": args.seed,
                          **{t: int(pc.sum(pc.equal(pool["entry_type"], t)).as_py()) for t in ("x509", "precert")},
                          "dns_names": int(pc.sum(pc.list_value_length(pool["dns_names"])).as_py())},
                 "build_seconds": round(built, 1)},
        "watchlist": {"items": ITEMS, **kinds, "occurring_in_pool": matching},
        "runs": {"files_per_run": args.run_files, "runs": len(runs)},
        "history_watch_matches_rows": args.history,
        "fresh": fresh.to_json(),
        "rerun": rerun.to_json(),
        "naive_sample": {"entries": sample_entries, "matches": len(by_index), "same_matches": True,
                         "index_cpu_s_per_1000_entries": round(index_per_1000, 4),
                         "naive_cpu_s_per_1000_entries": round(naive_per_1000, 4), "naive_over_index": round(ratio, 1)},
        "target": {"entries_per_s": TARGET_RATE, "cpu_s_per_1000_entries": TARGET_CPU_PER_1000},
        "meets_target": fresh.meets_target,
    }
    print(f"\nct_watch over {fresh.entries:,} entries, {len(runs)} runs of <= {args.run_files} files, "
          f"{ITEMS:,}-item watchlist, {args.history:,} earlier watch_matches rows, one core:")
    print(f"  {'':22} {'entries/s':>10} {'CPU s/1,000':>12} {'new rows':>9} {'updated':>8} {'files written':>14}")
    for label, p in (("watch_files, new", fresh), ("watch_files, re-run", rerun)):
        print(f"  {label:22} {p.entries_per_s:10,.0f} {p.cpu_per_1000:12.4f} {p.new:9,} {p.updated:8,} "
              f"{p.files_written:14,}")
    print(f"  matching only, {sample_entries:,} entries ({len(by_index)} matches, the same both ways):")
    print(f"  {'index (file_matches)':22} {'':>10} {index_per_1000:12.4f}")
    print(f"  {'naive (every item)':22} {'':>10} {naive_per_1000:12.4f}   naive / index {ratio:,.1f} x")
    verdict = "holds" if fresh.meets_target else "does NOT hold"
    print(f"  target >= {TARGET_RATE:,} entries/s and <= {TARGET_CPU_PER_1000} CPU s / 1,000 entries: {verdict}"
          f" (re-run: {'holds' if rerun.meets_target else 'does NOT hold'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"  written to {args.out.relative_to(Path.cwd()) if args.out.is_relative_to(Path.cwd()) else args.out}")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(20)
        print(f"\ncProfile of the first fresh run ({len(runs[0])} files, top 20 by cumulative time):")
        print(out.getvalue())


if __name__ == "__main__":
    main()
