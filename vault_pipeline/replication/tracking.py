"""PostgreSQL manifest: vault_secure.replication_status and audit_logs.

Rows move pending -> in_progress -> replicated | failed. A worker claims rows with
SELECT ... FOR UPDATE SKIP LOCKED and holds them with a lease it keeps renewing; a row whose lease
expired (its worker died) is claimable again. Writes of a finished copy check the lease so that a worker
that lost its row never overwrites the new owner's work.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from vault_pipeline.journal import outbox as journal
from vault_pipeline.journal.entries import copy_fields, hot_delete_fields, retention_fields
from vault_pipeline.replication.evidence import EVIDENCE_DETAIL, evidence_record
from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline.replication.verify import ColdEvidence

MIGRATION_LOCK_ID = 0x7661756C74  # "vault": advisory lock serialising concurrent migrators

# register() in two statements. _DIFF_SQL finds which listed objects are new or have another ETag than
# their row; _UPSERT_SQL writes those only. INSERT ... ON CONFLICT DO UPDATE ... WHERE alone would lock,
# and so write, every conflicting row: every known object on every sweep.
# A listing page is a sorted run of keys, so the rows to compare it with are read as one index range scan
# from its first to its last key (`nearby`), four times cheaper than one index probe per key. That range
# can also hold many rows the listing lacks (objects deleted from the hot site): the scan stops after
# `cap` rows (twice the page), and a range that did not fit falls back to one probe per key (a LATERAL
# subquery with LIMIT 1 on the unique key, which no plan turns into a scan of the table). Only one of the
# two branches runs (a one-time filter). The diff is planned on each call, for the table's current size:
# a plan cached while the table was small would scan it whole.
_DIFF_SQL = """
    WITH listed AS MATERIALIZED (
        SELECT * FROM unnest(%(keys)b::text[], %(etags)b::text[]) WITH ORDINALITY
            AS listed (s3_key, ovh_etag, ordinal)
    ), nearby AS MATERIALIZED (
        SELECT known.s3_key, known.ovh_etag FROM vault_secure.replication_status AS known
        WHERE known.bucket_source = %(src)s
          AND known.s3_key BETWEEN (SELECT min(s3_key) FROM listed) AND (SELECT max(s3_key) FROM listed)
        LIMIT %(cap)s
    )
    SELECT listed.ordinal FROM listed LEFT JOIN nearby ON nearby.s3_key = listed.s3_key
    WHERE (SELECT count(*) FROM nearby) < %(cap)s AND nearby.ovh_etag IS DISTINCT FROM listed.ovh_etag
    UNION ALL
    SELECT listed.ordinal FROM listed LEFT JOIN LATERAL (
        SELECT known.ovh_etag FROM vault_secure.replication_status AS known
        WHERE known.bucket_source = %(src)s AND known.s3_key = listed.s3_key
        LIMIT 1
    ) AS stored ON true
    WHERE (SELECT count(*) FROM nearby) >= %(cap)s AND stored.ovh_etag IS DISTINCT FROM listed.ovh_etag
"""
# The ON CONFLICT clause decides on each row's latest version, so a row written since the diff read it is
# handled as before. Rows in key order: concurrent registrations lock them in the same order.
# partition_day is the UTC day of LastModified, as ListedObject.partition_day.
_UPSERT_SQL = """
    INSERT INTO vault_secure.replication_status AS r
        (s3_key, bucket_source, bucket_dest, ovh_etag, ovh_size,
         source_last_modified, partition_day, status)
    SELECT s3_key, %(src)s, %(dst)s, ovh_etag, ovh_size, source_last_modified,
           (source_last_modified AT TIME ZONE 'UTC')::date, 'pending'
    FROM unnest(%(keys)b::text[], %(etags)b::text[], %(sizes)b::bigint[], %(modified)b::timestamptz[])
        AS listed (s3_key, ovh_etag, ovh_size, source_last_modified)
    ORDER BY s3_key
    ON CONFLICT (bucket_source, s3_key) DO UPDATE SET
        ovh_etag = EXCLUDED.ovh_etag,
        ovh_size = EXCLUDED.ovh_size,
        source_last_modified = EXCLUDED.source_last_modified,
        partition_day = EXCLUDED.partition_day,
        status = CASE WHEN r.status = 'in_progress' THEN r.status ELSE 'pending' END,
        retry_count = 0,
        error_message = NULL,
        hot_deleted_at = NULL,
        updated_at = now()
    WHERE r.ovh_etag IS DISTINCT FROM EXCLUDED.ovh_etag
    RETURNING partition_day, (xmax = 0) AS inserted
