"""Tampering with the cold site behind the pipeline's back: the right check fails naming the day and the
key, the report classifies the object, and after the repair every check passes again."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Callable
from typing import Any

import pytest

from vault_pipeline_tests.conftest import Vault, sql, today_key

ASPECTS = ("completeness", "checksum", "retention", "storage_class", "tags", "orphans")


def run_checks(vault: Vault) -> dict[str, Any]:
    job = vault.defs.resolve_job_def("cold_copies_checks_job")
    result = job.execute_in_process(tags={"dagster/partition": today_key()}, instance=vault.instance,
                                    raise_on_error=False)
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def run_report(vault: Vault) -> Any:
    job = vault.defs.resolve_job_def("verification_job")
    result = job.execute_in_process(partition_key=today_key(), instance=vault.instance, raise_on_error=False)
    assert result.success
    return result.asset_materializations_for_node("verification_report")[0].metadata


def same_content_version(vault: Vault, key: str, **overrides: Any) -> str:
    """A new cold version with the verified bytes and metadata, differing only by `overrides`."""
    row = vault.row(key)
    head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=key, VersionId=row["aws_version_id"])
    body = vault.hot.get_object(Bucket=vault.hot_bucket, Key=key)["Body"].read()
    args = {"Bucket": vault.cold_bucket, "Key": key, "Body": body, "Metadata": head["Metadata"],
            "StorageClass": "DEEP_ARCHIVE", "ChecksumAlgorithm": "SHA256", "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": row["aws_object_lock_until"],
            "Tagging": f"DocumentType={row['document_type']}&RetentionYears={row['retention_years']}"}
    args.update(overrides)
    return vault.cold.put_object(**args)["VersionId"]


TAMPERED = {"checksum": "bytes", "completeness": "marker", "retention": "short", "storage_class": "class",
            "orphans": "orphan", "tags": "tags"}  # check -> the object tampered so that only it fails


def tamper(vault: Vault, prefix: str, *, tags: bool) -> Callable[[], None]:
    """Tamper with the cold site behind the pipeline's back, one way per object; return the repair."""
    cold, bucket = vault.cold, vault.cold_bucket
    # 1. a new version with different bytes
    evil = cold.put_object(Bucket=bucket, Key=f"{prefix}bytes.pdf", Body=b"forged", ChecksumAlgorithm="SHA256")
    # 2. a delete marker
    marker = cold.delete_object(Bucket=bucket, Key=f"{prefix}marker.pdf")
    # 3. the same document written again with a shorter retention
    short = same_content_version(vault, f"{prefix}short.pdf",
                                 ObjectLockRetainUntilDate=dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
    # 4. the same document written again in the wrong storage class
    same_content_version(vault, f"{prefix}class.pdf", StorageClass="STANDARD")
    # 5. an object nobody replicated
    orphan = cold.put_object(Bucket=bucket, Key=f"{prefix}orphan.pdf", Body=b"who wrote this?",
                             ChecksumAlgorithm="SHA256")
    # 6. (servers that let tags be read and written on DEEP_ARCHIVE) a rewritten tag
    if tags:
        set_tags(vault, f"{prefix}tags.pdf", "1")

    def repair() -> None:
        # Remove what was added, extend the short lock, write the right class on top, restore the tags.
        cold.delete_object(Bucket=bucket, Key=f"{prefix}bytes.pdf", VersionId=evil["VersionId"])
        cold.delete_object(Bucket=bucket, Key=f"{prefix}marker.pdf", VersionId=marker["VersionId"])
        required = vault.row(f"{prefix}short.pdf")["aws_object_lock_until"]
        cold.put_object_retention(Bucket=bucket, Key=f"{prefix}short.pdf", VersionId=short, ChecksumAlgorithm="SHA256",
                                  Retention={"Mode": "COMPLIANCE", "RetainUntilDate": required})
        same_content_version(vault, f"{prefix}class.pdf")
        cold.delete_object(Bucket=bucket, Key=f"{prefix}orphan.pdf", VersionId=orphan["VersionId"])
        if tags:
            set_tags(vault, f"{prefix}tags.pdf", str(vault.row(f"{prefix}tags.pdf")["retention_years"]))

    return repair


def set_tags(vault: Vault, key: str, retention_years: str) -> None:
    document_type = vault.row(key)["document_type"]
    vault.cold.put_object_tagging(Bucket=vault.cold_bucket, Key=key, Tagging={"TagSet": [
        {"Key": "DocumentType", "Value": document_type}, {"Key": "RetentionYears", "Value": retention_years}]})


@pytest.fixture
def replicated(vault: Vault) -> Vault:
    for name in ("bytes", "marker", "short", "class", "tags", "fine"):
        vault.put(f"tamper/{name}.pdf", f"original {name}".encode(), {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    evaluations = run_checks(vault)
    assert {name: e.passed for name, e in evaluations.items()} == dict.fromkeys(ASPECTS, True)
    return vault


def test_each_tampering_fails_its_check_and_is_classified_then_repaired(replicated: Vault) -> None:
    vault = replicated
    tags_writable = vault.flavour == "seaweedfs"
    repair = tamper(vault, "tamper/", tags=tags_writable)

    evaluations = run_checks(vault)
    expected = {check: f"tamper/{name}.pdf" for check, name in TAMPERED.items()}
    if not tags_writable:
        del expected["tags"]
    for aspect in ASPECTS:
        evaluation = evaluations[aspect]
        failing = evaluation.metadata["failing_keys"].value
        if aspect in expected:
            assert not evaluation.passed, aspect
            assert failing == [expected[aspect]], (aspect, failing)
            assert evaluation.metadata["days"].value == [dt.datetime.now(dt.UTC).date().isoformat()]
            assert evaluation.partition == today_key()
        else:
            assert evaluation.passed, (aspect, failing)
    assert "tamper/fine.pdf" not in str({a: e.metadata["failing_keys"].value for a, e in evaluations.items()})

    metadata = run_report(vault)
    classes = report_classes(vault, metadata["report_key"].value)
    assert classes["tamper/bytes.pdf"] == "checksum_mismatch"
    assert classes["tamper/marker.pdf"] == "missing_in_cold"
    assert classes["tamper/short.pdf"] == "retention_short"
    assert classes["tamper/class.pdf"] == "wrong_class"
    assert classes["tamper/orphan.pdf"] == "orphan_in_cold"
    assert classes["tamper/fine.pdf"] == "ok"
    assert classes["tamper/tags.pdf"] == ("wrong_tags" if tags_writable else "ok")
    assert metadata["count_ok"].value == (1 if tags_writable else 2)
    assert metadata["count_orphan_in_cold"].value == 1

    # Repairs: remove what was added, extend the short lock, write the right class on top, restore tags.
    repair()
    evaluations = run_checks(vault)
    assert {name: e.passed for name, e in evaluations.items()} == dict.fromkeys(ASPECTS, True)
    assert run_report(vault)["problems"].value == 0


def report_classes(vault: Vault, key: str) -> dict[str, str]:
    body = vault.cold.get_object(Bucket=vault.cold_bucket, Key=key)["Body"].read().decode()
    return {row["s3_key"]: row["classification"] for row in csv.DictReader(io.StringIO(body))}


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_report_is_locked_standard_and_carries_lag_cost_coverage_and_chart(vault: Vault) -> None:
    for i in range(5):
        vault.put(f"report/{i}.pdf", b"x" * (1000 * (i + 1)), {"document-type": ["payslip", "invoice"][i % 2]})
    assert all(r.success for r in vault.sensor_and_runs())
    time.sleep(0.01)
    metadata = run_report(vault)
    key = metadata["report_key"].value
    assert key.startswith("reports/verification/") and key.endswith(".csv")
    head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=key)
    assert head.get("StorageClass", "STANDARD") == "STANDARD"
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert report_classes(vault, key) == {f"report/{i}.pdf": "ok" for i in range(5)}
    assert metadata["count_ok"].value == 5 and metadata["objects"].value == 5
    assert 0 <= metadata["lag_p50_s"].value <= metadata["lag_p99_s"].value < 600
    assert metadata["estimated_monthly_cost_usd_day"].value > 0
    assert "verified within the last 30 days" in metadata["coverage"].value
    assert metadata["chart"].value.startswith("![verification chart](data:image/png;base64,iVBOR")
    assert sql(vault.dsn, "SELECT objects, ok FROM vault_secure.verification_reports") == [(5, 5)]
    # The report itself is not an orphan, and a hot key under the reserved prefix is refused clearly.
    vault.put("reports/verification/fake.csv", b"a,b")
    runs = vault.sensor_and_runs()
    assert not runs[0].success
    assert "reserved on the cold site" in vault.row("reports/verification/fake.csv")["error_message"]


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_rolling_schedule_covers_every_day_within_the_period(vault: Vault) -> None:
    from vault_pipeline.jobs.verification import days_due

    days = [(dt.date(2026, 1, 1) + dt.timedelta(days=i), None) for i in range(61)]
    assert len(days_due(days, 30)) == 3  # ceil(61 / 30): a full rotation every 30 days
    assert days_due([], 30) == []
    vault.put("schedule.pdf", b"x", {"document-type": "payslip"})
    assert all(r.success for r in vault.sensor_and_runs())
    from dagster import build_schedule_context

    schedule = vault.defs.resolve_schedule_def("rolling_checks_schedule")
    requests = schedule(build_schedule_context(instance=vault.instance, resources=vault.resources,
                                                scheduled_execution_time=dt.datetime.now(dt.UTC)))
    assert [r.tags["dagster/partition"] for r in requests] == [today_key()]
    report_schedule = vault.defs.resolve_schedule_def("rolling_verification_schedule")
    requests = report_schedule(build_schedule_context(instance=vault.instance, resources=vault.resources,
                                                scheduled_execution_time=dt.datetime.now(dt.UTC)))
    assert [r.partition_key for r in requests] == [today_key()]


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_failed_check_stops_hot_deletion_for_the_day(vault: Vault) -> None:
    vault.put("guarded/a.pdf", b"a", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())  # deletion off: both stay on the hot site
    vault.cold.delete_object(Bucket=vault.cold_bucket, Key="guarded/a.pdf")  # delete marker on the cold site
    vault.configure(DELETE_FROM_OVH_AFTER_REPLICATION="true")
    vault.put("guarded/b.pdf", b"b", {"document-type": "invoice"})
    [run] = vault.sensor_and_runs()
    assert not run.success
    executed = {e.step_key for e in run.all_events if e.event_type_value == "STEP_START"}
    assert "cold_copies" in executed and "hot_deletions" not in executed  # held back by the failed check
    hot_keys = {o["Key"] for o in vault.hot.list_objects_v2(Bucket=vault.hot_bucket)["Contents"]}
    assert hot_keys == {"guarded/a.pdf", "guarded/b.pdf"}  # nothing deleted for a day whose checks failed


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_objects_in_flight_are_not_failures_until_the_grace_period_ends(vault: Vault) -> None:
    vault.put("late.pdf", b"registered, not copied yet", {"document-type": "payslip"})
    vault.run_sensor()  # pending, no run yet
    assert run_checks(vault)["completeness"].passed
    assert run_report(vault)["count_in_flight"].value == 1
    vault.configure(VAULT_COMPLETENESS_GRACE_MINUTES="0")
    completeness = run_checks(vault)["completeness"]
    assert not completeness.passed and completeness.metadata["failing_keys"].value == ["late.pdf"]
