"""The seal document: its fields, how one is built and signed, and how one is checked on its own.

A seal is one canonical JSON object (`journal/seals/YYYY-MM-DD.json`, see seal_store.py) that commits to
one UTC day of journal entries (tree size, Merkle root, seq range, the chain head), to the previous seal
(`prev_seal_hash`) and is signed with Ed25519:

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
                      timestamp_token), or null (see signing.TimestampAuthority)
    signature         base64 Ed25519 signature of the canonical JSON of every other field

seal_hash = SHA-256 of the canonical JSON of the whole seal, i.e. of the stored object's bytes. Seals
already written are locked for decades: nothing here may change the bytes a given input produces.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from vault_pipeline.journal.chain import ChainError, canonical_json
from vault_pipeline.journal.entries import iso, parse_time
from vault_pipeline.journal.merkle import root_from_leaf_hashes
from vault_pipeline.journal.segments import JournalError
from vault_pipeline.journal.signing import (
    SealSigner,
    TimestampAuthority,
    key_id,
    public_key_from_b64,
    signature_holds,
)

SEAL_FORMAT = "vault-pipeline/journal-seal/v1"
SIGNATURE_ALGORITHM = "ed25519"
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
SEAL_FIELDS = ("format", "bucket", "day", "first_seq", "last_seq", "tree_size", "root", "chain_head", "time",
               "prev_seal_hash", "key_id", "public_key", "signature_algorithm", "timestamp_token", "signature")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class SealError(JournalError):
    """Sealing is refused or a seal does not hold; the message names the day, seal or entry at fault."""


def entry_day(entry: Mapping[str, Any]) -> dt.date:
    """The UTC day of an entry's `time`: the day whose seal covers it."""
    when = parse_time(entry.get("time"))
    if when is None:
        raise ChainError(entry.get("seq"), "entry has no time")
    return when.date()


def day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def signed_payload(seal: Mapping[str, Any]) -> bytes:
    """What the signature covers: the canonical JSON of every field but `signature`."""
    return canonical_json({k: v for k, v in seal.items() if k != "signature"})


def timestamp_digest(seal: Mapping[str, Any]) -> bytes:
    """What an RFC 3161 token stamps: SHA-256 of the canonical JSON without signature and token."""
    return hashlib.sha256(canonical_json(
        {k: v for k, v in seal.items() if k not in ("signature", "timestamp_token")})).digest()


def seal_hash(seal: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(seal)).hexdigest()


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


def check_signature(seal: Mapping[str, Any]) -> str | None:
    """None if the signature verifies with the public key the seal carries, else why not."""
    try:
        public = public_key_from_b64(str(seal["public_key"]))
        signature = base64.b64decode(str(seal["signature"]), validate=True)
    except (KeyError, binascii.Error, ValueError) as exc:
        return f"unreadable public key or signature ({exc})"
    try:
        if not signature_holds(public, signature, signed_payload(seal)):
            return ("Ed25519 signature does not verify over the seal's content (seal altered or signed by another "
                    "key)")
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
