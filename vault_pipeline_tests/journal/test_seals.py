"""Daily seals, inclusion proofs and `journal verify` on the real servers.

Roots and audit paths are checked against sealkit's literal RFC 9162 transcription computed from the raw
segment bytes read back with plain GETs, never against the product's own Merkle module.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from vault_pipeline.journal.chain import GENESIS_HASH, canonical_json
from vault_pipeline.journal.proof import ProofNotFound, build_proof, check_proof, find_copy_entry
from vault_pipeline.journal.reader import RewrittenSegment, read_entries
from vault_pipeline.journal.seal import DayNotOver, seal_through
from vault_pipeline.journal.seal_format import EMPTY_ROOT, SealError, build_seal, day_end, signed_payload
from vault_pipeline.journal.seal_store import seal_key
from vault_pipeline.journal.signing import SealSigner, SigningKeyError
from vault_pipeline.journal.verify import UNAUTHENTICATED_NOTE, verify_journal
from vault_pipeline.journal.writer import JournalWriter
from vault_pipeline_tests.conftest import REPO, Vault, sql
from vault_pipeline_tests.journal.sealkit import at, day_leaves, journal_at, mth, path, raw_lines, utc_today

DOCS = REPO / "docs" / "journal.md"


def seal(vault: Vault, signer: SealSigner, day: dt.date, now: dt.datetime | None = None, **kwargs):
    store = vault.segments()
    return seal_through(day, dsn=vault.dsn, store=store, signer=signer, writer=JournalWriter(vault.dsn, store),
                        now=now, **kwargs)


def after(day: dt.date, minutes: int = 5) -> dt.datetime:
    return day_end(day) + dt.timedelta(minutes=minutes)


def checker_script(tmp_path: Path) -> Path:
    """The standalone checker exactly as docs/journal.md shows it."""
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"<!-- check_proof.py begins -->\n```python\n(.*?)```\n<!-- check_proof.py ends -->", text, re.S)
    assert block, "docs/journal.md lost its standalone checker"
    script = tmp_path / "check_proof.py"
    script.write_text(block.group(1), encoding="utf-8")
    return script


def run_checker(script: Path, proof_file: Path, *key: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), str(proof_file), *key], capture_output=True, text=True,
                          timeout=60)


def test_a_replicated_day_is_sealed_and_each_document_proved(vault: Vault, tmp_path: Path) -> None:
    signer = SealSigner.generate()
    documents = {f"sealed/doc-{i}.pdf": f"document {i}".encode() * (i + 1) for i in range(7)}
    for i, (key, body) in enumerate(documents.items()):
        vault.put(key, body, {"document-type": ("payslip", "invoice", "contract")[i % 3]})
    assert all(r.success for r in vault.sensor_and_runs())
    today = utc_today()
    entries = vault.journal_entries()

    with pytest.raises(DayNotOver, match="not over"):
        seal(vault, signer, today)  # the database's clock: today is still running
    run = seal(vault, signer, today, now=after(today))
    assert [s.day for s in run.sealed] == [today] and not run.already_sealed
    sealed = run.target
    assert sealed is not None and sealed.key == f"journal/seals/{today.isoformat()}.json"

    leaves = day_leaves(vault, today)
    assert len(leaves) == len(entries) >= len(documents)
    body = vault.cold.get_object(Bucket=vault.cold_bucket, Key=sealed.key)["Body"].read()
    stored = json.loads(body)
    assert body == canonical_json(stored) and stored == sealed.seal
    assert stored["tree_size"] == len(leaves) and (stored["first_seq"], stored["last_seq"]) == (1, len(leaves))
    assert stored["root"] == mth(leaves).hex()
    assert stored["chain_head"] == entries[-1]["entry_hash"] and stored["prev_seal_hash"] == GENESIS_HASH
    assert stored["public_key"] == signer.public_key_b64 and stored["key_id"] == signer.key_id
    assert stored["timestamp_token"] is None
    assert sealed.seal_hash == __import__("hashlib").sha256(body).hexdigest()
    head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=sealed.key)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head.get("StorageClass", "STANDARD") == "STANDARD"
    assert head["ObjectLockRetainUntilDate"].year >= today.year + 49
    recorded = "SELECT day, seal_key, tree_size, root, seal_hash, version_id FROM vault_secure.journal_seals"
    assert sql(vault.dsn, recorded) == [
        (today, sealed.key, len(leaves), mth(leaves).hex(), sealed.seal_hash, sealed.version_id)]

    lines = [line for _, line in raw_lines(vault)]
    for key in documents:
        proof = build_proof(vault.segments(), key, dsn=vault.dsn)
        index = proof["leaf_index"]
        assert canonical_json(proof["entry"]) == leaves[index] == lines[proof["entry"]["seq"] - 1]
        assert proof["entry"]["key"] == key and proof["version_id"] == vault.row(key)["aws_version_id"]
        assert proof["audit_path"] == [h.hex() for h in path(index, leaves)]
        assert proof["root"] == mth(leaves).hex() == proof["seal"]["root"]
        assert check_proof(proof, [signer.public_key_b64]) == []
    other = SealSigner.generate()
    assert any("not by one of" in p for p in check_proof(proof, [other.public_key_b64]))

    # Asking again never rewrites: the seal is reported as already sealed and re-checked.
    again = seal(vault, signer, today, now=after(today, 90))
    assert again.sealed == [] and [s.key for s in again.already_sealed] == [sealed.key]
    assert len(vault.cold_versions(sealed.key)) == 1

    clean = verify_journal(vault.segments(), [signer.public_key_b64])
    assert clean.ok, clean.problems
    assert clean.entries == len(entries) and clean.seals == 1 and UNAUTHENTICATED_NOTE not in clean.notes
    unauthenticated = verify_journal(vault.segments())
    assert unauthenticated.ok and UNAUTHENTICATED_NOTE in unauthenticated.notes

    # The documented standalone checker accepts the real proof and refuses a doctored one.
    script = checker_script(tmp_path)
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(proof, indent=2), encoding="utf-8")
    ok = run_checker(script, proof_file, signer.public_key_b64)
    assert ok.returncode == 0 and ok.stdout.startswith("OK:"), ok.stderr
    assert run_checker(script, proof_file, other.public_key_b64).returncode != 0
    doctored = json.loads(proof_file.read_text())
    doctored["entry"]["size"] += 1
    (tmp_path / "doctored.json").write_text(json.dumps(doctored))
    refused = run_checker(script, tmp_path / "doctored.json")
    assert refused.returncode != 0 and "INVALID: entry_hash" in refused.stderr


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_empty_and_earlier_days_are_sealed_in_order_and_chained(vault: Vault) -> None:
    signer = SealSigner.generate()
    today = utc_today()
    d3, d2, d1 = (today - dt.timedelta(days=n) for n in (3, 2, 1))
    journal_at(vault, at(d3, 10), ["back/a.pdf", "back/b.pdf", "back/c.pdf"])
    journal_at(vault, at(d3, 11), ["back/d.pdf"])  # a day of two segments
    journal_at(vault, at(d1, 9), ["back/e.pdf"])

    run = seal(vault, signer, d1)  # the database's clock: d1 is over
    assert [s.day for s in run.sealed] == [d3, d2, d1]
    s3, s2, s1 = (s.seal for s in run.sealed)
    leaves3 = day_leaves(vault, d3)
    assert (s3["first_seq"], s3["last_seq"], s3["tree_size"], s3["root"]) == (1, 4, 4, mth(leaves3).hex())
    assert (s2["first_seq"], s2["last_seq"], s2["tree_size"], s2["root"]) == (5, 4, 0, EMPTY_ROOT)
    assert s2["chain_head"] == s3["chain_head"] and s2["prev_seal_hash"] == run.sealed[0].seal_hash
    assert (s1["first_seq"], s1["last_seq"]) == (5, 5) and s1["prev_seal_hash"] == run.sealed[1].seal_hash
    assert [r[0] for r in sql(vault.dsn, "SELECT day FROM vault_secure.journal_seals ORDER BY day")] == [d3, d2, d1]

    assert [s.day for s in seal(vault, signer, d3).already_sealed] == [d3]
    assert seal(vault, signer, d3 - dt.timedelta(days=5)).note.startswith("nothing to seal")
    with pytest.raises(DayNotOver):
        seal(vault, signer, today)

    vault.put("live/today.pdf", b"today's document", {"document-type": "payslip"})
    assert all(r.success for r in vault.sensor_and_runs())
    live = seal(vault, signer, today, now=after(today))
    assert [s.day for s in live.sealed] == [today]
    assert live.target.seal["first_seq"] == 6 and live.target.seal["prev_seal_hash"] == run.sealed[2].seal_hash

    proof = build_proof(vault.segments(), "back/b.pdf", dsn=vault.dsn)
    assert (proof["leaf_index"], proof["tree_size"]) == (1, 4)
    assert proof["audit_path"] == [h.hex() for h in path(1, leaves3)]
    scanned = build_proof(vault.segments(), "back/b.pdf")  # no database: the journal is read instead
    assert scanned == proof
    assert check_proof(build_proof(vault.segments(), "live/today.pdf", dsn=vault.dsn)) == []
    with pytest.raises(ProofNotFound, match="no copy"):
        build_proof(vault.segments(), "never/copied.pdf", dsn=vault.dsn)

    report = verify_journal(vault.segments(), [signer.public_key_b64])
    assert report.ok, report.problems
    assert report.seals == 4 and report.last_sealed_day == today

    # A key pair that does not match is refused before anything is signed.
    with pytest.raises(SigningKeyError, match="not one of VAULT_JOURNAL_PUBLIC_KEYS"):
        seal(vault, signer, today, now=after(today), public_keys=[SealSigner.generate().public_key_b64])


def test_verify_names_a_rewritten_segment_and_the_entry_altered(vault: Vault) -> None:
    signer = SealSigner.generate()
    d2, d1 = utc_today() - dt.timedelta(days=2), utc_today() - dt.timedelta(days=1)
    journal_at(vault, at(d2, 8), ["t/a.pdf", "t/b.pdf", "t/c.pdf"])
    journal_at(vault, at(d1, 8), ["t/d.pdf", "t/e.pdf"])
    seal(vault, signer, d1)
    assert verify_journal(vault.segments(), [signer.public_key_b64]).ok

    segment = "journal/segments/00000000000000000001.jsonl"
    body = vault.cold.get_object(Bucket=vault.cold_bucket, Key=segment)["Body"].read()
    lines = body.split(b"\n")
    entry = json.loads(lines[1])
    entry["size"] += 1000  # entry seq 2 altered, its entry_hash kept
    lines[1] = canonical_json(entry)
    vault.cold.put_object(Bucket=vault.cold_bucket, Key=segment, Body=b"\n".join(lines))

    report = verify_journal(vault.segments(), [signer.public_key_b64])
    found = [str(p) for p in report.problems]
    assert f"segment {segment}: 2 versions" in "\n".join(found)
    assert any(p.where == f"entry seq=2 in {segment}" and "entry_hash" in p.message for p in report.problems), found
    assert any(p.where == f"seal journal/seals/{d2.isoformat()}.json" and "Merkle root" in p.message
               for p in report.problems), found
    assert not any(d1.isoformat() in line for line in found), "the other day is intact"
    with pytest.raises(RewrittenSegment, match=segment):
        list(read_entries(vault.segments()))
    with pytest.raises(RewrittenSegment):
        build_proof(vault.segments(), "t/a.pdf", dsn=vault.dsn)
    with pytest.raises(RewrittenSegment):  # without the index, even a document of the intact day: one reader
        find_copy_entry(vault.segments(), "t/e.pdf")


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_verify_names_a_replaced_seal_and_a_foreign_key(vault: Vault) -> None:
    signer, stranger = SealSigner.generate(), SealSigner.generate()
    d1 = utc_today() - dt.timedelta(days=1)
    journal_at(vault, at(d1, 8), ["s/a.pdf", "s/b.pdf"])
    sealed = seal(vault, signer, d1).target
    key = sealed.key
    assert verify_journal(vault.segments(), [signer.public_key_b64]).ok

    # The configured public key is not the one that signed: the seal is named.
    foreign = verify_journal(vault.segments(), [stranger.public_key_b64])
    assert [p.where for p in foreign.problems] == [f"seal {key}"]
    expected = f"signed by key id {signer.key_id}, which is not one of VAULT_JOURNAL_PUBLIC_KEYS"
    assert expected in foreign.problems[0].message

    # A new version whose content was changed without re-signing: the signature no longer verifies.
    altered = {**sealed.seal, "tree_size": 1, "last_seq": 1}
    vault.cold.put_object(Bucket=vault.cold_bucket, Key=key, Body=canonical_json(altered))
    report = verify_journal(vault.segments(), [signer.public_key_b64])
    messages = [p.message for p in report.problems if p.where == f"seal {key}"]
    assert any("2 versions" in m for m in messages) and any("signature does not verify" in m for m in messages)
    assert any("covers seqs 1..1" in m for m in messages), messages

    # A forged seal properly signed by another key: named for its key (and the chain still shows it).
    forged = {k: v for k, v in sealed.seal.items() if k != "signature"}
    forged.update(public_key=stranger.public_key_b64, key_id=stranger.key_id)
    forged["signature"] = base64.b64encode(stranger.sign(signed_payload(forged))).decode()
    vault.cold.put_object(Bucket=vault.cold_bucket, Key=key, Body=canonical_json(forged))
    report = verify_journal(vault.segments(), [signer.public_key_b64])
    messages = [p.message for p in report.problems if p.where == f"seal {key}"]
    assert any("3 versions" in m for m in messages)
    assert any(f"signed by key id {stranger.key_id}" in m for m in messages), messages
    assert all(p.where == f"seal {key}" for p in report.problems), report.problems

    # The sealer refuses to build on a replaced seal, naming it.
    with pytest.raises(SealError, match=re.escape(key)):
        seal(vault, signer, utc_today(), now=after(utc_today()))

    # Hidden behind a delete marker (the locked versions stay): still named.
    vault.cold.delete_object(Bucket=vault.cold_bucket, Key=key)
    report = verify_journal(vault.segments(), [signer.public_key_b64])
    assert any(str(p).startswith(f"seal {key}: hidden behind a delete marker") for p in report.problems)
    with pytest.raises(SealError, match=re.escape(key)):
        seal(vault, signer, utc_today(), now=after(utc_today()))


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_missing_seal_day_and_a_late_entry_are_named(vault: Vault) -> None:
    """Seals written around a hole (a day never sealed) and an entry dated in a sealed day after its seal."""
    signer = SealSigner.generate()
    today = utc_today()
    d3, d2, d1 = (today - dt.timedelta(days=n) for n in (3, 2, 1))
    journal_at(vault, at(d3, 8), ["m/a.pdf"])
    journal_at(vault, at(d2, 8), ["m/b.pdf"])
    journal_at(vault, at(d1, 8), ["m/c.pdf"])
    store = vault.segments()
    # Seal d3 and d1 by hand, as a faulty sealer would, leaving d2 without a seal.
    lines = {d: day_leaves(vault, d) for d in (d3, d1)}
    from vault_pipeline.journal.merkle import leaf_hash

    first = build_seal(bucket=vault.cold_bucket, day=d3, first_seq=1, leaf_hashes=[leaf_hash(x) for x in lines[d3]],
                       chain_head=json.loads(lines[d3][-1])["entry_hash"], prev_seal_hash=GENESIS_HASH, signer=signer,
                       now=after(d3))
    store.put_once(seal_key(store.prefix, d3), canonical_json(first), content_type="application/json", kind="t",
                   now=after(d3))
    third = build_seal(bucket=vault.cold_bucket, day=d1, first_seq=3, leaf_hashes=[leaf_hash(x) for x in lines[d1]],
                       chain_head=json.loads(lines[d1][-1])["entry_hash"],
                       prev_seal_hash=__import__("hashlib").sha256(canonical_json(first)).hexdigest(), signer=signer,
                       now=after(d1))
    store.put_once(seal_key(store.prefix, d1), canonical_json(third), content_type="application/json", kind="t",
                   now=after(d1))
    # And an entry dated d1 journaled after d1's seal (a sealer that did not wait for the day's end).
    journal_at(vault, at(d1, 23, 59), ["m/late.pdf"])

    report = verify_journal(store, [signer.public_key_b64])
    found = [str(p) for p in report.problems]
    assert f"seal journal/seals/{d2.isoformat()}.json: missing" in "\n".join(found), found
    assert any(p.where.startswith("entries seq=2..2") and d2.isoformat() in p.message for p in report.problems)
    assert any(p.where == "entry seq=4 in journal/segments/00000000000000000004.jsonl"
               and "outside the seq range" in p.message for p in report.problems), found
    with pytest.raises(SealError, match=f"{d2.isoformat()}.json is missing"):
        seal(vault, signer, d2)


def test_sealing_refuses_a_journal_the_database_does_not_know(vault: Vault) -> None:
    """The database only cross-checks, but a disagreement stops the seal with both counts."""
    signer = SealSigner.generate()
    d1 = utc_today() - dt.timedelta(days=1)
    journal_at(vault, at(d1, 8), ["x/a.pdf", "x/b.pdf"])
    with psycopg.connect(vault.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM vault_secure.journal_entries WHERE seq = 2")
    with pytest.raises(SealError, match=r"holds 2 entries .* but the database 1"):
        seal(vault, signer, d1)
    assert sql(vault.dsn, "SELECT count(*) FROM vault_secure.journal_seals") == [(0,)]
