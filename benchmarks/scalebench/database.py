"""The tracking database at scale (issue 14): size per document, registration and claim rates, and whether
the hot paths stay index-only, on millions of synthetic rows.

The synthetic rows are the real ones with other values. A handful of documents goes through the store's own
code first (register, claim, mark_replicated_many, then the journal's sequencing and mark_written), exactly as
a replication run records them; their rows in replication_status, audit_logs and journal_entries, read back in
COPY text format, become templates whose per-document values (key, hashes, ids, sizes, times...) are
replaced by fresh values of the same format and length. So the JSON of an audit log or a journal entry has
the shape and size the code writes today, and follows it when it changes.

Then `rows` documents are COPYed (95 % replicated, 5 % pending, over two years of days, in day order as
they arrive), with the audit log and journal entry of each replicated one for the first `side_rows`
documents (these two tables grow linearly and cost ~4 kB a document: 10M would not fit on a shared disk;
their per-document cost is measured and extrapolated), and the questions the pipeline asks are timed and
EXPLAINed.

    .venv/bin/python -m benchmarks.scalebench.database --rows 200000       # own embedded PostgreSQL
    .venv/bin/python -m benchmarks.scalebench.database --dsn postgresql://... --rows 10000000
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import functools
import json
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from vault_pipeline.journal import outbox
from vault_pipeline.journal.segments import segment_key
from vault_pipeline.replication.evidence import run_evidence
from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline.replication.policy import retain_until
from vault_pipeline.replication.tracking import ReplicationOutcome, TrackingStore
from vault_pipeline.replication.tracking.claims import CLAIM_SQL
from vault_pipeline.replication.tracking.registration import _DIFF_SQL
from vault_pipeline.replication.tracking.reports import (
    DAYS_NEEDING_RUNS_SQL,
    PENDING_COUNT_SQL,
    status_counts_query,
)
from vault_pipeline.replication.verify import ColdEvidence

SOURCE = "ovh-documents-prod"
DESTINATION = "aws-documents-cold"
JOURNAL_PREFIX = "journal/"
DAYS = 730  # two years of partition days
PENDING_SHARE = 0.05
TENANTS = 200
TYPES = (("payslip", 50), ("invoice", 10), ("contract", 10), ("general", 50))  # retention_policy.yaml
PAGE = 1000  # a listing page
CLAIM_LIMIT = 64
TABLES = ("replication_status", "audit_logs", "journal_entries")
_JSON_COLUMNS = {"metadata", "fields", "entry"}
_NUMBER_FIELDS = {"size": "size|file_size", "seq": "seq"}  # JSON fields of per-document numbers


# ---------------------------------------------------------------- synthetic values

def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def _as_uuid(h: str) -> str:
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _uuid(rng: random.Random) -> str:
    return _as_uuid(_hex(rng, 32))


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


def _copy_ts(iso: str) -> str:
    """PostgreSQL's COPY text of a timestamptz in UTC, from its ISO form ("...T..+00:00" -> "... +00")."""
    return f"{iso[:10]} {iso[11:-6]}+00"


@functools.cache
def _until(day: dt.date, years: int) -> tuple[str, str]:
    iso = _iso(retain_until(day, years))
    return iso, _copy_ts(iso)


def _document(rng: random.Random, day: dt.date, run_ids: dict[dt.date, str], type_no: int) -> dict[str, Any]:
    """Every per-document value a template has a placeholder for (~30 us: 10M documents are generated)."""
    h = rng.randbytes(160).hex()  # every random hex value of the document at once
    sha = h[32:96]
    modified = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randrange(86_400))
    # server times have microseconds (never 0: the text form would lose its fraction and change length)
    registered = modified + dt.timedelta(seconds=rng.randrange(1, 30), microseconds=rng.randrange(1, 999_999))
    tried = registered + dt.timedelta(seconds=7, microseconds=1)
    replicated = tried + dt.timedelta(microseconds=rng.randrange(1_000, 999_999))
    sequenced = replicated + dt.timedelta(seconds=1, microseconds=1)
    written = sequenced + dt.timedelta(microseconds=rng.randrange(1_000, 99_999))
    until_iso, until_copy = _until(day, TYPES[type_no][1])
    values: dict[str, Any] = {
        "key": f"tenant-{rng.randrange(TENANTS):04d}/{day:%Y/%m/%d}/{_as_uuid(h[192:224])}.pdf",
        "etag": h[:32], "size": rng.randrange(20_000, 2_000_000), "sha": sha,
        "ck": base64.b64encode(bytes.fromhex(sha)).decode(), "ver": h[96:128],
        "docid": _as_uuid(h[128:160]), "userid": _as_uuid(h[160:192]),
        "run": run_ids.get(day) or run_ids.setdefault(day, _uuid(rng)), "day": day.isoformat(),
        "prev": h[224:288], "hash": h[256:320], "until_iso": until_iso, "until_copy": until_copy,
    }
    for name, t in (("modified", modified), ("registered", registered), ("tried", tried),
                    ("replicated", replicated), ("sequenced", sequenced), ("written", written)):
        values[f"{name}_iso"] = iso = t.isoformat()
        values[f"{name}_copy"] = f"{iso[:10]} {iso[11:-6]}+00"
    return values


