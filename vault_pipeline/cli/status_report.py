"""The replication status at a glance, for `vault-pipeline status`: what the database knows, what Dagster
shows, and what needs a human.

From PostgreSQL (read-only, a handful of aggregate queries that use the status and day indexes):
counts and bytes by status and by document type, the backlog, the oldest object still waiting and how
long it has waited, how long recent copies took, the failed rows, the last verification of each recent
day and the days whose verification is overdue, the open alerts, and the completion webhooks' notices
(by event and status, the oldest pending, the last error; endpoints by fingerprint, never their URL).

From Dagster, through the webserver's GraphQL API when it answers: the state and last tick of
`hot_bucket_sensor` and the latest evaluation of every check of `cold_copies`, per day. When Dagster does
not answer, the report says so and falls back on the open check alerts the alert sensors recorded.

Plain Python: no Dagster imports.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from psycopg.rows import dict_row

from vault_pipeline.alerting.completion import summary as completion_summary
from vault_pipeline.dagster_api import DagsterApi, DagsterApiError
from vault_pipeline.replication.tracking.file_transfers import counts_by_status

SENSOR = "hot_bucket_sensor"
CHECKED_ASSET = "cold_copies"
RECENT_DAYS = 7  # days listed with their last verification
CHECK_HISTORY = 500  # evaluations read per check (newest first) to find each day's latest
FAILED_ROWS_SHOWN = 10
BACKUP_STALE_SECONDS = 2 * 86400  # a daily backup missed twice needs a look
COMPLETION_PENDING_WARN_SECONDS = 3600  # a completion notice pending longer than this needs a look


@dataclass
class StatusReport:
    generated_at: str
    source_bucket: str | None
    by_status: dict[str, dict[str, int]]
    by_document_type: dict[str, dict[str, int]]
    backlog: dict[str, int]
    oldest_waiting: dict[str, Any] | None
    recent_copies: dict[str, Any]
    failed_rows: dict[str, Any]
    verification: dict[str, Any]
    open_alerts: list[dict[str, Any]]
    dagster: dict[str, Any]
    failed_checks: list[dict[str, Any]]
    cluster: dict[str, Any] = field(default_factory=lambda: {"configured": False})
    sftp: dict[str, Any] = field(default_factory=dict)
    completion: dict[str, Any] = field(default_factory=dict)
    backups: dict[str, Any] = field(default_factory=dict)
    attention: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False, ensure_ascii=False, default=str)


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds") if moment else None


def _bucket_filter(source_bucket: str | None) -> tuple[str, list[Any]]:
    return ("bucket_source = %s", [source_bucket]) if source_bucket else ("TRUE", [])


def database_status(conn: Any, source_bucket: str | None, *, period_days: int,
                    recent_days: int = RECENT_DAYS) -> dict[str, Any]:
    """Everything the tracking database says; `conn` is a psycopg connection."""
    where, params = _bucket_filter(source_bucket)
    cur = conn.cursor(row_factory=dict_row)
    now = cur.execute("SELECT now() AS now").fetchone()["now"]

    by_status: dict[str, dict[str, int]] = {}
    by_type: dict[str, dict[str, int]] = {}
    last_copy: dt.datetime | None = None
    for row in cur.execute(
        f"SELECT status, COALESCE(document_type, 'unclassified') AS document_type, count(*) AS objects,"
        f" COALESCE(sum(ovh_size), 0) AS bytes, max(replicated_at) AS last_copy"
        f" FROM vault_secure.replication_status WHERE {where} GROUP BY 1, 2", params,
    ):
        if row["last_copy"] is not None and (last_copy is None or row["last_copy"] > last_copy):
            last_copy = row["last_copy"]
        totals = by_status.setdefault(row["status"], {"objects": 0, "bytes": 0})
        totals["objects"] += row["objects"]
        totals["bytes"] += int(row["bytes"])
        counts = by_type.setdefault(row["document_type"], {})
        counts[row["status"]] = counts.get(row["status"], 0) + row["objects"]
    backlog = {name: sum(by_status.get(s, {}).get(name, 0) for s in ("pending", "in_progress"))
               for name in ("objects", "bytes")}

    oldest = cur.execute(
        f"SELECT s3_key, status, partition_day, source_last_modified, created_at, retry_count"
        f" FROM vault_secure.replication_status WHERE {where} AND status IN ('pending', 'in_progress')"
        " ORDER BY source_last_modified, id LIMIT 1", params,
    ).fetchone()
    oldest_waiting = None
    if oldest:
        oldest_waiting = {
            "s3_key": oldest["s3_key"], "status": oldest["status"], "day": oldest["partition_day"].isoformat(),
            "uploaded_at": _iso(oldest["source_last_modified"]), "registered_at": _iso(oldest["created_at"]),
            "waiting_seconds": round((now - oldest["source_last_modified"]).total_seconds(), 1),
        }

    recent = cur.execute(
        f"SELECT count(*) AS copies, max(replicated_at) AS last_at,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM replicated_at - source_last_modified))"
        " AS p50, percentile_cont(0.95) WITHIN GROUP"
        " (ORDER BY extract(epoch FROM replicated_at - source_last_modified)) AS p95,"
        " max(extract(epoch FROM replicated_at - source_last_modified)) AS max"
        f" FROM vault_secure.replication_status WHERE {where} AND status = 'replicated'"
        " AND replicated_at > now() - interval '24 hours'", params,
    ).fetchone()
    recent_copies = {
        "window_hours": 24, "copies": recent["copies"],
        **{f"lag_{name}_seconds": (round(float(recent[name]), 1) if recent[name] is not None else None)
           for name in ("p50", "p95", "max")},
        "last_replicated_at": _iso(last_copy),
    }

    failed_days = cur.execute(
        f"SELECT partition_day, count(*) AS n FROM vault_secure.replication_status WHERE {where}"
        " AND status = 'failed' GROUP BY 1 ORDER BY 1", params,
    ).fetchall()
    failed_examples = cur.execute(
        f"SELECT s3_key, partition_day, retry_count, error_message, failed_at"
        f" FROM vault_secure.replication_status WHERE {where} AND status = 'failed'"
        " ORDER BY failed_at DESC NULLS LAST, id LIMIT %s", [*params, FAILED_ROWS_SHOWN],
    ).fetchall()
    gone = cur.execute(
        f"SELECT count(*) AS n FROM vault_secure.replication_status WHERE {where} AND status = 'failed'"
        " AND hot_missing_at IS NOT NULL", params,
    ).fetchone()["n"]
    failed_rows = {
        "objects": by_status.get("failed", {}).get("objects", 0),
        "hot_gone": int(gone),  # deleted from the hot site before their copy: not retried until listed again
        "days": {r["partition_day"].isoformat(): r["n"] for r in failed_days},
        "latest": [{"s3_key": r["s3_key"], "day": r["partition_day"].isoformat(), "attempts": r["retry_count"],
                    "error": r["error_message"], "failed_at": _iso(r["failed_at"])} for r in failed_examples],
    }

    # The latest verification of every day that has copies. The rolling schedule re-verifies each day
    # within the period, so a day is overdue once its last verification, or its first copy if it never
    # had one, is older than the period.
    days = cur.execute(
        f"""
        SELECT d.partition_day, d.first_copy, v.verified_at, v.objects, v.ok, v.run_id
        FROM (SELECT partition_day, min(replicated_at) AS first_copy FROM vault_secure.replication_status
              WHERE {where} AND status = 'replicated' GROUP BY partition_day) d
        LEFT JOIN LATERAL (
            SELECT verified_at, objects, ok, run_id FROM vault_secure.verification_reports r
            WHERE r.partition_day = d.partition_day ORDER BY verified_at DESC LIMIT 1
        ) v ON TRUE
        ORDER BY d.partition_day DESC
        """, params,
    ).fetchall()
    cutoff = now - dt.timedelta(days=period_days)
    overdue = [r for r in days if (r["verified_at"] or r["first_copy"]) < cutoff]
    verification = {
        "period_days": period_days,
        "days_with_copies": len(days),
        "overdue_days": len(overdue),
        "never_verified_days": sum(1 for r in days if r["verified_at"] is None),
        "oldest_overdue_day": min((r["partition_day"] for r in overdue), default=None),
        "recent": [{"day": r["partition_day"].isoformat(), "verified_at": _iso(r["verified_at"]),
                    "objects": r["objects"], "ok": r["ok"], "run_id": r["run_id"]} for r in days[:recent_days]],
    }
    if verification["oldest_overdue_day"] is not None:
        verification["oldest_overdue_day"] = verification["oldest_overdue_day"].isoformat()

    alerts = cur.execute(
        "SELECT kind, subject, partition_key, first_seen_at, last_seen_at, occurrences, last_run_id, last_payload"
        " FROM vault_secure.alerts WHERE state = 'open' ORDER BY first_seen_at",
    ).fetchall()
    open_alerts = [{
        "kind": a["kind"], "subject": a["subject"], "partition": a["partition_key"],
        "since": _iso(a["first_seen_at"]), "last_seen": _iso(a["last_seen_at"]), "occurrences": a["occurrences"],
        "run_id": a["last_run_id"], "failing_keys": list((a["last_payload"] or {}).get("failing_keys") or []),
    } for a in alerts]
    return {"now": now, "by_status": by_status, "by_document_type": by_type, "backlog": backlog,
            "oldest_waiting": oldest_waiting, "recent_copies": recent_copies, "failed_rows": failed_rows,
            "verification": verification, "open_alerts": open_alerts}


def _check_failures(api: DagsterApi) -> list[dict[str, Any]]:
    """The latest evaluation of each (check, day) of cold_copies that did not pass, newest first."""
    failed = []
    for check in api.asset_check_names(CHECKED_ASSET):
        latest: dict[str | None, dict[str, Any]] = {}
        for execution in api.asset_check_executions(CHECKED_ASSET, check, limit=CHECK_HISTORY):
            latest.setdefault(execution["partition"], execution)  # newest first: keep the first seen
        for partition, execution in latest.items():
            evaluation = execution.get("evaluation") or {}
            if execution["status"] in ("SUCCEEDED", "IN_PROGRESS", "SKIPPED"):
                continue
            metadata = {m["label"]: m for m in evaluation.get("metadataEntries") or []}
            keys_entry = metadata.get("failing_keys", {})
            try:
                keys = json.loads(keys_entry.get("jsonString") or "[]")
            except ValueError:
                keys = []
            failed.append({
                "check": f"{CHECKED_ASSET}:{check}", "day": partition, "status": execution["status"],
                "description": evaluation.get("description"), "failing_keys": keys,
                "run_id": execution["runId"],
                "at": _iso(dt.datetime.fromtimestamp(execution["timestamp"], dt.UTC)),
            })
    return sorted(failed, key=lambda f: (f["day"] or "", f["check"]), reverse=True)


def dagster_status(api: DagsterApi) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """(sensor and webserver facts, failed checks) or ({"error": ...}, None) when Dagster does not answer."""
    try:
        sensor = api.sensor(SENSOR, tick_limit=5)
        # The newest finished tick: the newest may still be running.
        tick = next((t for t in sensor["ticks"] if t["status"] != "STARTED"), None)
        ticking = bool(sensor["ticks"]) and sensor["ticks"][0]["status"] == "STARTED"
        last_run = next(iter(api.runs("replication_job", limit=1)), None)
        checks = _check_failures(api)
    except DagsterApiError as exc:
        return {"url": api.base_url, "error": str(exc)}, None
    return {
        "url": api.base_url,
        "sensor": {
            "name": SENSOR, "status": sensor["status"], "interval_seconds": sensor["minIntervalSeconds"],
            "ticking_now": ticking,
            "last_tick": None if tick is None else {
                "at": _iso(dt.datetime.fromtimestamp(tick["timestamp"], dt.UTC)), "status": tick["status"],
                "runs_requested": len(tick["runIds"] or []), "skip_reason": tick["skipReason"],
                "error": (tick.get("error") or {}).get("message"),
            },
        },
        "last_replication_run": None if last_run is None else {
            "run_id": last_run["runId"], "status": last_run["status"],
            "partition": last_run["tags"].get("dagster/partition"),
            "created_at": _iso(dt.datetime.fromtimestamp(last_run["creationTime"], dt.UTC)),
        },
    }, checks


def sftp_status(conn: Any) -> dict[str, Any]:
    """vault_secure.file_transfer_log summed up: files and bytes by status, the last 24 hours' transfers and
    their per-phase throughput, the latest failures."""
    by_status = counts_by_status(conn)
    files, total, download, upload, wall = conn.execute(
        "SELECT count(*), COALESCE(sum(file_size), 0), COALESCE(sum(download_duration), 0),"
        " COALESCE(sum(upload_duration), 0), EXTRACT(EPOCH FROM max(transfer_end_time) - min(transfer_start_time))"
        " FROM vault_secure.file_transfer_log WHERE status = 'COMPLETED'"
        " AND transfer_end_time > now() - interval '24 hours'").fetchone()
    failures = [{"inbox": inbox, "filename": name, "error": error, "retried": bool(retry), "attempts": int(attempts)}
                for inbox, name, error, retry, attempts in conn.execute(
                    "SELECT inbox, filename, COALESCE(error_message, ''), retryable, attempts"
                    " FROM vault_secure.file_transfer_log WHERE status = 'FAILED' ORDER BY updated_at DESC LIMIT 5")]
    mib = float(total) / 1024 / 1024
    return {
        "by_status": by_status,
        "last_24h": {"files": int(files), "bytes": int(total),
                     "download_mb_per_s": round(mib / float(download), 2) if download else None,
                     "upload_mb_per_s": round(mib / float(upload), 2) if upload else None,
                     "first_to_last_seconds": float(wall) if wall is not None else None},
        "latest_failures": failures,
    }


def backup_status(conn: Any) -> dict[str, Any]:
    """The latest tracking-database backups, from their journal entries (a backup journals its manifest last):
    id, when, the journal head it holds, and the size of its dumps."""
    # A sequenced entry keeps its body in `entry` (migration 016 empties `fields`); the partial index of
    # migration 020 makes this a lookup however long the journal.
    found = conn.execute(
        """
        WITH b AS (SELECT created_at, COALESCE(entry, fields) AS f FROM vault_secure.journal_entries
                   WHERE action = 'backup')
        SELECT m.f->>'backup_id', m.created_at, (m.f->>'journal_next_seq')::bigint,
               (SELECT COALESCE(sum((d.f->>'size')::bigint), 0) FROM b d
                WHERE d.f->>'backup_id' = m.f->>'backup_id' AND d.f->>'database' <> 'manifest'),
               count(*) OVER ()
        FROM b m WHERE m.f->>'database' = 'manifest'
        ORDER BY m.created_at DESC LIMIT 3""").fetchall()
    latest = [{"backup_id": backup_id, "at": _iso(at), "journal_head_seq": int(head or 1) - 1, "bytes": int(size)}
              for backup_id, at, head, size, _ in found]
    return {"latest": latest, "count": int(found[0][4]) if found else 0}


def completion_status(conn: Any, configured_endpoints: list[str] | None) -> dict[str, Any]:
    """vault_secure.completion_notices summed up (alerting/completion.py `summary`): by event and status, the
    oldest pending, the last error, per endpoint fingerprint. Never a URL. `configured_endpoints`: the
    fingerprints of VAULT_COMPLETION_WEBHOOK_URLS here (None: unknown)."""
    if conn.execute("SELECT to_regclass('vault_secure.completion_notices')").fetchone()[0] is None:
        return {"error": "vault_secure.completion_notices does not exist yet (migration 019 not applied)"}
    return {"configured_endpoints": len(configured_endpoints) if configured_endpoints is not None else None,
            **completion_summary(conn, configured=configured_endpoints)}


def _completion_attention(completion: dict[str, Any]) -> list[str]:
    lines = []
    if completion.get("abandoned"):
        lines.append(f"{completion['abandoned']} completion notice(s) abandoned after the last attempt (see "
                     "vault_secure.completion_notices): the receiver never got them")
    orphaned = {fp: e["pending"] for fp, e in completion.get("endpoints", {}).items()
                if e["pending"] and e.get("configured") is False}
    if orphaned:
        lines.append(f"{sum(orphaned.values())} completion notice(s) pending for endpoint(s) no longer in "
                     f"VAULT_COMPLETION_WEBHOOK_URLS ({', '.join(sorted(orphaned))}): they are not sent")
    age = completion.get("oldest_pending_seconds")
    if age is not None and age > COMPLETION_PENDING_WARN_SECONDS:
        error = (completion.get("last_error") or {}).get("error")
        lines.append(f"a completion notice has been pending {age / 3600:.1f} h" + (f" (last error: {error})"
                                                                                   if error else ""))
    return lines


def needs_attention(report: StatusReport, *, now: dt.datetime, sensor_interval_seconds: float) -> list[str]:
    """One line per thing a human should look at; empty when all is well."""
    lines = []
    failed = report.failed_rows["objects"]
    if failed:
        days = sorted(report.failed_rows["days"])
        gone = report.failed_rows.get("hot_gone", 0)
        lines.append(f"{failed} failed object(s) on {len(days)} day(s) ({', '.join(days[:5])}"
                     f"{', ...' if len(days) > 5 else ''}): `vault-pipeline retry-failed`"
                     + (f"; {gone} of them deleted from the hot site before their copy (never archived, not "
                        "retried until uploaded again)" if gone else ""))
    for check in report.failed_checks:
        keys = ", ".join(check["failing_keys"][:3]) or "see the check's metadata"
        lines.append(f"check {check['check']} failed for {check['day']}: {keys}")
    if report.verification["overdue_days"]:
        lines.append(f"{report.verification['overdue_days']} day(s) not verified within "
                     f"{report.verification['period_days']} days (oldest {report.verification['oldest_overdue_day']})")
    dagster = report.dagster
    if "error" in dagster:
        lines.append(f"Dagster does not answer at {dagster['url']}: sensor and checks unknown")
    else:
        sensor = dagster["sensor"]
        tick = sensor["last_tick"]
        if sensor["status"] != "RUNNING":
            lines.append(f"{SENSOR} is {sensor['status']}: new documents are not noticed")
        elif tick is None:
            lines.append(f"{SENSOR} has not ticked yet")
        else:
            age = (now - dt.datetime.fromisoformat(tick["at"])).total_seconds()
            if tick["status"] == "FAILURE":
                lines.append(f"{SENSOR}'s last tick failed: {tick['error']}")
            if age > max(3 * sensor_interval_seconds, 120):
                lines.append(f"{SENSOR} last ticked {age:.0f} s ago (interval {sensor_interval_seconds:.0f} s): "
                             "is the Dagster daemon running?")
    cluster = report.cluster
    if cluster.get("configured"):
        if cluster.get("error"):
            lines.append(f"Celery cluster: {cluster['error']}: no run can be launched")
        elif not cluster["workers"]:
            lines.append(f"Celery cluster: no worker answers on queue {cluster['queue']!r}: launched runs wait"
                         + (f" ({cluster['queued_runs']} queued)" if cluster.get("queued_runs") else ""))
    failed_files = report.sftp.get("by_status", {}).get("FAILED", {}).get("files", 0)
    if failed_files:
        lines.append(f"{failed_files} SFTP file(s) FAILED in vault_secure.file_transfer_log (each with its reason): "
                     "fix the cause, then deliver the file again (or touch it) to transfer it")
    lines.extend(_completion_attention(report.completion))
    latest_backup = (report.backups.get("latest") or [None])[0]
    # None yet is not flagged: a new vault has its first one at VAULT_DB_BACKUP_CRON (the text shows "none yet").
    backup_age = (now - dt.datetime.fromisoformat(latest_backup["at"])).total_seconds() if latest_backup else 0.0
    if backup_age > BACKUP_STALE_SECONDS:
        lines.append(f"the latest tracking-database backup ({latest_backup['backup_id']}) is more than 2 days old: "
                     "see tracking_db_backup's runs")
    waiting = report.oldest_waiting
    if waiting and waiting["waiting_seconds"] > max(10 * sensor_interval_seconds, 3600):
        hours = waiting["waiting_seconds"] / 3600
        lines.append(f"oldest waiting object {waiting['s3_key']!r} has waited {hours:.1f} h")
    return lines


def collect_status(conn: Any, api: DagsterApi | None, *, source_bucket: str | None, period_days: int,
                   sensor_interval_seconds: float, recent_days: int = RECENT_DAYS,
                   cluster: dict[str, Any] | None = None,
                   completion_endpoints: list[str] | None = None) -> StatusReport:
    db = database_status(conn, source_bucket, period_days=period_days, recent_days=recent_days)
    if api is None:
        dagster, checks = {"url": None, "error": "no Dagster URL configured (VAULT_DAGSTER_URL)"}, None
    else:
        dagster, checks = dagster_status(api)
    if checks is None:  # Dagster unknown: the alert sensors' record of failed checks is the next best thing
        checks = [{"check": a["subject"], "day": a["partition"], "status": "OPEN_ALERT", "description": None,
                   "failing_keys": a["failing_keys"], "run_id": a["run_id"], "at": a["last_seen"]}
                  for a in db["open_alerts"] if a["kind"] == "check"]
    report = StatusReport(
        generated_at=_iso(db["now"]) or "", source_bucket=source_bucket, by_status=db["by_status"],
        by_document_type=db["by_document_type"], backlog=db["backlog"], oldest_waiting=db["oldest_waiting"],
        recent_copies=db["recent_copies"], failed_rows=db["failed_rows"], verification=db["verification"],
        open_alerts=db["open_alerts"], dagster=dagster, failed_checks=checks,
        cluster=cluster or {"configured": False}, sftp=sftp_status(conn),
        completion=completion_status(conn, completion_endpoints), backups=backup_status(conn),
    )
    report.attention = needs_attention(report, now=db["now"], sensor_interval_seconds=sensor_interval_seconds)
    return report
