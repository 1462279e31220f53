"""Sealing: the Sealer seals the journal of one cold site day by day, each day once, in order.

How a day is sealed (docs/journal.md, section 3): refuse a day that is not over by the database's clock
(the one that dates entries); flush the outbox, take the site's flush lock and require that no sequenced
entry is left unwritten; then seal every day from the day after the last seal up to the requested one,
empty days included, reading the entries back from the cold site's segments (reader.py: one version per
segment, every link checked from the previous seal's chain head) and cross-checking only counts and seqs
with the database. An existing seal is never rewritten: it is re-checked against the journal, or adopted
after a crash if it seals exactly the same range, root and chain head. Each seal is recorded in
vault_secure.journal_seals. The seal document itself is seal_format.py; keys are signing.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from vault_pipeline.journal import outbox
from vault_pipeline.journal.chain import GENESIS_HASH, ChainState, canonical_json
from vault_pipeline.journal.entries import iso
from vault_pipeline.journal.merkle import leaf_hash, root_from_leaf_hashes
from vault_pipeline.journal.reader import iter_journal
from vault_pipeline.journal.seal_format import SealError, build_seal, day_end, entry_day, structure_problems
from vault_pipeline.journal.seal_store import StoredSeal, day_of_seal_key, read_seal, seal_key, seal_versions
from vault_pipeline.journal.segments import SegmentExists, SegmentStore
from vault_pipeline.journal.signing import (
    PUBLIC_KEYS_VARIABLE,
    SIGNING_KEY_VARIABLE,
    SealSigner,
    SigningKeyError,
    TimestampAuthority,
    parse_public_keys,
)
from vault_pipeline.journal.writer import JournalWriter


class DayNotOver(SealError):
    """The day asked for has not ended yet (UTC): entries may still be dated in it."""


@dataclass(frozen=True)
class DaySeal:
    day: dt.date
    key: str
    version_id: str | None
    seal: dict[str, Any]
    seal_hash: str
    written: bool  # False: found on the cold site (already sealed, or written before a crash)


@dataclass
class SealRun:
    requested_day: dt.date
    sealed: list[DaySeal] = field(default_factory=list)  # written by this run (or adopted after a crash)
    already_sealed: list[DaySeal] = field(default_factory=list)  # the requested day was sealed before
    flushed_entries: int = 0
    warnings: list[str] = field(default_factory=list)
    note: str | None = None
    duration_s: float = 0.0

    @property
    def target(self) -> DaySeal | None:
        """The seal of the requested day (None when nothing was journaled by then)."""
        return next((s for s in [*self.sealed, *self.already_sealed] if s.day == self.requested_day), None)


def _db_now(conn: psycopg.Connection) -> dt.datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0].astimezone(dt.UTC)


def refuse_open_day(day: dt.date, now: dt.datetime) -> None:
    if now < day_end(day):
        raise DayNotOver(f"day {day.isoformat()} is not over yet (UTC now {iso(now)}): it can be sealed from "
                         f"{iso(day_end(day))} on")


@dataclass
class _Day:
    first_seq: int
    leaves: list[bytes] = field(default_factory=list)
    last_seq: int = 0
    head: str = GENESIS_HASH


class Sealer:
    """Seals the journal of one cold site (`store.bucket`) day by day. See seal_through."""

    def __init__(self, dsn: str, store: SegmentStore, signer: SealSigner, *, writer: JournalWriter | None = None,
                 public_keys: Sequence[str] = (), tsa: TimestampAuthority | None = None) -> None:
        self.dsn, self.store, self.signer, self.tsa = dsn, store, signer, tsa
        self.writer = writer
        self.site = store.bucket
        configured = parse_public_keys(public_keys)
        if configured and signer.public_key_raw not in configured:
            raise SigningKeyError(f"the public key of {SIGNING_KEY_VARIABLE} (key id {signer.key_id}) is not one of "
                                  f"{PUBLIC_KEYS_VARIABLE}: seals signed with it would not verify")
        self.trusted = {signer.public_key_raw, *configured}

    def seal_through(self, day: dt.date, *, now: dt.datetime | None = None, run_id: str | None = None) -> SealRun:
        """Seal every unsealed day up to `day` included, in order.

        `now` defaults to the database's clock, the clock that dates entries (the flusher's `now()`), so a
        day is over for the sealer exactly when no flush can date an entry in it any more. The pending
        entries are flushed first; then, under the site's flush lock (no flush runs meanwhile), the day's
        entries are read back from the cold site and checked, and each missing day gets its seal."""
        started = _time.monotonic()
        run = SealRun(requested_day=day)
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=15) as conn:
            refuse_open_day(day, now or _db_now(conn))
            if self.writer is not None:
                run.flushed_entries = self.writer.flush(run_id=run_id).entries
            outbox.lock_site(conn, self.site)
            try:
                clock = now or _db_now(conn)
                refuse_open_day(day, clock)
                unwritten = outbox.backlog(conn, self.site)["unwritten"]
                if unwritten:
                    raise SealError(f"{unwritten} journal entries are sequenced but not written to the cold site "
                                    "(an interrupted flush): the next flush writes them; seal again after it")
                self._seal_locked(conn, run, day, clock)
            finally:
                outbox.unlock_site(conn, self.site)
        run.duration_s = _time.monotonic() - started
        return run

    # -- steps ----------------------------------------------------------------------------------
    def _trusted_seal(self, key: str) -> StoredSeal:
        """A seal this sealer may build on: one version, well-formed, signed by a trusted key."""
        versions = self.store.versions_of(key)
        if versions != 1:
            raise SealError(f"seal {key} has {versions} versions (or delete markers), expected exactly 1: it was "
                            "replaced after it was written; run `vault-pipeline journal verify`")
        stored = read_seal(self.store, key)
        problems = structure_problems(stored.seal, bucket=self.site, day=day_of_seal_key(self.store.prefix, key))
        if not problems and not stored.canonical:
            problems.append("stored bytes are not the canonical JSON of the seal")
        if not problems and base64.b64decode(stored.seal["public_key"]) not in self.trusted:
            problems.append(f"signed by key id {stored.seal['key_id']}, which is neither the signing key nor one of "
                            f"{PUBLIC_KEYS_VARIABLE}")
        if problems:
            raise SealError(f"seal {key}: {'; '.join(problems)}")
        return stored

    def _seal_locked(self, conn: psycopg.Connection, run: SealRun, day: dt.date, clock: dt.datetime) -> None:
        versions = seal_versions(self.store)
        existing = {d: k for k in versions if (d := day_of_seal_key(self.store.prefix, k)) is not None}
        existing = dict(sorted(existing.items()))
        for key, count in versions.items():
            if count > 1:
                run.warnings.append(f"seal {key} has {count} versions (or delete markers): it was replaced or hidden "
                                    "after its write; run `vault-pipeline journal verify`")
        last_day = max(existing) if existing else None
        if last_day is not None and day <= last_day:
            if day not in existing:
                if day < min(existing):
                    run.note = (f"nothing to seal: {day.isoformat()} precedes the first journaled day "
                                f"({min(existing).isoformat()})")
                    return
                raise SealError(f"seal {seal_key(self.store.prefix, day)} is missing although {last_day.isoformat()} "
                                "is sealed: the seal chain has a gap; run `vault-pipeline journal verify`")
            found = self._check_existing(existing, day)
            run.already_sealed.append(found)
            self._record(conn, run, found)
            return

        if last_day is not None:
            previous = self._trusted_seal(existing[last_day])
            self._record(conn, run, _as_day_seal(previous, written=False))
            state = ChainState(previous.seal["last_seq"] + 1, previous.seal["chain_head"])
            prev_hash, start_day = previous.seal_hash, last_day + dt.timedelta(days=1)
        else:
            state, prev_hash, start_day = ChainState(), GENESIS_HASH, None

        expected = self._db_days(conn, state.next_seq, day)
        days: dict[dt.date, _Day] = {}
        current: dt.date | None = None
        for segment_key_, entry in iter_journal(self.store, state):
            when = entry_day(entry)
            if when > day:
                break
            if start_day is None:
                start_day = when
            if when < start_day or (current is not None and when < current):
                raise SealError(f"journal entry seq={entry['seq']} in segment {segment_key_} is dated "
                                f"{when.isoformat()}, after entries of a later day or of a day already sealed: "
                                "the journal's clock ran backwards")
            current = when
            acc = days.setdefault(when, _Day(first_seq=entry["seq"]))
            acc.leaves.append(leaf_hash(canonical_json(entry)))
            acc.last_seq, acc.head = entry["seq"], entry["entry_hash"]
        if start_day is None or start_day > day:
            run.note = f"nothing to seal: nothing was journaled on or before {day.isoformat()}"
            return
        self._compare_with_db(days, expected)

        head = state
        d = start_day
        while d <= day:
            acc = days.get(d)
            leaves = acc.leaves if acc else []
            chain_head = acc.head if acc else head.last_hash
            seal = build_seal(bucket=self.site, day=d, first_seq=head.next_seq, leaf_hashes=leaves,
                              chain_head=chain_head, prev_seal_hash=prev_hash, signer=self.signer, now=clock,
                              tsa=self.tsa)
            written = self._write(seal, clock)
            self._record(conn, run, written)
            run.sealed.append(written)
            head = ChainState(head.next_seq + len(leaves), chain_head)
            prev_hash = written.seal_hash
            d += dt.timedelta(days=1)

    def _write(self, seal: dict[str, Any], clock: dt.datetime) -> DaySeal:
        day = dt.date.fromisoformat(seal["day"])
        key = seal_key(self.store.prefix, day)
        body = canonical_json(seal)
        try:
            version = self.store.put_once(key, body, content_type="application/json", kind="journal-seal", now=clock)
            return DaySeal(day, key, version, seal, hashlib.sha256(body).hexdigest(), written=True)
        except SegmentExists:
            # Written before a crash (or by a sealer we raced, which the lock should prevent): keep it if it
            # seals exactly what this one would have; a seal is never rewritten.
            stored = self._trusted_seal(key)
            same = ("first_seq", "last_seq", "tree_size", "root", "chain_head", "prev_seal_hash", "bucket", "day")
            differing = [f for f in same if stored.seal.get(f) != seal[f]]
            if differing:
                raise SealError(f"seal {key} already exists and differs from the journal in "
                                f"{', '.join(differing)}") from None
            return _as_day_seal(stored, written=False)

    def _check_existing(self, existing: Mapping[dt.date, str], day: dt.date) -> DaySeal:
        """An existing seal is never rewritten: check that it still matches the journal and report it."""
        stored = self._trusted_seal(existing[day])
        seal = stored.seal
        previous_day = day - dt.timedelta(days=1)
        if previous_day in existing:
            previous = self._trusted_seal(existing[previous_day])
            if seal["prev_seal_hash"] != previous.seal_hash or seal["first_seq"] != previous.seal["last_seq"] + 1:
                raise SealError(f"seal {stored.key} does not follow {previous.key} (prev_seal_hash or seq range)")
            state = ChainState(seal["first_seq"], previous.seal["chain_head"])
        elif seal["prev_seal_hash"] != GENESIS_HASH or seal["first_seq"] != 1:
            raise SealError(f"seal {stored.key}: no seal for the day before, yet it is not a first seal (genesis "
                            "prev_seal_hash, first_seq 1)")
        else:
            state = ChainState()
        leaves: list[bytes] = []
        head = state.last_hash
        for segment_key_, entry in iter_journal(self.store, state):
            if entry["seq"] > seal["last_seq"]:
                if entry_day(entry) <= day:
                    raise SealError(f"journal entry seq={entry['seq']} in segment {segment_key_} is dated "
                                    f"{entry_day(entry).isoformat()} but is not covered by seal {stored.key}")
                break
            if entry_day(entry) != day:
                raise SealError(f"journal entry seq={entry['seq']} in segment {segment_key_} is dated "
                                f"{entry_day(entry).isoformat()}, outside the day of seal {stored.key}")
            leaves.append(leaf_hash(canonical_json(entry)))
            head = entry["entry_hash"]
        if len(leaves) != seal["tree_size"]:
            raise SealError(f"seal {stored.key} covers seqs {seal['first_seq']}..{seal['last_seq']} but the cold "
                            f"site has {len(leaves)} of them")
        if root_from_leaf_hashes(leaves).hex() != seal["root"] or head != seal["chain_head"]:
            raise SealError(f"seal {stored.key}: the Merkle root or chain head recomputed from the journal differs "
                            "from the sealed one")
        return _as_day_seal(stored, written=False)

    def _db_days(self, conn: psycopg.Connection, from_seq: int, day: dt.date) -> dict[dt.date, tuple[int, int, int]]:
        """What the database knows of the days to seal: day -> (count, first seq, last seq). Only a
        cross-check: the seal is built from the cold site's segments."""
        rows = conn.execute(
            """
            SELECT ((entry->>'time')::timestamptz AT TIME ZONE 'UTC')::date AS day, count(*), min(seq), max(seq)
            FROM vault_secure.journal_entries
            WHERE site = %s AND seq >= %s AND (entry->>'time')::timestamptz < %s
            GROUP BY 1 ORDER BY 1
            """,
            (self.site, from_seq, day_end(day)),
        ).fetchall()
        return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}

    @staticmethod
    def _compare_with_db(days: Mapping[dt.date, _Day], expected: Mapping[dt.date, tuple[int, int, int]]) -> None:
        for d in sorted(set(days) | set(expected)):
            acc = days.get(d)
            on_storage = (len(acc.leaves), acc.first_seq, acc.last_seq) if acc else (0, None, None)
            in_db = expected.get(d, (0, None, None))
            if on_storage != in_db:
                raise SealError(
                    f"day {d.isoformat()}: the cold site's journal holds {on_storage[0]} entries (seqs "
                    f"{on_storage[1]}..{on_storage[2]}) but the database {in_db[0]} (seqs {in_db[1]}..{in_db[2]}): "
                    "the journal on the storage and the database disagree; run `vault-pipeline journal verify`")

    def _record(self, conn: psycopg.Connection, run: SealRun, sealed: DaySeal) -> None:
        seal = sealed.seal
        conn.execute(
            """
            INSERT INTO vault_secure.journal_seals
                (site, day, seal_key, version_id, first_seq, last_seq, tree_size, root, seal_hash)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (site, day) DO NOTHING
            """,
            (self.site, sealed.day, sealed.key, sealed.version_id, seal["first_seq"], seal["last_seq"],
             seal["tree_size"], seal["root"], sealed.seal_hash),
        )
        row = conn.execute("SELECT seal_hash FROM vault_secure.journal_seals WHERE site = %s AND day = %s",
                           (self.site, sealed.day)).fetchone()
        if row is not None and row[0] != sealed.seal_hash:
            run.warnings.append(f"the database records seal hash {row[0]} for {sealed.day.isoformat()}, the cold "
                                f"site's seal {sealed.key} hashes to {sealed.seal_hash}")


def _as_day_seal(stored: StoredSeal, *, written: bool) -> DaySeal:
    return DaySeal(stored.day, stored.key, stored.version_id, stored.seal, stored.seal_hash, written)


def seal_through(day: dt.date, *, dsn: str, store: SegmentStore, signer: SealSigner,
                 writer: JournalWriter | None = None, public_keys: Sequence[str] = (),
                 now: dt.datetime | None = None, tsa: TimestampAuthority | None = None,
                 run_id: str | None = None) -> SealRun:
    """Seal every unsealed day up to `day` (see Sealer.seal_through)."""
    return Sealer(dsn, store, signer, writer=writer, public_keys=public_keys, tsa=tsa).seal_through(
        day, now=now, run_id=run_id)
