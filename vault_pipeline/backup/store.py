"""Tracking-database backups on the cold site: `<prefix><backup id>/<database>.dump` and `manifest.json`.

Every object is STANDARD class (a restore must not wait 12 h for Deep Archive), COMPLIANCE-locked for
VAULT_DB_BACKUP_RETENTION_DAYS, carries its SHA-256 in metadata (`vault-sha256`) and per-part SHA-256
checksums on the wire, and is journaled (action "backup") by the caller. The manifest names each dump's
version id, size and SHA-256, the row counts of the snapshot and the journal head it contains; it is written
last, so a backup without a manifest is incomplete and is never chosen for a restore.

A fetch reads the pinned versions and hashes every byte: a dump whose bytes do not hash to what the manifest
and the journal recorded is refused (TamperedBackup), never restored.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from vault_pipeline.replication.errors import wrap

MANIFEST = "manifest.json"
META_SHA256 = "vault-sha256"
META_KIND = "vault-kind"
KIND = "database-backup"
MANIFEST_FORMAT = 1
CHUNK = 1024 * 1024


class BackupError(RuntimeError):
    pass


class TamperedBackup(BackupError):
    """The bytes on the cold site are not the ones the backup recorded: never restore them."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    version_id: str
    sha256: str
    size: int
    retain_until: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "version_id": self.version_id, "sha256": self.sha256, "size": self.size,
                "retain_until": self.retain_until.isoformat()}


def backup_id_for(now: dt.datetime, run_id: str) -> str:
    """Sortable by time (the latest backup is the last id), unique per run."""
    return f"{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{run_id[:8]}"


def retain_until_for(now: dt.datetime, days: int) -> dt.datetime:
    """Midnight UTC after now + days: a whole number of days, the same for every object of one backup."""
    return dt.datetime.combine((now + dt.timedelta(days=days)).date() + dt.timedelta(days=1), dt.time(0),
                               tzinfo=dt.UTC)


