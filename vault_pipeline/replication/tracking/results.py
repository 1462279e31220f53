"""Results of copies: a verified copy (row, audit log and journal entry in one transaction) or a failure.
Every write checks the lease, so a worker that lost its row never overwrites the new owner's work."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from psycopg.rows import dict_row

from vault_pipeline.journal import outbox as journal
from vault_pipeline.journal.entries import copy_fields, retention_fields
from vault_pipeline.replication.evidence import EVIDENCE_DETAIL, evidence_record
from vault_pipeline.replication.tracking.connection import TrackingConnection
from vault_pipeline.replication.tracking.records import ClaimedRow, ReplicationOutcome


class Results(TrackingConnection):
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
                with conn.cursor(row_factory=dict_row) as cur:
                    for written_row in cur.execute(_MARK_REPLICATED_SQL, (json_rows(updates),)).fetchall():
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
                audits.append((row.s3_key, done["bucket_source"], details))
            journal.enqueue_many(conn, entries)
            if audits:
                conn.execute(
                    "INSERT INTO vault_secure.audit_logs (event_type, object_key, source_bucket, run_id, metadata)"
                    " SELECT 'REPLICATION_SUCCESS', a.r->>0, a.r->>1, %s, a.r->2"
                    " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS a (r, n) ORDER BY n",
                    (run_id, json_rows(audits)))
        return statuses

    def mark_failed(
        self, row: ClaimedRow, owner: str, *, error: str, failed_attempts: int, run_id: str | None,
        source_bucket: str, source_gone: bool = False,
    ) -> bool:
        """Record a failure: the row (status, error, attempts) and a REPLICATION_FAILURE audit log, only while
        `owner` still holds the row; a worker that lost it writes nothing (False). `source_gone`: the hot
        object was deleted after it was listed; the row is not claimed again until a listing finds it."""
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                """
                UPDATE vault_secure.replication_status SET
                    status = 'failed', error_message = %s, retry_count = retry_count + %s, failed_at = now(),
                    hot_missing_at = CASE WHEN %s THEN now() END,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
                WHERE id = %s AND lease_owner = %s AND status = 'in_progress'
                """,
                (error[:4000], failed_attempts, source_gone, row.id, owner),
            )
            if cur.rowcount != 1:
                return False
            self._audit(conn, "REPLICATION_FAILURE", row.s3_key, run_id,
                        {"error": error[:4000], "failed_attempts": failed_attempts, "hot_object_gone": source_gone},
                        bucket=source_bucket)
            return True

    def record_event(self, event: str, key: str, *, source_bucket: str, details: dict[str, Any],
                     run_id: str | None = None) -> None:
        """One audit log entry outside the copy path (e.g. a document restored by an operator)."""
        with self.pool.connection() as conn, conn.transaction():
            self._audit(conn, event, key, run_id, details, bucket=source_bucket)

    def journal(self, fields: dict[str, Any]) -> None:
        """Queue a journal entry for a cold write that has no row of its own (a report)."""
        with self.pool.connection() as conn, conn.transaction():
            journal.enqueue(conn, fields)


def json_rows(rows: Sequence[Any]) -> str:
    """Rows as one JSON document for jsonb_to_recordset / jsonb_array_elements (dates in ISO 8601)."""
    return json.dumps(rows, default=_jsonable, ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


# One statement for a whole group of copies, instead of one UPDATE per copy, whose per-statement cost
# dominated recording small documents. The group travels as one JSON document (jsonb_to_recordset): one
# json.dumps in C, where arrays of text were escaped element by element in Python (profiled: the audit
# rows' long JSON strings cost more client CPU than the copy's requests).
_MARK_REPLICATED_SQL = """
    UPDATE vault_secure.replication_status AS r SET
        status = u.status, ovh_etag = CASE WHEN u.moved THEN r.ovh_etag ELSE u.etag END,
        source_version_id = u.sver, ovh_size = CASE WHEN u.moved THEN r.ovh_size ELSE u.size END,
        source_last_modified = CASE WHEN u.moved THEN r.source_last_modified ELSE u.lm END,
        partition_day = CASE WHEN u.moved THEN r.partition_day ELSE u.day END,
        sha256 = u.sha, cold_checksum = u.ck, cold_checksum_type = u.ckt, part_size = u.ps,
        document_type = u.dt, source_document_type = u.sdt, retention_years = u.years,
        aws_object_lock_until = u.until, retention_base = u.base, retention_note = u.note, storage_class = u.sc,
        aws_version_id = u.ver, aws_etag = u.cetag, cold_upload_id = NULL,
        previous_cold_version_ids = ARRAY(SELECT jsonb_array_elements_text(u.prev)),
        replication_count = r.replication_count + CASE WHEN u.adopted THEN 0 ELSE 1 END,
        -- the hot object's metadata decides; without it, what the application's table announced stays
        document_id = COALESCE(u.docid::uuid, r.document_id), user_id = COALESCE(u.userid::uuid, r.user_id),
        -- failed_at stays until the row is replicated (a row left pending for newer content keeps it)
        failed_at = CASE WHEN u.status = 'replicated' THEN NULL ELSE r.failed_at END,
        error_message = NULL, replicated_at = now(), verified_at = now(),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now(), journaled = true
    FROM jsonb_to_recordset(%s::jsonb) AS u (
        id bigint, status text, moved boolean, etag text, sver text, size bigint, lm timestamptz, day date,
        sha text, ck text, ckt text, ps bigint, dt text, sdt text, years integer, until timestamptz, base text,
        sc text, ver text, cetag text, adopted boolean, prev jsonb, docid text, userid text, note text)
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
            "userid": outcome.user_id, "note": outcome.retention_note}
