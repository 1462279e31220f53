"""Issue 12, item 2: no document stays uncopied because of its date.

A payslip dated 1960 (50 years: its policy date was 2010) used to fail with `InvalidRequest` because S3
refuses a retain-until date in the past. It is now locked until now + VAULT_MINIMUM_LOCK_DAYS (COMPLIANCE),
recorded as retention_base 'minimum' with the reason in the row, the audit log and the journal, passes the
retention check and is counted by the verification report. A document dated after its upload day falls
back to the upload day with a warning in the row. A rerun adds no version and shortens nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import psycopg
import pytest
from botocore.exceptions import ClientError
from psycopg.rows import dict_row

from vault_pipeline.journal.rebuild import _row_from_head, rebuild_tracking_db
from vault_pipeline.replication.copier import CopyOptions, ObjectCopier, SourceObject
from vault_pipeline.replication.policy import RetentionPolicy, minimum_retain_until, retain_until
from vault_pipeline_tests.conftest import Vault, sql, today_key

MINIMUM_DAYS = 180  # the default of VAULT_MINIMUM_LOCK_DAYS
OLD = "payslips/1960-01-15.pdf"  # small: one PutObject
OLD_LARGE = "payslips/1960-02-15-scan.pdf"  # over the 5 MiB test threshold: multipart
FUTURE = "invoices/dated-in-the-future.pdf"
ASPECTS = ("completeness", "checksum", "retention", "storage_class", "tags", "orphans")


def run_checks(vault: Vault) -> dict[str, bool]:
    job = vault.defs.resolve_job_def("cold_copies_checks_job")
    result = job.execute_in_process(tags={"dagster/partition": today_key()}, instance=vault.instance,
                                    raise_on_error=False)
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def success_logs(vault: Vault, key: str) -> list[dict]:
    return [row[0] for row in sql(vault.dsn, "SELECT metadata FROM vault_secure.audit_logs WHERE object_key = %s"
                                  " AND event_type = 'REPLICATION_SUCCESS' ORDER BY id", (key,))]


def test_the_premise_a_lock_until_a_past_date_is_refused_or_is_no_lock(vault: Vault) -> None:
    """What the 1960 payslip met before issue 12: its policy date (2010-01-16) as the retain-until date.
    SeaweedFS refuses it with HTTP 400, as AWS does ("The retain until date must be in the future"). The moto
    server accepts it, and the version it stores is then not locked at all: it can be deleted at once."""
    args = {"Bucket": vault.cold_bucket, "Key": "premise.pdf", "Body": b"x", "ChecksumAlgorithm": "SHA256",
            "ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": dt.datetime(2010, 1, 16, tzinfo=dt.UTC)}
    if vault.flavour == "seaweedfs":
        with pytest.raises(ClientError) as refused:
            vault.cold.put_object(**args)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert vault.cold_versions("premise.pdf") == []
    else:
        version = vault.cold.put_object(**args)["VersionId"]
        vault.cold.delete_object(Bucket=vault.cold_bucket, Key="premise.pdf", VersionId=version)
        assert vault.cold_versions("premise.pdf") == []


def test_documents_whose_policy_date_is_past_are_copied_and_locked_on_the_minimum(
        vault: Vault, secondary_dsn: str) -> None:
    vault.put(OLD, b"%PDF-1.4 payslip January 1960", {"document-type": "payslip", "document-date": "1960-01-15"})
    vault.put(OLD_LARGE, os.urandom(6 * 1024 * 1024), {"document-type": "payslip", "document-date": "1960-02-15"})
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    vault.put(FUTURE, b"%PDF-1.4 invoice", {"document-type": "invoice", "document-date": tomorrow})
    started = dt.datetime.now(dt.UTC)
    runs = vault.sensor_and_runs()
    assert runs and all(r.success for r in runs)

    for key in (OLD, OLD_LARGE):
        row = vault.row(key)
        assert row["status"] == "replicated", row["error_message"]
        assert row["error_message"] is None and row["failed_at"] is None
        assert (row["retention_base"], row["document_type"], row["retention_years"]) == ("minimum", "payslip", 50)
        assert "locked on the minimum" in row["retention_note"] and "1960-" in row["retention_note"]
        # The cold version itself: COMPLIANCE, at least the minimum from now, and what the row says.
        head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=key, VersionId=row["aws_version_id"])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] >= started + dt.timedelta(days=MINIMUM_DAYS)
        assert head["ObjectLockRetainUntilDate"] <= started + dt.timedelta(days=MINIMUM_DAYS + 2)
        assert head["ObjectLockRetainUntilDate"] == row["aws_object_lock_until"]
        assert head["Metadata"]["vault-retain-until"] == row["aws_object_lock_until"].isoformat()
        # The audit log says why.
        [log] = success_logs(vault, key)
        assert log["retention_base"] == "minimum" and log["retention_note"] == row["retention_note"]
        assert any("locked on the minimum" in note for note in log["notes"])

    future = vault.row(FUTURE)
    assert future["status"] == "replicated", future["error_message"]
    upload_day = future["source_last_modified"].astimezone(dt.UTC).date()
    assert future["retention_base"] == "last-modified"
    assert future["aws_object_lock_until"] == retain_until(upload_day, 10)
    assert future["retention_note"] == (f"warning: document-date {tomorrow!r} is later than the upload day "
                                        f"{upload_day}: invalid, the upload day is the retention base")
    assert success_logs(vault, FUTURE)[0]["retention_note"] == future["retention_note"]

    # Every check passes: the retention check holds a 'minimum' copy to its recorded lock, not its past policy date.
    assert run_checks(vault) == dict.fromkeys(ASPECTS, True)
    # The verification report counts the documents locked on the minimum.
    report = vault.defs.resolve_job_def("verification_job").execute_in_process(
        partition_key=today_key(), instance=vault.instance, raise_on_error=False)
    assert report.success
    metadata = report.asset_materializations_for_node("verification_report")[0].metadata
    assert metadata["minimum_lock"].value == 2 and metadata["problems"].value == 0
    assert OLD in metadata["minimum_lock_documents"].value and FUTURE not in metadata["minimum_lock_documents"].value

    # The journal carries the base and the note, and a rebuild from it restores them.
    copies = {e["key"]: e for e in vault.journal_entries() if e["action"] == "copy"}
    assert copies[OLD]["retention_base"] == "minimum"
    assert copies[OLD]["retention_note"] == vault.row(OLD)["retention_note"]
    rebuild_tracking_db(secondary_dsn, vault.segments(), mode="full", source_bucket=vault.hot_bucket)
    with psycopg.connect(secondary_dsn) as conn:
        rebuilt = {r["s3_key"]: r for r in conn.cursor(row_factory=dict_row).execute(
            "SELECT s3_key, retention_base, retention_note, aws_object_lock_until"
            " FROM vault_secure.replication_status")}
    for key in (OLD, OLD_LARGE, FUTURE):
        row = vault.row(key)
        assert (rebuilt[key]["retention_base"], rebuilt[key]["retention_note"], rebuilt[key]["aws_object_lock_until"]
                ) == (row["retention_base"], row["retention_note"], row["aws_object_lock_until"])
        # Without a journal entry (the bucket sweep), the cold object's own metadata tells the same base.
        from_head = _row_from_head(vault.cold, vault.cold_bucket, key, row["aws_version_id"], vault.hot_bucket)
        assert isinstance(from_head, dict), from_head
        assert (from_head["retention_base"], from_head["aws_object_lock_until"]) == (
            row["retention_base"], row["aws_object_lock_until"])
        assert ("locked on the minimum" in from_head["retention_note"]) is (key != FUTURE)
        assert ("later than the upload day" in from_head["retention_note"]) is (key == FUTURE)


def test_a_rerun_adds_no_version_and_shortens_nothing(vault: Vault) -> None:
    vault.put(OLD, b"%PDF-1.4 payslip January 1960", {"document-type": "payslip", "document-date": "1960-01-15"})
    vault.put(OLD_LARGE, os.urandom(6 * 1024 * 1024), {"document-type": "payslip", "document-date": "1960-02-15"})
    assert all(r.success for r in vault.sensor_and_runs())
    before = {key: vault.row(key) for key in (OLD, OLD_LARGE)}
    # (The moto server drops the lock headers of CreateMultipartUpload: verification set that lock, journaled.)
    extensions = [e for e in vault.journal_entries() if e["action"] == "retention_extend"]

    # 1. A rerun of the day: nothing to copy again.
    assert vault.run_partition().success
    # 2. A copy written by a run that died before recording it (the row forgot it was replicated): the
    #    next run adopts the cold version, asking for the lock counted from that version's own write time,
    #    so it neither writes a new version nor extends (let alone shortens) the lock.
    assert len(sql(vault.dsn, "UPDATE vault_secure.replication_status SET status = 'pending'"
                              " WHERE bucket_source = %s RETURNING id", (vault.hot_bucket,))) == 2
    assert vault.run_partition().success
    for key, old in before.items():
        row = vault.row(key)
        assert row["status"] == "replicated", row["error_message"]
        assert [v["VersionId"] for v in vault.cold_versions(key)] == [old["aws_version_id"]]
        assert (row["aws_version_id"], row["retention_base"]) == (old["aws_version_id"], "minimum")
        assert row["aws_object_lock_until"] == old["aws_object_lock_until"]
        head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=key, VersionId=old["aws_version_id"])
        assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == (
            "COMPLIANCE", old["aws_object_lock_until"])
        adopted = success_logs(vault, key)[-1]
        assert adopted["adopted"] is True and adopted["lock_repaired"] is None
    assert [e for e in vault.journal_entries() if e["action"] == "retention_extend"] == extensions
    assert run_checks(vault) == dict.fromkeys(ASPECTS, True)


def test_an_adopted_copy_is_held_to_the_minimum_counted_from_its_own_write() -> None:
    """A copy written 40 days ago and adopted today (a run died before recording it) asks for the lock it was
    written with, not for 40 more days: `now` for the minimum is the cold version's LastModified."""
    copier = ObjectCopier(hot=None, hot_bucket="hot", cold=None, cold_bucket="cold",
                          policy=RetentionPolicy.default(), options=CopyOptions())
    source = SourceObject(key=OLD, etag="e", size=1, last_modified=dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC),
                          version_id=None, metadata={"document-type": "payslip", "document-date": "1960-01-15"},
                          content_type=None)
    written = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    adopted = copier._retention(source, {"LastModified": written})
    assert adopted.base == "minimum"
    assert adopted.retain_until == minimum_retain_until(written, MINIMUM_DAYS)
    fresh = copier._retention(source)
    assert fresh.retain_until == minimum_retain_until(dt.datetime.now(dt.UTC), MINIMUM_DAYS)
    assert fresh.retain_until - adopted.retain_until == dt.timedelta(days=40)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_short_minimum_setting_is_honoured_and_recorded(vault: Vault) -> None:
    vault.configure(VAULT_MINIMUM_LOCK_DAYS="2")
    vault.put(OLD, b"%PDF-1.4 payslip January 1960", {"document-type": "payslip", "document-date": "1960-01-15"})
    started = dt.datetime.now(dt.UTC)
    assert all(r.success for r in vault.sensor_and_runs())
    row = vault.row(OLD)
    assert row["retention_base"] == "minimum"
    assert started + dt.timedelta(days=2) <= row["aws_object_lock_until"] <= started + dt.timedelta(days=4)
    assert "now + 2 days" in row["retention_note"]
    assert json.dumps(success_logs(vault, OLD)[0]["retention_note"]) == json.dumps(row["retention_note"])
