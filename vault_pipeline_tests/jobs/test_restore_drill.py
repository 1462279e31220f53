"""Restore drill against the real servers: restore, read back, re-hash; mismatches; restores spanning runs.

Both cold flavours behave differently and both are exercised: the moto server refuses GET on a
DEEP_ARCHIVE object until RestoreObject (so the drill restores, then reads), SeaweedFS has no restore
(RestoreObject answers MethodNotAllowed) but serves the bytes (so the drill reads directly).

What cannot be reproduced here is a restore that takes hours. The closest real behaviour: the moto
server's state manager (`/moto-api/state-manager/set-transition`, progression "manual") makes a restore
report `ongoing-request="true"` at the first HEAD after the request and `"false"` from the next one on.
A larger count does not keep it ongoing longer (moto's initial state, before the first transition, is
rendered as *restored*), so the two-phase test relies on exactly one "still restoring" answer. The
deadline is reached by backdating an item's `requested_at` in PostgreSQL while the server still says
ongoing. Note also that moto's RestoreObject ignores VersionId and restores the *latest* version: the
drills here only sample latest versions, as the manifest's rows are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from importlib import resources
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError
from dagster import DefaultScheduleStatus, DefaultSensorStatus, RunRequest, SkipReason, build_sensor_context

from vault_pipeline.definitions import build_definitions
from vault_pipeline.retrieval.cold import RestoreHeader
from vault_pipeline.retrieval.drill_store import DrillSettings, DrillStore
from vault_pipeline.retrieval.drills import RestoreDrill
from vault_pipeline.settings import ConfigurationError, VaultSettings, load_settings
from vault_pipeline_tests.conftest import Vault, sql, unique

MiB = 1024 * 1024
MIGRATION = resources.files("vault_pipeline").joinpath("sql", "004_restore_drills.sql")


def run_drill(vault: Vault, run_config: dict[str, Any] | None = None, **config: Any) -> Any:
    job = vault.defs.resolve_job_def("restore_drill_job")
    return job.execute_in_process(
        run_config=run_config or {"ops": {"restore_drill": {"config": config}}}, instance=vault.instance,
        raise_on_error=False,
    )


def drill_metadata(result: Any) -> dict[str, Any]:
    """The op's metadata: on its output when it succeeded, on its failure when it failed."""
    for event in result.all_events:
        if event.event_type_value == "STEP_OUTPUT":
            return {k: v.value for k, v in event.event_specific_data.metadata.items()}
        if event.event_type_value == "STEP_FAILURE":
            data = event.event_specific_data.user_failure_data
            return {k: v.value for k, v in data.metadata.items()} | {"description": data.description}
    raise AssertionError("the drill op produced neither an output nor a failure")


def items(vault: Vault) -> dict[str, dict[str, Any]]:
    return {r["object_key"]: r for r in DrillStore(vault.store).items(cold_bucket=vault.cold_bucket)}


def replicate(vault: Vault, documents: dict[str, bytes]) -> None:
    for key, body in documents.items():
        vault.put(key, body, {"document-type": "invoice"})
    runs = vault.sensor_and_runs()
    assert runs and all(r.success for r in runs)
    assert {r["status"] for r in vault.store.rows(vault.hot_bucket)} == {"replicated"}


