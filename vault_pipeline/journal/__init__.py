"""Tamper-evident write journal of the cold site (issue 4): hash chain and RFC 9162 Merkle tree."""
