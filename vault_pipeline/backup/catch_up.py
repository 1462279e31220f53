"""After a restore: bring the restored tracking database up to the storage's record, and check it.

A backup holds the journal up to its head (journal_state.next_seq in the dump's snapshot). Everything the
cold site journaled after it is replayed with the secondary site's reconstruction (journal/rebuild.py,
incremental from that head), so the restored database ends as current as the storage itself: the storage is
the record, the backup only the starting point. Rows that were never journaled (pending, failed, the SFTP
log of the last hours) are what a backup alone can give back; the sweep and the sensors find the rest.

The journal is also how a backup is authenticated: its dumps and manifest are journaled right after it is
taken, in the chain that starts at the head the manifest names, so `journaled_backup` reads that chain
(links and hashes checked) and must find the same versions and SHA-256.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from vault_pipeline.journal.chain import ChainState
from vault_pipeline.journal.reader import iter_journal
from vault_pipeline.journal.rebuild import RebuildReport, rebuild_tracking_db
from vault_pipeline.journal.segments import SegmentStore


class CatchUpError(RuntimeError):
    pass


def start_of(journal: list[dict[str, Any]], site: str) -> ChainState:
    """The chain position a dump contains for `site`, from its `journal` (the manifest's journal_state rows);
    the genesis when it had no journal yet."""
    head = next((j for j in journal if j["site"] == site), None)
    return ChainState(int(head["next_seq"]), str(head["last_hash"])) if head else ChainState()


def journaled_backup(segments: SegmentStore, start: ChainState, backup_id: str) -> dict[str, dict[str, Any]]:
    """The journal's "backup" entries of `backup_id` ({database: entry}), read from `start`, chain checked.
    Stops at the manifest's entry, the last one a backup writes; {} when the journal does not have them (yet)."""
    found: dict[str, dict[str, Any]] = {}
    for _, entry in iter_journal(segments, start):
        if entry.get("action") == "backup" and entry.get("backup_id") == backup_id:
            found[str(entry.get("database"))] = entry
            if entry.get("database") == "manifest":
                break
    return found


@dataclass
class CatchUpReport:
    start_seq: int
    outbox_duplicates_dropped: int = 0
    rebuild: RebuildReport | None = None

    @property
    def entries(self) -> int:
        return self.rebuild.entries_applied if self.rebuild else 0


def catch_up(target_dsn: str, segments: SegmentStore, *, source_bucket: str,
             reserved_prefixes: Iterable[str] = ()) -> CatchUpReport:
    """Replay the journal after the restored database's own head into it; idempotent (a rerun resumes)."""
    site = segments.bucket
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT next_seq, last_hash FROM vault_secure.journal_state WHERE site = %s",
                           (site,)).fetchone()
        start = ChainState(int(row[0]), str(row[1])) if row else ChainState()
        # The replay resumes from rebuild_state: start it at the restored head unless a previous attempt got further.
        conn.execute(
            """
            INSERT INTO vault_secure.rebuild_state (site, next_seq, last_hash) VALUES (%s, %s, %s)
            ON CONFLICT (site) DO UPDATE SET next_seq = EXCLUDED.next_seq, last_hash = EXCLUDED.last_hash,
                updated_at = now()
            WHERE vault_secure.rebuild_state.next_seq < EXCLUDED.next_seq
            """, (site, start.next_seq, start.last_hash))
    report = CatchUpReport(start_seq=start.next_seq)
    report.rebuild = rebuild_tracking_db(target_dsn, segments, mode="incremental", sweep=False,
                                         source_bucket=source_bucket, reserved_prefixes=reserved_prefixes)
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        # Entries waiting in the backup's outbox (committed, not yet sequenced when it was taken) were journaled
        # by the primary afterwards: the replay brought them in with their seq, so the waiting copy goes. One the
        # journal does not have (the primary died before flushing it) stays: the next flush journals it.
        dropped = conn.execute(
            """
            DELETE FROM vault_secure.journal_entries w
            WHERE w.site = %s AND w.seq IS NULL AND EXISTS (
                SELECT 1 FROM vault_secure.journal_entries s
                WHERE s.site = w.site AND s.seq >= %s AND s.action = w.action AND s.object_key = w.object_key
                  AND s.version_id IS NOT DISTINCT FROM w.version_id)
            """, (site, start.next_seq))
        report.outbox_duplicates_dropped = dropped.rowcount
    return report


@dataclass
class JournalConsistency:
    head_seq: int  # the last seq the restored database holds
    storage_ahead: str | None  # a segment on the cold site beyond it (the replay did not finish)
    entries_since_backup: int
    missing_entries: int  # seqs after the backup's head absent from the database's journal index
    rows_checked: int
    row_mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.storage_ahead is None and self.missing_entries == 0 and not self.row_mismatches


def journal_consistency(target_dsn: str, segments: SegmentStore, backup_start: ChainState) -> JournalConsistency:
    """The restored database against the storage's journal: nothing on the cold site beyond its head, every
    entry since the backup indexed, and the row of every object copied since then naming that copy."""
    site = segments.bucket
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT next_seq FROM vault_secure.journal_state WHERE site = %s", (site,)).fetchone()
        next_seq = int(row[0]) if row else 1
        ahead = next(iter(segments.list_segments(after_seq=next_seq - 1)), None)
        indexed = conn.execute(
            "SELECT count(*) FROM vault_secure.journal_entries WHERE site = %s AND seq >= %s AND seq < %s",
            (site, backup_start.next_seq, next_seq)).fetchone()
        expected = max(0, next_seq - backup_start.next_seq)
        latest = """
            SELECT DISTINCT ON (entry->>'source_bucket', entry->>'key') entry
            FROM vault_secure.journal_entries WHERE site = %(site)s AND seq >= %(start)s AND action = 'copy'
            ORDER BY entry->>'source_bucket', entry->>'key', seq DESC"""
        checked = conn.execute(f"SELECT count(*) FROM ({latest}) e",
                               {"site": site, "start": backup_start.next_seq}).fetchone()
        mismatches = [
            f"{key}: the journal's last copy is version {version}, the row names {found or 'nothing'}"
            for key, version, found in conn.execute(
                f"""
                SELECT e.entry->>'key', e.entry->>'version_id', r.aws_version_id FROM ({latest}) e
                LEFT JOIN vault_secure.replication_status r
                       ON r.bucket_source = e.entry->>'source_bucket' AND r.s3_key = e.entry->>'key'
                WHERE r.aws_version_id IS DISTINCT FROM e.entry->>'version_id'
                   OR r.sha256 IS DISTINCT FROM e.entry->>'sha256'
                LIMIT 50""", {"site": site, "start": backup_start.next_seq})]
    return JournalConsistency(
        head_seq=next_seq - 1, storage_ahead=ahead.key if ahead else None, entries_since_backup=expected,
        missing_entries=expected - int(indexed[0]) if indexed else expected,
        rows_checked=int(checked[0]) if checked else 0,
        row_mismatches=mismatches)
