"""RFC 9162 Merkle trees: checked against an independent, literal transcription of the RFC's recursive
definitions and against Certificate Transparency's published test vector."""

from __future__ import annotations

import hashlib

import pytest

from vault_pipeline.journal.merkle import (
    ProofError,
    inclusion_proof,
    leaf_hash,
    root,
    root_from_leaf_hashes,
    verify_inclusion,
)

# Certificate Transparency's reference test data (RFC 6962 hashing, which RFC 9162 keeps).
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]
CT_ROOT_8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def reference_mth(data: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as written in RFC 9162 §2.1.1."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(data[:k]) + reference_mth(data[k:])).digest()


def test_known_vector_and_empty_tree() -> None:
    assert root(CT_LEAVES).hex() == CT_ROOT_8
    assert root([]).hex() == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("n", range(1, 34))
def test_roots_and_every_inclusion_proof_match_the_rfc(n: int) -> None:
    data = [f"entry-{i}".encode() for i in range(n)]
    hashes = [leaf_hash(d) for d in data]
    tree_root = root_from_leaf_hashes(hashes)
    assert tree_root == reference_mth(data)
    for index in range(n):
        proof = inclusion_proof(index, hashes)
        verify_inclusion(index, n, hashes[index], proof, tree_root)


def test_forged_proofs_are_refused() -> None:
    data = [f"doc-{i}".encode() for i in range(11)]
    hashes = [leaf_hash(d) for d in data]
    tree_root = root_from_leaf_hashes(hashes)
    proof = inclusion_proof(6, hashes)
    forged = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
    for index, size, leaf, path in [
        (6, 11, leaf_hash(b"doc-X"), proof),  # another document
        (5, 11, hashes[6], proof),  # the right document at the wrong place
        (6, 11, hashes[6], forged),  # a changed sibling
        (6, 11, hashes[6], proof[:-1]),  # truncated
        (6, 11, hashes[6], [*proof, proof[0]]),  # extended
        (11, 11, hashes[6], proof),  # outside the tree
    ]:
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf, path, tree_root)
    # The tree size is not bound by the path when both trees have the same shape there: it is bound by the
    # signed checkpoint (tree size + root), which a verifier must check first.
    # A leaf hash is never a valid node: the 0x00/0x01 prefixes separate them.
    assert leaf_hash(hashes[0] + hashes[1]) != root_from_leaf_hashes(hashes[:2])
