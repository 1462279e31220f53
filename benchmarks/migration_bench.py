"""Upgrade cost of migration 008 (the specification's column names) on a large tracking table.

    .venv/bin/python benchmarks/migration_bench.py [--rows 1000000] [--out benchmarks/results]

Starts its own embedded PostgreSQL on a free loopback port in a temporary directory, builds the schema of
migrations 001-007, fills replication_status with N replicated rows under the old column names (one per
document, as the pre-rename code wrote them, a few per thousand failed), then times the upgrade to the
latest migration with the production code path (TrackingStore.migrate) and checks that every row is still
there. Writes migration.json and prints a markdown row. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vault_pipeline.devstack.ports import find_free_port_block  # noqa: E402
from vault_pipeline.devstack.postgres import EmbeddedPostgres  # noqa: E402
from vault_pipeline.replication.tracking import TrackingStore  # noqa: E402

OLD_ROWS_SQL = """
INSERT INTO vault_secure.replication_status
    (object_key, source_bucket, destination_bucket, source_etag, file_size, status, retry_count,
     error_message, replicated_at, source_last_modified, partition_day, sha256, document_type,
     retention_years, retain_until, retention_base, storage_class, cold_version_id, cold_etag,
     replication_count, verified_at, journaled)
SELECT format('docs/%%s/%%s.pdf', i %% 1000, i), 'documents-hot', 'documents-cold', md5(i::text), 1000 + i %% 5000,
       CASE WHEN i %% 500 = 0 THEN 'failed' ELSE 'replicated' END, CASE WHEN i %% 500 = 0 THEN 3 ELSE 0 END,
       CASE WHEN i %% 500 = 0 THEN 'boom' END, CASE WHEN i %% 500 = 0 THEN NULL ELSE now() END,
       now() - make_interval(days => i %% 700), (now() - make_interval(days => i %% 700))::date,
       CASE WHEN i %% 500 = 0 THEN NULL ELSE md5(i::text) || md5((i + 1)::text) END, 'payslip', 50,
       now() + interval '50 years', 'last-modified', 'DEEP_ARCHIVE',
       CASE WHEN i %% 500 = 0 THEN NULL ELSE md5(i::text || 'v') END, md5(i::text), 1,
       CASE WHEN i %% 500 = 0 THEN NULL ELSE now() END, true
FROM generate_series(1, %(rows)s) AS i
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vault-migration-bench-"))
    postgres = EmbeddedPostgres(root / "postgres", find_free_port_block(1))
    postgres.start()
    try:
        postgres.create_database("vault")
        with TrackingStore(postgres.dsn("vault"), max_size=2) as store:
            store.migrate(through="007_restore_audit.sql")
            started = time.perf_counter()
            with store.pool.connection() as conn:
                conn.execute(OLD_ROWS_SQL, {"rows": args.rows})
                conn.commit()
                conn.execute("ANALYZE vault_secure.replication_status")
            fill_s = time.perf_counter() - started
            started = time.perf_counter()
            applied = store.migrate()
            migrate_s = time.perf_counter() - started
            with store.pool.connection() as conn:
                rows, failed_with_time = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE status = 'failed' AND failed_at IS NOT NULL)"
                    " FROM vault_secure.replication_status").fetchone()
                size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size("
                                    "'vault_secure.replication_status'))").fetchone()[0]
        assert rows == args.rows and failed_with_time == args.rows // 500, (rows, failed_with_time)
        result = {
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "rows": args.rows, "table_size": size, "fill_s": round(fill_s, 2), "applied": applied,
            "migrate_s": round(migrate_s, 2), "rows_kept": rows,
        }
    finally:
        postgres.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "migration.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print("\n| date | machine | rows | table size | upgrade (s) |\n|---|---|---|---|---|")
    print(f"| {result['date']} | {result['machine']} | {result['rows']:,} | {size} | {result['migrate_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
