"""Seal signing keys: the Ed25519 signer, public keys and their ids, signature checks, the TSA hook.

The signing key is VAULT_JOURNAL_SIGNING_KEY: base64 of the 32-byte raw Ed25519 seed. It is only ever read
from the environment and appears in no message, seal, log or metadata; only the public key and its id do.
VAULT_JOURNAL_PUBLIC_KEYS lists the accepted public keys (base64 of the raw 32 bytes, comma-separated).
A key id is the first 16 hex digits of SHA-256(raw public key). What a seal's signature covers is the seal
format's business (seal_format.py); this module only knows keys, bytes and signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNING_KEY_VARIABLE = "VAULT_JOURNAL_SIGNING_KEY"
PUBLIC_KEYS_VARIABLE = "VAULT_JOURNAL_PUBLIC_KEYS"


class SigningKeyError(ValueError):
    """The signing key or a public key is missing or malformed (the message never contains the key)."""


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


def public_key_from_b64(value: str) -> Ed25519PublicKey:
    """The Ed25519 public key of strict base64 `value`; ValueError (binascii.Error included) if it is not one."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True))


def signature_holds(public: Ed25519PublicKey, signature: bytes, payload: bytes) -> bool:
    try:
        public.verify(signature, payload)
    except InvalidSignature:
        return False
    return True


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
