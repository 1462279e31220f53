"""What a cold copy carries besides its bytes: the vault's user metadata (the fixity value and where the
copy came from, so that each copy describes itself), the hot object's content headers, the COMPLIANCE lock,
the storage class and the tags."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from vault_pipeline.replication.policy import ResolvedRetention
from vault_pipeline.replication.verify import (
    META_DOCUMENT_TYPE,
    META_PART_SIZE,
    META_RETAIN_UNTIL,
    META_RETENTION_YEARS,
    META_SHA256,
    META_SOURCE_ETAG,
    META_SOURCE_LAST_MODIFIED,
    META_SOURCE_VERSION,
    TAG_DOCUMENT_TYPE,
    TAG_RETENTION_YEARS,
)

if TYPE_CHECKING:
    from vault_pipeline.replication.copier import SourceObject


def cold_metadata(source: SourceObject, sha_hex: str, retention: ResolvedRetention,
                  part_size: int | None) -> dict[str, str]:
    """The hot object's own metadata (its vault-* keys dropped) plus the vault's."""
    metadata = {k: v for k, v in source.metadata.items() if not k.lower().startswith("vault-")}
    metadata.update({
        META_SHA256: sha_hex,
        META_SOURCE_ETAG: source.etag,
        META_SOURCE_LAST_MODIFIED: source.last_modified.isoformat(),
        META_DOCUMENT_TYPE: retention.document_type,
        META_RETENTION_YEARS: str(retention.retention_years),
        META_RETAIN_UNTIL: retention.retain_until.isoformat(),
    })
    if source.version_id:
        metadata[META_SOURCE_VERSION] = source.version_id
    if part_size:
        metadata[META_PART_SIZE] = str(part_size)
    return metadata


def cold_tags(retention: ResolvedRetention) -> dict[str, str]:
    return {TAG_DOCUMENT_TYPE: retention.document_type, TAG_RETENTION_YEARS: str(retention.retention_years)}


def cold_object_args(bucket: str, storage_class: str, source: SourceObject, sha_hex: str,
                     retention: ResolvedRetention, part_size: int | None) -> dict[str, Any]:
    """PutObject / CreateMultipartUpload arguments of a locked cold copy (the body and checksum aside)."""
    args: dict[str, Any] = {
        "Bucket": bucket,
        "Key": source.key,
        "Metadata": cold_metadata(source, sha_hex, retention, part_size),
        "ObjectLockMode": "COMPLIANCE",
        "ObjectLockRetainUntilDate": retention.retain_until,
        "StorageClass": storage_class,
        "Tagging": urllib.parse.urlencode(cold_tags(retention)),
        "ChecksumAlgorithm": "SHA256",
    }
    args.update(source.content_headers())  # Content-Type, Content-Encoding, ... as on the hot site
    return args
