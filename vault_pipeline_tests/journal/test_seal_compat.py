"""Seals already on the cold site stay valid, byte for byte, whatever the code around them becomes.

The two seals below were made by the code of commit 7a2f6c2 (before seal.py was split) with a fixed test
seed; Ed25519 signatures are deterministic, so building them again must give the very same bytes, and the
stored bytes must keep passing every check. No server needed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

from vault_pipeline.journal.chain import canonical_json
from vault_pipeline.journal.merkle import leaf_hash
from vault_pipeline.journal.seal_format import build_seal, check_signature, seal_hash, structure_problems
from vault_pipeline.journal.signing import SealSigner

SEED = base64.b64encode(bytes(range(32))).decode()
DAY_SEAL = (
    b'{"bucket":"cold-golden","chain_head":"abababababababababababababababababababababababababababababababab",'
    b'"day":"2026-11-23","first_seq":31,"format":"vault-pipeline/journal-seal/v1","key_id":"56475aa75463474c",'
    b'"last_seq":33,"prev_seal_hash":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",'
    b'"public_key":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",'
    b'"root":"fe4ac68b4f0b81589dd5f4bcb1474574485e4fe74367bae2a0e61f891a8d09e2",'
    b'"signature":"Y3uS5K+U/PDyTO1OxHT0gJFbvTavevLpbWotPhNwq0hCVWp8em55kTCrB7CxZ3eIbBHy/05btepEgwuA8I/JDA==",'
    b'"signature_algorithm":"ed25519","time":"2026-11-24T00:15:00.123456+00:00","timestamp_token":"MAN0b2tlbi1kZXI=",'
    b'"tree_size":3}'
)
DAY_SEAL_HASH = "e8754c311da5aa592165daef9f77c721ad35aeb231a7f35c504fa2ed947be855"
EMPTY_DAY_SEAL = (
    b'{"bucket":"cold-golden","chain_head":"abababababababababababababababababababababababababababababababab",'
    b'"day":"2026-11-24","first_seq":34,"format":"vault-pipeline/journal-seal/v1","key_id":"56475aa75463474c",'
    b'"last_seq":33,"prev_seal_hash":"e8754c311da5aa592165daef9f77c721ad35aeb231a7f35c504fa2ed947be855",'
    b'"public_key":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",'
    b'"root":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",'
    b'"signature":"MyHAb6Qpc1vIltcDBmoxF08fWNUCqconuyq1eTZlrsZYKTFS/U8U+g01a05gUvzQ7KBBet1ZIDMF4VQGifKBCw==",'
    b'"signature_algorithm":"ed25519","time":"2026-11-25T00:15:00+00:00","timestamp_token":null,"tree_size":0}'
)
EMPTY_DAY_SEAL_HASH = "9a4ab2a58423d9e974ff6b8855035c7668280cf687350c5e2c6521b6c9d5bde8"


class FixedTSA:
    def stamp(self, digest: bytes) -> bytes | None:
        return b"\x30\x03token-der"


def test_stored_seals_still_verify() -> None:
    for body, digest, day in ((DAY_SEAL, DAY_SEAL_HASH, dt.date(2026, 11, 23)),
                              (EMPTY_DAY_SEAL, EMPTY_DAY_SEAL_HASH, dt.date(2026, 11, 24))):
        seal = json.loads(body)
        assert structure_problems(seal, bucket="cold-golden", day=day) == []
        assert check_signature(seal) is None
        assert canonical_json(seal) == body
        assert seal_hash(seal) == hashlib.sha256(body).hexdigest() == digest
        assert check_signature({**seal, "tree_size": 4}) is not None


def test_the_same_inputs_still_make_the_same_bytes() -> None:
    signer = SealSigner.from_seed_b64(SEED)
    assert signer.key_id == "56475aa75463474c"
    leaves = [leaf_hash(canonical_json({"seq": 31 + i, "k": f"v{i}"})) for i in range(3)]
    first = build_seal(bucket="cold-golden", day=dt.date(2026, 11, 23), first_seq=31, leaf_hashes=leaves,
                       chain_head="ab" * 32, prev_seal_hash="cd" * 32, signer=signer,
                       now=dt.datetime(2026, 11, 24, 0, 15, 0, 123456, tzinfo=dt.UTC), tsa=FixedTSA())
    assert canonical_json(first) == DAY_SEAL
    empty = build_seal(bucket="cold-golden", day=dt.date(2026, 11, 24), first_seq=34, leaf_hashes=[],
                       chain_head="ab" * 32, prev_seal_hash=seal_hash(first), signer=signer,
                       now=dt.datetime(2026, 11, 25, 0, 15, tzinfo=dt.UTC))
    assert canonical_json(empty) == EMPTY_DAY_SEAL
