"""The application's identifiers of a document, read from the hot object's user metadata.

The specification's replication_status has `document_id` and `user_id` (UUIDs). The hot site carries them
as `document-id` and `user-id` metadata when the application sets them. A value that is not a UUID is
recorded as NULL with a note for the audit log: a bad identifier never stops a document from being copied.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from vault_pipeline.replication.policy import first_value

DOCUMENT_ID_KEYS = ("document-id", "document_id", "documentid")
USER_ID_KEYS = ("user-id", "user_id", "userid")


@dataclass(frozen=True)
class ApplicationIds:
    document_id: str | None
    user_id: str | None
    notes: tuple[str, ...]  # why a present value was not recorded


def _uuid(metadata: Mapping[str, str], keys: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    raw = first_value(metadata, keys)
    if raw is None or not raw.strip():
        return None, ()
    try:
        return str(uuid.UUID(raw.strip())), ()
    except ValueError:
        shown = raw if len(raw) <= 80 else raw[:77] + "..."
        return None, (f"{keys[0]} {shown!r} is not a UUID: recorded as NULL",)


def application_ids(metadata: Mapping[str, str]) -> ApplicationIds:
    document_id, document_notes = _uuid(metadata, DOCUMENT_ID_KEYS)
    user_id, user_notes = _uuid(metadata, USER_ID_KEYS)
    return ApplicationIds(document_id, user_id, document_notes + user_notes)
