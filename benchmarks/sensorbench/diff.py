"""Diffing a large listing against the tracking database with TrackingStore.register, the code the sensor
runs on every page it lists.

The listing is synthesized (keys shaped like the hot bucket's, sorted as ListObjectsV2 returns them, cut
into pages of 1000) before any timing; each phase registers every page in order, one call per page, as
the sensor does:

    a  first registration: every key is new (an empty table)
    b  steady state: the same listing again, every row already known and replicated (every sweep's case)
    c  the same listing with a fraction (1 %) of ETags changed: those rows become pending again

Between a and b every row is marked replicated (as after the copies; with the columns a replicated row
carries, so the table has its real width) and the table vacuumed and analyzed, as autovacuum would have
done long before the next sweep of a real vault. All outside the timing.
"""

import datetime as dt
import hashlib
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg

from sensorbench.keys import KeySpace
from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline.replication.tracking import TrackingStore

SOURCE_BUCKET = "documents-hot"
DESTINATION_BUCKET = "documents-cold"
LISTING_DAYS = 30


def etag(name: str, version: int) -> str:
    return hashlib.md5(f"{name}:{version}".encode(), usedforsecurity=False).hexdigest()


def synthesize(count: int, page_size: int, seed: int, now: dt.datetime) -> list[list[ListedObject]]:
    """`count` listed objects in key order, in pages of `page_size`; LastModified over the last 30 days."""
    space = KeySpace(count, LISTING_DAYS, now.date(), seed=seed)
    keys = sorted((space.document(i)[0], i) for i in range(count))
    objects = [ListedObject(key=key, etag=etag(str(i), 1), size=20_000 + i % 400_000,
                            last_modified=now - dt.timedelta(days=i % LISTING_DAYS, seconds=i % 86_400))
               for key, i in keys]
    return [objects[first:first + page_size] for first in range(0, count, page_size)]


def with_changed_etags(pages: list[list[ListedObject]], fraction: float, seed: int
                       ) -> tuple[list[list[ListedObject]], set[str]]:
    """The same listing with `fraction` of the objects given a new ETag (seeded); the changed keys."""
    draw = random.Random(f"{seed}:changed")
    changed: set[str] = set()
    result = []
    for page in pages:
        new_page = []
        for obj in page:
            if draw.random() < fraction:
                obj = ListedObject(key=obj.key, etag=etag(obj.key, 2), size=obj.size + 1,
                                   last_modified=obj.last_modified + dt.timedelta(seconds=1))
                changed.add(obj.key)
            new_page.append(obj)
        result.append(new_page)
    return result, changed


def register_all(store: TrackingStore, pages: list[list[ListedObject]]) -> dict[str, Any]:
    """Register every page in order, one call per page (timed): seconds, keys/s, per-page latencies."""
    page_s: list[float] = []
    new = changed = 0
    started = time.perf_counter()
    for page in pages:
        page_started = time.perf_counter()
        result = store.register(page, source_bucket=SOURCE_BUCKET, destination_bucket=DESTINATION_BUCKET)
        page_s.append(time.perf_counter() - page_started)
        new += result.new
        changed += result.changed
    seconds = time.perf_counter() - started
    keys = sum(len(p) for p in pages)
    ordered = sorted(page_s)
    return {
        "keys": keys, "pages": len(pages), "seconds": round(seconds, 3), "keys_per_s": round(keys / seconds),
        "page_ms_p50": round(statistics.median(ordered) * 1000, 2),
        "page_ms_p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "page_ms_max": round(ordered[-1] * 1000, 2), "new": new, "changed": changed,
    }


