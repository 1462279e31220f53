"""`vault-pipeline retry-failed [--day D ...] [--no-wait]`: re-run the days that have failed rows.

Launches one `replication_job` run per day with failed rows (all such days, or the ones named with
--day; a day with at least VAULT_SHARD_MIN_OBJECTS failed rows gets one run per shard, tagged vault/shard,
at most VAULT_MAX_SHARDS), through the Dagster webserver, tagged `vault/trigger=retry-failed`, so each
retry is a run in the UI with its logs, checks and alerts. Then waits for the runs with a progress bar
and tells, per day, how many rows were copied and which are still failed, with their errors.

Exit status 0 when every run succeeded and no row of those days is failed any more (or there was nothing
to retry), 1 when a run failed or rows are still failed, 2 when the retry could not be launched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
from typing import Any

from vault_pipeline.cli.common import add_dagster_url_argument, dagster_url, hot_bucket, tracking_connection
from vault_pipeline.cli.errors import EXIT_OK, EXIT_PROBLEMS, CommandError
from vault_pipeline.cli.progress import Progress


def _day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a YYYY-MM-DD day") from None


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("retry-failed", help="re-run the days that have failed rows, as Dagster runs",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", type=_day, action="append", dest="days", metavar="YYYY-MM-DD",
                        help="only this day (repeatable); default: every day with failed rows")
    parser.add_argument("--bucket", help="the hot bucket (default: OVH_S3_BUCKET_DOCUMENTS)")
    add_dagster_url_argument(parser)
    parser.add_argument("--no-wait", action="store_true", help="launch the runs and return")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds to wait for the runs (default 3600); they go on after it")
    parser.add_argument("--dry-run", action="store_true", help="list the days and rows, launch nothing")


def run(args: argparse.Namespace) -> int:
    from vault_pipeline.cli.retry_runs import (
        by_day,
        day_outcome,
        describe_runs,
        failed_rows_by_day,
        launch_retries,
        missing_rows,
        wait_for_runs,
    )
    from vault_pipeline.dagster_api import DagsterApi
    from vault_pipeline.partitions import partition_key_for
    from vault_pipeline.replication.shards import ShardPolicy
    from vault_pipeline.settings import load_settings

    bucket = hot_bucket(args)
    if bucket is None:
        raise CommandError("OVH_S3_BUCKET_DOCUMENTS not set (or --bucket): the retry runs replicate that bucket")
    if args.timeout <= 0:
        raise CommandError("--timeout must be positive")
    with tracking_connection() as conn:
        started = conn.execute("SELECT now()").fetchone()[0]
        failed = failed_rows_by_day(conn, bucket, sorted(set(args.days)) if args.days else None)
        if missing := missing_rows(conn, bucket):
            print(f"{missing} failed row(s) left out: their hot object is gone (deleted after it was listed); "
                  "a listing that finds one again makes it pending")
        if not failed:
            where = f" on {', '.join(d.isoformat() for d in sorted(set(args.days)))}" if args.days else ""
            print(f"no failed rows{where} in {bucket}: nothing to retry")
            return EXIT_OK
        total = sum(failed.values())
        print(f"{total} failed row(s) on {len(failed)} day(s): "
              + ", ".join(f"{day} ({n})" for day, n in failed.items()))
        if args.dry_run:
            return EXIT_OK
        api = DagsterApi(dagster_url(args), timeout=30)
        settings = load_settings()[0]
        retries = launch_retries(api, failed, partition_key=partition_key_for, requested_by=_who(),
                                 shards=ShardPolicy(settings.shard_min_objects, settings.max_shards))
        for retry in retries:
            shard = f" shard {retry.shard}" if retry.shard else ""
            print(f"{retry.day}{shard}: run {retry.run_id} launched ({api.base_url}/runs/{retry.run_id})")
        if args.no_wait:
            return EXIT_OK
        with Progress() as display:
            bar = display.task("retry runs finished", total=len(retries))

            def show(current: list[Any]) -> None:
                states = sorted({r.run_status or "?" for r in current if not r.done})
                bar.update(completed=sum(r.done for r in current), status=" ".join(states))

            finished = wait_for_runs(api, retries, timeout=args.timeout, on_change=show)
        for day, runs in by_day(retries).items():
            outcome = day_outcome(conn, bucket, day, started)
            for retry in runs:
                retry.outcome = outcome
            print(f"{day}: {describe_runs(runs)}; {outcome['replicated']} row(s) copied and verified, "
                  f"{outcome['still_failed']} still failed")
            for item in outcome["errors"]:
                print(f"  {item['key']!r}: {' '.join((item['error'] or '').split())[:200]}")
    if not finished:
        pending = list(dict.fromkeys(str(r.day) for r in retries if not r.done))
        print(f"runs still going after {args.timeout:.0f} s for {', '.join(pending)}: see the Dagster UI")
        return EXIT_PROBLEMS
    return EXIT_OK if all(r.ok for r in retries) else EXIT_PROBLEMS


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
