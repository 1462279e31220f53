"""`vault-pipeline journal prove KEY`: a self-contained inclusion proof for one document's copy entry.

The proof is one JSON document a third party checks with nothing but SHA-256 and Ed25519 (the algorithm
is in docs/journal.md, with a standalone checker):

    format            "vault-pipeline/journal-inclusion-proof/v1"
    bucket, key, version_id, segment_key
    entry             the journal entry, exactly as stored (its canonical JSON is the Merkle leaf)
    leaf_index        entry.seq - seal.first_seq
    tree_size         the seal's tree size
    leaf_hash         hex SHA-256(0x00 || canonical JSON of entry)
    audit_path        hex node hashes, leaf to root (RFC 9162 §2.1.3.1 PATH)
    root              hex Merkle root of the day (equals seal.root)
    seal_key, seal_version_id, seal_hash
    seal              the day's seal, whole (signature and public key included)

Entries are found through the tracking database when a DSN is given (an index by key, then
reader.entry_at), else by reading the whole journal (reader.iter_journal: every segment's versions and
every link checked); either way the entry, the day's entries and the seal are read from the cold site, and
the day is read through the reader, chain checked, before its root is compared with the seal's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from vault_pipeline.journal import outbox
from vault_pipeline.journal.chain import ChainState, canonical_json, entry_hash
from vault_pipeline.journal.merkle import (
    ProofError,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_inclusion,
)
from vault_pipeline.journal.reader import entry_at, iter_journal
from vault_pipeline.journal.seal_format import entry_day, seal_hash, structure_problems
from vault_pipeline.journal.seal_store import read_seal, seal_key
from vault_pipeline.journal.segments import JournalError, SegmentStore
from vault_pipeline.journal.signing import PUBLIC_KEYS_VARIABLE, key_id, parse_public_keys

PROOF_FORMAT = "vault-pipeline/journal-inclusion-proof/v1"
PROOF_FIELDS = ("format", "bucket", "key", "version_id", "segment_key", "entry", "leaf_index", "tree_size",
                "leaf_hash", "audit_path", "root", "seal_key", "seal_version_id", "seal_hash", "seal")


class ProofNotFound(JournalError):
    """No proof can be made (yet): the key was never copied, the version is unknown, or its day is not sealed."""


def _pick(copies: Sequence[dict[str, Any]], key: str, version_id: str | None, bucket: str) -> dict[str, Any]:
    if not copies:
        raise ProofNotFound(f"no copy of {key!r} is journaled in bucket {bucket}")
    if version_id is None:
        return copies[-1]
    matching = [e for e in copies if e.get("version_id") == version_id]
    if not matching:
        known = ", ".join(str(e.get("version_id")) for e in copies)
        raise ProofNotFound(f"no copy of {key!r} with version {version_id!r} is journaled "
                            f"(journaled versions: {known})")
    return matching[-1]


def find_copy_entry(store: SegmentStore, key: str, *, version_id: str | None = None,
                    dsn: str | None = None) -> tuple[str, dict[str, Any]]:
    """(segment key, entry) of the latest copy entry of `key` (or of its copy as `version_id`). Without a
    DSN the whole journal is read through the reader, which raises at the first fault (ChainError,
    RewrittenSegment) rather than finding an entry in a journal that does not hold."""
    if dsn:
        with psycopg.connect(dsn, connect_timeout=15) as conn:
            indexed = [e for e in outbox.entries_for_key(conn, store.bucket, key) if e.get("action") == "copy"]
        chosen = _pick(indexed, key, version_id, store.bucket)
        segment, entry = entry_at(store, int(chosen["seq"]))
        if canonical_json(entry) != canonical_json(chosen):
            raise JournalError(f"journal entry seq={chosen['seq']} in {segment} differs from the database's copy of "
                               "it: run `vault-pipeline journal verify`")
        return segment, entry
    found = [(segment, entry) for segment, entry in iter_journal(store)
             if entry.get("key") == key and entry.get("action") == "copy"]
    chosen = _pick([e for _, e in found], key, version_id, store.bucket)
    return next((s, e) for s, e in found if e is chosen)


def build_proof(store: SegmentStore, key: str, *, version_id: str | None = None, dsn: str | None = None) -> dict:
    """The inclusion proof of `key`'s copy entry in its day's seal; raises ProofNotFound / JournalError."""
    segment, entry = find_copy_entry(store, key, version_id=version_id, dsn=dsn)
    seq = int(entry["seq"])
    day = entry_day(entry)
    skey = seal_key(store.prefix, day)
    versions = store.versions_of(skey)
    if versions == 0:
        raise ProofNotFound(f"{key!r} was journaled on {day.isoformat()} (entry seq={seq}), which is not sealed yet: "
                            f"{skey} does not exist (journal_seal seals a day once it is over)")
    if versions != 1:
        raise JournalError(f"seal {skey} has {versions} versions (or delete markers): it was replaced after its write; "
                           "run `vault-pipeline journal verify`")
    stored = read_seal(store, skey)
    problems = structure_problems(stored.seal, bucket=store.bucket, day=day)
    if problems:
        raise JournalError(f"seal {skey}: {'; '.join(problems)}")
    seal = stored.seal
    if not seal["first_seq"] <= seq <= seal["last_seq"]:
        raise JournalError(f"journal entry seq={seq} in {segment} is dated {day.isoformat()} but outside the seq range "
                           f"{seal['first_seq']}..{seal['last_seq']} of seal {skey}")
    leaves: list[bytes] = []
    for _, day_entry in iter_journal(store, ChainState(seal["first_seq"]), anchored=False):
        if day_entry["seq"] > seal["last_seq"]:
            break
        leaves.append(leaf_hash(canonical_json(day_entry)))
    root = root_from_leaf_hashes(leaves)
    if len(leaves) != seal["tree_size"] or root.hex() != seal["root"]:
        raise JournalError(f"seal {skey} does not match the journal: the entries seq={seal['first_seq']}.."
                           f"{seal['last_seq']} on the cold site give {len(leaves)} leaves and root {root.hex()}; "
                           "run `vault-pipeline journal verify`")
    index = seq - seal["first_seq"]
    path = inclusion_proof(index, leaves)
    proof = {
        "format": PROOF_FORMAT,
        "bucket": store.bucket,
        "key": key,
        "version_id": entry.get("version_id"),
        "segment_key": segment,
        "entry": entry,
        "leaf_index": index,
        "tree_size": len(leaves),
        "leaf_hash": leaves[index].hex(),
        "audit_path": [node.hex() for node in path],
        "root": root.hex(),
        "seal_key": skey,
        "seal_version_id": stored.version_id,
        "seal_hash": stored.seal_hash,
        "seal": seal,
    }
    problems = check_proof(proof)
    if problems:  # never hand out a proof that does not check
        raise JournalError(f"the proof built for {key!r} does not verify: {'; '.join(problems)}")
    return proof


def check_proof(proof: Mapping[str, Any], trusted_public_keys: Sequence[str] = ()) -> list[str]:
    """Every reason `proof` does not hold (empty: it holds). With `trusted_public_keys` (base64), the seal
    must also be signed by one of them; without, the signature is only checked against the key the seal
    carries, and the caller must compare that key with the vault's published one."""
    missing = [f for f in PROOF_FIELDS if f not in proof]
    if missing:
        return [f"missing field(s) {', '.join(missing)}"]
    problems: list[str] = []
    if proof["format"] != PROOF_FORMAT:
        problems.append(f"format {proof['format']!r} is not {PROOF_FORMAT!r}")
    entry, seal = proof["entry"], proof["seal"]
    if not isinstance(entry, dict) or not isinstance(seal, dict):
        return [*problems, "entry and seal must be JSON objects"]
    try:
        leaf_data = canonical_json(entry)
        if entry.get("entry_hash") != entry_hash(entry):
            problems.append("entry_hash is not SHA-256 of the entry's canonical JSON without entry_hash "
                            "(entry altered)")
    except TypeError as exc:
        return [*problems, f"entry cannot be canonical JSON: {exc}"]
    leaf = leaf_hash(leaf_data)
    if proof["leaf_hash"] != leaf.hex():
        problems.append("leaf_hash is not SHA-256(0x00 || canonical JSON of entry)")
    if (entry.get("key"), entry.get("version_id")) != (proof["key"], proof["version_id"]):
        problems.append("the entry is not the one of key/version_id the proof names")
    if entry.get("action") != "copy":
        problems.append(f"the entry's action is {entry.get('action')!r}, not 'copy'")
    problems.extend(f"seal: {p}" for p in structure_problems(seal, bucket=proof["bucket"]))
    if problems:
        return problems
    if entry_day(entry).isoformat() != seal["day"]:
        problems.append(f"the entry is dated {entry_day(entry).isoformat()}, the seal is of {seal['day']}")
    if proof["tree_size"] != seal["tree_size"] or proof["root"] != seal["root"]:
        problems.append("tree_size/root differ from the seal's")
    if proof["leaf_index"] != entry.get("seq", -1) - seal["first_seq"]:
        problems.append("leaf_index is not entry.seq - seal.first_seq")
    if proof["seal_hash"] != seal_hash(seal):
        problems.append("seal_hash is not SHA-256 of the seal's canonical JSON")
    try:
        path = [bytes.fromhex(node) for node in proof["audit_path"]]
        verify_inclusion(int(proof["leaf_index"]), int(seal["tree_size"]), leaf, path, bytes.fromhex(seal["root"]))
    except (ProofError, ValueError, TypeError) as exc:
        problems.append(f"inclusion: {exc}")
    if trusted_public_keys:
        trusted = parse_public_keys(trusted_public_keys)
        try:
            public = base64.b64decode(str(seal["public_key"]), validate=True)
        except (binascii.Error, ValueError):
            public = b""
        if public not in trusted:
            problems.append(f"the seal is signed by key id {seal['key_id']}, not by one of {PUBLIC_KEYS_VARIABLE} "
                            f"({', '.join(key_id(k) for k in trusted)})")
    return problems

