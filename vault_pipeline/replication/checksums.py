"""Checksums as S3 expresses them.

The fixity value is the whole-object SHA-256 we compute while streaming. The cold site reports its own
checksum: for a single PUT the full-object SHA-256 (base64), for a multipart upload a *composite*
value, SHA-256 over the concatenated binary part digests, suffixed "-N" (some servers omit the suffix).
Both are compared against values computed from the same bytes; ETags are never compared across sites.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Literal

ChecksumType = Literal["FULL_OBJECT", "COMPOSITE"]


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class ExpectedChecksum:
    """What the cold site must report for an object we wrote."""

    kind: ChecksumType
    value: str  # base64, without any "-N" suffix
    parts: int | None = None  # number of parts for COMPOSITE

    @classmethod
    def full(cls, sha256_digest: bytes) -> ExpectedChecksum:
        return cls("FULL_OBJECT", b64(sha256_digest))

    @classmethod
    def composite(cls, part_digests: list[bytes]) -> ExpectedChecksum:
        return cls("COMPOSITE", b64(hashlib.sha256(b"".join(part_digests)).digest()), len(part_digests))

    def render(self) -> str:
        return self.value if self.kind == "FULL_OBJECT" else f"{self.value}-{self.parts}"

    def mismatch(self, reported: str | None) -> str | None:
        """None when `reported` (the server's x-amz-checksum-sha256) matches, else why not."""
        if not reported:
            return "cold site reported no SHA-256 checksum"
        value, _, suffix = reported.partition("-")
        if value != self.value:
            return f"cold SHA-256 checksum {reported} != expected {self.render()}"
        if self.kind == "COMPOSITE" and suffix and suffix != str(self.parts):
            return f"cold composite checksum has {suffix} parts, expected {self.parts}"
        if self.kind == "FULL_OBJECT" and suffix:
            return f"cold checksum {reported} is composite, expected a full-object SHA-256"
        return None