def test_drill_restores_reads_back_and_rehashes(vault: Vault) -> None:
    documents = {
        f"{unique('drill')}/small.pdf": b"%PDF-1.7 small",
        f"{unique('drill')}/empty.pdf": b"",
        f"{unique('drill')}/multipart.pdf": bytes(range(256)) * (6 * MiB // 256) + b"tail",  # 6 chunks + 4 bytes
    }
    replicate(vault, documents)
    rows = {r["s3_key"]: r for r in vault.store.rows(vault.hot_bucket)}
    big = next(k for k in documents if k.endswith("multipart.pdf"))
    if vault.flavour == "moto":  # the premise of the drill: Deep Archive bytes are not readable as they are
        with pytest.raises(ClientError) as refused:
            vault.cold.get_object(Bucket=vault.cold_bucket, Key=big, VersionId=rows[big]["aws_version_id"])
        assert refused.value.response["Error"]["Code"] == "InvalidObjectState"

    result = run_drill(vault, sample_size=10)
    assert result.success
    meta = drill_metadata(result)
    total = sum(len(b) for b in documents.values())
    assert (meta["sampled"], meta["verified"], meta["mismatched"], meta["failed"], meta["still_restoring"]) == (
        3, 3, 0, 0, 0)
    assert meta["bytes_rehashed"] == total and meta["mib_per_s"] > 0
    drilled = items(vault)
    assert set(drilled) == set(documents)
    for key, body in documents.items():
        item = drilled[key]
        assert item["state"] == "verified", item
        assert item["cold_version_id"] == rows[key]["aws_version_id"]
        assert item["computed_sha256"] == item["expected_sha256"] == hashlib.sha256(body).hexdigest()
        assert item["metadata_sha256"] == item["computed_sha256"] and item["bytes_read"] == len(body)
        assert item["verified_at"] and item["finished_at"] and item["error"] is None
        if vault.flavour == "moto":
            assert item["restore_required"] is True and item["restored_at"] is not None
            assert 'ongoing-request="false"' in item["restore_status"]
        else:
            assert item["restore_required"] is False and "MethodNotAllowed" in item["restore_status"]
    if vault.flavour == "moto":  # the restore really happened on the server
        head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=big, VersionId=rows[big]["aws_version_id"])
        assert RestoreHeader.parse(head["Restore"]).ongoing is False  # type: ignore[union-attr]
    assert meta["restores_requested" if vault.flavour == "moto" else "read_without_restore"] == 3

    again = run_drill(vault)  # everything was drilled moments ago: nothing to sample
    assert again.success and drill_metadata(again)["sampled"] == 0
    assert len(items(vault)) == 3

    # The migration is idempotent and the table is under row-level security like the others.
    with psycopg.connect(vault.dsn) as conn:
        conn.execute(MIGRATION.read_text("utf-8"))
    assert sql(vault.dsn, "SELECT relrowsecurity FROM pg_class WHERE relname = 'restore_drills'") == [(True,)]
    assert sql(vault.dsn, "SELECT roles::text FROM pg_policies WHERE tablename = 'restore_drills'") == [
        ("{vault_admin}",)]
    assert len(items(vault)) == 3


def test_mismatch_is_reported_and_fails_the_job(vault: Vault) -> None:
    bad_manifest, bad_metadata, fine = (f"{unique('tamper')}/{n}.pdf" for n in ("manifest", "metadata", "fine"))
    replicate(vault, {bad_manifest: b"%PDF manifest", bad_metadata: b"%PDF metadata", fine: b"%PDF fine"})
    # 1. The manifest's fixity value no longer matches the stored bytes (a corrupted or tampered row).
    sql(vault.dsn, "UPDATE vault_secure.replication_status SET sha256 = repeat('0', 64) WHERE s3_key = %s"
        " RETURNING id", (bad_manifest,))
    # 2. The cold object describes itself wrongly: same bytes, another vault-sha256 in its metadata. The
    #    manifest points at that version, as it would after a faulty copier wrote it.
    head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=bad_metadata)
    written = vault.cold.put_object(
        Bucket=vault.cold_bucket, Key=bad_metadata, Body=b"%PDF metadata", StorageClass="DEEP_ARCHIVE",
        Metadata={**head["Metadata"], "vault-sha256": "f" * 64}, ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=head["ObjectLockRetainUntilDate"], ChecksumAlgorithm="SHA256")
    sql(vault.dsn, "UPDATE vault_secure.replication_status SET aws_version_id = %s WHERE s3_key = %s"
        " RETURNING id", (written["VersionId"], bad_metadata))

    result = run_drill(vault, sample_size=3)
    assert not result.success
    meta = drill_metadata(result)
    assert (meta["verified"], meta["mismatched"], meta["failed"]) == (1, 2, 0)
    assert "2 mismatch(es)" in meta["description"]
    assert bad_manifest in meta["problems"] and bad_metadata in meta["problems"] and fine not in meta["problems"]
    drilled = items(vault)
    assert drilled[fine]["state"] == "verified"
    assert drilled[bad_manifest]["state"] == "mismatch" and "!= manifest" in drilled[bad_manifest]["error"]
    assert "metadata" not in drilled[bad_manifest]["error"]  # the object itself is fine
    assert drilled[bad_metadata]["state"] == "mismatch"
    assert "vault-sha256 metadata 'ffff" in drilled[bad_metadata]["error"]
    assert "!= manifest" not in drilled[bad_metadata]["error"]

    # A failure is reported once, by the run that found it: the next run has nothing new to say.
    assert run_drill(vault).success


