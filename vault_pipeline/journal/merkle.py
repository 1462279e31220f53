"""Merkle tree hashing and inclusion proofs exactly as RFC 9162 (Certificate Transparency v2) §2.1.

Leaves and nodes are domain-separated (0x00 / 0x01 prefixes) so a leaf can never pass for a node.
A third party checks a proof with `verify_inclusion` alone: the algorithm is the RFC's §2.1.3.2,
written out so it can be re-implemented from the documentation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


class ProofError(ValueError):
    """A proof that does not verify, or a request outside the tree."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) given the leaf hashes; the empty tree is SHA-256 of the empty string."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    level = list(hashes)
    # Bottom-up is equal to the RFC's recursive definition: pairing left to right and promoting an odd
    # last node unchanged produces the same left-balanced tree.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def root(leaves: Sequence[bytes]) -> bytes:
    return root_from_leaf_hashes([leaf_hash(leaf) for leaf in leaves])


def inclusion_proof(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, from the leaf hashes, leaf to root order."""
    n = len(hashes)
    if not 0 <= index < n:
        raise ProofError(f"leaf index {index} outside a tree of {n} leaves")

    def path(m: int, subtree: Sequence[bytes]) -> list[bytes]:
        if len(subtree) == 1:
            return []
        k = _split(len(subtree))
        if m < k:
            return [*path(m, subtree[:k]), root_from_leaf_hashes(subtree[k:])]
        return [*path(m - k, subtree[k:]), root_from_leaf_hashes(subtree[:k])]

    return path(index, hashes)


def verify_inclusion(index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes) -> None:
    """RFC 9162 §2.1.3.2: raise ProofError unless `leaf` (a leaf hash) is at `index` of the tree whose
    root is `expected_root`."""
    if not 0 <= index < tree_size:
        raise ProofError(f"leaf index {index} outside a tree of {tree_size} leaves")
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than the tree is deep")
    if r != expected_root:
        raise ProofError("computed root differs from the expected root")
