"""Journal segments on the cold site: layout, encoding and write-once storage.

A segment is one object holding consecutive entries, one canonical JSON document per line:

    journal/segments/00000000000000000001.jsonl      entries 1..k
    journal/segments/0000000000000000000{k+1}.jsonl  entries k+1..m

The key carries the first seq, zero-padded so that a listing returns segments in journal order. Segments
are STANDARD class (readable without a restore), locked COMPLIANCE, and written with If-None-Match: *,
so a segment is written exactly once: a retry after a crash finds its own segment instead of adding a
version, and two writers that disagree about the journal's head cannot both succeed. A segment that has
more than one version was rewritten behind the pipeline's back; readers refuse it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from vault_pipeline.journal.chain import canonical_json
from vault_pipeline.replication.errors import condition_refused
from vault_pipeline.settings import setting_default

SEGMENT_DIR = "segments/"
SEAL_DIR = "seals/"
SEQ_DIGITS = 20
SEGMENT_SUFFIX = ".jsonl"


class JournalError(RuntimeError):
    """The journal on the cold site is unreadable, inconsistent or was altered; the message says where."""


class SegmentExists(JournalError):
    """A write-once segment key is already taken (a retry after a crash, or a second writer)."""


def segment_key(prefix: str, first_seq: int) -> str:
    return f"{prefix}{SEGMENT_DIR}{first_seq:0{SEQ_DIGITS}d}{SEGMENT_SUFFIX}"


def first_seq_of(prefix: str, key: str) -> int | None:
    """The first seq a segment key names, or None for a key that is not a segment."""
    base = prefix + SEGMENT_DIR
    if not key.startswith(base) or not key.endswith(SEGMENT_SUFFIX):
        return None
    digits = key[len(base):-len(SEGMENT_SUFFIX)]
    return int(digits) if len(digits) == SEQ_DIGITS and digits.isdigit() else None


def encode_segment(entries: Sequence[dict[str, Any]]) -> bytes:
    return b"".join(canonical_json(entry) + b"\n" for entry in entries)


def segment_lines(body: bytes) -> list[bytes]:
    return [line for line in body.split(b"\n") if line]


def json_object(text: bytes, where: str, error: type[Exception] = JournalError) -> dict[str, Any]:
    """A JSON object read from the cold site, or `error` saying where it is not one."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise error(f"{where} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise error(f"{where} is not a JSON object")
    return value


def decode_segment(key: str, body: bytes) -> list[dict[str, Any]]:
    return [json_object(line, f"segment {key}: line {number}")
            for number, line in enumerate(body.split(b"\n"), start=1) if line]


@dataclass(frozen=True)
class StoredSegment:
    key: str
    first_seq: int
    version_id: str | None
    entries: list[dict[str, Any]]
    sha256: str
    lines: tuple[bytes, ...] = ()  # each entry's JSON exactly as stored (same order as entries)


@dataclass(frozen=True)
class ListedSegment:
    key: str
    first_seq: int
    last_modified: dt.datetime | None = None  # when the cold site stored it


class SegmentStore:
    """Reads and writes journal objects (segments and seals) in the cold bucket."""

    def __init__(self, client: Any, bucket: str, *, prefix: str = setting_default("journal_prefix"),
                 retention_years: int = 50) -> None:
        if not prefix.endswith("/"):
            raise ValueError("journal prefix must end with '/'")
        self.client, self.bucket, self.prefix, self.retention_years = client, bucket, prefix, retention_years

    # -- writing ------------------------------------------------------------------------------
    def retain_until(self, now: dt.datetime) -> dt.datetime:
        from vault_pipeline.replication.policy import add_years

        return dt.datetime.combine(add_years(now.astimezone(dt.UTC).date(), self.retention_years)
                                   + dt.timedelta(days=1), dt.time(0, 0), tzinfo=dt.UTC)

    def put_once(self, key: str, body: bytes, *, content_type: str, kind: str, now: dt.datetime) -> str | None:
        """Write a locked STANDARD object that must not exist yet; return its version id.
        Raises SegmentExists when the key is taken."""
        digest = hashlib.sha256(body).digest()
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, StorageClass="STANDARD",
                ChecksumAlgorithm="SHA256", ChecksumSHA256=base64.b64encode(digest).decode(),
                ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=self.retain_until(now),
                Metadata={"vault-sha256": digest.hex(), "vault-kind": kind}, IfNoneMatch="*",
            )
        except ClientError as exc:
            if condition_refused(exc, conflict=True):
                raise SegmentExists(f"{key} already exists") from None
            raise
        return response.get("VersionId")

    def put_segment(self, entries: Sequence[dict[str, Any]], now: dt.datetime) -> tuple[str, str | None, str]:
        """Write entries as a new segment; if the key exists with exactly these bytes (our own write
        before a crash) accept it; if with other bytes, the journal has forked: refuse."""
        key = segment_key(self.prefix, int(entries[0]["seq"]))
        body = encode_segment(entries)
        sha = hashlib.sha256(body).hexdigest()
        try:
            return key, self.put_once(key, body, content_type="application/x-ndjson", kind="journal-segment",
                                      now=now), sha
        except SegmentExists:
            existing = self.read_segment(key)
            if existing.sha256 != sha:
                raise JournalError(
                    f"segment {key} already exists with other content (sha256 {existing.sha256}, ours {sha}): "
                    "another writer journaled these seqs, or the database lost its journal position") from None
            return key, existing.version_id, sha

    # -- reading ------------------------------------------------------------------------------
    def list_segments(self, *, after_seq: int = 0) -> Iterator[ListedSegment]:
        """Segments whose first seq is greater than `after_seq`, in journal order."""
        base = self.prefix + SEGMENT_DIR
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base}
        if after_seq > 0:
            kwargs["StartAfter"] = segment_key(self.prefix, after_seq)
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents") or []:
                first = first_seq_of(self.prefix, obj["Key"])
                if first is not None and first > after_seq:
                    yield ListedSegment(obj["Key"], first, obj.get("LastModified"))

    def rewritten_segments(self) -> dict[str, int]:
        """Segment keys with more than one version or a delete marker: each was altered after its write."""
        counts: dict[str, int] = {}
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + SEGMENT_DIR):
            for item in [*(page.get("Versions") or []), *(page.get("DeleteMarkers") or [])]:
                counts[item["Key"]] = counts.get(item["Key"], 0) + 1
        return {key: n for key, n in counts.items() if n > 1}

    def versions_of(self, key: str) -> int:
        response = self.client.list_object_versions(Bucket=self.bucket, Prefix=key)
        items = [*(response.get("Versions") or []), *(response.get("DeleteMarkers") or [])]
        return sum(1 for item in items if item["Key"] == key)

    def read_object(self, key: str, version_id: str | None = None) -> tuple[bytes, str | None]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            response = self.client.get_object(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise JournalError(f"cannot read {key}: {code or exc}") from None
        with response["Body"] as stream:
            return stream.read(), response.get("VersionId")

    def read_segment(self, key: str) -> StoredSegment:
        first = first_seq_of(self.prefix, key)
        if first is None:
            raise JournalError(f"{key} is not a journal segment key")
        body, version = self.read_object(key)
        entries = decode_segment(key, body)
        if not entries:
            raise JournalError(f"segment {key} is empty")
        if entries[0].get("seq") != first:
            raise JournalError(f"segment {key} starts at seq {entries[0].get('seq')}, its key says {first}")
        return StoredSegment(key, first, version, entries, hashlib.sha256(body).hexdigest(),
                             tuple(segment_lines(body)))
