"""Which version of a key to restore and what its bytes must hash to.

Two independent records must agree: the tracking database (the row for the current copy, its own copy of
the journal entry for an earlier one) and the write journal read from the cold site (found through
vault_secure.journal_entries, else by reading the whole journal). `resolve` returns the `Target` they
agree on, or refuses naming both values. Used by `vault-pipeline restore` (cli/restore.py) before any
restore is requested.

Plain Python: no Dagster here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vault_pipeline.journal.chain import canonical_json, entry_hash
from vault_pipeline.journal.proof import find_copy_entry
from vault_pipeline.journal.reader import EntryNotFound, entry_at
from vault_pipeline.journal.segments import JournalError, SegmentStore
from vault_pipeline.retrieval.errors import RetrievalError, RetrievalRefused


@dataclass(frozen=True)
class JournalWitness:
    """The journal's copy entry of the version, as read from the cold site."""

    seq: int
    segment: str
    sha256: str
    size: int
    found_via: str  # "index" (vault_secure.journal_entries) or "scan" (read the whole journal)


@dataclass(frozen=True)
class Target:
    """The version to restore and what its bytes must be, agreed by the tracking DB and the journal."""

    key: str
    source_bucket: str
    cold_bucket: str
    version_id: str
    current: bool  # the row's verified copy (not an earlier version)
    sha256: str
    size: int
    db_sha256: str | None  # None: the DB keeps no SHA-256 of this (earlier) version
    db_source: str
    journal: JournalWitness
    notes: tuple[str, ...] = ()


_ROW_SQL = """
    SELECT s3_key, bucket_source, bucket_dest, status, error_message, sha256, ovh_size,
           aws_version_id, previous_cold_version_ids
    FROM vault_secure.replication_status WHERE bucket_source = %s AND s3_key = %s
"""
_INDEX_SQL = """
    SELECT seq, entry, fields, segment_key, written_at FROM vault_secure.journal_entries
    WHERE site = %s AND object_key = %s AND action = 'copy' ORDER BY seq NULLS LAST, id
"""


def _versions(row: Mapping[str, Any], index: list[tuple[Any, ...]]) -> list[str]:
    known = [*(row["previous_cold_version_ids"] or []), row["aws_version_id"]]
    known += [(entry or fields).get("version_id") for _, entry, fields, _, _ in index]
    seen: list[str] = []
    for version in known:
        if version and version not in seen:
            seen.append(str(version))
    return seen