# ---------------------------------------------------------------- templates from the real code

@dataclass(frozen=True)
class Template:
    table: str
    columns: tuple[str, ...]
    line: str  # a COPY text line as a str.format template

    def render(self, values: dict[str, Any]) -> str:
        return self.line.format_map(values)


def _templated(line: str, columns: tuple[str, ...], seed: dict[str, Any]) -> str:
    """The COPY line of a seed document with each of its per-document values made a placeholder."""
    scalar = {str(v): k for k, v in seed.items() if k not in ("size", "seq")}
    numbers = {"size": seed["size"], "seq": seed.get("seq")}
    out: list[str] = []
    for column, text in zip(columns, line.rstrip("\n").split("\t"), strict=True):
        if column in _JSON_COLUMNS and text != r"\N":
            # whole JSON strings and numbers only: a value is never matched inside another one
            text = re.sub(r'"((?:[^"\\]|\\.)*)"', lambda m: f'"\x01{scalar[m[1]]}\x02"' if m[1] in scalar else m[0],
                          text)
            for name, number in numbers.items():
                if number is not None:  # only under their own names: "seq": 1 is not "replication_count": 1
                    text = re.sub(rf'("(?:{_NUMBER_FIELDS[name]})": ){number}(?=[,}}])',
                                  lambda m, name=name: f"{m[1]}\x01{name}\x02", text)
        elif column == "seq" and text == str(seed.get("seq")):
            text = "\x01seq\x02"
        elif column in ("ovh_size",) and text == str(seed["size"]):
            text = "\x01size\x02"
        elif text in scalar:
            text = f"\x01{scalar[text]}\x02"
        elif column == "segment_key":
            text = "\x01segkey\x02"
        out.append(text)
    joined = "\t".join(out).replace("{", "{{").replace("}", "}}")
    return re.sub("\x01([a-z_]+)\x02", r"{\1}", joined) + "\n"


def _columns(conn: psycopg.Connection, table: str) -> tuple[str, ...]:
    return tuple(r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'vault_secure'"
        " AND table_name = %s AND column_name <> 'id' ORDER BY ordinal_position", (table,)))


def _copy_out(conn: psycopg.Connection, table: str, columns: tuple[str, ...], where: str,
              params: tuple[Any, ...]) -> str:
    query = sql.SQL("COPY (SELECT {} FROM vault_secure.{} WHERE {}) TO STDOUT").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table),
        sql.SQL(where))  # where: a literal of this module
    with conn.cursor() as cur, cur.copy(query, params) as copy:
        return b"".join(bytes(chunk) for chunk in copy).decode()


def _seed_outcome(values: dict[str, Any], type_no: int) -> ReplicationOutcome:
    document_type, years = TYPES[type_no]
    until = dt.datetime.fromisoformat(values["until_iso"])
    evidence = ColdEvidence(
        version_id=values["ver"], size=values["size"], checksum_sha256=values["ck"],
        metadata_sha256=values["sha"], lock_mode="COMPLIANCE", retain_until=until, storage_class="DEEP_ARCHIVE",
        tag_count=2, tags_sent=(("DocumentType", document_type), ("RetentionYears", str(years))))
    return ReplicationOutcome(
        source_etag=values["etag"], source_version_id=None, file_size=values["size"],
        source_last_modified=dt.datetime.fromisoformat(values["modified_iso"]), sha256=values["sha"],
        cold_checksum=values["ck"], cold_checksum_type="FULL_OBJECT", part_size=None,
        document_type=document_type, source_document_type=document_type, retention_years=years,
        retain_until=until, retention_base="last-modified", storage_class="DEEP_ARCHIVE",
        cold_version_id=values["ver"], cold_etag=values["etag"], evidence=evidence,
        document_id=values["docid"], user_id=values["userid"])


