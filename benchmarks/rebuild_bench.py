"""Rebuild speed: replay N journal entries (default 100,000) from a real cold site into an empty database.

    .venv/bin/python benchmarks/rebuild_bench.py [--entries 100000] [--segment 5000] [--out benchmarks/results]

Starts its own embedded PostgreSQL and SeaweedFS site on free loopback ports in a temporary directory,
writes N valid, chained `copy` entries (one per document, as the flusher would) as locked segments, then
rebuilds vault_secure.replication_status into an empty database with the production code path
(journal.rebuild, chain verified, full mode with the bucket sweep) and reports entries/s and rows/s.
Writes rebuild.json and prints a markdown row. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vault_pipeline.devstack.buckets import ensure_bucket  # noqa: E402
from vault_pipeline.devstack.ports import SITE_PORT_BLOCK, find_free_port_block  # noqa: E402
from vault_pipeline.devstack.postgres import EmbeddedPostgres  # noqa: E402
from vault_pipeline.devstack.seaweed import SeaweedSite  # noqa: E402
from vault_pipeline.journal.chain import ChainState, seal_entry  # noqa: E402
from vault_pipeline.journal.rebuild import rebuild_tracking_db  # noqa: E402
from vault_pipeline.journal.segments import SegmentStore  # noqa: E402

TYPES = [("payslip", 50), ("invoice", 10), ("contract", 10), ("general", 50)]


def synthetic_copy(i: int, bucket: str, when: dt.datetime) -> dict:
    kind, years = TYPES[i % len(TYPES)]
    sha = hashlib.sha256(str(i).encode()).hexdigest()
    modified = when - dt.timedelta(seconds=i)
    return {
        "action": "copy", "bucket": bucket, "key": f"docs/{i // 1000:04d}/document-{i:08d}.pdf",
        "version_id": f"v{i:012d}", "sha256": sha, "size": 40_000 + i % 5000, "document_type": kind,
        "retain_until": dt.datetime(modified.year + years, 1, 1, tzinfo=dt.UTC).isoformat(),
        "source_etag": f'"{sha[:32]}"', "run_id": "bench", "source_bucket": "documents-hot",
        "source_version_id": None, "source_last_modified": modified.isoformat(), "source_document_type": kind,
        "retention_years": years, "retention_base": "last-modified", "storage_class": "DEEP_ARCHIVE",
        "cold_checksum": sha[:44], "cold_checksum_type": "FULL_OBJECT", "part_size": None,
        "cold_etag": f'"{sha[:32]}"', "previous_version_ids": [], "replication_count": 1, "retry_count": 0,
        "replicated_at": when.isoformat(), "verified_at": when.isoformat(), "adopted": False,
    }


def write_journal(store: SegmentStore, entries: int, per_segment: int) -> float:
    started = time.monotonic()
    state = ChainState()
    now = dt.datetime.now(dt.UTC)
    for first in range(0, entries, per_segment):
        batch = []
        for i in range(first, min(entries, first + per_segment)):
            entry, state = seal_entry({**synthetic_copy(i, store.bucket, now), "time": now.isoformat()}, state)
            batch.append(entry)
        store.put_segment(batch, now)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--segment", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="vault-rebuild-bench-"))
    postgres = EmbeddedPostgres(root / "postgres", find_free_port_block(1))
    site = SeaweedSite("cold", root / "cold", find_free_port_block(SITE_PORT_BLOCK), "bench-admin", "bench-secret")
    postgres.start()
    site.start()
    try:
        client = site.client()
        ensure_bucket(client, "documents-cold", object_lock=True)
        store = SegmentStore(client, "documents-cold")
        write_s = write_journal(store, args.entries, args.segment)
        postgres.create_database("secondary")
        report = rebuild_tracking_db(postgres.dsn("secondary"), store, mode="full", source_bucket="documents-hot")
        assert report.entries_applied == args.entries and report.rows_upserted == args.entries, report
        result = {
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "entries": args.entries, "segment_entries": args.segment, "segments": report.segments,
            "journal_write_s": round(write_s, 2),
            "rebuild_s": round(report.duration_s, 2), "replay_s": round(report.replay_s, 2),
            "entries_per_s": round(report.entries_per_s), "rows_per_s": round(report.rows_per_s),
        }
    finally:
        site.stop()
        postgres.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rebuild.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print("\n| date | machine | entries | rebuild (s) | entries/s | rows/s |\n|---|---|---|---|---|---|")
    print(f"| {result['date']} | {result['machine']} | {result['entries']:,} | {result['rebuild_s']} | "
          f"{result['entries_per_s']:,} | {result['rows_per_s']:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