def resolve(conn: Any, segments: SegmentStore, *, source_bucket: str, key: str,
            version_id: str | None = None) -> Target:
    """The version of `key` to restore and its expected SHA-256 and size.

    Default: the row's verified copy (status `replicated`). `version_id` may name it or an earlier copy
    (the row's previous_cold_version_ids, or any journaled copy). The tracking DB's value (the row for
    the current copy, its own copy of the journal entry for an earlier one) and the journal entry read
    from the cold site must agree: RetrievalRefused otherwise, naming both values.
    """
    cold_bucket = segments.bucket
    row = conn.execute(_ROW_SQL, (source_bucket, key)).fetchone()
    if row is None:
        raise RetrievalError(f"{key!r} is not tracked: no row in vault_secure.replication_status for hot bucket "
                             f"{source_bucket} (check the key, its case, spaces and the OVH_S3_BUCKET_DOCUMENTS "
                             "in this environment)")
    names = ("s3_key", "bucket_source", "bucket_dest", "status", "error_message", "sha256", "ovh_size",
             "aws_version_id", "previous_cold_version_ids")
    row = dict(zip(names, row, strict=True))
    if row["bucket_dest"] != cold_bucket:
        raise RetrievalError(f"{key!r} was replicated to cold bucket {row['bucket_dest']}, this environment's "
                             f"AWS_S3_BUCKET_DOCUMENTS_COLD is {cold_bucket}")
    index = conn.execute(_INDEX_SQL, (cold_bucket, key)).fetchall()
    status = row["status"]
    replicated = status == "replicated" and row["aws_version_id"]
    if version_id is None:
        if not replicated:
            why = f"; last error: {row['error_message']}" if row["error_message"] else ""
            if row["aws_version_id"]:
                raise RetrievalError(
                    f"{key!r} is {status} (a new hot version is being replicated{why}); its last replicated copy "
                    f"is version {row['aws_version_id']}: pass --version {row['aws_version_id']} to restore it")
            raise RetrievalError(f"{key!r} is not replicated yet (status {status}{why}): nothing to restore")
        version_id = str(row["aws_version_id"])
    known = _versions(row, index)
    if version_id not in known:
        raise RetrievalError(f"version {version_id!r} of {key!r} is not a known copy (known versions, oldest first: "
                             f"{', '.join(known) or 'none'})")
    current = bool(replicated) and version_id == row["aws_version_id"]
    notes: list[str] = []

    indexed = [(seq, entry, segment, written) for seq, entry, fields, segment, written in index
               if (entry or fields).get("version_id") == version_id]
    sequenced = [i for i in indexed if i[0] is not None]
    if indexed and not sequenced:
        raise RetrievalError(f"the journal entry of {key!r} version {version_id} is not written to the cold site yet "
                             "(it waits in the outbox for the next journal flush, at the end of every replication "
                             "run): rerun afterwards")
    if sequenced:
        seq, db_entry, segment, written = sequenced[-1]  # the latest copy entry (an adopted copy is journaled again)
        if written is None:
            raise RetrievalError(f"journal entry seq={seq} of {key!r} is not written to the cold site yet (segment "
                                 f"{segment}; the next journal flush writes it): rerun afterwards")
        try:
            journal_segment, entry = entry_at(segments, int(seq), segment=segment)
        except EntryNotFound:
            raise RetrievalRefused(f"journal entry seq={seq} is in the tracking DB's index but not on the cold site "
                                   f"(segment {segment}): refusing to restore (run `vault-pipeline journal verify`)"
                                   ) from None
        except JournalError as exc:
            raise RetrievalError(f"journal entry seq={seq} cannot be read from the cold site: {exc}") from None
        found_via = "index"
        if canonical_json(entry) != canonical_json(db_entry):
            if entry.get("sha256") != db_entry.get("sha256"):
                raise RetrievalRefused(
                    f"SHA-256 of {key!r} version {version_id}: the tracking DB's copy of journal entry seq={seq} says "
                    f"{db_entry.get('sha256')}, the journal on the cold site ({journal_segment}) says "
                    f"{entry.get('sha256')}: refusing to restore (run `vault-pipeline journal verify`)")
            differ = sorted(k for k in {*entry, *db_entry} if entry.get(k) != db_entry.get(k))
            raise RetrievalRefused(f"journal entry seq={seq} of {key!r} on the cold site differs from the tracking "
                                   f"DB's copy of it ({', '.join(differ)}): refusing to restore (run "
                                   "`vault-pipeline journal verify`)")
    else:
        # No index (a database rebuilt from the journal, or rows from before the journal): read the journal.
        notes.append(f"no index entry for {key!r} version {version_id} in vault_secure.journal_entries: "
                     "read the whole journal to find it")
        try:
            journal_segment, entry = find_copy_entry(segments, key, version_id=version_id)
        except JournalError as exc:
            raise RetrievalError(f"no journal entry for {key!r} version {version_id} on the cold site ({exc}): "
                                 "the tracking DB's value cannot be cross-checked, refusing to restore") from None
        db_entry = None
        found_via = "scan"
    _check_entry(segments, journal_segment, entry)
    witness = JournalWitness(seq=int(entry["seq"]), segment=journal_segment, sha256=str(entry.get("sha256")),
                             size=int(entry.get("size", -1)), found_via=found_via)

    if current:
        db_sha, db_size = str(row["sha256"]).strip(), int(row["ovh_size"])
        db_source = "vault_secure.replication_status"
    elif db_entry is not None:
        db_sha, db_size = str(db_entry.get("sha256")), int(db_entry.get("size", -1))
        db_source = f"vault_secure.journal_entries seq={db_entry.get('seq')}"
    else:
        db_sha, db_size = None, witness.size
        db_source = "vault_secure.replication_status (version listed; no SHA-256 kept for earlier versions)"
        notes.append(f"the tracking DB keeps no SHA-256 of earlier version {version_id}: expected value from the "
                     "journal, checked against the object's own metadata")
    if db_sha is not None and db_sha != witness.sha256:
        raise RetrievalRefused(
            f"SHA-256 of {key!r} version {version_id}: the tracking DB ({db_source}) says {db_sha}, the journal "
            f"(entry seq={witness.seq} in {witness.segment}) says {witness.sha256}: refusing to restore")
    if db_size != witness.size:
        raise RetrievalRefused(
            f"size of {key!r} version {version_id}: the tracking DB ({db_source}) says {db_size} bytes, the journal "
            f"(entry seq={witness.seq}) says {witness.size}: refusing to restore")
    return Target(key=key, source_bucket=source_bucket, cold_bucket=cold_bucket, version_id=version_id,
                  current=current, sha256=witness.sha256, size=witness.size, db_sha256=db_sha, db_source=db_source,
                  journal=witness, notes=tuple(notes))


def _check_entry(segments: SegmentStore, segment: str, entry: Mapping[str, Any]) -> None:
    """The entry is as written: its hash holds and its segment was never rewritten."""
    if entry.get("entry_hash") != entry_hash(entry):
        raise RetrievalRefused(f"journal entry seq={entry.get('seq')} in {segment} was altered (its entry_hash does "
                               "not match its content): refusing to restore (run `vault-pipeline journal verify`)")
    versions = segments.versions_of(segment)
    if versions != 1:
        raise RetrievalRefused(f"journal segment {segment} has {versions} versions (or delete markers): rewritten "
                               "after its write, refusing to restore (run `vault-pipeline journal verify`)")
