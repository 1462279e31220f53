"""Daily seals: a signed RFC 9162 Merkle checkpoint over one UTC day of journal entries.

A seal is one canonical JSON object, written once (If-None-Match), locked COMPLIANCE, STANDARD class, at
`journal/seals/YYYY-MM-DD.json`. It commits to the day's entries (tree size, Merkle root, seq range, the
chain head), to the previous seal (`prev_seal_hash`) and is signed with Ed25519:

    format            "vault-pipeline/journal-seal/v1"
    bucket            the cold bucket (the journal's site)
    day               "YYYY-MM-DD": the UTC day of the entries' `time`
    first_seq         first seq of the day; for an empty day the next seq (so first_seq = last_seq + 1)
    last_seq          last seq of the day (0 when nothing was ever journaled)
    tree_size         last_seq - first_seq + 1
    root              hex MTH of the day (RFC 9162): leaf i = canonical JSON of entry first_seq + i;
                      SHA-256 of the empty string for an empty day
    chain_head        entry_hash of entry last_seq (64 zeros before the first entry)
    time              when the seal was made (ISO 8601, UTC)
    prev_seal_hash    seal_hash of the previous day's seal (64 zeros for the first seal)
    key_id            first 16 hex digits of SHA-256(raw public key)
    public_key        base64 of the raw 32-byte Ed25519 public key
    signature_algorithm  "ed25519"
    timestamp_token   base64 RFC 3161 token over SHA-256(canonical JSON without signature and
                      timestamp_token), or null (see TimestampAuthority)
    signature         base64 Ed25519 signature of the canonical JSON of every other field

seal_hash = SHA-256 of the canonical JSON of the whole seal, i.e. of the stored object's bytes.

The signing key is VAULT_JOURNAL_SIGNING_KEY: base64 of the 32-byte raw Ed25519 seed. It is only ever read
from the environment and appears in no message, seal, log or metadata; only the public key and its id do.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import time as _time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vault_pipeline.journal import outbox
from vault_pipeline.journal.chain import GENESIS_HASH, ChainError, ChainState, canonical_json, verify_chain
from vault_pipeline.journal.entries import iso, parse_time
from vault_pipeline.journal.merkle import leaf_hash, root_from_leaf_hashes
from vault_pipeline.journal.reader import RewrittenSegment
from vault_pipeline.journal.segments import (
    SEAL_DIR,
    JournalError,
    ListedSegment,
    SegmentExists,
    SegmentStore,
    json_object,
)
from vault_pipeline.journal.writer import JournalWriter

SEAL_FORMAT = "vault-pipeline/journal-seal/v1"
SIGNATURE_ALGORITHM = "ed25519"
SIGNING_KEY_VARIABLE = "VAULT_JOURNAL_SIGNING_KEY"
PUBLIC_KEYS_VARIABLE = "VAULT_JOURNAL_PUBLIC_KEYS"
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
SEAL_FIELDS = ("format", "bucket", "day", "first_seq", "last_seq", "tree_size", "root", "chain_head", "time",
               "prev_seal_hash", "key_id", "public_key", "signature_algorithm", "timestamp_token", "signature")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SEAL_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.json$")


class SealError(JournalError):
    """Sealing is refused or a seal does not hold; the message names the day, seal or entry at fault."""


class DayNotOver(SealError):
    """The day asked for has not ended yet (UTC): entries may still be dated in it."""


class SigningKeyError(ValueError):
    """The signing key or a public key is missing or malformed (the message never contains the key)."""


# -- keys and signatures ----------------------------------------------------------------------
def key_id(public_key_raw: bytes) -> str:
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


def _b64decode(value: str, what: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(f"{what} is not valid base64") from None
    if len(raw) != size:
        raise SigningKeyError(f"{what} decodes to {len(raw)} bytes, expected {size}")
    return raw


def parse_public_key(value: str, what: str = "public key") -> bytes:
    """The raw 32 bytes of a base64 Ed25519 public key (raises SigningKeyError)."""
    raw = _b64decode(value, what, 32)
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def parse_public_keys(values: Iterable[str]) -> list[bytes]:
    return [parse_public_key(v, f"{PUBLIC_KEYS_VARIABLE} entry #{i}") for i, v in enumerate(values, start=1)
            if v.strip()]


class SealSigner:
    """An Ed25519 private key. repr() and str() show only the public key id."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key_raw = private_key.public_key().public_bytes_raw()

    @classmethod
    def from_seed_b64(cls, value: str | None, what: str = SIGNING_KEY_VARIABLE) -> SealSigner:
        if value is None or not value.strip():
            raise SigningKeyError(f"{what} is not set: seals cannot be signed. Generate a key with "
                                  "`vault-pipeline journal keygen` and keep it in the secret store")
        seed = _b64decode(value, f"{what} (base64 of the 32-byte Ed25519 seed)", 32)
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls) -> SealSigner:
        return cls(Ed25519PrivateKey.generate())

    def seed_b64(self) -> str:
        """The secret seed, for `journal keygen` only."""
        return base64.b64encode(self._key.private_bytes_raw()).decode()

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key_raw).decode()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key_raw)

    def sign(self, payload: bytes) -> bytes:
        return self._key.sign(payload)

    def __repr__(self) -> str:
        return f"SealSigner(key_id={self.key_id})"

    __str__ = __repr__


