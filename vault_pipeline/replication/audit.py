"""Fixity audit of a range of partition days: the manifest, the cold site and the hot site compared.

Metadata calls only on the cold site (a Deep Archive object cannot be read without a restore): HEAD of
the current version of every key, HEAD of the verified version when something else is on top, the tag
set where the server gives it, and one listing for objects the manifest does not know. Every object gets
one classification and, per aspect (completeness, checksum, retention, storage class, tags, orphans), the
problem found, so each asset check reads its own aspect from one shared pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from vault_pipeline.replication.errors import describe_s3_error
from vault_pipeline.replication.evidence import RunEvidence
from vault_pipeline.replication.inventory import strip_etag
from vault_pipeline.replication.policy import RetentionPolicy, add_years
from vault_pipeline.replication.shards import Shard
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.replication.verify import (
    META_SHA256,
    TAG_DOCUMENT_TYPE,
    TAG_RETENTION_YEARS,
    ColdEvidence,
    head_version,
    storage_class_of,
)

ASPECTS = ("completeness", "checksum", "retention", "storage_class", "tags", "orphans")
# One classification per object, the most serious first.
CLASSES = ("missing_in_cold", "checksum_mismatch", "retention_short", "wrong_class", "wrong_tags",
           "orphan_in_cold", "hot_changed", "in_flight", "ok")
ASPECT_CLASS = {"completeness": "missing_in_cold", "checksum": "checksum_mismatch", "retention": "retention_short",
                "storage_class": "wrong_class", "tags": "wrong_tags", "orphans": "orphan_in_cold"}


@dataclass
class ObjectAudit:
    key: str
    day: dt.date
    classification: str = "ok"
    problems: dict[str, str] = field(default_factory=dict)  # aspect -> what is wrong
    status: str | None = None  # manifest status; None for an orphan
    document_type: str | None = None
    size: int = 0
    sha256: str | None = None
    cold_version_id: str | None = None
    current_version_id: str | None = None
    retain_until: dt.datetime | None = None
    retention_base: str | None = None  # 'minimum': locked on VAULT_MINIMUM_LOCK_DAYS, its policy date was past
    lag_seconds: float | None = None  # hot LastModified -> verified copy
    hot_state: str | None = None  # same | changed | deleted | unknown
    in_flight: bool = False  # pending or being copied, within the grace period: not yet a failure
    judged_from_verification: bool = False  # judged from this run's verifying HEAD (evidence.py)

    def flag(self, aspect: str, problem: str) -> None:
        self.problems.setdefault(aspect, problem)

    def classify(self) -> None:
        found = {ASPECT_CLASS[a] for a in self.problems}
        if self.hot_state == "changed":
            found.add("hot_changed")
        if self.in_flight:
            found.add("in_flight")
        self.classification = next((c for c in CLASSES if c in found), "ok")


@dataclass
class DayAudit:
    first_day: dt.date
    last_day: dt.date
    objects: list[ObjectAudit]
    audited_at: dt.datetime
    notes: list[str] = field(default_factory=list)
    # Versions judged from the HEAD this run's copy step verified them with, seconds earlier (evidence.py)
    # instead of a new HEAD, tag read and hot HEAD.
    judged_from_verification: int = 0

    def failing(self, aspect: str) -> list[ObjectAudit]:
        return [o for o in self.objects if aspect in o.problems]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CLASSES, 0)
        for obj in self.objects:
            counts[obj.classification] += 1
        return counts


def required_retain_until(row: dict[str, Any], policy: RetentionPolicy) -> dt.datetime:
    """What the policy demands today: the recorded date, later still if the policy grew for this type.

    Never less than recorded. A copy locked on the minimum (retention_base 'minimum') recorded the minimum
    date, which is what it is held to: it is never flagged short for its past policy date. If the policy
    grows for its type, the extra years are added to that recorded date, an upper bound of the new policy
    date (which was earlier than the minimum): asking for a longer lock is never wrong."""
    recorded: dt.datetime = row["aws_object_lock_until"]
    years_now = policy.years_by_type.get(row["document_type"], policy.years_by_type[policy.default_type])
    extra = years_now - int(row["retention_years"])
    if extra <= 0:
        return recorded
    return dt.datetime.combine(add_years(recorded.date(), extra), recorded.timetz())


class Auditor:
    def __init__(self, *, store: TrackingStore, cold: Any, cold_bucket: str, hot: Any | None, hot_bucket: str,
                 policy: RetentionPolicy, storage_class: str, reserved_prefixes: Iterable[str] = (),
                 concurrency: int = 16, grace: dt.timedelta = dt.timedelta(hours=1),
                 fresh: RunEvidence | None = None) -> None:
        self.store, self.cold, self.cold_bucket = store, cold, cold_bucket
        self.hot, self.hot_bucket = hot, hot_bucket
        self.policy, self.storage_class = policy, storage_class
        self.reserved_prefixes = tuple(reserved_prefixes)
        self.concurrency = concurrency
        self.fresh = fresh
        # A row pending or being copied for less than this is work in flight (another run may hold it),
        # not a missing copy; past it, the SLA is broken and completeness fails.
        self.grace = grace

    def audit(self, first_day: dt.date, last_day: dt.date, shard: Shard | None = None) -> DayAudit:
        """The day range's audit; for a shard run, of its own slice only (the rows whose id % n = i, and the
        orphans for shard 0): the shards of a day audit it once between them instead of n times."""
        audited_at = dt.datetime.now(dt.UTC)
        rows = self.store.rows_for_days(self.hot_bucket, first_day, last_day)
        if shard is not None:
            rows = [row for row in rows if shard.owns(int(row["id"]))]
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="vault-audit") as pool:
            objects = list(pool.map(self._audit_row, rows))
        if shard is None or shard.index == 0:
            objects += self._orphans(first_day, last_day)
        for obj in objects:
            obj.classify()
        judged = sum(1 for obj in objects if obj.judged_from_verification)
        return DayAudit(first_day, last_day, objects, audited_at, judged_from_verification=judged)

    def _fresh(self, row: dict[str, Any]) -> tuple[ColdEvidence, str] | None:
        """This run's verifying HEAD of the row's recorded version, if this run verified it."""
        if self.fresh is None or row["status"] != "replicated":
            return None
        found = self.fresh.get(row["s3_key"])
        if found is None or found[0].version_id != row["aws_version_id"]:
            return None
        return found

    # -- one manifest row -------------------------------------------------------------------------
    def _audit_row(self, row: dict[str, Any]) -> ObjectAudit:
        obj = ObjectAudit(
            key=row["s3_key"], day=row["partition_day"], status=row["status"],
            document_type=row["document_type"], size=int(row["ovh_size"]), sha256=row["sha256"],
            cold_version_id=row["aws_version_id"], retain_until=row["aws_object_lock_until"],
            retention_base=row.get("retention_base"),
        )
        if row["verified_at"] is not None:
            obj.lag_seconds = (row["verified_at"] - row["source_last_modified"]).total_seconds()
        fresh = self._fresh(row)
        obj.judged_from_verification = fresh is not None
        try:
            now = dt.datetime.now(dt.UTC)
            waiting = now - row["updated_at"]
            held = row["status"] == "in_progress" and row["lease_expires_at"] is not None and (
                row["lease_expires_at"] > now)  # a live worker is copying it, however long that takes
            if held or (row["status"] in ("pending", "in_progress") and waiting < self.grace):
                obj.in_flight = True
            elif row["status"] != "replicated":
                error = f": {row['error_message']}" if row["error_message"] else ""
                obj.flag("completeness", f"not replicated ({row['status']}{error}) "
                                         f"for {waiting.total_seconds() / 60:.0f} min")
            else:
                self._audit_cold(obj, row, fresh[0] if fresh else None)
            self._audit_hot(obj, row, fresh[1] if fresh else None)
        except Exception as exc:  # an audit that cannot look is a failed audit, never a pass
            obj.flag("completeness", f"could not be audited: {describe_s3_error(exc)[0]}")
        return obj

    def _audit_cold(self, obj: ObjectAudit, row: dict[str, Any], fresh: ColdEvidence | None = None) -> None:
        current = fresh.as_head() if fresh is not None else head_version(self.cold, self.cold_bucket, obj.key)
        if current is None:
            obj.flag("completeness", "no current cold version (deleted, or a delete marker on top)")
            recorded = head_version(self.cold, self.cold_bucket, obj.key, row["aws_version_id"])
            if recorded is None:
                obj.flag("checksum", f"verified version {row['aws_version_id']} is gone")
            return
        obj.current_version_id = current.get("VersionId")
        meta_sha = (current.get("Metadata") or {}).get(META_SHA256)
        # A version on top of the verified one with the same content must satisfy the policy itself;
        # one with other content is a checksum failure whatever else it carries.
        if obj.current_version_id != row["aws_version_id"] and meta_sha != row["sha256"]:
            obj.flag("checksum", f"current cold version {obj.current_version_id} is not the verified version "
                                 f"{row['aws_version_id']}: SHA-256 {meta_sha or 'absent'} != {row['sha256']}")
            return
        reported = str(current.get("ChecksumSHA256") or "")
        if obj.current_version_id == row["aws_version_id"] and reported.partition("-")[0] != str(
                row["cold_checksum"] or "").partition("-")[0]:
            obj.flag("checksum", f"cold checksum {reported or 'absent'} != recorded {row['cold_checksum']}")
        if meta_sha != row["sha256"]:
            obj.flag("checksum", f"cold metadata {META_SHA256}={meta_sha!r} != recorded {row['sha256']}")
        if int(current.get("ContentLength", -1)) != obj.size:
            obj.flag("checksum", f"cold size {current.get('ContentLength')} != recorded {obj.size}")
        required = required_retain_until(row, self.policy)
        mode, until = current.get("ObjectLockMode"), current.get("ObjectLockRetainUntilDate")
        if mode != "COMPLIANCE":
            obj.flag("retention", f"lock mode is {mode or 'none'}, not COMPLIANCE")
        elif until is None or until < required:
            obj.flag("retention", f"retained until {until:%Y-%m-%d} < required {required:%Y-%m-%d}"
                     if until else "no retain-until date")
        actual_class = storage_class_of(current)
        if actual_class != self.storage_class:
            obj.flag("storage_class", f"storage class {actual_class} != {self.storage_class}")
        self._audit_tags(obj, row, current, fresh)

    def _audit_tags(self, obj: ObjectAudit, row: dict[str, Any], current: dict[str, Any],
                    fresh: ColdEvidence | None = None) -> None:
        expected = {TAG_DOCUMENT_TYPE: row["document_type"], TAG_RETENTION_YEARS: str(row["retention_years"])}
        if fresh is not None and fresh.tags_sent is not None:
            # Sent by this run in the very request that wrote the version, and the server counts them.
            if self._tag_count_matches(obj, current, expected):
                self._compare_tags(obj, dict(fresh.tags_sent), expected)
            return
        try:
            tag_set = self.cold.get_object_tagging(Bucket=self.cold_bucket, Key=obj.key,
                                                   VersionId=obj.current_version_id)["TagSet"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidObjectState":
                raise
            # The moto server refuses tag reads on DEEP_ARCHIVE (AWS answers them): the count is all it gives.
            self._tag_count_matches(obj, current, expected)
            return
        self._compare_tags(obj, {t["Key"]: t["Value"] for t in tag_set}, expected)

    @staticmethod
    def _tag_count_matches(obj: ObjectAudit, current: dict[str, Any], expected: dict[str, str]) -> bool:
        """False (and the object flagged) when the HEAD's tag count is not the expected one."""
        count = current.get("TagCount")
        if count is not None and int(count) != len(expected):
            obj.flag("tags", f"{count} tags, expected {len(expected)}")
            return False
        return True

    @staticmethod
    def _compare_tags(obj: ObjectAudit, tags: dict[str, str], expected: dict[str, str]) -> None:
        wrong = {k: tags.get(k) for k, v in expected.items() if tags.get(k) != v}
        if wrong:
            obj.flag("tags", "tags " + ", ".join(f"{k}={v!r}" for k, v in wrong.items())
                     + f" (expected {expected})")

    def _audit_hot(self, obj: ObjectAudit, row: dict[str, Any], copied_from_etag: str | None = None) -> None:
        if self.hot is None:
            return
        if row["hot_deleted_at"] is not None:
            obj.hot_state = "deleted"
            return
        if copied_from_etag is not None and copied_from_etag == row["ovh_etag"]:
            obj.hot_state = "same"  # this run read that very version seconds ago to copy it
            return
        head = head_version(self.hot, self.hot_bucket, obj.key)
        if head is None:
            obj.hot_state = "deleted"
        else:
            obj.hot_state = "same" if strip_etag(head.get("ETag")) == row["ovh_etag"] else "changed"

    # -- cold objects the manifest does not know --------------------------------------------------
    def _orphans(self, first_day: dt.date, last_day: dt.date) -> list[ObjectAudit]:
        """Current cold objects without a manifest row, attributed to the day they were written."""
        known = self.store.known_keys(self.cold_bucket)
        orphans = []
        for page in self.cold.get_paginator("list_objects_v2").paginate(Bucket=self.cold_bucket):
            for item in page.get("Contents", []):
                key = item["Key"]
                day = item["LastModified"].astimezone(dt.UTC).date()
                if key in known or key.startswith(self.reserved_prefixes) or not first_day <= day <= last_day:
                    continue
                obj = ObjectAudit(key=key, day=day, size=int(item["Size"]))
                obj.flag("orphans", "cold object without a manifest row")
                orphans.append(obj)
        return orphans
