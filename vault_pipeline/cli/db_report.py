"""`vault-pipeline db-report RUN_ID [--json]`: the step-duration report of a database restore.

Per step (fetch, pre-data, data, post-data, catch-up, verify, notify) and per pg_restore item (TABLE DATA,
INDEX, CONSTRAINT, FK CONSTRAINT, SEQUENCE SET) with its duration, as the run recorded it in Dagster's
event log. A re-executed run's report includes the steps its parent runs did (each row names its run). A
run that stopped early reports the steps done so far. Read from the Dagster instance: DAGSTER_HOME, or
`.vault/dagster_home` under `make run`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from vault_pipeline.cli.errors import EXIT_OK, CommandError

REPORT_LABEL = "restore_report"
PARENT_TAG = "dagster/parent_run_id"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("db-report", help="step-duration report of a restore_tracking_db run",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id", metavar="RUN_ID", help="a run of restore_tracking_db or db_restore_drill")
    parser.add_argument("--json", action="store_true", help="the report as one JSON object")
    parser.add_argument("--dagster-home", help="the Dagster instance directory (default: DAGSTER_HOME, else "
                        ".vault/dagster_home)")
    parser.add_argument("--items", type=int, default=25, help="slowest pg_restore items listed (25)")


def dagster_home(args: argparse.Namespace) -> Path:
    from vault_pipeline.cli.main import stack_root

    home = args.dagster_home or os.environ.get("DAGSTER_HOME") or str(stack_root() / "dagster_home")
    if not Path(home).is_dir():
        raise CommandError(f"no Dagster instance at {home}: set DAGSTER_HOME or --dagster-home")
    return Path(home)


def latest_report(instance: Any, run_id: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The last restore report recorded by the run, else by its parent runs; and the chain of runs read."""
    from dagster import DagsterEventType

    chain: list[str] = []
    current: str | None = run_id
    while current:
        run = instance.get_run_by_id(current)
        if run is None:
            raise CommandError(f"no run {current} in this Dagster instance")
        chain.append(current)
        report = None
        for record in instance.get_records_for_run(current, of_type=DagsterEventType.STEP_OUTPUT).records:
            event = record.event_log_entry.dagster_event
            data = event.event_specific_data if event else None
            value = getattr(data, "metadata", {}).get(REPORT_LABEL) if data else None
            if value is not None:
                report = value.value
        if report is not None:
            return report, chain
        current = run.tags.get(PARENT_TAG)
    return None, chain


def run(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from vault_pipeline.backup.report import report_text, totals_by_kind

    home = dagster_home(args)
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        run_record = instance.get_run_by_id(args.run_id)
        if run_record is None:
            raise CommandError(f"no run {args.run_id} in the Dagster instance at {home}")
        report, chain = latest_report(instance, args.run_id)
        status = run_record.status.value
    if report is None:
        raise CommandError(f"run {args.run_id} ({run_record.job_name}, {status}) recorded no restore step: is it a "
                           "run of restore_tracking_db or db_restore_drill?")
    steps = report["steps"]
    if args.json:
        print(json.dumps({"run_id": args.run_id, "status": status, "runs": chain, **report,
                          "total_seconds": round(sum(s["seconds"] for s in steps), 3),
                          "by_kind": totals_by_kind(steps)}, indent=2))
        return EXIT_OK
    print(f"# Restore {report['backup_id']} ({report['database']}): run {args.run_id}, {status}")
    if len(chain) > 1:
        print(f"Re-execution of {' <- '.join(chain[1:])}")
    print()
    print(report_text(steps, limit=args.items))
    return EXIT_OK