def _record_through_store(store: TrackingStore, documents: list[dict[str, Any]], type_nos: list[int], *,
                          source: str, owner: str, run_id: str) -> list[str]:
    """Register, claim and record `documents` as a replication run does; their ids in order."""
    listed = [ListedObject(v["key"], v["etag"], v["size"], dt.datetime.fromisoformat(v["modified_iso"]))
              for v in documents]
    store.register(listed, source_bucket=source, destination_bucket=DESTINATION)
    days = [obj.partition_day for obj in listed]
    claimed = store.claim(owner=owner, source_bucket=source, first_day=min(days), last_day=max(days),
                          limit=len(listed), lease_seconds=600, not_attempted_since=store.db_now())
    by_key = {row.s3_key: row for row in claimed}
    copies = [(by_key[v["key"]], _seed_outcome(v, t), 0.031) for v, t in zip(documents, type_nos, strict=True)]
    statuses = store.mark_replicated_many(copies, owner, run_id=run_id)
    assert set(statuses) == {"replicated"}, statuses
    return [v["key"] for v in documents]


def _flush_journal(store: TrackingStore) -> None:
    """The journal flusher's database side: sequence the outbox, then mark the segment written."""
    with store.pool.connection() as conn, conn.transaction():
        entries = outbox.sequence_batch(conn, DESTINATION, limit=1000, now=store.db_now(),
                                        segment_key_for=lambda seq: segment_key(JOURNAL_PREFIX, seq))
        if entries:
            outbox.mark_written(conn, DESTINATION, segment_key(JOURNAL_PREFIX, entries[0]["seq"]))


def seed_templates(store: TrackingStore, rng: random.Random) -> dict[str, list[Template]]:
    """One replicated document of each type and one pending document through the real code, as templates:
    {"replicated": [...per type], "pending": [...], "audit": [...per type], "journal": [...per type]}."""
    today = store.db_now().date() - dt.timedelta(days=1)
    run_ids: dict[dt.date, str] = {}
    documents = [_document(rng, today, run_ids, t) for t in range(len(TYPES))]
    pending = _document(rng, today, run_ids, 0)
    run_id = documents[0]["run"]
    _record_through_store(store, documents, list(range(len(TYPES))), source=SOURCE, owner="scalebench-seed",
                          run_id=run_id)
    store.register([ListedObject(pending["key"], pending["etag"], pending["size"],
                                 dt.datetime.fromisoformat(pending["modified_iso"]))],
                   source_bucket=SOURCE, destination_bucket=DESTINATION)
    _flush_journal(store)
    templates: dict[str, list[Template]] = {"replicated": [], "pending": [], "audit": [], "journal": []}
    with store.pool.connection() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        columns = {table: _columns(conn, table) for table in TABLES}
        for values in [*documents, pending]:
            # the server's own times and the journal's values replace the seed's guesses
            row = conn.execute(
                "SELECT created_at, last_attempt_at, replicated_at FROM vault_secure.replication_status"
                " WHERE bucket_source = %s AND s3_key = %s", (SOURCE, values["key"])).fetchone()
            seed = {k: v for k, v in values.items() if not k.endswith(("_iso", "_copy"))}
            seed["modified_copy"], seed["until_copy"] = values["modified_copy"], values["until_copy"]
            seed["modified_iso"], seed["until_iso"] = values["modified_iso"], values["until_iso"]
            for name, t in zip(("registered", "tried", "replicated"), row, strict=True):
                if t is not None:
                    seed[f"{name}_iso"], seed[f"{name}_copy"] = _iso(t), _copy_ts(_iso(t))
            kind = "pending" if values is pending else "replicated"
            templates[kind].append(_template(conn, "replication_status", columns, seed,
                                             "bucket_source = %s AND s3_key = %s", (SOURCE, values["key"])))
            if values is pending:
                continue
            templates["audit"].append(_template(conn, "audit_logs", columns, seed,
                                                "source_bucket = %s AND object_key = %s",
                                                (SOURCE, values["key"])))
            seq, sequenced, written, prev, entry_hash = conn.execute(
                "SELECT seq, (entry ->> 'time')::timestamptz, written_at, entry ->> 'prev_hash', entry_hash"
                " FROM vault_secure.journal_entries WHERE site = %s AND object_key = %s",
                (DESTINATION, values["key"])).fetchone()
            journal_seed = {**seed, "seq": seq, "prev": prev, "hash": entry_hash,
                            "sequenced_iso": _iso(sequenced), "sequenced_copy": _copy_ts(_iso(sequenced)),
                            "written_iso": _iso(written), "written_copy": _copy_ts(_iso(written))}
            templates["journal"].append(_template(conn, "journal_entries", columns, journal_seed,
                                                  "site = %s AND object_key = %s", (DESTINATION, values["key"])))
    return templates


