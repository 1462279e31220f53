"""Where an inbox file goes and what it is: its hot key, its document type, and whether the intake takes it.

    <remote dir>/payroll/2026/11/jdoe.pdf  ->  hot key  sftp/payroll/2026/11/jdoe.pdf  (SFTP_HOT_PREFIX)
                                           ->  type     payslip  (SFTP_DOCUMENT_TYPES "payroll=payslip")

Filenames are relative to the inbox and '/'-separated, kept exactly as the server gives them (spaces,
unicode, '%', '+'): the hot key is the prefix plus that path, nothing escaped or normalised, so a document
can always be found from its SFTP name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from vault_pipeline.settings import parse_document_types

MAX_KEY_BYTES = 1024  # S3's limit on a key, in UTF-8 bytes


class DocumentTypeRuleError(ValueError):
    """SFTP_DOCUMENT_TYPES could not be read; the message says which entry and why."""


@dataclass(frozen=True)
class DocumentTypeRule:
    """The document type of a file from the directory it was dropped in: the longest directory prefix of
    its path listed in the map wins; anything else gets the default."""

    by_directory: Mapping[str, str]
    default: str

    @classmethod
    def parse(cls, text: str, default: str) -> DocumentTypeRule:
        """`dir=type,dir/sub=type` (SFTP_DOCUMENT_TYPES, read as settings.py reads it)."""
        try:
            return cls(by_directory=parse_document_types(text), default=default.strip())
        except ValueError as exc:
            raise DocumentTypeRuleError(str(exc)) from None

    @property
    def types(self) -> set[str]:
        return {*self.by_directory.values(), self.default}

    def type_of(self, filename: str) -> str:
        parts = filename.split("/")[:-1]
        for depth in range(len(parts), 0, -1):
            found = self.by_directory.get("/".join(parts[:depth]))
            if found is not None:
                return found
        return self.default


def hot_key(prefix: str, filename: str) -> str:
    return prefix + filename


def key_problem(key: str) -> str | None:
    """Why S3 cannot take this key, or None."""
    size = len(key.encode("utf-8", errors="surrogateescape"))
    if size > MAX_KEY_BYTES:
        return f"hot key would be {size} bytes, S3 allows {MAX_KEY_BYTES}"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "the name holds control characters, which S3 keys cannot carry reliably"
    return None


def ignored(name: str, patterns: tuple[str, ...]) -> bool:
    """A file still being uploaded under a temporary name (`.x.part`, `x.tmp`...), by SFTP_IGNORE_PATTERNS."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def parse_patterns(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())
