"""`vault-pipeline status [--json]`: replication at a glance.

Counts by status and document type, the backlog and its oldest object, how long recent copies took,
failed rows, `hot_bucket_sensor`'s state and last tick, the last verification of recent days and the
overdue ones, failed checks, open alerts and the completion webhooks' notices; then what needs attention.
Exit status 0 when nothing needs attention, 1 when something does (each listed), 2 when the status cannot
be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from typing import Any

from vault_pipeline.cli.common import add_dagster_url_argument, dagster_url, hot_bucket, tracking_connection
from vault_pipeline.cli.errors import EXIT_OK, EXIT_PROBLEMS
from vault_pipeline.cli.progress import format_amount

STATUSES = ("replicated", "pending", "in_progress", "failed")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("status", help="replication at a glance: counts, backlog, lag, sensor, checks",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout instead of text")
    parser.add_argument("--bucket", help="the hot bucket (default: OVH_S3_BUCKET_DOCUMENTS; unset: every bucket)")
    parser.add_argument("--days", type=int, default=7, help="recent days listed with their verification (7)")
    add_dagster_url_argument(parser)
    parser.add_argument("--no-dagster", action="store_true", help="do not ask Dagster (database facts only)")
    parser.add_argument("--no-workers", action="store_true",
                        help="do not ask the Celery workers (with VAULT_CELERY_BROKER_URL set, they are asked)")


def run(args: argparse.Namespace) -> int:
    from vault_pipeline.cli.status_report import collect_status
    from vault_pipeline.dagster_api import DagsterApi
    from vault_pipeline.settings import load_settings

    settings, _ = load_settings()
    api = None if args.no_dagster else DagsterApi(dagster_url(args), timeout=15)
    cluster = None
    if not args.no_workers:
        from vault_pipeline.cluster.inspect import cluster_status

        cluster = cluster_status()
    with tracking_connection() as conn:
        report = collect_status(conn, api, source_bucket=hot_bucket(args),
                                period_days=settings.verification_period_days,
                                sensor_interval_seconds=settings.sensor_interval_seconds,
                                recent_days=max(0, args.days), cluster=cluster,
                                completion_endpoints=completion_endpoints())
    print(report.to_json() if args.json else render(report))
    return EXIT_PROBLEMS if report.attention else EXIT_OK


def completion_endpoints() -> list[str]:
    """The fingerprints of VAULT_COMPLETION_WEBHOOK_URLS as set here: the URLs themselves are never shown."""
    from vault_pipeline.alerting.completion import endpoint_fingerprint, split_urls

    return [endpoint_fingerprint(url) for url in split_urls(os.environ.get("VAULT_COMPLETION_WEBHOOK_URLS", ""))]


def _ago(iso: str | None, now: dt.datetime) -> str:
    if not iso:
        return "never"
    return f"{duration((now - dt.datetime.fromisoformat(iso)).total_seconds())} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render(report: Any) -> str:
    now = dt.datetime.fromisoformat(report.generated_at)
    lines = [f"vault-pipeline status: {'bucket ' + report.source_bucket if report.source_bucket else 'all buckets'}"
             f", {report.generated_at}"]

    def row(label: str, text: str) -> None:
        lines.append(f"{label:<14}{text}")

    counts = report.by_status
    total = sum(c["objects"] for c in counts.values())
    row("objects", f"{total:,} tracked: " + ", ".join(
        f"{s.replace('_', ' ')} {counts.get(s, {}).get('objects', 0):,}"
        f" ({format_amount(counts.get(s, {}).get('bytes', 0), 'bytes')})" for s in STATUSES))
    for doc_type, by in sorted(report.by_document_type.items()):
        row("", f"{doc_type}: " + ", ".join(f"{s.replace('_', ' ')} {by[s]:,}" for s in STATUSES if by.get(s)))
    waiting = report.oldest_waiting
    row("backlog", f"{report.backlog['objects']:,} object(s), {format_amount(report.backlog['bytes'], 'bytes')}"
        + (f"; oldest {waiting['s3_key']!r} ({waiting['status'].replace('_', ' ')}, day {waiting['day']}) "
           f"waiting {duration(waiting['waiting_seconds'])}" if waiting else ""))
    recent = report.recent_copies
    row("copies (24 h)", f"{recent['copies']:,}; upload to verified copy p50 {duration(recent['lag_p50_seconds'])},"
        f" p95 {duration(recent['lag_p95_seconds'])}, max {duration(recent['lag_max_seconds'])};"
        f" last copy {_ago(recent['last_replicated_at'], now)}")
    failed = report.failed_rows
    if failed["objects"]:
        days = ", ".join(f"{d} ({n})" for d, n in list(failed["days"].items())[:5])
        row("failed rows", f"{failed['objects']:,} on {len(failed['days'])} day(s): {days}")
        for item in failed["latest"][:5]:
            row("", f"{item['s3_key']!r} ({item['day']}, {item['attempts']} attempt(s)): "
                f"{' '.join((item['error'] or '').split())[:160]}")
    else:
        row("failed rows", "none")

    dagster = report.dagster
    if "error" in dagster:
        row("dagster", f"not reachable: {dagster['error']}")
    else:
        sensor, tick = dagster["sensor"], dagster["sensor"]["last_tick"]
        tick_text = "no tick yet" if tick is None else (
            f"last tick {_ago(tick['at'], now)} {tick['status']}, {tick['runs_requested']} run(s) requested"
            + (f", error: {tick['error']}" if tick["error"] else ""))
        tick_text += "; ticking now" if sensor["ticking_now"] else ""
        row("sensor", f"{sensor['name']} {sensor['status']} every {sensor['interval_seconds']} s; {tick_text}")
        run = dagster["last_replication_run"]
        row("last run", "none" if run is None else
            f"replication_job {run['partition'] or '(no day)'} {run['status']} {_ago(run['created_at'], now)}"
            f" ({dagster['url']}/runs/{run['run_id']})")

    cluster = report.cluster
    if not cluster.get("configured"):
        row("workers", "none: runs are processes of the daemon's machine (no VAULT_CELERY_BROKER_URL)")
    elif cluster.get("error"):
        row("workers", f"unknown: {cluster['error']}")
    else:
        row("workers", f"{len(cluster['workers'])} Celery worker(s) on queue {cluster['queue']!r} "
            f"({cluster['broker']}), {cluster['queued_runs']} run(s) waiting for one")
        for worker in cluster["workers"]:
            runs = ", ".join(f"run {r['run_id'] or r['task_id']}"
                             + (f" for {duration(now.timestamp() - r['started_at'])}" if r["started_at"] else "")
                             for r in worker["active"]) or "idle"
            row("", f"{worker['name']} (pid {worker['pid']}, {worker['pool_processes']} at once): {runs}")

    sftp = report.sftp
    if sftp.get("by_status"):
        by = sftp["by_status"]
        row("sftp intake", ", ".join(f"{st.lower().replace('_', ' ')} {by.get(st, {}).get('files', 0):,}"
                                     for st in ("PENDING", "IN_PROGRESS", "COMPLETED", "FAILED"))
            + " file(s) in vault_secure.file_transfer_log")
        day = sftp["last_24h"]
        if day["files"]:
            row("", f"last 24 h: {day['files']:,} file(s), {format_amount(day['bytes'], 'bytes')}; download "
                f"{day['download_mb_per_s'] or '-'} MB/s, upload {day['upload_mb_per_s'] or '-'} MB/s per worker")
        for item in sftp["latest_failures"]:
            row("", f"FAILED {item['filename']!r} ({item['attempts']} attempt(s)"
                f"{'' if item['retried'] else ', not retried'}): {' '.join(item['error'].split())[:160]}")

    render_completion(report.completion, row)
    latest = report.backups.get("latest") or []
    if latest:
        newest = latest[0]
        row("db backups", f"latest {newest['backup_id']} ({_ago(newest['at'], now)}, "
            f"{format_amount(newest['bytes'], 'bytes')}, journal head seq {newest['journal_head_seq']:,}); "
            f"{report.backups['count']:,} in all")
    else:
        row("db backups", "none yet (the first at VAULT_DB_BACKUP_CRON)")

    verification = report.verification
    row("verification", f"every day re-verified within {verification['period_days']} days: "
        f"{verification['days_with_copies']:,} day(s) with copies, {verification['overdue_days']:,} overdue"
        + (f" (oldest {verification['oldest_overdue_day']})" if verification["overdue_days"] else ""))
    for day in verification["recent"]:
        row("", f"{day['day']}  " + (f"verified {_ago(day['verified_at'], now)}: {day['ok']}/{day['objects']} ok"
                                      if day["verified_at"] else "never verified"))
    if report.failed_checks:
        for check in report.failed_checks[:10]:
            keys = ", ".join(repr(k) for k in check["failing_keys"][:3]) or "(see the check's metadata)"
            row("failed check" if check is report.failed_checks[0] else "",
                f"{check['check']} {check['day']} {check['status']}: {keys}")
    else:
        row("failed checks", "none")
    for alert in report.open_alerts[:10]:
        row("open alert" if alert is report.open_alerts[0] else "",
            f"{alert['kind']} {alert['subject']} {alert['partition']} since {alert['since']}"
            f" ({alert['occurrences']} occurrence(s))")
    lines.append("")
    if report.attention:
        lines.append("needs attention:")
        lines.extend(f"  - {item}" for item in report.attention)
    else:
        lines.append("all clear")
    return "\n".join(lines)


def render_completion(completion: dict[str, Any], row: Any) -> None:
    """The "completion webhooks" lines: notices by event and status, what waits, the last error."""
    if completion.get("error"):
        row("completion", f"unknown: {completion['error']}")
        return
    configured = completion.get("configured_endpoints")
    by_event = completion.get("by_event") or {}
    if not by_event:
        row("completion", "no notice yet; " + ("no webhook (VAULT_COMPLETION_WEBHOOK_URLS not set)" if not configured
                                               else f"{configured} endpoint(s) configured"))
        return
    row("completion", f"{completion['delivered']:,} notice(s) delivered, {completion['pending']:,} pending, "
        f"{completion['abandoned']:,} abandoned; {configured or 0} endpoint(s) configured"
        + (f"; oldest pending for {duration(completion['oldest_pending_seconds'])}"
           if completion["oldest_pending_at"] else ""))
    for event, counts in sorted(by_event.items()):
        row("", f"{event}: " + ", ".join(f"{state} {counts[state]:,}" for state in
                                         ("delivered", "pending", "abandoned") if counts.get(state)))
    for fingerprint, entry in sorted(completion["endpoints"].items()):
        state = {True: "", False: " (no longer configured)", None: ""}[entry.get("configured")]
        error = entry.get("last_error")
        row("", f"endpoint {fingerprint}{state}: delivered {entry['delivered']:,}, pending {entry['pending']:,}, "
            f"abandoned {entry['abandoned']:,}" + (f"; last error {error['error']} ({error['event']} "
                                                   f"{error['subject']}, {error['attempts']} attempt(s))"
                                                   if error else ""))