def _template(conn: psycopg.Connection, table: str, columns: dict[str, tuple[str, ...]], seed: dict[str, Any],
              where: str, params: tuple[Any, ...]) -> Template:
    line = _copy_out(conn, table, columns[table], where, params)
    assert line.count("\n") == 1, f"expected one {table} row, got {line!r}"
    template = Template(table, columns[table], _templated(line, columns[table], seed))
    # the template with the seed's own values must give back the row as the code wrote it
    probe = {**seed, "segkey": line.rstrip("\n").split("\t")[columns[table].index("segment_key")]
             if "segment_key" in columns[table] else ""}
    assert template.render(probe) == line, f"{table} template does not reproduce its row"
    return template


# ---------------------------------------------------------------- bulk load

def _documents(rows: int, rng: random.Random, first_day: dt.date) -> Iterator[tuple[dict[str, Any], int, bool]]:
    """(values, type number, replicated?) for `rows` documents in arrival order (day by day)."""
    run_ids: dict[dt.date, str] = {}
    per_day, extra = divmod(rows, DAYS)
    for day_no in range(DAYS):
        day = first_day + dt.timedelta(days=day_no)
        run_ids.clear()
        for _ in range(per_day + (day_no < extra)):
            type_no = rng.randrange(len(TYPES))
            yield _document(rng, day, run_ids, type_no), type_no, rng.random() >= PENDING_SHARE


def load(dsn: str, templates: dict[str, list[Template]], rows: int, side_rows: int, first_day: dt.date,
         rng: random.Random, out: dict[str, Any]) -> None:
    """COPY the three tables at once, one connection each (a connection runs one COPY at a time), each in one
    transaction after TRUNCATE so that COPY FREEZE can set the visibility map, as autovacuum leaves an old
    table. Times each table's stream."""
    columns = {"replication_status": templates["replicated"][0].columns,
               "audit_logs": templates["audit"][0].columns, "journal_entries": templates["journal"][0].columns}
    streams = {table: _CopyStream(dsn, table, columns[table]) for table in TABLES}
    seq = 1
    generate_s = 0.0
    try:
        t0 = time.perf_counter()
        for values, type_no, replicated in _documents(rows, rng, first_day):
            if replicated:
                streams["replication_status"].add(templates["replicated"][type_no].render(values))
                if seq <= side_rows:
                    values["seq"] = seq
                    values["segkey"] = segment_key(JOURNAL_PREFIX, seq - (seq - 1) % 1000)
                    seq += 1
                    streams["audit_logs"].add(templates["audit"][type_no].render(values))
                    streams["journal_entries"].add(templates["journal"][type_no].render(values))
            else:
                streams["replication_status"].add(templates["pending"][0].render(values))
        for stream in streams.values():
            stream.close()
        generate_s = time.perf_counter() - t0 - sum(stream.server_s for stream in streams.values())
    finally:
        for stream in streams.values():
            stream.conn.close()
    out["copy"] = {table: stream.report() for table, stream in streams.items()}
    out["copy"]["python_generate_s"] = round(generate_s, 1)


