"""Retrying failed rows through Dagster, for `vault-pipeline retry-failed`.

A row becomes `failed` when its copy still failed after the run's own retries (VAULT_MAX_ATTEMPTS). The
sensor does not request runs for failed rows, on purpose: a permanent failure (a malformed document, a
cold site refusing writes) would otherwise be retried forever. Once the cause is fixed, an operator asks
for one `replication_job` run per day that has failed rows (one per shard for a day with many of them,
VAULT_SHARD_MIN_OBJECTS and VAULT_MAX_SHARDS as for the sensor: replication/shards.py). That run claims
the day's failed rows like pending ones (tracking.claim), copies and verifies them, runs the day's checks,
and shows up in the UI like any other run, tagged `vault/trigger=retry-failed`. Rows whose hot object was found gone
(hot_missing_at) are left out: there is nothing to copy until a listing finds the object again, which
makes the row pending by itself (`missing_rows` counts them for the operator).

Plain Python: no Dagster imports (runs are launched through the webserver's GraphQL API).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vault_pipeline.dagster_api import FINISHED_RUN_STATUSES, DagsterApi
from vault_pipeline.replication.shards import SHARD_TAG, Shard, ShardPolicy

JOB = "replication_job"
TRIGGER_TAG = "vault/trigger"
TRIGGER = "retry-failed"


def failed_rows_by_day(conn: Any, source_bucket: str, days: list[dt.date] | None = None) -> dict[dt.date, int]:
    """{day: failed rows}, oldest day first; only the given days when `days` is set."""
    sql = ("SELECT partition_day, count(*) FROM vault_secure.replication_status"
           " WHERE bucket_source = %s AND status = 'failed' AND hot_missing_at IS NULL")
    params: list[Any] = [source_bucket]
    if days is not None:
        sql += " AND partition_day = ANY(%s)"
        params.append(days)
    return {day: int(n) for day, n in conn.execute(sql + " GROUP BY 1 ORDER BY 1", params).fetchall()}


def missing_rows(conn: Any, source_bucket: str) -> int:
    """Failed rows whose hot object was found gone: not retried, waiting for the object to be listed."""
    return int(conn.execute("SELECT count(*) FROM vault_secure.replication_status WHERE bucket_source = %s"
                            " AND status = 'failed' AND hot_missing_at IS NOT NULL", (source_bucket,)).fetchone()[0])


def day_outcome(conn: Any, source_bucket: str, day: dt.date, since: dt.datetime) -> dict[str, Any]:
    """What became of the day's rows that the retry concerned: still failed (with their errors), or
    replicated since the retry started."""
    still_failed = conn.execute(
        "SELECT s3_key, error_message FROM vault_secure.replication_status"
        " WHERE bucket_source = %s AND partition_day = %s AND status = 'failed'"
        " AND (hot_missing_at IS NULL OR hot_missing_at >= %s) ORDER BY s3_key",  # gone during the retry counts
        (source_bucket, day, since),
    ).fetchall()
    replicated = conn.execute(
        "SELECT count(*) FROM vault_secure.replication_status WHERE bucket_source = %s AND partition_day = %s"
        " AND status = 'replicated' AND replicated_at >= %s",
        (source_bucket, day, since),
    ).fetchone()[0]
    return {"replicated": int(replicated), "still_failed": len(still_failed),
            "errors": [{"key": key, "error": error} for key, error in still_failed[:10]]}


@dataclass
class DayRetry:
    """One launched run: a day's, or one shard of a day's."""

    day: dt.date
    failed_rows: int
    shard: Shard | None = None
    run_id: str | None = None
    run_status: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.run_status in FINISHED_RUN_STATUSES

    @property
    def ok(self) -> bool:
        return self.run_status == "SUCCESS" and self.outcome.get("still_failed", 1) == 0


def launch_retries(api: DagsterApi, failed: dict[dt.date, int], *, partition_key: Callable[[dt.date], str],
                   requested_by: str, shards: ShardPolicy | None = None) -> list[DayRetry]:
    """One replication_job run per day, or per shard of a day with many failed rows, in day order."""
    policy = shards or ShardPolicy()
    retries = []
    for day, rows in failed.items():
        for shard in policy.shards(rows):
            retry = DayRetry(day=day, failed_rows=rows, shard=shard)
            tags = {TRIGGER_TAG: TRIGGER, "vault/failed_rows": str(rows), "vault/requested_by": requested_by}
            if shard is not None:
                tags[SHARD_TAG] = str(shard)
            retry.run_id = api.launch_run(JOB, partition=partition_key(day), tags=tags)
            retry.run_status = "QUEUED"
            retries.append(retry)
    return retries


def by_day(retries: list[DayRetry]) -> dict[dt.date, list[DayRetry]]:
    """The launched runs grouped by day, in launch order."""
    days: dict[dt.date, list[DayRetry]] = {}
    for retry in retries:
        days.setdefault(retry.day, []).append(retry)
    return days


def describe_runs(runs: list[DayRetry]) -> str:
    """"run SUCCESS" for a day's single run; "4 shard runs: 3 SUCCESS, 1 FAILURE" for a shared day."""
    if len(runs) == 1:
        return f"run {runs[0].run_status}"
    counts: dict[str, int] = {}
    for run in runs:
        counts[str(run.run_status)] = counts.get(str(run.run_status), 0) + 1
    return f"{len(runs)} shard runs: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def wait_for_runs(api: DagsterApi, retries: list[DayRetry], *, timeout: float, poll_seconds: float = 2.0,
                  on_change: Callable[[list[DayRetry]], None] | None = None) -> bool:
    """Poll until every run finished (True) or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        for retry in retries:
            if retry.run_id and not retry.done:
                retry.run_status = api.run(retry.run_id)["status"]
        if on_change is not None:
            on_change(retries)
        if all(r.done for r in retries):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_seconds)
