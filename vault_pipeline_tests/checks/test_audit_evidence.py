"""A run's checks judge the versions that run just verified from the verifying HEAD, with the audit's own
rules; every other object, and every later run, is asked about on the cold site again."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from vault_pipeline.partitions import day_range
from vault_pipeline.replication.audit import Auditor
from vault_pipeline.replication.evidence import RunEvidence
from vault_pipeline.replication.policy import RetentionPolicy
from vault_pipeline_tests.checks.test_tampering import run_checks
from vault_pipeline_tests.conftest import Vault, today_key

pytestmark = pytest.mark.parametrize("cold_flavour", ["seaweedfs", "moto"], indirect=True)


def checks_of(result: Any) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def auditor(vault: Vault, fresh: RunEvidence | None) -> Auditor:
    return Auditor(store=vault.store, cold=vault.cold, cold_bucket=vault.cold_bucket, hot=vault.hot,
                   hot_bucket=vault.hot_bucket, policy=RetentionPolicy.default(), storage_class="DEEP_ARCHIVE",
                   reserved_prefixes=("journal/", "reports/"), fresh=fresh)


def test_a_run_judges_its_own_copies_from_their_verification(vault: Vault) -> None:
    for i in range(12):
        vault.put(f"own/{i:02d}.pdf", f"document {i}".encode(), {"document-type": "invoice"})
    vault.run_sensor()
    result = vault.run_partition()
    assert result.success
    checks = checks_of(result)
    assert {name: e.passed for name, e in checks.items()} == dict.fromkeys(checks, True) and len(checks) == 6
    assert all(e.metadata["judged_from_this_runs_verification"].value == 12 for e in checks.values())

    # The next run copies nothing: it has no evidence of its own and asks the cold site about all 12.
    vault.cold.delete_object(Bucket=vault.cold_bucket, Key="own/03.pdf")  # a delete marker on top
    again = checks_of(vault.run_partition())
    assert again["completeness"].metadata["judged_from_this_runs_verification"].value == 0
    assert not again["completeness"].passed
    assert again["completeness"].metadata["failing_keys"].value == ["own/03.pdf"]
    assert not run_checks(vault)["completeness"].passed  # and so does the checks-only job


def test_evidence_goes_through_the_audit_rules(vault: Vault) -> None:
    for name in ("short", "tags", "other-version", "fine"):
        vault.put(f"{name}.pdf", name.encode(), {"document-type": "payslip"})
    vault.run_sensor()
    assert vault.run_partition().success
    first_day, last_day = day_range_of_today()
    honest = RunEvidence()
    for row in vault.store.rows(vault.hot_bucket):
        head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=row["s3_key"],
                                      VersionId=row["aws_version_id"], ChecksumMode="ENABLED")
        from vault_pipeline.replication.verify import ColdEvidence

        evidence = ColdEvidence.from_head(head, {"DocumentType": "payslip", "RetentionYears": "50"})
        honest.record(row["s3_key"], evidence, row["ovh_etag"])
    audit = auditor(vault, honest).audit(first_day, last_day)
    assert audit.judged_from_verification == 4, audit
    assert [(o.key, o.problems) for o in audit.objects if o.classification != "ok"] == []

    # The same evidence, altered: each alteration is judged as a HEAD saying it would be.
    bent = RunEvidence()
    for key in ("short.pdf", "tags.pdf", "other-version.pdf", "fine.pdf"):
        evidence, etag = honest.get(key)  # type: ignore[misc]
        if key == "short.pdf":
            evidence = dataclasses.replace(evidence, retain_until=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        elif key == "tags.pdf":
            evidence = dataclasses.replace(evidence, tags_sent=(("DocumentType", "invoice"), ("RetentionYears", "10")))
        elif key == "other-version.pdf":
            evidence = dataclasses.replace(evidence, version_id="not-the-recorded-version")
        bent.record(key, evidence, etag)
    audit = auditor(vault, bent).audit(first_day, last_day)
    by_key = {o.key: o for o in audit.objects}
    assert audit.judged_from_verification == 3  # the other version is not evidence of the recorded one
    assert set(by_key["short.pdf"].problems) == {"retention"}
    assert set(by_key["tags.pdf"].problems) == {"tags"}
    assert by_key["other-version.pdf"].classification == "ok"  # asked the cold site instead
    assert by_key["fine.pdf"].classification == "ok"


def day_range_of_today() -> tuple[dt.date, dt.date]:
    from dagster import PartitionKeyRange

    return day_range(PartitionKeyRange(today_key(), today_key()))


def test_shard_runs_audit_and_delete_only_their_own_slice(vault: Vault) -> None:
    """Two shard runs of one day: each one's checks judge its own slice (ids % 2), the orphan listing is
    shard 0's; together they audit every object once. Hot deletions follow the same slices."""
    vault.configure(DELETE_FROM_OVH_AFTER_REPLICATION="true")
    for i in range(10):
        vault.put(f"sharded/{i:02d}.pdf", f"document {i}".encode(), {"document-type": "invoice"})
    vault.sweep()
    rows = {r["s3_key"]: r["id"] for r in vault.store.rows(vault.hot_bucket)}
    judged: dict[str, set[str]] = {}
    for shard in ("0/2", "1/2"):
        result = vault.run_partition(tags={"vault/shard": shard}, sweep=False)
        assert result.success, shard
        checks = checks_of(result)
        assert all(e.passed for e in checks.values()) and len(checks) == 6
        completeness = checks["completeness"]
        assert f"shard {shard}" in completeness.description
        judged[shard] = {k for k, row_id in rows.items() if row_id % 2 == int(shard[0])}
        assert completeness.metadata["objects_checked"].value == len(judged[shard])
    assert judged["0/2"] | judged["1/2"] == set(rows) and not judged["0/2"] & judged["1/2"]
    deleted = {r["s3_key"] for r in vault.store.rows(vault.hot_bucket) if r["hot_deleted_at"] is not None}
    assert deleted == set(rows), "each shard run deleted its own slice, verified, and together the whole day"

    # A whole-day audit after a shard's: an orphan is found by shard 0 only.
    vault.cold.put_object(Bucket=vault.cold_bucket, Key="sharded/orphan.pdf", Body=b"x",
                          ChecksumAlgorithm="SHA256")
    first_day, last_day = day_range_of_today()
    from vault_pipeline.replication.shards import Shard

    orphans = {s: [o.key for o in auditor(vault, None).audit(first_day, last_day, shard=Shard.parse(s)).objects
                   if "orphans" in o.problems] for s in ("0/2", "1/2")}
    assert orphans == {"0/2": ["sharded/orphan.pdf"], "1/2": []}