class _CopyStream:
    """One table's COPY FROM STDIN, fed in ~4 MB chunks; the time spent in the server's COPY is measured
    per chunk (the first and last tenth give the rate at the start and at the end of the load)."""

    CHUNK = 4 << 20

    def __init__(self, dsn: str, table: str, columns: tuple[str, ...]) -> None:
        self.table, self.columns = table, columns
        self.buffer: list[str] = []
        self.buffered = 0
        self.rows = 0
        self.bytes = 0
        self.chunks: list[tuple[int, float]] = []  # rows, seconds
        self._pending_rows = 0
        self.finish_s = 0.0  # end of COPY and commit
        self.conn = psycopg.connect(dsn)
        self.conn.execute(sql.SQL("TRUNCATE vault_secure.{} RESTART IDENTITY").format(sql.Identifier(table)))
        self.cursor = self.conn.cursor()
        query = sql.SQL("COPY vault_secure.{} ({}) FROM STDIN WITH (FREEZE)").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        self._copy_cm = self.cursor.copy(query)
        self.copy = self._copy_cm.__enter__()

    @property
    def server_s(self) -> float:
        return sum(s for _, s in self.chunks) + self.finish_s

    def add(self, line: str) -> None:
        self.buffer.append(line)
        self.buffered += len(line)
        self._pending_rows += 1
        if self.buffered >= self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        data = "".join(self.buffer).encode()
        t0 = time.perf_counter()
        self.copy.write(data)
        self.chunks.append((self._pending_rows, time.perf_counter() - t0))
        self.rows += self._pending_rows
        self.bytes += len(data)
        self.buffer, self.buffered, self._pending_rows = [], 0, 0

    def close(self) -> None:
        self._flush()
        t0 = time.perf_counter()
        self._copy_cm.__exit__(None, None, None)  # the server finishes the last rows here
        self.cursor.close()
        self.conn.commit()
        self.finish_s = time.perf_counter() - t0

    def report(self) -> dict[str, Any]:
        tenth = max(1, len(self.chunks) // 10)

        def rate(chunks: list[tuple[int, float]]) -> float:
            return round(sum(r for r, _ in chunks) / max(sum(s for _, s in chunks), 1e-9))
        return {"rows": self.rows, "text_bytes": self.bytes, "server_s": round(self.server_s, 2),
                "finish_s": round(self.finish_s, 2),
                "rows_per_s": rate(self.chunks), "rows_per_s_first_tenth": rate(self.chunks[:tenth]),
                "rows_per_s_last_tenth": rate(self.chunks[-tenth:])}


# ---------------------------------------------------------------- sizes

def sizes(conn: psycopg.Connection, rows: int, side_rows: int, replicated: int,
          replicated_with_side: int) -> dict[str, Any]:
    """Heap (with TOAST), indexes and per-document bytes of each table. A document's bytes in a side table
    are per replicated document that has its rows there."""
    result: dict[str, Any] = {}
    per_document = 0.0
    for table in TABLES:
        heap, toast, indexes, total = conn.execute(
            "SELECT pg_relation_size(c.oid), COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0),"
            " pg_indexes_size(c.oid), pg_total_relation_size(c.oid)"
            " FROM pg_class c WHERE c.oid = %s::regclass", (f"vault_secure.{table}",)).fetchone()
        by_index = {name: size for name, size in conn.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
            " WHERE indrelid = %s::regclass ORDER BY 2 DESC", (f"vault_secure.{table}",))}
        documents = rows if table == "replication_status" else replicated_with_side
        per_doc = total / documents if documents else 0.0
        result[table] = {"heap_bytes": heap, "toast_bytes": toast, "indexes_bytes": indexes, "total_bytes": total,
                         "documents": documents, "bytes_per_document": round(per_doc, 1),
                         "indexes": {k.removeprefix("vault_secure."): v for k, v in by_index.items()},
                         "index_bytes_per_document": {k.removeprefix("vault_secure."): round(v / max(documents, 1), 1)
                                                      for k, v in by_index.items()}}
        # a replicated document has one row in each table; a pending one only its replication_status row
        per_document += per_doc if table == "replication_status" else per_doc * replicated / max(rows, 1)
    result["bytes_per_document_all_tables"] = round(per_document, 1)
    result["database_bytes"] = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return result


# ---------------------------------------------------------------- plans

