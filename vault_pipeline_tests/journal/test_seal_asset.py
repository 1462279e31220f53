"""The journal_seal asset, its schedule and its failures, through the project's Definitions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from dagster import build_schedule_context

from vault_pipeline.jobs.journal_seal import day_to_seal
from vault_pipeline.journal.signing import SealSigner
from vault_pipeline_tests.conftest import Vault, sql
from vault_pipeline_tests.journal.sealkit import at, day_leaves, journal_at, mth, utc_today


def materialize(vault: Vault, day: dt.date) -> Any:
    job = vault.defs.resolve_job_def("journal_seal_job")
    return job.execute_in_process(partition_key=day.isoformat(), instance=vault.instance, raise_on_error=False)


def failure(result: Any) -> str:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.event_specific_data.user_failure_data
            return data.description if data else event.event_specific_data.error.message
    raise AssertionError("the run did not fail")


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_journal_seal_asset_seals_the_days_up_to_its_partition(vault: Vault) -> None:
    signer = SealSigner.generate()
    vault.configure(VAULT_JOURNAL_SIGNING_KEY=signer.seed_b64(), VAULT_JOURNAL_PUBLIC_KEYS=signer.public_key_b64)
    today = utc_today()
    d2, d1 = today - dt.timedelta(days=2), today - dt.timedelta(days=1)
    journal_at(vault, at(d2, 7), ["asset/a.pdf", "asset/b.pdf", "asset/c.pdf"])

    result = materialize(vault, d1)
    assert result.success
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("journal_seal")[0].metadata.items()}
    assert metadata["days_sealed"] == 2 and metadata["sealed_days"] == f"{d2.isoformat()}, {d1.isoformat()}"
    assert metadata["tree_size"] == 0 and metadata["first_seq"] == 4  # d1 is empty: a seal of tree_size 0
    assert metadata["seal_key"] == f"journal/seals/{d1.isoformat()}.json"
    assert metadata["signing_key_id"] == signer.key_id and metadata["already_sealed"] is False
    assert metadata["duration_s"] >= 0 and "| " + d2.isoformat() + " | 3 | 1..3 |" in metadata["seals"]
    stored = sql(vault.dsn, "SELECT day, tree_size, root, seal_hash FROM vault_secure.journal_seals ORDER BY day")
    assert stored[0][:3] == (d2, 3, mth(day_leaves(vault, d2)).hex())
    assert stored[1][3] == metadata["seal_hash"]
    assert signer.seed_b64() not in str(metadata), "the signing key never reaches the UI"

    again = materialize(vault, d2)
    assert again.success
    metadata = again.asset_materializations_for_node("journal_seal")[0].metadata
    assert metadata["already_sealed"].value is True and metadata["days_sealed"].value == 0
    assert metadata["root"].value == stored[0][2]

    today_run = materialize(vault, today)
    assert not today_run.success and f"day {today.isoformat()} is not over yet" in failure(today_run)

    # The schedule asks for yesterday's partition, once per day.
    schedule = vault.defs.resolve_schedule_def("journal_seal_schedule")
    assert schedule.cron_schedule == "15 0 * * *" and schedule.execution_timezone == "UTC"
    tick = at(today, 0, 15)
    requests = schedule(build_schedule_context(instance=vault.instance, scheduled_execution_time=tick))
    requests = requests if isinstance(requests, list) else [requests]
    assert [(r.partition_key, r.run_key) for r in requests] == [(d1.isoformat(), f"journal_seal|{d1.isoformat()}")]
    assert day_to_seal(dt.datetime(2026, 3, 1, 0, 15, tzinfo=dt.UTC)) == dt.date(2026, 2, 28)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_journal_seal_fails_clearly_without_a_usable_key(vault: Vault) -> None:
    d1 = utc_today() - dt.timedelta(days=1)
    journal_at(vault, at(d1, 7), ["nokey/a.pdf"])
    result = materialize(vault, d1)
    assert not result.success
    assert "VAULT_JOURNAL_SIGNING_KEY is not set" in failure(result) and "keygen" in failure(result)

    vault.configure(VAULT_JOURNAL_SIGNING_KEY="c2VjcmV0LWJ1dC10b28tc2hvcnQ=")
    short = materialize(vault, d1)
    assert "decodes to 20 bytes, expected 32" in failure(short)
    assert "c2VjcmV0LWJ1dC10b28tc2hvcnQ=" not in failure(short)

    signer = SealSigner.generate()
    vault.configure(VAULT_JOURNAL_SIGNING_KEY=signer.seed_b64(),
                    VAULT_JOURNAL_PUBLIC_KEYS=SealSigner.generate().public_key_b64)
    mismatched = materialize(vault, d1)
    assert f"key id {signer.key_id}) is not one of VAULT_JOURNAL_PUBLIC_KEYS" in failure(mismatched)
    assert sql(vault.dsn, "SELECT count(*) FROM vault_secure.journal_seals") == [(0,)]
    assert vault.cold.list_objects_v2(Bucket=vault.cold_bucket, Prefix="journal/seals/").get("KeyCount", 0) == 0