def mark_all_replicated(dsn: str) -> float:
    """Every row replicated, with the columns a verified copy fills in; then VACUUM ANALYZE. Seconds."""
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            UPDATE vault_secure.replication_status SET
                status = 'replicated', sha256 = md5(s3_key) || md5(ovh_etag),
                cold_checksum = md5(s3_key), cold_checksum_type = 'FULL_OBJECT', document_type = 'payslip',
                source_document_type = 'payslip', retention_years = 50,
                aws_object_lock_until = source_last_modified + interval '50 years', retention_base = 'last-modified',
                storage_class = 'DEEP_ARCHIVE', aws_version_id = md5(ovh_etag || 'v'),
                aws_etag = ovh_etag, replication_count = 1, replicated_at = now(), verified_at = now(),
                journaled = true
            """)
        conn.execute("VACUUM (ANALYZE) vault_secure.replication_status")
    return time.monotonic() - started


def table_facts(dsn: str, since: dt.datetime) -> dict[str, int]:
    """Rows by status, and rows updated at or after `since`."""
    with psycopg.connect(dsn) as conn:
        counts = dict(conn.execute(
            "SELECT status, count(*) FROM vault_secure.replication_status GROUP BY status").fetchall())
        touched = conn.execute("SELECT count(*) FROM vault_secure.replication_status WHERE updated_at >= %s",
                               (since,)).fetchone()[0]
    return {"rows": sum(counts.values()), **{f"rows_{k}": int(v) for k, v in counts.items()},
            "rows_updated_in_phase": int(touched)}


def pending_keys(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute(
            "SELECT s3_key FROM vault_secure.replication_status WHERE status = 'pending'")}


def db_now(dsn: str) -> dt.datetime:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def run(dsn: str, *, keys: int, page_size: int, changed_fraction: float, seed: int,
        log: Callable[[str], None]) -> dict[str, Any]:
    """The three phases against the (empty) tracking database `dsn`; results and checks."""
    store = TrackingStore(dsn)
    try:
        store.migrate()
        started = time.monotonic()
        pages = synthesize(keys, page_size, seed, dt.datetime.now(dt.UTC).replace(microsecond=0))
        changed_pages, changed_keys = with_changed_etags(pages, changed_fraction, seed)
        log(f"  synthesized {keys:,} listed objects in {len(pages):,} pages ({time.monotonic() - started:.1f}s, "
            f"not timed); {len(changed_keys):,} with a changed ETag for phase c")
        result: dict[str, Any] = {"keys": keys, "page_size": page_size, "changed_fraction": changed_fraction,
                                  "changed_keys": len(changed_keys)}
        checks: dict[str, bool] = {}

        since = db_now(dsn)
        result["a_first_registration"] = first = register_all(store, pages)
        facts = table_facts(dsn, since)
        checks["a_all_new_and_pending"] = (first["new"] == keys and first["changed"] == 0
                                           and facts.get("rows_pending") == keys == facts["rows"])
        log(f"  a first registration: {first['seconds']:.2f}s ({first['keys_per_s']:,} keys/s)")

        result["setup_replicated_s"] = round(mark_all_replicated(dsn), 1)
        since = db_now(dsn)
        result["b_steady_state"] = steady = register_all(store, pages)
        facts = table_facts(dsn, since)
        checks["b_nothing_new_nothing_touched"] = (steady["new"] == steady["changed"] == 0
                                                   and facts.get("rows_replicated") == keys
                                                   and facts["rows_updated_in_phase"] == 0)
        log(f"  b steady state:       {steady['seconds']:.2f}s ({steady['keys_per_s']:,} keys/s)")

        since = db_now(dsn)
        result["c_changed_etags"] = moved = register_all(store, changed_pages)
        facts = table_facts(dsn, since)
        checks["c_exactly_the_changed_rows_pending"] = (
            moved["new"] == 0 and moved["changed"] == len(changed_keys) == facts.get("rows_pending")
            and facts["rows_updated_in_phase"] == len(changed_keys) and facts["rows"] == keys
            and pending_keys(dsn) == changed_keys)
        log(f"  c {changed_fraction:.0%} changed ETags:    {moved['seconds']:.2f}s ({moved['keys_per_s']:,} keys/s)")
        result["table_after"] = facts
        result["checks"] = checks
        return result
    finally:
        store.close()
