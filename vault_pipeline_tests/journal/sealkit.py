"""Helpers of the seal tests: an independent RFC 9162 implementation, backdated journal days, raw reads.

The Merkle functions here are a literal transcription of RFC 9162 §2.1.1 / §2.1.3.1 (recursive MTH and
PATH), deliberately not vault_pipeline.journal.merkle, so the tests check the product against the RFC.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import psycopg

from vault_pipeline.journal import outbox
from vault_pipeline.journal.segments import segment_key
from vault_pipeline_tests.conftest import Vault


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(data: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1, recursively, from the leaf *data*."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def path(m: int, data: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
    n = len(data)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, data[:k]), mth(data[k:])]
    return [*path(m - k, data[k:]), mth(data[:k])]


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def journal_at(vault: Vault, when: dt.datetime, keys: list[str]) -> list[dict[str, Any]]:
    """Journal one `copy` entry per key as one segment dated `when`, through the real outbox and segment
    store (what JournalWriter.flush does, with the flusher's clock set to `when`). Must be called in time
    order and before any real flush: the journal's clock never runs backwards."""
    vault.store  # noqa: B018  (migrated)
    store = vault.segments()
    with psycopg.connect(vault.dsn, autocommit=True) as conn:
        for key in keys:
            body = f"backdated {key}".encode()
            outbox.enqueue(conn, {
                "action": "copy", "bucket": vault.cold_bucket, "key": key, "version_id": f"v-{key}",
                "sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "document_type": "invoice",
                "retain_until": None, "source_etag": "etag", "run_id": None,
            })
        outbox.lock_site(conn, vault.cold_bucket)
        try:
            with conn.transaction():
                entries = outbox.sequence_batch(conn, vault.cold_bucket, limit=10_000, now=when,
                                                segment_key_for=lambda seq: segment_key(store.prefix, seq))
            key, _, _ = store.put_segment(entries, when)
            with conn.transaction():
                outbox.mark_written(conn, vault.cold_bucket, key)
        finally:
            outbox.unlock_site(conn, vault.cold_bucket)
    return entries


def raw_lines(vault: Vault) -> list[tuple[str, bytes]]:
    """(segment key, line bytes) of every journal line on the cold site, read with plain GETs."""
    listed = vault.cold.list_objects_v2(Bucket=vault.cold_bucket, Prefix="journal/segments/").get("Contents", [])
    lines = []
    for obj in sorted(listed, key=lambda o: o["Key"]):
        body = vault.cold.get_object(Bucket=vault.cold_bucket, Key=obj["Key"])["Body"].read()
        lines.extend((obj["Key"], line) for line in body.split(b"\n") if line)
    return lines


def day_leaves(vault: Vault, day: dt.date) -> list[bytes]:
    """The stored lines of the entries dated `day` (UTC), in order: the day's Merkle leaves."""
    import json

    return [line for _, line in raw_lines(vault)
            if dt.datetime.fromisoformat(json.loads(line)["time"]).astimezone(dt.UTC).date() == day]