def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def explain(conn: psycopg.Connection, query: str, params: Any, *, prepare: bool | None = None) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of `query` in a transaction rolled back (a claim updates rows). index_only:
    every scan of replication_status is an Index Only Scan."""
    with conn.transaction(force_rollback=True):
        [[document]] = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params,
                                    prepare=prepare).fetchall()
    top = document[0]
    scans = [node for node in _plan_nodes(top["Plan"])
             if node.get("Relation Name") == "replication_status" or
             (node.get("Index Name") or "").startswith(("replication_status", "idx_replication_status"))]
    heap_scans = [n for n in scans if n["Node Type"] in ("Seq Scan", "Index Scan", "Bitmap Heap Scan")]
    return {
        "index_only": bool(scans) and all(n["Node Type"] == "Index Only Scan" for n in scans),
        "scans": [f"{n['Node Type']} {n.get('Index Name') or n.get('Relation Name')}" for n in scans],
        "heap_fetches": sum(int(n.get("Heap Fetches", 0)) for n in scans),
        "table_scan": bool(heap_scans),
        "rows_removed_by_filter": sum(int(n.get("Rows Removed by Filter", 0)) for n in scans),
        "shared_hit_blocks": top["Plan"].get("Shared Hit Blocks", 0),
        "shared_read_blocks": top["Plan"].get("Shared Read Blocks", 0),
        "execution_ms": round(top["Execution Time"], 3),
    }


# ---------------------------------------------------------------- timings

def _timed(call: Callable[[], Any], repeat: int) -> tuple[dict[str, float], Any]:
    seconds, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - t0)
    return {"median_ms": round(statistics.median(seconds) * 1000, 3),
            "max_ms": round(max(seconds) * 1000, 3)}, result


def _known_page(conn: psycopg.Connection, rng: random.Random, first_day: dt.date) -> list[ListedObject]:
    """1000 consecutive known keys from a random place of the bucket, as a listing page gives them."""
    day = first_day + dt.timedelta(days=rng.randrange(DAYS))
    start = f"tenant-{rng.randrange(TENANTS):04d}/{day:%Y/%m/%d}/"
    return [ListedObject(k, e, s, m) for k, e, s, m in conn.execute(
        "SELECT s3_key, ovh_etag, ovh_size, source_last_modified FROM vault_secure.replication_status"
        " WHERE bucket_source = %s AND s3_key >= %s ORDER BY s3_key LIMIT %s", (SOURCE, start, PAGE))]


def registration(store: TrackingStore, rng: random.Random, first_day: dt.date, pages: int) -> dict[str, Any]:
    """register() of listing pages of new keys (a new day of every tenant) and of known keys (the sweep's
    common case: nothing changed)."""
    new_day = first_day + dt.timedelta(days=DAYS)
    new_pages = []
    for _ in range(pages):
        keys = sorted(f"tenant-{rng.randrange(TENANTS):04d}/{new_day:%Y/%m/%d}/{_uuid(rng)}.pdf" for _ in range(PAGE))
        modified = dt.datetime.combine(new_day, dt.time(12), tzinfo=dt.UTC)
        new_pages.append([ListedObject(k, _hex(rng, 32), rng.randrange(20_000, 2_000_000), modified) for k in keys])
    with store.pool.connection() as conn:
        known_pages = [_known_page(conn, rng, first_day) for _ in range(pages)]
    result: dict[str, Any] = {}
    for name, page_list in (("new_keys", new_pages), ("known_keys", known_pages)):
        seconds = []
        registered = 0
        for page in page_list:
            t0 = time.perf_counter()
            outcome = store.register(page, source_bucket=SOURCE, destination_bucket=DESTINATION)
            seconds.append(time.perf_counter() - t0)
            registered += outcome.new + outcome.changed
        keys = sum(len(p) for p in page_list)
        result[name] = {"pages": len(page_list), "keys": keys, "became_pending": registered,
                        "keys_per_s": round(keys / sum(seconds)),
                        "page_median_ms": round(statistics.median(seconds) * 1000, 2),
                        "page_max_ms": round(max(seconds) * 1000, 2)}
    assert result["known_keys"]["became_pending"] == 0, "a known, unchanged key became pending"
    assert result["new_keys"]["became_pending"] == result["new_keys"]["keys"]
    return result


def claims(store: TrackingStore, rng: random.Random, rounds: int) -> dict[str, Any]:
    """claim(limit 64) on days with pending rows; each claim's rows are then recorded as verified copies
    (mark_replicated_many: row, audit log and journal entry, as a run does) or, every fourth claim, released."""
    days = [day for day, _, _ in store.days_needing_runs(SOURCE)]
    claim_s, record_s, claimed, recorded, released = [], [], 0, 0, 0
    run_ids: dict[dt.date, str] = {}
    for n in range(rounds):
        day = rng.choice(days)
        owner = f"scalebench-{n}"
        t0 = time.perf_counter()
        rows = store.claim(owner=owner, source_bucket=SOURCE, first_day=day, last_day=day, limit=CLAIM_LIMIT,
                           lease_seconds=600, not_attempted_since=store.db_now())
        claim_s.append(time.perf_counter() - t0)
        claimed += len(rows)
        if n % 4 == 3:
            released += store.release(owner)
            continue
        copies = []
        for row in rows:
            values = _document(rng, row.partition_day, run_ids, 0)
            values.update(etag=row.ovh_etag, size=row.ovh_size, modified_iso=_iso(row.source_last_modified))
            copies.append((row, _seed_outcome(values, 0), 0.031))
        t0 = time.perf_counter()
        statuses = store.mark_replicated_many(copies, owner, run_id=str(uuid.uuid4()))
        record_s.append(time.perf_counter() - t0)
        recorded += statuses.count("replicated")
    return {"claims": rounds, "limit": CLAIM_LIMIT, "rows_claimed": claimed, "rows_recorded": recorded,
            "rows_released": released,
            "claim_median_ms": round(statistics.median(claim_s) * 1000, 2),
            "claim_max_ms": round(max(claim_s) * 1000, 2),
            "claimed_rows_per_s": round(claimed / sum(claim_s)),
            "record_batch_median_ms": round(statistics.median(record_s) * 1000, 2) if record_s else None,
            "recorded_rows_per_s": round(recorded / sum(record_s)) if record_s else None}


def audit_reads(store: TrackingStore, conn: psycopg.Connection, rng: random.Random,
                side_rows: int) -> dict[str, Any]:
    """What reads audit_logs: a run's evidence (evidence.run_evidence, index of 009) and one key's history."""
    if not side_rows:
        return {}
    run_id, key = conn.execute(
        "SELECT run_id, object_key FROM vault_secure.audit_logs WHERE id = %s",
        (rng.randrange(1, side_rows // 2 + 2),)).fetchone()
    evidence_timing, evidence = _timed(lambda: run_evidence(store, run_id, SOURCE), 5)
    history_sql = ("SELECT event_type, created_at, metadata FROM vault_secure.audit_logs"
                   " WHERE source_bucket = %s AND object_key = %s ORDER BY id")
    history_timing, _ = _timed(lambda: conn.execute(history_sql, (SOURCE, key)).fetchall(), 5)
    return {"run_evidence": {**evidence_timing, "rows": len(evidence)},
            "key_history": history_timing,
            "run_evidence_plan": _audit_plan(conn, run_id)}


def _audit_plan(conn: psycopg.Connection, run_id: str) -> list[str]:
    with conn.transaction(force_rollback=True):
        [[document]] = conn.execute(
            "EXPLAIN (FORMAT JSON) SELECT object_key, metadata -> 'verified_head' FROM vault_secure.audit_logs"
            " WHERE run_id = %s AND event_type = 'REPLICATION_SUCCESS' AND source_bucket = %s"
            " AND metadata ? 'verified_head' ORDER BY id", (run_id, SOURCE)).fetchall()
    return [f"{n['Node Type']} {n.get('Index Name', '')}".strip() for n in _plan_nodes(document[0]["Plan"])]


# ---------------------------------------------------------------- the benchmark

def run_database_bench(dsn: str, rows: int, *, out: dict[str, Any], side_rows: int | None = None,
                       registration_pages: int = 20, claim_rounds: int = 40, seed: int = 14,
                       log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Fill a fresh tracking database at `dsn` with `rows` documents and measure it (see the module doc).
    Results are written into `out` as they are measured (a failure keeps what was measured) and returned.
    `side_rows`: documents whose audit log and journal entry are loaded too (default min(rows, 1M))."""
    side_rows = min(rows, 1_000_000) if side_rows is None else min(side_rows, rows)
    rng = random.Random(seed)
    out.update(rows=rows, side_rows=side_rows, days=DAYS, pending_share=PENDING_SHARE)
    store = TrackingStore(dsn, max_size=4)
    try:
        out["migrations_applied"] = store.migrate()
        with store.pool.connection() as conn:
            conn.autocommit = True
            out["server"] = {
                "version": conn.execute("SHOW server_version").fetchone()[0],
                "lz4": conn.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                                    " WHERE name = 'default_toast_compression'").fetchone()[0],
                "shared_buffers": conn.execute("SHOW shared_buffers").fetchone()[0]}
        log("seeding templates through the store's own code")
        templates = seed_templates(store, rng)
        first_day = store.db_now().date() - dt.timedelta(days=DAYS)
        log(f"COPY {rows} documents ({side_rows} with audit log and journal entry)")
        t0 = time.perf_counter()
        load(dsn, templates, rows, side_rows, first_day, rng, out)
        out["copy"]["wall_s"] = round(time.perf_counter() - t0, 1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            t0 = time.perf_counter()
            for table in TABLES:
                conn.execute(f"VACUUM (ANALYZE) vault_secure.{table}")  # constant table names
            out["vacuum_analyze_s"] = round(time.perf_counter() - t0, 1)
            replicated, with_side = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'replicated'),"
                " (SELECT count(*) FROM vault_secure.audit_logs) FROM vault_secure.replication_status").fetchone()
            out["documents"] = {"replicated": replicated, "pending": rows - replicated,
                                "with_audit_and_journal": with_side}
            out["sizes"] = sizes(conn, rows, side_rows, replicated, with_side)
            log(f"sizes: {out['sizes']['bytes_per_document_all_tables']} B/document")

            day = first_day + dt.timedelta(days=DAYS // 2)
            known = _known_page(conn, rng, first_day)
            sc_query, sc_params = status_counts_query(SOURCE, day, day)
            diff_params = {"keys": [o.key for o in known], "etags": [o.etag for o in known], "src": SOURCE,
                           "cap": 2 * len(known) + 1}
            claim_params = {"owner": "scalebench-explain", "lease": 600, "src": SOURCE, "d0": day, "d1": day,
                            "limit": CLAIM_LIMIT, "since": dt.datetime.now(dt.UTC)}
            out["plans"] = {
                "registration_diff_known_page": explain(conn, _DIFF_SQL, diff_params, prepare=False),
                "days_needing_runs": explain(conn, DAYS_NEEDING_RUNS_SQL, (SOURCE,)),
                "pending_count": explain(conn, PENDING_COUNT_SQL, (SOURCE,)),
                "status_counts_one_day": explain(conn, sc_query, sc_params),
                # last: even rolled back, its UPDATE clears the visibility bits of the pages it touched
                "claim": explain(conn, CLAIM_SQL, claim_params),
            }
            log("plans: " + ", ".join(f"{k}={v['index_only']}" for k, v in out["plans"].items()))
            out["latency"] = {
                "days_needing_runs": _timed(lambda: store.days_needing_runs(SOURCE), 5)[0],
                "pending_count": _timed(lambda: store.pending_count(SOURCE), 5)[0],
                "status_counts_one_day": _timed(
                    lambda: store.status_counts(source_bucket=SOURCE, first_day=day, last_day=day), 5)[0],
            }
            out["audit_reads"] = audit_reads(store, conn, rng, side_rows)
        log("registration")
        out["registration"] = registration(store, rng, first_day, registration_pages)
        log("claims")
        out["claims"] = claims(store, rng, claim_rounds)
    finally:
        store.close()
    return out


def _embedded_postgres(work: Path) -> Any:
    from vault_pipeline.devstack.ports import find_free_port_block
    from vault_pipeline.devstack.postgres import EmbeddedPostgres

    return EmbeddedPostgres(work / "data", find_free_port_block(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="a tracking database to fill (emptied first!); default: an embedded PostgreSQL")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--side-rows", type=int,
                        help="documents with audit log and journal entry (default: min(rows, 1M))")
    parser.add_argument("--work-dir", type=Path,
                        help="where the embedded PostgreSQL keeps its data (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="write the result as JSON here too")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    out: dict[str, Any] = {}
    try:
        if args.dsn:
            run_database_bench(args.dsn, args.rows, out=out, side_rows=args.side_rows, log=log)
        else:
            with tempfile.TemporaryDirectory(prefix="scalebench-db-", dir=args.work_dir) as work:
                server = _embedded_postgres(Path(work))
                with server:
                    with psycopg.connect(server.dsn(), autocommit=True) as conn:
                        # a bulk load: fewer checkpoints; the defaults are otherwise kept (128MB buffers)
                        conn.execute("ALTER SYSTEM SET max_wal_size = '2GB'")
                        conn.execute("SELECT pg_reload_conf()")
                    server.create_database("scalebench")
                    run_database_bench(server.dsn("scalebench"), args.rows, out=out, side_rows=args.side_rows,
                                       log=log)
    finally:
        text = json.dumps(out, indent=2, default=str)
        print(text)
        if args.out:
            args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
