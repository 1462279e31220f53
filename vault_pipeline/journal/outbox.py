"""The database side of the journal: the outbox of entries and the journal's position.

`enqueue` is called inside the transaction that makes the recorded change, so an entry exists if and
only if the change committed. Sequencing happens later, in `sequence_batch`, under the site's flush
lock and in one transaction with the position update, so seqs are contiguous and given in the order the
flusher finds committed entries (never at insert time: see 005_journal.sql).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from vault_pipeline.journal.chain import ChainState, seal_entry
from vault_pipeline.journal.entries import iso

FLUSH_LOCK_NAMESPACE = 0x6A726E6C  # "jrnl": pg_advisory_lock(namespace, hashtext(site))


def enqueue(conn: psycopg.Connection, fields: Mapping[str, Any]) -> int:
    """Add an entry to the site's outbox in the caller's transaction; return its outbox id."""
    row = conn.execute(
        "INSERT INTO vault_secure.journal_entries (site, action, object_key, version_id, fields)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (fields["bucket"], fields["action"], fields["key"], fields.get("version_id"), Jsonb(dict(fields))),
    ).fetchone()
    assert row is not None
    return int(row[0])


def enqueue_many(conn: psycopg.Connection, entries: Sequence[Mapping[str, Any]]) -> None:
    """enqueue for several entries at once: one statement whatever their number, ids in list order."""
    if not entries:
        return
    # One JSON document for the group (one json.dumps in C), not five text arrays escaped in Python.
    conn.execute(
        "INSERT INTO vault_secure.journal_entries (site, action, object_key, version_id, fields)"
        " SELECT e.f->>'bucket', e.f->>'action', e.f->>'key', e.f->>'version_id', e.f"
        " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e (f, n) ORDER BY n",
        (json.dumps([dict(f) for f in entries], ensure_ascii=False),))


def lock_site(conn: psycopg.Connection, site: str) -> None:
    """Session advisory lock: one flusher (or sealer) per site at a time, across processes."""
    conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (FLUSH_LOCK_NAMESPACE, site))


def unlock_site(conn: psycopg.Connection, site: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (FLUSH_LOCK_NAMESPACE, site))


def read_state(conn: psycopg.Connection, site: str) -> tuple[ChainState, dt.datetime | None]:
    row = conn.execute(
        "SELECT next_seq, last_hash, last_time FROM vault_secure.journal_state WHERE site = %s", (site,)
    ).fetchone()
    if row is None:
        return ChainState(), None
    return ChainState(int(row[0]), row[1]), row[2]


def write_state(conn: psycopg.Connection, site: str, state: ChainState, last_time: dt.datetime | None) -> None:
    conn.execute(
        """
        INSERT INTO vault_secure.journal_state (site, next_seq, last_hash, last_time) VALUES (%s, %s, %s, %s)
        ON CONFLICT (site) DO UPDATE SET next_seq = EXCLUDED.next_seq, last_hash = EXCLUDED.last_hash,
            last_time = EXCLUDED.last_time, updated_at = now()
        """,
        (site, state.next_seq, state.last_hash, last_time),
    )


def unwritten_segments(conn: psycopg.Connection, site: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """Entries sequenced (their seqs are given for good) but whose segment is not known to be written."""
    rows = conn.execute(
        "SELECT segment_key, entry FROM vault_secure.journal_entries"
        " WHERE site = %s AND seq IS NOT NULL AND written_at IS NULL ORDER BY seq",
        (site,),
    ).fetchall()
    segments: dict[str, list[dict[str, Any]]] = {}
    for key, entry in rows:
        segments.setdefault(key, []).append(entry)
    return list(segments.items())


def sequence_batch(conn: psycopg.Connection, site: str, *, limit: int, now: dt.datetime,
                   segment_key_for: Any) -> list[dict[str, Any]]:
    """Give the next `limit` unsequenced entries their seq, time and chain links; store them and the new
    position in the caller's transaction. Returns the sealed entries (empty when none wait)."""
    pending = conn.execute(
        "SELECT id, fields FROM vault_secure.journal_entries WHERE site = %s AND seq IS NULL"
        " ORDER BY id LIMIT %s FOR UPDATE",
        (site, limit),
    ).fetchall()
    if not pending:
        return []
    state, last_time = read_state(conn, site)
    # The journal's clock never runs backwards, so entries of a day form one contiguous seq range.
    when = max(now, last_time) if last_time else now
    key = segment_key_for(state.next_seq)
    sealed: list[dict[str, Any]] = []
    updates = []
    for outbox_id, fields in pending:
        entry, state = seal_entry({**fields, "time": iso(when)}, state)
        sealed.append(entry)
        updates.append((entry["seq"], Jsonb(entry), entry["entry_hash"], key, outbox_id))
    with conn.cursor() as cur:
        # `fields` is emptied: the sealed entry holds every field it had (plus seq, time and the chain), and
        # keeping both doubled the outbox's size per document (~1.3 KB, docs/scaling.md).
        cur.executemany(
            "UPDATE vault_secure.journal_entries SET seq = %s, entry = %s, entry_hash = %s, segment_key = %s,"
            " fields = '{}'::jsonb WHERE id = %s",
            updates,
        )
    write_state(conn, site, state, when)
    return sealed


def mark_written(conn: psycopg.Connection, site: str, segment_key: str) -> int:
    cur = conn.execute(
        "UPDATE vault_secure.journal_entries SET written_at = now()"
        " WHERE site = %s AND segment_key = %s AND written_at IS NULL",
        (site, segment_key),
    )
    return cur.rowcount


def unjournaled_rows(conn: psycopg.Connection, site: str, limit: int) -> list[dict[str, Any]]:
    """Replicated rows whose copy has no entry: rows from before the journal existed, or written by a
    path that did not journal. They are found here and journaled once (see repair in writer.py)."""
    return conn.cursor(row_factory=dict_row).execute(
        "SELECT * FROM vault_secure.replication_status WHERE bucket_dest = %s AND status = 'replicated'"
        " AND NOT journaled ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
        (site, limit),
    ).fetchall()


def mark_journaled(conn: psycopg.Connection, row_ids: Sequence[int]) -> None:
    conn.execute("UPDATE vault_secure.replication_status SET journaled = true WHERE id = ANY(%s)", (list(row_ids),))


def entries_for_key(conn: psycopg.Connection, site: str, key: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT entry FROM vault_secure.journal_entries WHERE site = %s AND object_key = %s AND seq IS NOT NULL"
        " ORDER BY seq",
        (site, key),
    ).fetchall()
    return [r[0] for r in rows]


def backlog(conn: psycopg.Connection, site: str) -> dict[str, int]:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE seq IS NULL), count(*) FILTER (WHERE seq IS NOT NULL AND written_at IS NULL)"
        " FROM vault_secure.journal_entries WHERE site = %s",
        (site,),
    ).fetchone()
    assert row is not None
    return {"unsequenced": int(row[0]), "unwritten": int(row[1])}
