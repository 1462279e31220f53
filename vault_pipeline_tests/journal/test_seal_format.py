"""Seal format, signing keys and the timestamp hook, without servers."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from vault_pipeline.cli.main import main
from vault_pipeline.journal.chain import GENESIS_HASH, canonical_json
from vault_pipeline.journal.merkle import leaf_hash
from vault_pipeline.journal.seal_format import (
    EMPTY_ROOT,
    build_seal,
    check_signature,
    seal_hash,
    structure_problems,
    timestamp_digest,
)
from vault_pipeline.journal.signing import SealSigner, SigningKeyError
from vault_pipeline_tests.journal.sealkit import mth

DAY = dt.date(2026, 11, 23)
AFTER = dt.datetime(2026, 11, 24, 0, 15, tzinfo=dt.UTC)


def make(signer: SealSigner, leaves: list[bytes], **kwargs) -> dict:
    return build_seal(bucket="cold", day=DAY, first_seq=10, leaf_hashes=[leaf_hash(x) for x in leaves],
                      chain_head="a" * 64, prev_seal_hash=GENESIS_HASH, signer=signer, now=AFTER, **kwargs)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 13])
def test_a_seal_commits_to_the_rfc_root_and_verifies(n: int) -> None:
    signer = SealSigner.generate()
    leaves = [canonical_json({"seq": 10 + i, "k": f"v{i}"}) for i in range(n)]
    seal = make(signer, leaves)
    assert seal["root"] == mth(leaves).hex() and (seal["first_seq"], seal["last_seq"], seal["tree_size"]) == (
        10, 9 + n, n)
    assert structure_problems(seal, bucket="cold", day=DAY) == []
    assert seal_hash(seal) == hashlib.sha256(canonical_json(seal)).hexdigest()
    if n == 0:
        assert seal["root"] == EMPTY_ROOT


def test_any_change_to_a_seal_is_caught() -> None:
    signer = SealSigner.generate()
    seal = make(signer, [b"x", b"y"])
    assert "does not verify" in structure_problems({**seal, "root": "0" * 64})[0]
    assert "does not verify" in structure_problems({**seal, "prev_seal_hash": "1" * 64})[0]
    assert any("key_id" in p for p in structure_problems({**seal, "key_id": "0" * 16}))
    assert any("inconsistent range" in p for p in structure_problems({**seal, "tree_size": 3}))
    assert any("before its day" in p for p in structure_problems({**seal, "time": "2026-11-23T23:59:00+00:00"}))
    assert any("does not match its key" in p for p in structure_problems(seal, day=DAY + dt.timedelta(days=1)))
    assert any("not this journal's bucket" in p for p in structure_problems(seal, bucket="other"))
    assert structure_problems({k: v for k, v in seal.items() if k != "chain_head"}) == ["missing field(s) chain_head"]
    other = SealSigner.generate()
    assert check_signature({**seal, "public_key": other.public_key_b64}) is not None


class FakeTSA:
    def __init__(self) -> None:
        self.digests: list[bytes] = []

    def stamp(self, digest: bytes) -> bytes | None:
        self.digests.append(digest)
        return b"\x30\x03token-der"


def test_the_timestamp_hook_stamps_the_content_and_is_covered_by_the_signature() -> None:
    signer, tsa = SealSigner.generate(), FakeTSA()
    seal = make(signer, [b"x"], tsa=tsa)
    assert seal["timestamp_token"] == base64.b64encode(b"\x30\x03token-der").decode()
    assert tsa.digests == [timestamp_digest(seal)] and len(tsa.digests[0]) == 32
    assert check_signature(seal) is None
    assert check_signature({**seal, "timestamp_token": None}) is not None
    assert make(signer, [b"x"])["timestamp_token"] is None  # no TSA: no token


def test_signing_keys_are_read_without_ever_showing_them() -> None:
    signer = SealSigner.generate()
    seed = signer.seed_b64()
    assert SealSigner.from_seed_b64(f"  {seed}\n").public_key_raw == signer.public_key_raw
    assert seed not in repr(signer) and seed not in str(signer) and signer.key_id in repr(signer)
    with pytest.raises(SigningKeyError, match="is not set"):
        SealSigner.from_seed_b64(None)
    with pytest.raises(SigningKeyError, match="not valid base64") as bad:
        SealSigner.from_seed_b64("not base64 at all!")
    assert "not base64 at all" not in str(bad.value)
    too_long = base64.b64encode(os.urandom(64)).decode()
    with pytest.raises(SigningKeyError, match="decodes to 64 bytes, expected 32") as wrong:
        SealSigner.from_seed_b64(too_long)
    assert too_long not in str(wrong.value)


def test_keygen(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["journal", "keygen"]) == 0
    out = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    signer = SealSigner.from_seed_b64(out["VAULT_JOURNAL_SIGNING_KEY"])
    assert out["VAULT_JOURNAL_PUBLIC_KEYS"] == signer.public_key_b64

    target = tmp_path / "seal.key"
    assert main(["journal", "keygen", "--out", str(target)]) == 0
    out, err = capsys.readouterr()
    seed = target.read_text().strip()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and seed not in out + err
    assert out.strip() == f"VAULT_JOURNAL_PUBLIC_KEYS={SealSigner.from_seed_b64(seed).public_key_b64}"
    assert main(["journal", "keygen", "--out", str(target)]) == 2  # never overwrites a key
    assert target.read_text().strip() == seed
    assert "cannot create" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_the_documented_openssl_one_liner_makes_a_seed() -> None:
    def sh(command: str, stdin: str | None = None) -> str:
        return subprocess.run(command, shell=True, input=stdin, capture_output=True, text=True, check=True).stdout

    assert len(base64.b64decode(sh("openssl genpkey -algorithm ed25519 -outform DER | tail -c 32 | base64"))) == 32
    pem = sh("openssl genpkey -algorithm ed25519")
    seed = sh("openssl pkey -outform DER | tail -c 32 | base64", pem).strip()
    public = sh("openssl pkey -pubout -outform DER | tail -c 32 | base64", pem).strip()
    assert SealSigner.from_seed_b64(seed).public_key_b64 == public  # the same key pair as OpenSSL's