@pytest.mark.parametrize("cold_flavour", ["moto"])
def test_restore_in_progress_is_finished_by_a_later_run(vault: Vault, slow_moto_restore: None) -> None:
    first, second = f"{unique('slow')}/first.pdf", f"{unique('slow')}/second.pdf"
    replicate(vault, {first: b"%PDF first", second: b"%PDF second"})

    # Run 1 samples one object and requests its restore; the server still restores when it looks.
    run1 = run_drill(vault, sample_size=1, wait_seconds=0)
    assert run1.success
    meta1 = drill_metadata(run1)
    assert (meta1["sampled"], meta1["restores_requested"], meta1["still_restoring"], meta1["verified"]) == (1, 1, 1, 0)
    (key1, item1), = items(vault).items()
    assert item1["state"] == "requested" and 'ongoing-request="true"' in item1["restore_status"]

    # A second drill (domain layer, phase 1 only) samples the other object: the pending one is not drawn
    # again. Its restore was requested "73 hours ago" and the server still says ongoing: past the deadline.
    drill = RestoreDrill(store=vault.store, cold=vault.cold, cold_bucket=vault.cold_bucket,
                         source_bucket=vault.hot_bucket, settings=DrillSettings(deadline=dt.timedelta(hours=72)))
    started = drill.start(5)
    assert [o.key for o in started.outcomes] == [second if key1 == first else first]
    key2 = started.outcomes[0].key
    sql(vault.dsn, "UPDATE vault_secure.restore_drills SET requested_at = now() - interval '73 hours'"
        " WHERE object_key = %s RETURNING id", (key2,))

    # The follow-up sensor sees pending items and asks for a run that takes no new sample.
    sensor = vault.defs.resolve_sensor_def("restore_drill_followup_sensor")
    request = sensor(build_sensor_context(instance=vault.instance, resources=vault.resources))
    assert isinstance(request, RunRequest)
    assert request.run_config == {"ops": {"restore_drill": {"config": {"sample_size": 0}}}}
    run2 = run_drill(vault, run_config=request.run_config)
    assert not run2.success  # the overdue item fails the run, loudly
    meta2 = drill_metadata(run2)
    assert (meta2["sampled"], meta2["verified"], meta2["failed"], meta2["still_restoring"]) == (0, 1, 1, 0)
    drilled = items(vault)
    assert drilled[key1]["state"] == "verified" and drilled[key1]["checks"] >= 2
    assert drilled[key1]["restored_at"] >= drilled[key1]["requested_at"]
    assert drilled[key2]["state"] == "failed"
    assert "still in progress" in drilled[key2]["error"] and "72 h deadline" in drilled[key2]["error"]

    # Nothing pending any more: the sensor stays quiet.
    assert isinstance(sensor(build_sensor_context(instance=vault.instance, resources=vault.resources)), SkipReason)


def test_drill_settings_and_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VAULT_RESTORE_DRILL_"):
            monkeypatch.delenv(name)
    defaults = VaultSettings()  # type: ignore[call-arg]
    assert (defaults.restore_drill_sample_size, defaults.restore_drill_tier, defaults.restore_drill_cron,
            defaults.restore_drill_deadline_hours) == (20, "Bulk", "0 3 * * 1", 72.0)
    monkeypatch.setenv("VAULT_RESTORE_DRILL_CRON", "15 4 * * 0")
    monkeypatch.setenv("VAULT_RESTORE_DRILL_TIER", "standard")
    settings, _ = load_settings()
    assert settings.restore_drill_tier == "Standard"
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def("restore_drill_schedule")
    assert schedule.cron_schedule == "15 4 * * 0" and schedule.job_name == "restore_drill_job"
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    sensor = defs.resolve_sensor_def("restore_drill_followup_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 3600
    for name, value in (("VAULT_RESTORE_DRILL_CRON", "weekly"), ("VAULT_RESTORE_DRILL_TIER", "instant"),
                        ("VAULT_RESTORE_DRILL_DEADLINE_HOURS", "0")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigurationError, match=name):
            load_settings()
        monkeypatch.delenv(name)