class TimestampAuthority(Protocol):
    """Hook for an RFC 3161 time-stamping authority (none is reachable here, so none is used by default).

    `stamp` receives the 32-byte SHA-256 digest of the seal's canonical JSON without `signature` and
    `timestamp_token` (the TimeStampReq messageImprint, hashAlgorithm SHA-256) and returns the DER
    TimeStampToken, or None when no token could be obtained (the seal is then written without one). The
    token is stored base64 in `timestamp_token`, which the signature covers. An implementation POSTs an
    `application/timestamp-query` to the TSA and checks the response's status and imprint."""

    def stamp(self, digest: bytes) -> bytes | None: ...


def signed_payload(seal: Mapping[str, Any]) -> bytes:
    """What the signature covers: the canonical JSON of every field but `signature`."""
    return canonical_json({k: v for k, v in seal.items() if k != "signature"})


def timestamp_digest(seal: Mapping[str, Any]) -> bytes:
    """What an RFC 3161 token stamps: SHA-256 of the canonical JSON without signature and token."""
    return hashlib.sha256(canonical_json(
        {k: v for k, v in seal.items() if k not in ("signature", "timestamp_token")})).digest()


def seal_hash(seal: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(seal)).hexdigest()


def check_signature(seal: Mapping[str, Any]) -> str | None:
    """None if the signature verifies with the public key the seal carries, else why not."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(str(seal["public_key"]), validate=True))
        signature = base64.b64decode(str(seal["signature"]), validate=True)
    except (KeyError, binascii.Error, ValueError) as exc:
        return f"unreadable public key or signature ({exc})"
    try:
        public.verify(signature, signed_payload(seal))
    except InvalidSignature:
        return "Ed25519 signature does not verify over the seal's content (seal altered or signed by another key)"
    except TypeError as exc:
        return f"seal is not canonical JSON material ({exc})"
    return None


def structure_problems(seal: Any, *, bucket: str | None = None, day: dt.date | None = None) -> list[str]:
    """Field-level problems of a seal document (types, format, consistency between fields)."""
    if not isinstance(seal, dict):
        return ["is not a JSON object"]
    problems = []
    missing = [f for f in SEAL_FIELDS if f not in seal]
    if missing:
        problems.append(f"missing field(s) {', '.join(missing)}")
    extra = sorted(set(seal) - set(SEAL_FIELDS))
    if extra:
        problems.append(f"unknown field(s) {', '.join(extra)}")
    if missing:
        return problems
    if seal["format"] != SEAL_FORMAT:
        problems.append(f"format {seal['format']!r} is not {SEAL_FORMAT!r}")
    if seal["signature_algorithm"] != SIGNATURE_ALGORITHM:
        problems.append(f"signature_algorithm {seal['signature_algorithm']!r} is not {SIGNATURE_ALGORITHM!r}")
    if bucket is not None and seal["bucket"] != bucket:
        problems.append(f"bucket {seal['bucket']!r} is not this journal's bucket {bucket!r}")
    if day is not None and seal["day"] != day.isoformat():
        problems.append(f"day {seal['day']!r} does not match its key ({day.isoformat()})")
    ints = ("first_seq", "last_seq", "tree_size")
    if not all(isinstance(seal[f], int) and not isinstance(seal[f], bool) for f in ints):
        problems.append("first_seq, last_seq and tree_size must be integers")
    elif seal["first_seq"] < 1 or seal["tree_size"] != seal["last_seq"] - seal["first_seq"] + 1 \
            or seal["tree_size"] < 0:
        problems.append(f"inconsistent range: first_seq {seal['first_seq']}, last_seq {seal['last_seq']}, "
                        f"tree_size {seal['tree_size']} (tree_size must be last_seq - first_seq + 1 >= 0)")
    for name in ("root", "chain_head", "prev_seal_hash"):
        if not (isinstance(seal[name], str) and _HEX64.match(seal[name])):
            problems.append(f"{name} is not 64 lowercase hex digits")
    if isinstance(seal["tree_size"], int) and seal["tree_size"] == 0 and seal["root"] != EMPTY_ROOT:
        problems.append("an empty day's root must be SHA-256 of the empty string")
    try:
        public_raw = base64.b64decode(str(seal["public_key"]), validate=True)
        if seal["key_id"] != key_id(public_raw):
            problems.append(f"key_id {seal['key_id']!r} is not the id of the public key it carries "
                            f"({key_id(public_raw)})")
    except (binascii.Error, ValueError):
        problems.append("public_key is not base64")
    try:
        sealed_at = dt.datetime.fromisoformat(str(seal["time"]))
        if sealed_at.tzinfo is None:
            raise ValueError
        if isinstance(seal["day"], str) and sealed_at < day_end(dt.date.fromisoformat(seal["day"])):
            problems.append(f"sealed at {seal['time']}, before its day {seal['day']} was over")
    except ValueError:
        problems.append(f"time {seal['time']!r} is not an ISO 8601 UTC time, or day is not YYYY-MM-DD")
    if seal["timestamp_token"] is not None and not isinstance(seal["timestamp_token"], str):
        problems.append("timestamp_token must be base64 text or null")
    if not problems:
        why = check_signature(seal)
        if why:
            problems.append(why)
    return problems


# -- where seals live ---------------------------------------------------------------------------
def seal_key(prefix: str, day: dt.date) -> str:
    return f"{prefix}{SEAL_DIR}{day.isoformat()}.json"


def day_of_seal_key(prefix: str, key: str) -> dt.date | None:
    base = prefix + SEAL_DIR
    if not key.startswith(base):
        return None
    match = _SEAL_NAME.match(key[len(base):])
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def list_seal_objects(store: SegmentStore) -> list[str]:
    """Every current object key under journal/seals/ (seal or not), in key order."""
    keys = []
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=store.prefix + SEAL_DIR):
        keys.extend(obj["Key"] for obj in page.get("Contents") or [])
    return sorted(keys)


def seal_versions(store: SegmentStore) -> dict[str, int]:
    """Every key ever written under journal/seals/ with its number of versions and delete markers (one
    listing). Unlike a plain listing it also shows a seal hidden behind a delete marker."""
    counts: dict[str, int] = {}
    paginator = store.client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=store.prefix + SEAL_DIR):
        for item in [*(page.get("Versions") or []), *(page.get("DeleteMarkers") or [])]:
            counts[item["Key"]] = counts.get(item["Key"], 0) + 1
    return dict(sorted(counts.items()))


def rewritten_seals(store: SegmentStore) -> dict[str, int]:
    """Seal keys with more than one version or a delete marker: replaced or hidden after their write."""
    return {key: n for key, n in seal_versions(store).items() if n > 1}


@dataclass(frozen=True)
class StoredSeal:
    key: str
    version_id: str | None
    seal: dict[str, Any]
    body: bytes

    @property
    def day(self) -> dt.date:
        return dt.date.fromisoformat(self.seal["day"])

    @property
    def seal_hash(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def canonical(self) -> bool:
        return self.body == canonical_json(self.seal)


def read_seal(store: SegmentStore, key: str) -> StoredSeal:
    body, version = store.read_object(key)
    return StoredSeal(key, version, json_object(body, f"seal {key}", SealError), body)


# -- reading the journal from a seq -------------------------------------------------------------
def entry_day(entry: Mapping[str, Any]) -> dt.date:
    when = parse_time(entry.get("time"))
    if when is None:
        raise ChainError(entry.get("seq"), "entry has no time")
    return when.date()


def day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def segments_from(store: SegmentStore, seq: int) -> Iterator[ListedSegment]:
    """Segments in journal order, from the one holding `seq` (or, if none does, from the next one).

    Listing is by key (first seq), so the segment holding `seq` is the last one starting at or before it.
    It is found by listing from `seq - span` with StartAfter, widening the span until one is found. A
    seal's range starts a segment (a flush writes one segment with a single time, so a segment never
    straddles days): then the first call, with span 1, finds it, whatever the size of the journal."""
    span = 1
    while True:
        low = max(seq - span, 0)
        listed = store.list_segments(after_seq=low)
        holding: ListedSegment | None = None
        following: ListedSegment | None = None
        for candidate in listed:
            if candidate.first_seq > seq:
                following = candidate
                break
            holding = candidate
        if holding is None and low > 0:
            span = 1024 if span == 1 else span * 16
            continue
        for segment in (holding, following):
            if segment is not None:
                yield segment
        if following is not None:
            yield from listed
        return


def iter_journal(store: SegmentStore, start: ChainState, *,
                 anchored: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """(segment key, entry) for every entry from seq `start.next_seq` on, checking that each segment has
    exactly one version, that seqs are contiguous and that every link holds, starting from
    `start.last_hash` (the previous entry's hash; with anchored=False the first entry's own prev_hash is
    taken as is). Raises RewrittenSegment / ChainError / JournalError at the first fault, naming the
    segment and seq."""
    state = start
    for listed in segments_from(store, start.next_seq):
        versions = store.versions_of(listed.key)
        if versions != 1:
            raise RewrittenSegment(listed.key, versions)
        segment = store.read_segment(listed.key)
        for entry in segment.entries:
            seq = entry.get("seq")
            if isinstance(seq, int) and seq < state.next_seq:
                continue
            if not anchored:
                state, anchored = ChainState(state.next_seq, str(entry.get("prev_hash"))), True
            try:
                state = verify_chain([entry], state)
            except ChainError as exc:
                raise ChainError(exc.seq, f"{exc.reason} [segment {segment.key}]") from None
            yield segment.key, entry


# -- sealing ------------------------------------------------------------------------------------
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


def build_seal(*, bucket: str, day: dt.date, first_seq: int, leaf_hashes: Sequence[bytes], chain_head: str,
               prev_seal_hash: str, signer: SealSigner, now: dt.datetime,
               tsa: TimestampAuthority | None = None) -> dict[str, Any]:
    seal: dict[str, Any] = {
        "format": SEAL_FORMAT,
        "bucket": bucket,
        "day": day.isoformat(),
        "first_seq": first_seq,
        "last_seq": first_seq + len(leaf_hashes) - 1,
        "tree_size": len(leaf_hashes),
        "root": root_from_leaf_hashes(leaf_hashes).hex(),
        "chain_head": chain_head,
        "time": iso(now),
        "prev_seal_hash": prev_seal_hash,
        "key_id": signer.key_id,
        "public_key": signer.public_key_b64,
        "signature_algorithm": SIGNATURE_ALGORITHM,
        "timestamp_token": None,
    }
    if tsa is not None:
        token = tsa.stamp(timestamp_digest(seal))
        seal["timestamp_token"] = base64.b64encode(token).decode() if token else None
    seal["signature"] = base64.b64encode(signer.sign(signed_payload(seal))).decode()
    return seal


@dataclass
class _Day:
    first_seq: int
    leaves: list[bytes] = field(default_factory=list)
    last_seq: int = 0
    head: str = GENESIS_HASH
    segments: list[str] = field(default_factory=list)


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
            if not acc.segments or acc.segments[-1] != segment_key_:
                acc.segments.append(segment_key_)
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
