"""rebuild_tracking_db as a Dagster job: materialization metadata, refusal without a target, and a
broken journal failing the run with the exact place."""

from __future__ import annotations

import datetime as dt

import pytest

from vault_pipeline.journal.segments import SegmentStore
from vault_pipeline_tests.conftest import Vault


def rebuild_run(vault: Vault, mode: str = "full"):
    job = vault.defs.resolve_job_def("rebuild_tracking_db")
    return job.execute_in_process(run_config={"ops": {"rebuilt_tracking_db": {"config": {"mode": mode}}}},
                                  instance=vault.instance, raise_on_error=False)


def failure(run) -> str:
    events = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
    return str(events[0].event_specific_data.error)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_the_job_rebuilds_and_reports_counts_speed_and_lag(vault: Vault, secondary_dsn: str) -> None:
    refused = rebuild_run(vault)
    assert not refused.success and "VAULT_REBUILD_DATABASE_URL is not set" in failure(refused)

    for i in range(4):
        vault.put(f"r/{i}.pdf", b"y" * (i + 1), {"document-type": "contract"})
    assert all(r.success for r in vault.sensor_and_runs())
    vault.configure(VAULT_REBUILD_DATABASE_URL=secondary_dsn)
    run = rebuild_run(vault)
    assert run.success
    metadata = run.asset_materializations_for_node("rebuilt_tracking_db")[0].metadata
    assert metadata["entries_copy"].value == 4 and metadata["rows_upserted"].value == 4
    assert metadata["head_seq"].value == 4 and metadata["bucket_swept"].value is True
    assert metadata["rows_per_s"].value > 0 and metadata["lag_seconds"].value >= 0
    assert metadata["unrebuildable"].value == 0
    assert secondary_dsn.split("@")[-1] not in str(metadata)  # the DSN is a secret: never in metadata


@pytest.mark.parametrize("cold_flavour", ["moto"], indirect=True)
def test_a_tampered_segment_fails_the_run_naming_the_segment(vault: Vault, secondary_dsn: str) -> None:
    vault.put("t.pdf", b"z", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    segment = next(iter(SegmentStore(vault.cold, vault.cold_bucket).list_segments()))
    vault.cold.put_object(Bucket=vault.cold_bucket, Key=segment.key, Body=b"{}\n", ChecksumAlgorithm="SHA256",
                          ObjectLockMode="COMPLIANCE",
                          ObjectLockRetainUntilDate=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    vault.configure(VAULT_REBUILD_DATABASE_URL=secondary_dsn)
    run = rebuild_run(vault)
    assert not run.success
    assert segment.key in failure(run) and "versions" in failure(run)