"""


class TrackingDatabaseError(RuntimeError):
    """The tracking database cannot be used; the message never contains a password."""


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in parts.items())


@dataclass(frozen=True)
class ClaimedRow:
    """A claimed replication_status row; fields are named after its columns."""

    id: int
    s3_key: str
    ovh_etag: str
    ovh_size: int
    source_last_modified: dt.datetime
    partition_day: dt.date
    retry_count: int
    cold_upload_id: str | None
    aws_version_id: str | None
    reclaimed: bool = False  # its previous worker died holding it (lease expired)


@dataclass(frozen=True)
class ReplicationOutcome:
    """Everything a verified cold copy tells the manifest."""

    source_etag: str
    source_version_id: str | None
    file_size: int
    source_last_modified: dt.datetime
    sha256: str
    cold_checksum: str
    cold_checksum_type: str
    part_size: int | None
    document_type: str
    source_document_type: str | None
    retention_years: int
    retain_until: dt.datetime
    retention_base: str
    storage_class: str
    cold_version_id: str
    cold_etag: str
    adopted: bool = False  # an existing verified cold version was recognised instead of copied again
    notes: tuple[str, ...] = field(default_factory=tuple)
    lock_repaired: str | None = None  # "set"/"extended": verification itself wrote the lock (PutObjectRetention)
    # What the verifying HEAD showed, for this run's audit: kept in the REPLICATION_SUCCESS audit log
    # (evidence.py), not in the row.
    evidence: ColdEvidence | None = field(default=None, compare=False, repr=False)
    # The application's identifiers from the hot object's metadata (valid UUIDs only, else None and a note).
    document_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class RegisterResult:
    new: int
    changed: int
    days: dict[dt.date, int]  # partition day -> rows that became pending


class TrackingStore:
    """Thin data-access layer; one instance per process, thread-safe through its pool."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 16, connect_timeout: float = 15) -> None:
        self.dsn = dsn
        self.pool = ConnectionPool(
            dsn, min_size=min_size, max_size=max_size, open=True, kwargs={"autocommit": False},
            name="vault-tracking",
        )
        try:
            self.pool.wait(timeout=connect_timeout)
        except PoolTimeout:
            self.pool.close()
            raise TrackingDatabaseError(
                f"tracking database {redact_dsn(dsn)} unreachable after {connect_timeout:.0f}s "
                "(check VAULT_DATABASE_URL and that the server runs)") from None

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> TrackingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------------
    def migrate(self, *, through: str | None = None) -> list[str]:
        """Apply the packaged SQL migrations not yet applied, in order, up to and including `through`
        (a file name such as "007_restore_audit.sql"; all by default); safe to call from many processes."""
        applied_now: list[str] = []
        scripts = sorted(
            (p for p in resources.files("vault_pipeline").joinpath("sql").iterdir() if p.name.endswith(".sql")),
            key=lambda p: p.name,
        )
        if through is not None:
            if through not in {p.name for p in scripts}:
                raise ValueError(f"no migration named {through!r}")
            scripts = [p for p in scripts if p.name <= through]
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
            conn.execute("CREATE SCHEMA IF NOT EXISTS vault_secure")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vault_secure.schema_migrations ("
                " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM vault_secure.schema_migrations")}
            for script in scripts:
                if script.name in done:
                    continue
                conn.execute(script.read_text("utf-8"))
                conn.execute("INSERT INTO vault_secure.schema_migrations (version) VALUES (%s)", (script.name,))
                applied_now.append(script.name)
        return applied_now

    # -- discovery ----------------------------------------------------------------------------
    def register(
        self, objects: Iterable[ListedObject], *, source_bucket: str, destination_bucket: str
    ) -> RegisterResult:
        """Bulk diff of listed objects against the manifest: new keys and changed ETags become pending.

        One read-only diff per call (a listing page: keys and ETags sent as binary arrays), then one
        INSERT ... ON CONFLICT of the objects that are new or whose ETag changed, if any (see _DIFF_SQL):
        an unchanged row is read, never locked or written, so a sweep that finds nothing new writes nothing.
        A changed source of a row being copied keeps its in_progress status; the worker sees the new ETag
        when it records its result and leaves the row pending for the new content.
        """
        listed = list({obj.key: obj for obj in objects}.values())  # a key once (the last one listed)
        if not listed:
            return RegisterResult(new=0, changed=0, days={})
        with self.pool.connection() as conn, conn.transaction():
            ordinals = conn.execute(_DIFF_SQL, {
                "keys": [obj.key for obj in listed], "etags": [obj.etag for obj in listed],
                "src": source_bucket, "cap": 2 * len(listed) + 1,
            }, prepare=False).fetchall()
            differing = [listed[ordinal - 1] for (ordinal,) in ordinals]
            rows = conn.execute(_UPSERT_SQL, {
                "keys": [obj.key for obj in differing], "etags": [obj.etag for obj in differing],
                "sizes": [obj.size for obj in differing], "modified": [obj.last_modified for obj in differing],
                "src": source_bucket, "dst": destination_bucket,
            }).fetchall() if differing else []
        days: dict[dt.date, int] = {}
        new = 0
        for day, inserted in rows:
            days[day] = days.get(day, 0) + 1
            new += bool(inserted)
        return RegisterResult(new=new, changed=len(rows) - new, days=days)

    # -- claiming -----------------------------------------------------------------------------
    def db_now(self) -> dt.datetime:
        with self.pool.connection() as conn:
            return conn.execute("SELECT now()").fetchone()[0]

    def claim(
        self,
        *,
        owner: str,
        source_bucket: str,
        first_day: dt.date,
        last_day: dt.date,
        limit: int,
        lease_seconds: float,
        not_attempted_since: dt.datetime,
    ) -> list[ClaimedRow]:
        """Claim up to `limit` rows of the day range that need work and were not tried since the given
        time (so a run never re-claims what it just failed)."""
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                """
                WITH candidates AS (
                    SELECT id, status AS previous_status FROM vault_secure.replication_status
                    WHERE bucket_source = %(src)s AND partition_day BETWEEN %(d0)s AND %(d1)s
                      AND (status IN ('pending', 'failed')
                           OR (status = 'in_progress' AND lease_expires_at < now()))
                      AND (last_attempt_at IS NULL OR last_attempt_at < %(since)s)
                    ORDER BY partition_day, id
                    LIMIT %(limit)s
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE vault_secure.replication_status r SET
                    status = 'in_progress', lease_owner = %(owner)s,
                    lease_expires_at = now() + make_interval(secs => %(lease)s),
                    last_attempt_at = clock_timestamp(), updated_at = now()
                FROM candidates c
                WHERE r.id = c.id
                RETURNING r.id, r.s3_key, r.ovh_etag, r.ovh_size, r.source_last_modified,
                          r.partition_day, r.retry_count, r.cold_upload_id, r.aws_version_id,
                          c.previous_status = 'in_progress'
                """,
                {"owner": owner, "lease": lease_seconds, "src": source_bucket, "d0": first_day,
                 "d1": last_day, "limit": limit, "since": not_attempted_since},
            ).fetchall()
        return [ClaimedRow(*row) for row in rows]

    def renew_leases(self, owner: str, lease_seconds: float) -> int:
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                "UPDATE vault_secure.replication_status SET lease_expires_at = now() + make_interval(secs => %s)"
                " WHERE lease_owner = %s AND status = 'in_progress'",
                (lease_seconds, owner),
            )
            return cur.rowcount

    def release(self, owner: str) -> int:
        """Give back rows still held (a run stopping early) so the next run need not wait for the lease."""
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                "UPDATE vault_secure.replication_status SET status = 'pending', lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = now()"
                " WHERE lease_owner = %s AND status = 'in_progress'",
                (owner,),
            )
            return cur.rowcount

    def record_upload_id(self, row_id: int, owner: str, upload_id: str | None) -> None:
        """Remember an open multipart upload before sending parts, so a crash can be cleaned up."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE vault_secure.replication_status SET cold_upload_id = %s, updated_at = now()"
                " WHERE id = %s AND lease_owner = %s",
                (upload_id, row_id, owner),
            )

    # -- results ------------------------------------------------------------------------------
    def mark_replicated(
        self, row: ClaimedRow, owner: str, outcome: ReplicationOutcome, *, run_id: str | None,
        duration_s: float,
    ) -> str:
        """Record a verified copy. Returns the new status ('replicated', or 'pending' when the source
        changed again while it was being copied, or 'lost' when another worker holds the row now)."""
        return self.mark_replicated_many([(row, outcome, duration_s)], owner, run_id=run_id)[0]

    def mark_replicated_many(
        self, copies: Sequence[tuple[ClaimedRow, ReplicationOutcome, float]], owner: str, *, run_id: str | None,
    ) -> list[str]:
        """Record verified copies in one transaction (rows, audit entries, journal entries); the status of
        each, in order, as mark_replicated. One commit for many copies is what makes small objects fast."""
        with self.pool.connection() as conn, conn.transaction():
            current = {r[0]: r[1:] for r in conn.execute(
                "SELECT id, lease_owner, status, ovh_etag, aws_version_id, previous_cold_version_ids,"
                " bucket_source FROM vault_secure.replication_status WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                ([row.id for row, _, _ in copies],),
            )}
            statuses: list[str] = []
            updates: list[dict[str, Any]] = []
            for row, outcome, _ in copies:
                found = current.get(row.id)
                if found is None or found[0] != owner or found[1] != "in_progress":
                    statuses.append("lost")
                    continue
                _, _, listed_etag, old_version, previous, _ = found
                previous = list(previous or [])
                if old_version and old_version != outcome.cold_version_id and old_version not in previous:
                    previous.append(old_version)
                # The listing may have seen newer content while we copied: keep the row pending for it.
                source_moved = listed_etag not in (row.ovh_etag, outcome.source_etag)
                statuses.append("pending" if source_moved else "replicated")
                updates.append(_replicated_params(row, outcome, statuses[-1], source_moved, previous))
            written: dict[int, dict[str, Any]] = {}
            if updates:
                columns = {name: [u[name] for u in updates] for name in _MARK_REPLICATED_ARRAYS}
                columns["prev"] = [json.dumps(u["prev"]) for u in updates]
                with conn.cursor(row_factory=dict_row) as cur:
                    for written_row in cur.execute(_MARK_REPLICATED_SQL, columns).fetchall():
                        written[written_row["id"]] = written_row
            entries: list[dict[str, Any]] = []
            audits: list[tuple[Any, ...]] = []
            for (row, outcome, duration_s), status in zip(copies, statuses, strict=True):
                if status == "lost":
                    continue
                done = written[row.id]
                # The journal entry commits with the row: a verified copy is journaled exactly once.
                copied = {**done, "ovh_etag": outcome.source_etag, "ovh_size": outcome.file_size,
                          "source_last_modified": outcome.source_last_modified}
                if outcome.lock_repaired:
                    entries.append(retention_fields(copied, run_id=run_id, how=outcome.lock_repaired))
                entries.append(copy_fields(copied, run_id=run_id, adopted=outcome.adopted))
                details = {f.name: _jsonable(getattr(outcome, f.name)) for f in fields(outcome)
                           if f.name != "evidence"}
                details["duration_s"] = round(duration_s, 3)
                details["status_after"] = status
                if outcome.evidence is not None and status == "replicated":  # for this run's checks
                    details[EVIDENCE_DETAIL] = evidence_record(outcome.evidence, outcome.source_etag)
                audits.append((row.s3_key, done["bucket_source"], json.dumps(details)))
            journal.enqueue_many(conn, entries)
            if audits:
                conn.execute(
                    "INSERT INTO vault_secure.audit_logs (event_type, object_key, source_bucket, run_id, metadata)"
                    " SELECT 'REPLICATION_SUCCESS', object_key, source_bucket, %s, metadata::jsonb"
                    " FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY"
                    " AS a (object_key, source_bucket, metadata, n) ORDER BY n",
                    (run_id, [a[0] for a in audits], [a[1] for a in audits], [a[2] for a in audits]))
        return statuses

    def mark_failed(
        self, row: ClaimedRow, owner: str, *, error: str, failed_attempts: int, run_id: str | None,
        source_bucket: str,
    ) -> bool:
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                """
                UPDATE vault_secure.replication_status SET
                    status = 'failed', error_message = %s, retry_count = retry_count + %s, failed_at = now(),
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
                WHERE id = %s AND lease_owner = %s AND status = 'in_progress'
                """,
                (error[:4000], failed_attempts, row.id, owner),
            )
            self._audit(conn, "REPLICATION_FAILURE", row.s3_key, run_id,
                        {"error": error[:4000], "failed_attempts": failed_attempts}, bucket=source_bucket)
            return cur.rowcount == 1

    def _audit(
        self, conn: psycopg.Connection, event: str, key: str, run_id: str | None, details: dict[str, Any], *,
        bucket: str,
    ) -> None:
        conn.execute(
            "INSERT INTO vault_secure.audit_logs (event_type, object_key, source_bucket, run_id, metadata)"
            " VALUES (%s, %s, %s, %s, %s)",
            (event, key, bucket, run_id, json.dumps(details)),
        )

    def record_event(self, event: str, key: str, *, source_bucket: str, details: dict[str, Any],
                     run_id: str | None = None) -> None:
        """One audit log entry outside the copy path (e.g. a document restored by an operator)."""
        with self.pool.connection() as conn, conn.transaction():
            self._audit(conn, event, key, run_id, details, bucket=source_bucket)

    def journal(self, fields: dict[str, Any]) -> None:
        """Queue a journal entry for a cold write that has no row of its own (a report)."""
        with self.pool.connection() as conn, conn.transaction():
            journal.enqueue(conn, fields)

    # -- hot deletion -------------------------------------------------------------------------
    def deletable_rows(
        self, *, source_bucket: str, first_day: dt.date, last_day: dt.date, limit: int = 1000
    ) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                """
                SELECT id, s3_key, ovh_etag, sha256, aws_version_id
                FROM vault_secure.replication_status
                WHERE bucket_source = %s AND partition_day BETWEEN %s AND %s AND status = 'replicated'
                  AND verified_at IS NOT NULL AND hot_deleted_at IS NULL
                ORDER BY id LIMIT %s
                """,
                (source_bucket, first_day, last_day, limit),
            ).fetchall()

    def mark_hot_deleted(self, row_id: int, key: str, source_bucket: str, run_id: str | None,
                         details: dict[str, Any]) -> None:
        with self.pool.connection() as conn, conn.transaction():
            deleted = conn.cursor(row_factory=dict_row).execute(
                "UPDATE vault_secure.replication_status SET hot_deleted_at = now(), updated_at = now()"
                " WHERE id = %s RETURNING *",
                (row_id,),
            ).fetchone()
            if deleted is not None:
                journal.enqueue(conn, hot_delete_fields(deleted, run_id=run_id))
            self._audit(conn, "HOT_DELETED", key, run_id, details, bucket=source_bucket)

    # -- reporting ----------------------------------------------------------------------------
    def status_counts(
        self, *, source_bucket: str, first_day: dt.date | None = None, last_day: dt.date | None = None
    ) -> dict[str, dict[str, int]]:
        where, params = "bucket_source = %s", [source_bucket]
        if first_day is not None and last_day is not None:
            where += " AND partition_day BETWEEN %s AND %s"
            params += [first_day, last_day]
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT status, count(*), COALESCE(sum(ovh_size), 0) FROM vault_secure.replication_status"
                f" WHERE {where} GROUP BY status",
                params,
            ).fetchall()
        return {status: {"objects": int(n), "bytes": int(b)} for status, n, b in rows}

    def days_needing_runs(self, source_bucket: str) -> list[tuple[dt.date, int, dt.datetime]]:
        """Days with rows waiting for a copy (pending, or held by a worker whose lease expired)."""
        with self.pool.connection() as conn:
            return [(day, int(n), latest) for day, n, latest in conn.execute(
                """
                SELECT partition_day, count(*), max(updated_at)
                FROM vault_secure.replication_status
                WHERE bucket_source = %s
                  AND (status = 'pending' OR (status = 'in_progress' AND lease_expires_at < now()))
                GROUP BY partition_day ORDER BY partition_day
                """,
                (source_bucket,),
            ).fetchall()]

    def pending_count(self, source_bucket: str) -> int:
        with self.pool.connection() as conn:
            return int(conn.execute(
                "SELECT count(*) FROM vault_secure.replication_status WHERE bucket_source = %s"
                " AND status IN ('pending', 'in_progress')",
                (source_bucket,),
            ).fetchone()[0])

    def failures(self, *, source_bucket: str, first_day: dt.date, last_day: dt.date,
                 limit: int = 50) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT s3_key, retry_count, error_message, updated_at FROM vault_secure.replication_status"
                " WHERE bucket_source = %s AND partition_day BETWEEN %s AND %s AND status = 'failed'"
                " ORDER BY s3_key LIMIT %s",
                (source_bucket, first_day, last_day, limit),
            ).fetchall()

    def rows_for_days(self, source_bucket: str, first_day: dt.date, last_day: dt.date) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM vault_secure.replication_status WHERE bucket_source = %s"
                " AND partition_day BETWEEN %s AND %s ORDER BY s3_key",
                (source_bucket, first_day, last_day),
            ).fetchall()

    def record_verification(self, *, day: dt.date, run_id: str | None, objects: int, ok: int,
                            counts: dict[str, int], report_key: str | None, report_version_id: str | None) -> None:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO vault_secure.verification_reports (partition_day, run_id, objects, ok, counts,"
                " report_key, report_version_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (day, run_id, objects, ok, json.dumps(counts), report_key, report_version_id),
            )

    def days_by_last_verification(self, source_bucket: str) -> list[tuple[dt.date, dt.datetime | None]]:
        """Every day with documents, least recently verified first (never verified first of all)."""
        with self.pool.connection() as conn:
            return conn.execute(
                """
                SELECT d.partition_day, max(v.verified_at) AS last
                FROM (SELECT DISTINCT partition_day FROM vault_secure.replication_status
                      WHERE bucket_source = %s) d
                LEFT JOIN vault_secure.verification_reports v ON v.partition_day = d.partition_day
                GROUP BY d.partition_day ORDER BY last NULLS FIRST, d.partition_day
                """,
                (source_bucket,),
            ).fetchall()

    def cold_totals(self, source_bucket: str) -> tuple[int, int]:
        with self.pool.connection() as conn:
            n, total = conn.execute(
                "SELECT count(*), COALESCE(sum(ovh_size), 0) FROM vault_secure.replication_status"
                " WHERE bucket_source = %s AND status = 'replicated'",
                (source_bucket,),
            ).fetchone()
        return int(n), int(total)

    def known_keys(self, destination_bucket: str) -> set[str]:
        """Every key the manifest has for a cold bucket (the orphan sweep's reference)."""
        with self.pool.connection() as conn:
            return {r[0] for r in conn.execute(
                "SELECT s3_key FROM vault_secure.replication_status WHERE bucket_dest = %s",
                (destination_bucket,),
            )}

    def rows(self, source_bucket: str, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Full rows, for inspection and tests."""
        with self.pool.connection() as conn:
            if keys is None:
                return conn.cursor(row_factory=dict_row).execute(
                    "SELECT * FROM vault_secure.replication_status WHERE bucket_source = %s ORDER BY s3_key",
                    (source_bucket,),
                ).fetchall()
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM vault_secure.replication_status WHERE bucket_source = %s"
                " AND s3_key = ANY(%s) ORDER BY s3_key",
                (source_bucket, list(keys)),
            ).fetchall()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


# One statement for a whole group of copies: each column travels as an array (unnest), instead of one
# UPDATE per copy, whose per-statement cost dominated recording small documents.
_MARK_REPLICATED_ARRAYS = ("id", "status", "moved", "etag", "sver", "size", "lm", "day", "sha", "ck", "ckt", "ps",
                           "dt", "sdt", "years", "until", "base", "sc", "ver", "cetag", "adopted", "docid", "userid")
_MARK_REPLICATED_SQL = """
    UPDATE vault_secure.replication_status AS r SET
        status = u.status, ovh_etag = CASE WHEN u.moved THEN r.ovh_etag ELSE u.etag END,
        source_version_id = u.sver, ovh_size = CASE WHEN u.moved THEN r.ovh_size ELSE u.size END,
        source_last_modified = CASE WHEN u.moved THEN r.source_last_modified ELSE u.lm END,
        partition_day = CASE WHEN u.moved THEN r.partition_day ELSE u.day END,
        sha256 = u.sha, cold_checksum = u.ck, cold_checksum_type = u.ckt, part_size = u.ps,
        document_type = u.dt, source_document_type = u.sdt, retention_years = u.years,
        aws_object_lock_until = u.until, retention_base = u.base, storage_class = u.sc,
        aws_version_id = u.ver, aws_etag = u.cetag, cold_upload_id = NULL,
        previous_cold_version_ids = ARRAY(SELECT jsonb_array_elements_text(u.prev::jsonb)),
        replication_count = r.replication_count + CASE WHEN u.adopted THEN 0 ELSE 1 END,
        document_id = u.docid::uuid, user_id = u.userid::uuid,
        -- failed_at stays until the row is replicated (a row left pending for newer content keeps it)
        failed_at = CASE WHEN u.status = 'replicated' THEN NULL ELSE r.failed_at END,
        error_message = NULL, replicated_at = now(), verified_at = now(),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now(), journaled = true
    FROM unnest(%(id)s::bigint[], %(status)s::text[], %(moved)s::boolean[], %(etag)s::text[], %(sver)s::text[],
                %(size)s::bigint[], %(lm)s::timestamptz[], %(day)s::date[], %(sha)s::text[], %(ck)s::text[],
                %(ckt)s::text[], %(ps)s::bigint[], %(dt)s::text[], %(sdt)s::text[], %(years)s::integer[],
                %(until)s::timestamptz[], %(base)s::text[], %(sc)s::text[], %(ver)s::text[], %(cetag)s::text[],
                %(adopted)s::boolean[], %(prev)s::text[], %(docid)s::text[], %(userid)s::text[])
        AS u (id, status, moved, etag, sver, size, lm, day, sha, ck, ckt, ps, dt, sdt, years, until, base, sc, ver,
              cetag, adopted, prev, docid, userid)
    WHERE r.id = u.id
    RETURNING r.*
"""


def _replicated_params(row: ClaimedRow, outcome: ReplicationOutcome, status: str, source_moved: bool,
                       previous: list[str]) -> dict[str, Any]:
    return {"status": status, "moved": source_moved, "etag": outcome.source_etag,
            "sver": outcome.source_version_id, "size": outcome.file_size, "lm": outcome.source_last_modified,
            "day": outcome.source_last_modified.astimezone(dt.UTC).date(), "sha": outcome.sha256,
            "ck": outcome.cold_checksum, "ckt": outcome.cold_checksum_type, "ps": outcome.part_size,
            "dt": outcome.document_type, "sdt": outcome.source_document_type,
            "years": outcome.retention_years, "until": outcome.retain_until, "base": outcome.retention_base,
            "sc": outcome.storage_class, "ver": outcome.cold_version_id, "cetag": outcome.cold_etag,
            "prev": previous, "adopted": outcome.adopted, "id": row.id, "docid": outcome.document_id,
            "userid": outcome.user_id}
