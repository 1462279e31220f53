"""`vault-pipeline journal verify`: check the whole journal of a cold site from the storage alone.

No database is used: the cold site is the record. Every fault is reported (the walk resynchronises after
one), each naming the exact entry (seq and segment key), segment or seal at fault:

* segments: more than one version or a delete marker (rewritten after the write), missing seqs between
  segments, unreadable or non-canonical content;
* entries: contiguity, prev_hash links and entry_hash (the hash chain), time running backwards;
* seals: more than one version, shape, Ed25519 signature (against VAULT_JOURNAL_PUBLIC_KEYS; without
  them only against the key the seal carries, which authenticates nothing and is said so), the seal
  chain (prev_seal_hash, seq ranges following each other, no day missing between the first and the last
  seal), and each seal against the journal: its seq range is exactly the entries dated on its day, and the
  Merkle root and chain head recomputed from them equal the sealed ones.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vault_pipeline.journal.chain import GENESIS_HASH, ChainError, ChainState, canonical_json, verify_chain
from vault_pipeline.journal.merkle import leaf_hash, root_from_leaf_hashes
from vault_pipeline.journal.seal_format import SEAL_FIELDS, SealError, entry_day, structure_problems
from vault_pipeline.journal.seal_store import (
    StoredSeal,
    day_of_seal_key,
    list_seal_objects,
    read_seal,
    seal_key,
    seal_versions,
)
from vault_pipeline.journal.segments import JournalError, SegmentStore, encode_segment, first_seq_of
from vault_pipeline.journal.signing import PUBLIC_KEYS_VARIABLE, SigningKeyError, key_id, parse_public_keys

UNAUTHENTICATED_NOTE = (
    f"{PUBLIC_KEYS_VARIABLE} is not configured: each seal's signature was checked only against the public key "
    "the seal itself carries, so the seals are NOT authenticated (whoever replaced a seal could sign it with a key "
    f"of their own). Set {PUBLIC_KEYS_VARIABLE} to the published public key(s) of the vault."
)


@dataclass(frozen=True)
class Problem:
    # "entry seq=12 in journal/segments/….jsonl", "segment journal/segments/….jsonl", "seal journal/seals/….json"
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    segments: int = 0
    entries: int = 0
    seals: int = 0
    head_seq: int = 0
    last_sealed_day: dt.date | None = None
    unsealed_days: list[dt.date] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    def summary(self) -> str:
        sealed = self.last_sealed_day.isoformat() if self.last_sealed_day else "none"
        return (f"{self.entries} entries in {self.segments} segments (head seq {self.head_seq}), {self.seals} seals "
                f"(last sealed day {sealed}), {len(self.problems)} problem(s)")


def entry_where(seq: object, segment: str) -> str:
    return f"entry seq={seq} in {segment}"


def seal_where(key: str) -> str:
    return f"seal {key}"


@dataclass
class _DayAcc:
    day: dt.date
    first_seq: int
    last_seq: int
    leaves: list[bytes] = field(default_factory=list)
    head: str = GENESIS_HASH
    segments: list[str] = field(default_factory=list)

    def segment_of(self, prefix: str, seq: int) -> str:
        holding = [k for k in self.segments if (first_seq_of(prefix, k) or 0) <= seq]
        return holding[-1] if holding else (self.segments[0] if self.segments else "?")


def _usable(seal: object) -> bool:
    """Fields present with the types the comparisons need (other defects are reported separately)."""
    if not isinstance(seal, dict) or any(f not in seal for f in SEAL_FIELDS):
        return False
    ints = all(isinstance(seal[f], int) and not isinstance(seal[f], bool) for f in ("first_seq", "last_seq",
                                                                                     "tree_size"))
    return ints and all(isinstance(seal[f], str) for f in ("root", "chain_head", "prev_seal_hash", "day"))


class _Verifier:
    def __init__(self, store: SegmentStore, public_keys: Sequence[str]) -> None:
        self.store, self.prefix = store, store.prefix
        self.report = VerifyReport()
        self.trusted: list[bytes] = []
        configured = [k for k in public_keys if k.strip()]
        try:
            self.trusted = parse_public_keys(configured)
        except SigningKeyError as exc:
            self.report.add(PUBLIC_KEYS_VARIABLE, str(exc))
        if not configured:
            self.report.notes.append(UNAUTHENTICATED_NOTE)
        self.seals: dict[dt.date, StoredSeal] = {}
        self.seal_days: list[dt.date] = []
        self.on_segment: Callable[[VerifyReport], None] | None = None
        self.needed_heads: dict[int, str | None] = {}  # last_seq of a seal -> entry_hash found for it

    # -- seals ------------------------------------------------------------------------------------
    def load_seals(self) -> None:
        versions = seal_versions(self.store)
        current = set(list_seal_objects(self.store))
        days = set()
        for key, count in versions.items():
            day = day_of_seal_key(self.prefix, key)
            if day is None:
                self.report.add(f"object {key}", "unexpected object under the seals prefix (not YYYY-MM-DD.json)")
                continue
            days.add(day)
            if count > 1:
                self.report.add(seal_where(key), f"{count} versions (or delete markers), expected exactly 1: the seal "
                                "was replaced or hidden after it was written")
            if key not in current:
                self.report.add(seal_where(key), "hidden behind a delete marker (its latest version is a delete "
                                "marker)")
                continue
            try:
                stored = read_seal(self.store, key)
            except (SealError, JournalError) as exc:
                self.report.add(seal_where(key), str(exc))
                continue
            for problem in structure_problems(stored.seal, bucket=self.store.bucket, day=day):
                self.report.add(seal_where(key), problem)
            if _usable(stored.seal):
                if not stored.canonical:
                    self.report.add(seal_where(key), "stored bytes are not the canonical JSON of the seal")
                self._check_key(stored)
                self.seals[day] = stored
        self.seal_days = sorted(days)
        self.report.seals = len(self.seals)
        self.report.last_sealed_day = self.seal_days[-1] if self.seal_days else None
        self._check_seal_chain()

    def _check_key(self, stored: StoredSeal) -> None:
        if not self.trusted:
            return
        try:
            public = base64.b64decode(str(stored.seal["public_key"]), validate=True)
        except ValueError:
            return  # reported by structure_problems
        if public not in self.trusted:
            ids = ", ".join(key_id(k) for k in self.trusted)
            self.report.add(seal_where(stored.key), f"signed by key id {key_id(public)}, which is not one of "
                            f"{PUBLIC_KEYS_VARIABLE} (key ids {ids}): the signature does not authenticate the seal")

    def _check_seal_chain(self) -> None:
        for before, after in zip(self.seal_days, self.seal_days[1:], strict=False):
            missing = before + dt.timedelta(days=1)
            while missing < after:
                self.report.add(seal_where(seal_key(self.prefix, missing)), "missing: every day between the first and "
                                "the last seal must have a seal (an empty day gets a seal of tree_size 0)")
                missing += dt.timedelta(days=1)
        previous: StoredSeal | None = None
        for day in sorted(self.seals):
            stored = self.seals[day]
            seal = stored.seal
            where = seal_where(stored.key)
            if previous is None:
                if day == self.seal_days[0]:
                    if seal["prev_seal_hash"] != GENESIS_HASH:
                        self.report.add(where, "the first seal's prev_seal_hash must be 64 zeros")
                    if seal["first_seq"] != 1:
                        self.report.add(where, f"the first seal must start at seq 1, it starts at {seal['first_seq']}")
            else:
                if seal["prev_seal_hash"] != previous.seal_hash:
                    self.report.add(where, f"prev_seal_hash {seal['prev_seal_hash']} is not the hash of the previous "
                                    f"seal {previous.key} ({previous.seal_hash})")
                if seal["first_seq"] != previous.seal["last_seq"] + 1:
                    self.report.add(where, f"starts at seq {seal['first_seq']} but the previous seal {previous.key} "
                                    f"ends at seq {previous.seal['last_seq']}")
            self.needed_heads[seal["last_seq"]] = GENESIS_HASH if seal["last_seq"] == 0 else None
            previous = stored

    # -- segments and entries -----------------------------------------------------------------------
    def walk(self) -> None:
        for key, count in self.store.rewritten_segments().items():
            self.report.add(f"segment {key}", f"{count} versions (or delete markers), expected exactly 1: it was "
                            "overwritten after it was written (the checks below read its latest version)")
        state = ChainState()
        resync = False
        day: _DayAcc | None = None
        finished: set[dt.date] = set()
        last_dated: tuple[int, dt.date] | None = None
        for listed in self.store.list_segments():
            if self.on_segment is not None and self.report.segments:
                self.on_segment(self.report)
            self.report.segments += 1
            if listed.first_seq != state.next_seq:
                if listed.first_seq > state.next_seq:
                    self.report.add(f"segment {listed.key}", f"entries {state.next_seq}..{listed.first_seq - 1} are "
                                    "missing: no segment holds them")
                else:
                    self.report.add(f"segment {listed.key}", f"starts at seq {listed.first_seq} but seq "
                                    f"{state.next_seq} was expected (overlaps the previous segment)")
                resync = True
            try:
                segment = self.store.read_segment(listed.key)
            except JournalError as exc:
                self.report.add(f"segment {listed.key}", str(exc))
                resync = True
                continue
            if hashlib.sha256(encode_segment(segment.entries)).hexdigest() != segment.sha256:
                self.report.add(f"segment {listed.key}", "its bytes are not the canonical JSON lines of its entries")
            for position, entry in enumerate(segment.entries, start=1):
                seq = entry.get("seq")
                if not isinstance(seq, int) or isinstance(seq, bool):
                    self.report.add(f"entry #{position} in {listed.key}", "has no integer seq")
                    resync = True
                    continue
                where = entry_where(seq, listed.key)
                if resync:
                    state, resync = ChainState(seq, str(entry.get("prev_hash"))), False
                try:
                    verify_chain([entry], state)
                except ChainError as exc:
                    self.report.add(where, exc.reason)
                claimed = entry.get("entry_hash")
                state = ChainState(seq + 1, claimed if isinstance(claimed, str) else state.last_hash)
                self.report.entries += 1
                self.report.head_seq = seq
                if seq in self.needed_heads:
                    self.needed_heads[seq] = state.last_hash
                try:
                    when = entry_day(entry)
                except (ChainError, ValueError, TypeError):
                    self.report.add(where, f"time {entry.get('time')!r} is missing or not an ISO 8601 time")
                    continue
                if last_dated is not None and when < last_dated[1]:
                    self.report.add(where, f"dated {when.isoformat()}, before entry seq={last_dated[0]} dated "
                                    f"{last_dated[1].isoformat()}: the journal's clock ran backwards")
                    continue
                last_dated = (seq, when)
                if day is None or when != day.day:
                    if day is not None:
                        self._finish_day(day)
                        finished.add(day.day)
                    day = _DayAcc(when, seq, seq)
                try:
                    day.leaves.append(leaf_hash(canonical_json(entry)))
                except TypeError:
                    day.leaves.append(b"")  # reported by the chain check; the day's root cannot match
                day.last_seq, day.head = seq, state.last_hash
                if not day.segments or day.segments[-1] != listed.key:
                    day.segments.append(listed.key)
        if self.on_segment is not None and self.report.segments:
            self.on_segment(self.report)
        if day is not None:
            self._finish_day(day)
            finished.add(day.day)
        self._check_days_without_entries(finished)

    def _finish_day(self, day: _DayAcc) -> None:
        stored = self.seals.get(day.day)
        span = f"entries seq={day.first_seq}..{day.last_seq} in {', '.join(day.segments)}"
        if stored is None:
            if not self.seal_days or day.day > self.seal_days[-1]:
                self.report.unsealed_days.append(day.day)
            elif day.day < self.seal_days[0]:
                self.report.add(span, f"dated {day.day.isoformat()}, before the first seal "
                                f"({seal_key(self.prefix, self.seal_days[0])}): no seal covers them")
            elif day.day not in self.seal_days:
                self.report.add(span, f"dated {day.day.isoformat()}, whose seal is missing")
            return
        seal, where = stored.seal, seal_where(stored.key)
        if (seal["first_seq"], seal["last_seq"]) != (day.first_seq, day.last_seq):
            self.report.add(where, f"covers seqs {seal['first_seq']}..{seal['last_seq']} but the journal's entries "
                            f"dated {day.day.isoformat()} are seqs {day.first_seq}..{day.last_seq}")
            for seq in (day.first_seq, day.last_seq):
                if not seal["first_seq"] <= seq <= seal["last_seq"]:
                    self.report.add(entry_where(seq, day.segment_of(self.prefix, seq)),
                                    f"dated {day.day.isoformat()} but outside the seq range of {stored.key}")
        root = root_from_leaf_hashes(day.leaves).hex()
        if root != seal["root"]:
            self.report.add(where, f"Merkle root {seal['root']} differs from the root recomputed from the entries "
                            f"dated {day.day.isoformat()} ({root}): an entry of that day was altered, added or removed")
        if day.head != seal["chain_head"] and day.last_seq == seal["last_seq"]:
            self.report.add(where, f"chain_head {seal['chain_head']} is not the entry_hash of entry seq={day.last_seq} "
                            f"({day.head})")

    def _check_days_without_entries(self, with_entries: set[dt.date]) -> None:
        for day, stored in sorted(self.seals.items()):
            if day in with_entries:
                continue
            seal, where = stored.seal, seal_where(stored.key)
            if seal["tree_size"] != 0:
                self.report.add(where, f"seals {seal['tree_size']} entries (seqs {seal['first_seq']}.."
                                f"{seal['last_seq']}) but the journal has no entry dated {day.isoformat()}")
                continue
            head = self.needed_heads.get(seal["last_seq"])
            if head is None:
                self.report.add(where, f"ends at seq {seal['last_seq']}, which the journal does not hold")
            elif head != seal["chain_head"]:
                self.report.add(where, f"chain_head {seal['chain_head']} is not the entry_hash of entry "
                                f"seq={seal['last_seq']} ({head})")


def verify_journal(store: SegmentStore, public_keys: Sequence[str] = (),
                   on_segment: Callable[[VerifyReport], None] | None = None) -> VerifyReport:
    """Every segment, entry and seal of the journal in `store`'s bucket; see the module docstring.
    `on_segment` is called with the report so far after each segment (progress display)."""
    verifier = _Verifier(store, public_keys)
    verifier.on_segment = on_segment
    verifier.load_seals()
    verifier.walk()
    report = verifier.report
    if report.unsealed_days:
        days = report.unsealed_days
        report.notes.append(f"{len(days)} journaled day(s) after the last seal are not sealed yet "
                            f"({days[0].isoformat()}..{days[-1].isoformat()})")
    if not report.segments and not report.seals:
        report.notes.append("the journal is empty")
    return report