class BackupStore:
    def __init__(self, client: Any, bucket: str, prefix: str, *, part_size: int = 64 * 1024 * 1024,
                 concurrency: int = 4) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.transfer = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size,
                                       max_concurrency=concurrency, use_threads=concurrency > 1)

    def key(self, backup_id: str, name: str) -> str:
        return f"{self.prefix}{backup_id}/{name}"

    # -- writing ---------------------------------------------------------------------------------------
    def _lock_args(self, sha256: str, retain_until: dt.datetime, database: str) -> dict[str, Any]:
        return {"StorageClass": "STANDARD", "ChecksumAlgorithm": "SHA256", "ObjectLockMode": "COMPLIANCE",
                "ObjectLockRetainUntilDate": retain_until,
                "Metadata": {META_SHA256: sha256, META_KIND: KIND, "vault-database": database}}

    def put_file(self, key: str, path: Path, sha256: str, *, retain_until: dt.datetime,
                 database: str) -> StoredObject:
        """Upload a spooled dump (multipart above the part size, s3transfer aborts what it started on an
        error), then HEAD it: size and recorded SHA-256 must be the file's."""
        size = path.stat().st_size
        try:
            self.client.upload_file(str(path), self.bucket, key, Config=self.transfer,
                                    ExtraArgs={**self._lock_args(sha256, retain_until, database),
                                               "ContentType": "application/octet-stream"})
        except Exception as exc:
            raise wrap(f"upload of backup {key!r}", exc) from exc
        return self._confirmed(key, sha256, size, retain_until)

    def put_bytes(self, key: str, body: bytes, *, retain_until: dt.datetime, content_type: str,
                  database: str) -> StoredObject:
        digest = hashlib.sha256(body)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                                   ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
                                   **self._lock_args(digest.hexdigest(), retain_until, database))
        except Exception as exc:
            raise wrap(f"PUT of backup {key!r}", exc) from exc
        return self._confirmed(key, digest.hexdigest(), len(body), retain_until)

    def _confirmed(self, key: str, sha256: str, size: int, retain_until: dt.datetime) -> StoredObject:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise wrap(f"HEAD of backup {key!r}", exc) from exc
        recorded = (head.get("Metadata") or {}).get(META_SHA256)
        if int(head["ContentLength"]) != size or recorded != sha256:
            raise BackupError(f"backup {key!r} on the cold site is {head['ContentLength']} bytes with SHA-256 "
                              f"{recorded!r} after the upload, expected {size} bytes and {sha256}")
        if head.get("ObjectLockMode") != "COMPLIANCE":
            raise BackupError(f"backup {key!r} was stored without its COMPLIANCE lock: is Object Lock enabled "
                              "on the cold bucket?")
        return StoredObject(key, str(head.get("VersionId")), sha256, size, retain_until)

    def abort_stale_uploads(self, older_than: dt.timedelta, now: dt.datetime) -> int:
        """Abort multipart uploads under the prefix started before now - older_than (a backup killed mid-
        upload); a younger one may be another backup's, still running."""
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < now - older_than:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

    # -- reading ---------------------------------------------------------------------------------------
    def backup_ids(self) -> list[str]:
        """Every backup with a manifest, oldest first."""
        ids = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                rest = item["Key"][len(self.prefix):]
                backup_id, _, name = rest.partition("/")
                if name == MANIFEST:
                    ids.append(backup_id)
        return sorted(ids)

    def latest(self) -> str:
        ids = self.backup_ids()
        if not ids:
            raise BackupError(f"no complete backup (one with a {MANIFEST}) under s3://{self.bucket}/{self.prefix}")
        return ids[-1]

    def manifest(self, backup_id: str) -> tuple[dict[str, Any], StoredObject]:
        """The manifest of a backup: its first version (the locked original; a later version is a rewrite,
        refused) checked against its own recorded SHA-256."""
        key = self.key(backup_id, MANIFEST)
        versions = self._versions(key)
        if not versions:
            raise BackupError(f"backup {backup_id!r} has no manifest at {key!r}")
        if len(versions) > 1:
            raise TamperedBackup(f"the manifest {key!r} has {len(versions)} versions: it was rewritten after the "
                                 "backup wrote it")
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, VersionId=versions[0])
            body = response["Body"].read()
        except Exception as exc:
            raise wrap(f"GET of backup manifest {key!r}", exc) from exc
        digest = hashlib.sha256(body).hexdigest()
        if digest != (response.get("Metadata") or {}).get(META_SHA256):
            raise TamperedBackup(f"the manifest {key!r} hashes to {digest}, not to the SHA-256 it was stored with")
        manifest = json.loads(body)
        stored = StoredObject(key, versions[0], digest, len(body),
                              response.get("ObjectLockRetainUntilDate") or dt.datetime.now(dt.UTC))
        return manifest, stored

    def _versions(self, key: str) -> list[str]:
        found = []
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            found += [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key]
            found += [m["VersionId"] for m in page.get("DeleteMarkers", []) if m["Key"] == key]
        return found

    def fetch(self, entry: dict[str, Any], dest: Path,
              progress: Callable[[int], None] | None = None) -> float:
        """Stream the dump the manifest entry names (its pinned version) to `dest`, hashing every byte;
        TamperedBackup unless it hashes to the recorded SHA-256. Returns the seconds it took."""
        started = time.monotonic()
        key, version_id, expected = entry["key"], entry["version_id"], entry["sha256"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(dest.suffix + ".partial")
        digest, size = hashlib.sha256(), 0
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            recorded = (response.get("Metadata") or {}).get(META_SHA256)
            with partial.open("wb") as out:
                for chunk in response["Body"].iter_chunks(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if progress:
                        progress(size)
        except Exception as exc:
            partial.unlink(missing_ok=True)
            raise wrap(f"GET of backup {key!r}", exc) from exc
        if digest.hexdigest() != expected or recorded != expected or size != int(entry["size"]):
            partial.unlink(missing_ok=True)
            raise TamperedBackup(
                f"backup {key!r} (version {version_id}) is {size} bytes hashing to {digest.hexdigest()}; the backup "
                f"recorded {entry['size']} bytes and SHA-256 {expected} (object metadata says {recorded}): refused")
        partial.replace(dest)
        return time.monotonic() - started


def manifest_document(*, backup_id: str, created_at: dt.datetime, run_id: str, site: str,
                      dumps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": MANIFEST_FORMAT, "backup_id": backup_id, "created_at": created_at.isoformat(),
            "run_id": run_id, "cold_site": site, "databases": {d["database"]: d for d in dumps}}


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True, default=str).encode("utf-8")
