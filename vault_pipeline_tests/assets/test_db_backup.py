"""tracking_db_backup and restore_tracking_db against the real servers: real pg_dump / pg_restore (pgserver),
SeaweedFS and the moto server as the cold site, the journal as the backup's witness."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import build_sensor_context
from psycopg.rows import dict_row

from vault_pipeline.backup.store import MANIFEST
from vault_pipeline.journal.entries import BUSINESS_COLUMNS
from vault_pipeline_tests.alerting.completion_receiver import KEY_HEADER, SECRET, CompletionReceiver, receiver
from vault_pipeline_tests.conftest import Vault, sql, today_key

__all__ = ["receiver"]  # the fixture, imported for pytest

PREFIX = "backups/"


def replicate(vault: Vault, prefix: str, n: int) -> None:
    for i in range(n):
        vault.put(f"{prefix}/doc {i:03d} é+%.pdf", os.urandom(100 + i),
                  {"document-type": ("payslip", "invoice", "contract")[i % 3]})
    assert vault.run_partition(today_key()).success


def back_up(vault: Vault) -> Any:
    result = vault.defs.resolve_job_def("tracking_db_backup_job").execute_in_process(
        instance=vault.instance, raise_on_error=False)
    assert result.success, failure_text(result)
    return result.asset_materializations_for_node("tracking_db_backup")[0].metadata


def restore(vault: Vault, **config: Any) -> Any:
    job = vault.defs.resolve_job_def("restore_tracking_db")
    return job.execute_in_process(instance=vault.instance, raise_on_error=False,
                                  run_config={"ops": {"fetch_backup": {"config": config}}})


def failure_text(result: Any) -> str:
    return "\n".join(str(e.event_specific_data.error.message) for e in result.all_events
                     if e.is_step_failure and e.event_specific_data and e.event_specific_data.error)


def business_rows(dsn: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(
            f"SELECT {', '.join(BUSINESS_COLUMNS)}, journaled FROM vault_secure.replication_status").fetchall()
    return {r["s3_key"]: r for r in rows}


def test_backup_is_locked_hashed_journaled_and_described(vault: Vault) -> None:
    replicate(vault, "before", 6)
    metadata = back_up(vault)
    backup_id = metadata["backup_id"].value
    listed = vault.cold.list_objects_v2(Bucket=vault.cold_bucket, Prefix=f"{PREFIX}{backup_id}/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed) == [MANIFEST, "tracking.dump"]
    head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=f"{PREFIX}{backup_id}/tracking.dump")
    assert head["ObjectLockMode"] == "COMPLIANCE" and head.get("StorageClass", "STANDARD") == "STANDARD"
    assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(days=34)
    manifest = json.loads(vault.cold.get_object(Bucket=vault.cold_bucket,
                                                Key=f"{PREFIX}{backup_id}/{MANIFEST}")["Body"].read())
    tracking = manifest["databases"]["tracking"]
    assert tracking["sha256"] == head["Metadata"]["vault-sha256"] and tracking["size"] == head["ContentLength"]
    assert tracking["row_counts"]["vault_secure.replication_status"] == 6
    # The journal head in the dump: the six copies are journaled before it.
    assert metadata["journal_head_seq"].value >= 6
    assert [j["site"] for j in tracking["journal"]] == [vault.cold_bucket]
    # Journaled like every cold write: one entry for the dump, one for the manifest, on the cold site.
    entries = [e for e in vault.journal_entries() if e["action"] == "backup"]
    assert {(e["database"], e["backup_id"]) for e in entries} == {("tracking", backup_id), ("manifest", backup_id)}
    assert next(e for e in entries if e["database"] == "tracking")["sha256"] == tracking["sha256"]
    assert metadata["tracking_dump_bytes"].value == tracking["size"]
    # The backup prefix is reserved: the day's audit does not take the backup for orphaned documents.
    audit = vault.defs.resolve_job_def("verification_job").execute_in_process(
        partition_key=today_key(), instance=vault.instance, raise_on_error=False)
    report = audit.asset_materializations_for_node("verification_report")[0].metadata
    assert report["count_orphan_in_cold"].value == 0 and report["count_ok"].value == 6
    # `vault-pipeline status` names the latest backup, read from its journal entries.
    status = subprocess.run([sys.executable, "-m", "vault_pipeline.cli", "status", "--json", "--no-dagster",
                             "--no-workers"], capture_output=True, text=True, timeout=120, check=False)
    backups = json.loads(status.stdout)["backups"]
    assert backups["count"] == 1 and backups["latest"][0]["backup_id"] == backup_id, status.stderr
    assert backups["latest"][0]["bytes"] == tracking["size"]


def test_backup_plus_catch_up_equals_the_original_row_for_row(vault: Vault, secondary_dsn: str) -> None:
    replicate(vault, "before", 8)
    back_up(vault)
    replicate(vault, "after", 5)  # journaled after the backup's head: only the catch-up brings these back
    vault.configure(VAULT_RESTORE_DATABASE_URL=secondary_dsn)
    result = restore(vault)
    assert result.success, failure_text(result)
    original, restored = business_rows(vault.dsn), business_rows(secondary_dsn)
    assert sorted(restored) == sorted(original) and len(original) == 13
    for key, row in original.items():
        for column in BUSINESS_COLUMNS:
            assert restored[key][column] == row[column], f"{key!r}: {column}"
    report = result.output_for_node("restore_notify")
    assert [s["step"] for s in report["steps"]] == ["fetch", "pre-data", "data", "post-data", "catch-up",
                                                    "verify", "notify"]
    catch_up = next(s for s in report["steps"] if s["step"] == "catch-up")
    assert report["catch_up_entries"] >= 5, catch_up
    kinds = {item["kind"] for s in report["steps"] for item in s["items"]}
    assert {"TABLE DATA", "INDEX", "FK CONSTRAINT", "SEQUENCE SET"} <= kinds
    # The restored database carries on the same journal: its next flush refuses nothing and writes nothing twice.
    with psycopg.connect(secondary_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_policies WHERE schemaname = 'vault_secure'").fetchone()[0] > 0
        waiting = conn.execute("SELECT count(*) FROM vault_secure.journal_entries WHERE seq IS NULL").fetchone()[0]
    assert waiting == 0


def test_a_restore_refuses_a_non_empty_target_unless_told_to_replace(vault: Vault, secondary_dsn: str) -> None:
    replicate(vault, "x", 2)
    back_up(vault)
    vault.configure(VAULT_RESTORE_DATABASE_URL=secondary_dsn)
    with psycopg.connect(secondary_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE precious (x int)")
    refused = restore(vault)
    assert not refused.success and "replace" in failure_text(refused)
    assert sql(secondary_dsn, "SELECT to_regclass('public.precious') IS NOT NULL") == [(True,)]
    replaced = restore(vault, replace=True)
    assert replaced.success, failure_text(replaced)
    assert sql(secondary_dsn, "SELECT to_regclass('public.precious')") == [(None,)]


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_rewritten_manifest_or_a_lying_one_is_refused(vault: Vault, secondary_dsn: str) -> None:
    replicate(vault, "x", 3)
    backup_id = back_up(vault)["backup_id"].value
    vault.configure(VAULT_RESTORE_DATABASE_URL=secondary_dsn)
    key = f"{PREFIX}{backup_id}/tracking.dump"
    # A new version of the dump under the same key (the locked original cannot be overwritten, but a versioned
    # bucket takes a new version) is not what the manifest pinned: the restore reads the original and succeeds.
    original = vault.cold.head_object(Bucket=vault.cold_bucket, Key=key)
    vault.cold.put_object(Bucket=vault.cold_bucket, Key=key, Body=b"PGDMP forged", ChecksumAlgorithm="SHA256",
                          Metadata={"vault-sha256": original["Metadata"]["vault-sha256"]})
    assert restore(vault).success
    # A forged manifest (a new version naming the forged dump, with its real hash) is refused.
    forged = vault.cold.list_object_versions(Bucket=vault.cold_bucket, Prefix=key)["Versions"]
    forged_version = next(v["VersionId"] for v in forged if v["IsLatest"])
    manifest_key = f"{PREFIX}{backup_id}/{MANIFEST}"
    manifest = json.loads(vault.cold.get_object(Bucket=vault.cold_bucket, Key=manifest_key)["Body"].read())
    manifest["databases"]["tracking"].update(version_id=forged_version, size=len(b"PGDMP forged"),
                                             sha256=hashlib.sha256(b"PGDMP forged").hexdigest())
    body = json.dumps(manifest).encode()
    vault.cold.put_object(Bucket=vault.cold_bucket, Key=manifest_key, Body=body, ChecksumAlgorithm="SHA256",
                          Metadata={"vault-sha256": hashlib.sha256(body).hexdigest()})
    refused = restore(vault, replace=True)
    assert not refused.success
    assert "refused" in failure_text(refused) and "rewritten" in failure_text(refused)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_dump_whose_bytes_differ_from_its_record_is_refused(vault: Vault, tmp_path: Path) -> None:
    """A record (manifest or journal) that names other bytes than the cold site returns: refused, nothing kept."""
    from vault_pipeline.backup.store import BackupStore, TamperedBackup

    replicate(vault, "x", 2)
    backup_id = back_up(vault)["backup_id"].value
    store = BackupStore(vault.cold, vault.cold_bucket, PREFIX)
    manifest, _ = store.manifest(backup_id)
    entry = dict(manifest["databases"]["tracking"], sha256="0" * 64)
    with pytest.raises(TamperedBackup, match="refused"):
        store.fetch(entry, tmp_path / "t.dump")
    assert not (tmp_path / "t.dump").exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_backup_and_a_restore_each_send_one_signed_notice_retried_after_a_500(
        vault: Vault, secondary_dsn: str, receiver: CompletionReceiver) -> None:
    replicate(vault, "x", 2)
    receiver.script = [500]  # down when the backup completes
    vault.configure(VAULT_COMPLETION_WEBHOOK_URLS=receiver.url, VAULT_COMPLETION_WEBHOOK_SECRET=SECRET,
                    VAULT_COMPLETION_WEBHOOK_RETRY_BASE_SECONDS="0.001", VAULT_RESTORE_DATABASE_URL=secondary_dsn)
    backup_id = back_up(vault)["backup_id"].value
    assert [r.answered for r in receiver.all()] == [500]  # tried at once, refused, left to the sensor
    deliver = vault.defs.resolve_sensor_def("completion_webhook_sensor")
    deliver(build_sensor_context(instance=vault.instance, resources=vault.resources))
    backup_notices = [r for r in receiver.accepted() if r.json["event"] == "backup_complete"]
    assert len(backup_notices) == 1 and backup_notices[0].verifies() and not backup_notices[0].verifies("wrong")
    notice = backup_notices[0].json
    assert notice["subject"] == backup_id and notice["facts"]["databases"]["tracking"]["rows"] > 0
    assert backup_notices[0].header(KEY_HEADER) == notice["idempotency_key"]

    assert restore(vault).success
    again = restore(vault, replace=True)  # another restore: another notice, its own key
    assert again.success
    deliver(build_sensor_context(instance=vault.instance, resources=vault.resources))  # nothing left to send
    restores = [r for r in receiver.accepted() if r.json["event"] == "restore_complete"]
    assert len(restores) == 2 and all(r.verifies() for r in restores)
    assert len({r.json["idempotency_key"] for r in restores}) == 2
    assert restores[0].json["facts"]["steps"].keys() >= {"fetch", "data", "verify"}
    assert len(receiver.accepted()) == 3  # exactly one per completion


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_the_weekly_drill_restores_into_a_scratch_database_compares_and_drops_it(vault: Vault) -> None:
    replicate(vault, "drill", 3)
    back_up(vault)
    replicate(vault, "later", 2)  # the drill catches up too
    vault.configure(VAULT_DB_RESTORE_DRILL_DATABASE="vault_drill_test")
    schedule = vault.defs.resolve_schedule_def("db_restore_drill_schedule")
    assert schedule.default_status.value == "RUNNING" and schedule.job_name == "db_restore_drill"
    drill = vault.defs.resolve_job_def("db_restore_drill").execute_in_process(instance=vault.instance,
                                                                               raise_on_error=False)
    assert drill.success, failure_text(drill)
    steps = {s["step"]: s for s in drill.output_for_node("restore_notify")["steps"]}
    assert "match the manifest" in steps["verify"]["detail"]
    assert drill.output_for_node("restore_notify")["catch_up_entries"] >= 2  # the two later copies, at least
    assert "drill database dropped" in steps["notify"]["detail"]
    assert sql(vault.dsn, "SELECT count(*) FROM pg_database WHERE datname = 'vault_drill_test'") == [(0,)]
    # A drill that finds something wrong fails its run (the run-failure alert reports it): here the latest
    # backup's manifest was rewritten after the backup.
    backup_id = drill.output_for_node("restore_notify")["backup_id"]
    manifest_key = f"{PREFIX}{backup_id}/{MANIFEST}"
    body = vault.cold.get_object(Bucket=vault.cold_bucket, Key=manifest_key)["Body"].read()
    vault.cold.put_object(Bucket=vault.cold_bucket, Key=manifest_key, Body=body, ChecksumAlgorithm="SHA256",
                          Metadata={"vault-sha256": hashlib.sha256(body).hexdigest()})
    failed = vault.defs.resolve_job_def("db_restore_drill").execute_in_process(instance=vault.instance,
                                                                                raise_on_error=False)
    assert not failed.success and "rewritten" in failure_text(failed)
