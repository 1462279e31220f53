"""The reconciliation sweep against a real SeaweedFS hot site and PostgreSQL: parallel key ranges split at
the previous sweep's keys, every key listed exactly once, resumable after a stop or a crash, one at a time
per bucket, and the Dagster asset and schedule around it."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from dagster import DagsterRunStatus, SkipReason, build_schedule_context, instance_for_test

from vault_pipeline.intake.sweep import SweepBusy, run_sweep
from vault_pipeline_tests.conftest import Vault, sql

pytestmark = pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)

# Keys whose UTF-8 byte order differs from a naive collation's order ("Z" < "a" < "é" < "世"), with spaces,
# %, + and a long one: range bounds must follow S3's order, or a key between two ranges is lost or doubled.
ODD = ["Zeta.pdf", "alpha beta.pdf", "é-accent.pdf", "世界.pdf", "100%+sure.pdf", "a+b=c.pdf",
       "deep/" + "x" * 200 + "/end.pdf"]


def fill(vault: Vault, count: int) -> set[str]:
    keys = {f"docs/{i % 7}/{i:05d}.pdf" for i in range(count)} | set(ODD)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: vault.hot.put_object(Bucket=vault.hot_bucket, Key=k, Body=b"x"), keys))
    vault.hot.put_object(Bucket=vault.hot_bucket, Key="folder/", Body=b"")  # a folder marker, not a document
    return keys


class CountingClient:
    """The hot client, counting the keys each ListObjectsV2 returns (and able to fail after some pages)."""

    def __init__(self, client: Any, fail_after_pages: int | None = None) -> None:
        self.client = client
        self.keys: Counter[str] = Counter()
        self.pages = 0
        self.fail_after_pages = fail_after_pages
        self.lock = threading.Lock()

    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
        with self.lock:
            if self.fail_after_pages is not None and self.pages >= self.fail_after_pages:
                raise ConnectionResetError("injected: the lister's connection dropped")
            self.pages += 1
        response = self.client.list_objects_v2(**kwargs)
        with self.lock:
            self.keys.update(item["Key"] for item in response.get("Contents", []))
        return response


def sweep(vault: Vault, client: Any, **kwargs: Any) -> Any:
    return run_sweep(client, vault.hot_bucket, vault.store, destination_bucket=vault.cold_bucket, **kwargs)


def test_parallel_ranges_split_at_the_previous_sweep_list_every_key_once(vault: Vault) -> None:
    keys = fill(vault, 600)
    first = sweep(vault, CountingClient(vault.hot), listers=4, page_size=50)
    # A new bucket and an empty manifest: nothing to split on yet, one range.
    assert (first.finished, first.split_source, len(first.ranges)) == (True, "none", 1)
    assert (first.new, first.objects_listed - first.folder_markers) == (len(keys), len(keys))
    assert {r["s3_key"] for r in vault.store.rows(vault.hot_bucket)} == keys

    counting = CountingClient(vault.hot)
    second = sweep(vault, counting, listers=4, page_size=50)
    assert (second.finished, second.split_source) == (True, "previous-sweep")
    # RANGES_PER_LISTER ranges per lister, split at the first sweep's samples (one per page): here 13 pages
    # give at most 13 ranges.
    assert first.pages == 13 and len(second.ranges) == 13
    # Every key listed by exactly one range (a range's last page may read a few keys past its end, which
    # are not its own): no key lost between ranges, none registered twice.
    assert sum(r.objects for r in second.ranges) == len(keys) + 1  # + the folder marker
    assert set(counting.keys) == keys | {"folder/"}
    assert (second.new, second.changed) == (0, 0)
    sizes = [r.objects for r in second.ranges]
    assert max(sizes) <= 3 * (len(keys) / len(sizes)), sizes  # split by the key distribution, not evenly by name
    assert sql(vault.dsn, "SELECT count(DISTINCT sweep_id) FROM vault_secure.sweep_samples") == [(1,)]


def test_a_stopped_sweep_resumes_where_each_range_stopped(vault: Vault) -> None:
    keys = fill(vault, 400)
    sweep(vault, vault.hot, listers=1, page_size=100)  # the samples to split on
    for i in range(50):
        vault.hot.put_object(Bucket=vault.hot_bucket, Key=f"late/{i:03d}.pdf", Body=b"late")
    # A deadline already past: each lister stops after its first page; the sweep stays open.
    stopped = sweep(vault, vault.hot, listers=2, page_size=40, deadline=0)
    assert not stopped.finished and stopped.pages == 2
    resumed = sweep(vault, vault.hot, listers=2, page_size=40)
    assert resumed.resumed and resumed.finished and resumed.sweep_id == stopped.sweep_id
    assert stopped.objects_listed + resumed.objects_listed == len(keys) + 50 + 1
    assert stopped.new + resumed.new == 50


def test_a_crashed_lister_leaves_the_sweep_resumable_and_nothing_lost(vault: Vault) -> None:
    keys = fill(vault, 300)
    with pytest.raises(ConnectionResetError):
        sweep(vault, CountingClient(vault.hot, fail_after_pages=3), listers=1, page_size=50)
    open_sweep = vault.store.open_sweep(vault.hot_bucket)
    assert open_sweep is not None
    progress = vault.store.sweep_ranges(open_sweep.id)[0]
    assert progress.objects == 150 and not progress.done  # three pages recorded, each after its registration
    assert len(vault.store.rows(vault.hot_bucket)) == 150
    rerun = sweep(vault, CountingClient(vault.hot), listers=1, page_size=50)
    assert rerun.resumed and rerun.finished
    assert rerun.objects_listed == len(keys) + 1 - 150
    assert {r["s3_key"] for r in vault.store.rows(vault.hot_bucket)} == keys
    assert vault.store.open_sweep(vault.hot_bucket) is None


def test_one_sweep_at_a_time_per_bucket(vault: Vault) -> None:
    fill(vault, 50)
    with vault.store.sweep_lock(vault.hot_bucket) as held:  # as another process sweeping now would
        assert held
        with pytest.raises(SweepBusy, match="another process is sweeping"):
            sweep(vault, vault.hot, listers=2)
    assert sweep(vault, vault.hot, listers=2).finished


def test_the_asset_reports_the_sweep_and_the_schedule_skips_while_one_runs(vault: Vault) -> None:
    keys = fill(vault, 120)
    job = vault.defs.resolve_job_def("reconciliation_sweep_job")
    result = job.execute_in_process(instance=vault.instance,
                                    run_config={"ops": {"hot_bucket_sweep": {"config": {"listers": 3}}}})
    assert result.success
    metadata = result.asset_materializations_for_node("hot_bucket_sweep")[0].metadata
    assert metadata["new_objects"].value == len(keys) and metadata["finished"].value is True
    assert metadata["listers"].value == 3 and metadata["folder_markers_skipped"].value == 1
    assert "(first key)" in metadata["key_ranges"].value
    # The sensor turns what the sweep registered into a run for the day.
    assert len(vault.run_sensor(sweep=False).run_requests) == 1

    schedule = vault.defs.resolve_schedule_def("reconciliation_sweep_schedule")
    assert schedule.cron_schedule == "0 * * * *"
    with instance_for_test() as instance:  # a schedule context needs an instance it can reopen
        with build_schedule_context(instance=instance) as context:
            assert schedule(context).tags["vault/trigger"] == "reconciliation_sweep_schedule"
        run = instance.create_run_for_job(job, run_config={})  # created, not started: it counts as running
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.NOT_STARTED
        with build_schedule_context(instance=instance) as context:
            skipped = schedule(context)
        assert isinstance(skipped, SkipReason) and "has not finished" in (skipped.skip_message or "")
