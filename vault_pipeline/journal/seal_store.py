"""Where seals live on the cold site: their keys, listing them with their versions, reading one back.

One seal per UTC day at `journal/seals/YYYY-MM-DD.json`, written once and locked (the writing is
SegmentStore.put_once, called by the sealer). A seal key with more than one version or a delete marker
was replaced or hidden after its write: the sealer, `journal verify` and `journal prove` refuse it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from vault_pipeline.journal.chain import canonical_json
from vault_pipeline.journal.seal_format import SealError
from vault_pipeline.journal.segments import SEAL_DIR, SegmentStore, json_object

_SEAL_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.json$")


def seal_key(prefix: str, day: dt.date) -> str:
    return f"{prefix}{SEAL_DIR}{day.isoformat()}.json"


def day_of_seal_key(prefix: str, key: str) -> dt.date | None:
    base = prefix + SEAL_DIR
    if not key.startswith(base):
        return None
    match = _SEAL_NAME.match(key[len(base):])
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def list_seal_objects(store: SegmentStore) -> list[str]:
    """Every current object key under journal/seals/ (seal or not), in key order."""
    keys = []
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=store.prefix + SEAL_DIR):
        keys.extend(obj["Key"] for obj in page.get("Contents") or [])
    return sorted(keys)


def seal_versions(store: SegmentStore) -> dict[str, int]:
    """Every key ever written under journal/seals/ with its number of versions and delete markers (one
    listing). Unlike a plain listing it also shows a seal hidden behind a delete marker."""
    counts: dict[str, int] = {}
    paginator = store.client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=store.prefix + SEAL_DIR):
        for item in [*(page.get("Versions") or []), *(page.get("DeleteMarkers") or [])]:
            counts[item["Key"]] = counts.get(item["Key"], 0) + 1
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class StoredSeal:
    key: str
    version_id: str | None
    seal: dict[str, Any]
    body: bytes

    @property
    def day(self) -> dt.date:
        return dt.date.fromisoformat(self.seal["day"])

    @property
    def seal_hash(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def canonical(self) -> bool:
        return self.body == canonical_json(self.seal)


def read_seal(store: SegmentStore, key: str) -> StoredSeal:
    body, version = store.read_object(key)
    return StoredSeal(key, version, json_object(body, f"seal {key}", SealError), body)
