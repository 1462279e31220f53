"""restore_tracking_db and db_restore_drill: a database backup restored in separate, restartable steps.

fetch_backup -> restore_pre_data -> restore_data -> restore_post_data -> restore_catch_up -> restore_verify
-> restore_notify, each an op, so a failed step is re-executed alone ("Re-execute from failure" in the UI,
docs/backups.md): each step is safe to run again (pre-data is one transaction, data truncates what a killed
attempt loaded, post-data drops what it made, the catch-up resumes from its stored position). What passes
between the steps is small (the backup's manifest entry and the step timings), never a DSN: each step
resolves its target from the resources again, so no password reaches Dagster's storage.

The weekly db_restore_drill runs the same steps into a scratch database (VAULT_DB_RESTORE_DRILL_DATABASE on
the tracking database's server), compares, drops it, and fails (so the run-failure alert fires) on any
difference.
"""

import time
from pathlib import Path
from typing import Any, Literal

import psycopg
from dagster import (
    Config,
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    ScheduleDefinition,
    graph,
    op,
)
from pydantic import Field

from vault_pipeline.backup.catch_up import (
    CatchUpError,
    catch_up,
    journal_consistency,
    journaled_backup,
    start_of,
)
from vault_pipeline.backup.pg_tools import PgToolError
from vault_pipeline.backup.report import items_markdown, kinds_markdown, steps_markdown, totals_by_kind
from vault_pipeline.backup.restore_steps import (
    RestoreError,
    count_rows,
    drop_database,
    ensure_target_database,
    restore_section,
)
from vault_pipeline.backup.store import BackupError, TamperedBackup
from vault_pipeline.journal.chain import ChainState
from vault_pipeline.journal.segments import JournalError
from vault_pipeline.replication.errors import CopyError
from vault_pipeline.resources import (
    ColdSiteResource,
    ReplicationSettingsResource,
    S3SiteResource,
    TrackingDatabaseResource,
)
from vault_pipeline.resources.completion_webhooks import CompletionWebhooksResource
from vault_pipeline.resources.db_backups import DatabaseBackupResource, RestoreTargetMissing, database_name
from vault_pipeline.resources.journal import JournalResource

State = dict[str, Any]
RESTORE_JOB = "restore_tracking_db"
DRILL_JOB = "db_restore_drill"
STEP_ERRORS = (PgToolError, RestoreError, BackupError, CopyError, JournalError, CatchUpError, RestoreTargetMissing,
               psycopg.Error, OSError)


class RestoreConfig(Config):
    backup_id: str = Field(default="latest", description="The backup to restore (an id under "
                           "VAULT_DB_BACKUP_PREFIX, e.g. 20261202T014500Z-1a2b3c4d), or 'latest'.")
    database: Literal["tracking", "dagster"] = Field(
        default="tracking", description="Which dump of the backup: the tracking database or Dagster's.")
    target: Literal["configured", "drill"] = Field(
        default="configured", description="configured: VAULT_RESTORE_DATABASE_URL, else (tracking only) "
        "VAULT_DATABASE_URL's database; drill: the scratch database VAULT_DB_RESTORE_DRILL_DATABASE.")
    replace: bool = Field(default=False, description="Drop and recreate a target that holds tables. Without "
                          "it a restore refuses a non-empty target.")
    jobs: int | None = Field(default=None, ge=1, le=64, description="pg_restore -j; empty = VAULT_PG_RESTORE_JOBS.")
    catch_up: bool = Field(default=True, description="Replay the journal after the backup's head (tracking only).")
    require_journal_entry: bool = Field(
        default=True, description="Refuse a backup the journal does not vouch for (its entries must name the "
        "same versions and SHA-256). Turn off only for a backup whose journal flush failed, after checking it.")
    drop_after: bool = Field(default=False, description="Drop the target once verified (what the drill does).")
    notify: bool = Field(default=True, description="Send the restore_complete completion notice.")


def _target(state: State, db_backups: DatabaseBackupResource, tracking_db: TrackingDatabaseResource) -> str:
    if state["config"]["target"] == "drill":
        return db_backups.drill_target(tracking_db.dsn)
    return db_backups.restore_target(state["database"], tracking_db.dsn)


def _dump_file(context: OpExecutionContext, state: State, db_backups: DatabaseBackupResource,
               cold_site: ColdSiteResource) -> Path:
    """The fetched dump; fetched again (and verified again) when this step runs where it is not, e.g. a
    re-execution on another machine."""
    path = db_backups.spool("restore", state["backup_id"]) / f"{state['database']}.dump"
    if not path.exists() or path.stat().st_size != int(state["entry"]["size"]):
        context.log.info(f"{path} is not here: fetching the backup again")
        db_backups.store(cold_site).fetch(state["entry"], path)
    return path


def _step(context: OpExecutionContext, state: State, name: str, seconds: float, detail: str,
          items: list[dict[str, Any]] | None = None) -> State:
    step = {"step": name, "seconds": round(seconds, 3), "run_id": context.run.run_id, "detail": detail,
            "items": items or []}
    steps = [s for s in state["steps"] if s["step"] != name] + [step]  # a re-executed step replaces its failure
    context.add_output_metadata({
        "step_s": MetadataValue.float(round(seconds, 3)), "detail": MetadataValue.text(detail),
        "steps": MetadataValue.md(steps_markdown(steps)),
        "restore_report": MetadataValue.json({"backup_id": state["backup_id"], "database": state["database"],
                                              "steps": steps}),
        **({"items": MetadataValue.md(items_markdown([step]))} if items else {}),
    })
    return {**state, "steps": steps}


def _section(context: OpExecutionContext, state: State, cold_site: ColdSiteResource,
             tracking_db: TrackingDatabaseResource, db_backups: DatabaseBackupResource, section: str, *,
             jobs: int, prepare: bool = False) -> tuple[Any, str]:
    """One pg_restore section into the target (the dump fetched again if it is not here); with `prepare`, the
    target database is created or taken up again first. (the report, what was said of the target)"""
    path = _dump_file(context, state, db_backups, cold_site)
    target = _target(state, db_backups, tracking_db)
    described = ""
    if prepare:
        # The same id across re-executions of this restore (Dagster's root run): a target this restore already
        # prepared is taken up again; any other non-empty target is refused unless `replace`.
        restore_id = f"{context.run.tags.get('dagster/root_run_id', context.run.run_id)}/{state['backup_id']}"
        described = ensure_target_database(target, replace=bool(state["config"]["replace"]), restore_id=restore_id)
    return restore_section(path, target, section, jobs=jobs, bin_dir=db_backups.bin_dir()), described


def _jobs(state: State, db_backups: DatabaseBackupResource) -> int:
    return int(state["config"]["jobs"] or db_backups.restore_jobs)


def _fail(what: str, exc: BaseException) -> Failure:
    return Failure(description=f"{what}: {exc}", allow_retries=False)


@op(out=Out(dict), tags={"kind": "s3"},
    description="Choose the backup, fetch its dump to the spool (streamed, hashed), and refuse it unless its "
    "bytes hash to the manifest's and the journal's SHA-256 for that version.")
def fetch_backup(context: OpExecutionContext, config: RestoreConfig, cold_site: ColdSiteResource,
                 journal: JournalResource, db_backups: DatabaseBackupResource) -> State:
    started = time.monotonic()
    store = db_backups.store(cold_site)
    try:
        backup_id = store.latest() if config.backup_id == "latest" else config.backup_id
        manifest, stored_manifest = store.manifest(backup_id)
        entry = manifest["databases"].get(config.database)
        if entry is None:
            raise BackupError(f"backup {backup_id} has no {config.database} dump (it has "
                              f"{', '.join(sorted(manifest['databases']))})")
        tracking_entry = manifest["databases"].get("tracking", entry)
        start = start_of(tracking_entry.get("journal") or [], cold_site.bucket)
        vouched = journaled_backup(journal.segment_store(cold_site), start, backup_id)
        problems = []
        for name, expected in ((config.database, entry), ("manifest", stored_manifest.as_dict())):
            got = vouched.get(name)
            if got is None:
                problems.append(f"no journal entry for its {name}")
            elif (got["version_id"], got["sha256"]) != (expected["version_id"], expected["sha256"]):
                raise TamperedBackup(f"backup {backup_id}: the journal recorded its {name} as version "
                                     f"{got['version_id']} with SHA-256 {got['sha256']}, the cold site now gives "
                                     f"version {expected['version_id']} with {expected['sha256']}: refused")
        if problems and config.require_journal_entry:
            raise BackupError(f"backup {backup_id}: {'; '.join(problems)} after seq {start.next_seq - 1}. The "
                              "journal is how a backup is vouched for; if its flush failed, check the backup and "
                              "set require_journal_entry: false")
        for problem in problems:
            context.log.warning(f"backup {backup_id}: {problem} (require_journal_entry is off)")
        state: State = {"config": config.model_dump(), "backup_id": backup_id, "database": config.database,
                        "entry": entry, "manifest": stored_manifest.as_dict(),
                        "journal_start": {"next_seq": start.next_seq, "last_hash": start.last_hash}, "steps": []}
        path = db_backups.spool("restore", backup_id) / f"{config.database}.dump"
        fetch_s = store.fetch(entry, path)
    except TamperedBackup as exc:
        raise Failure(description=f"refused: {exc}", allow_retries=False) from None
    except STEP_ERRORS as exc:
        raise _fail("fetching the backup failed", exc) from None
    mib = int(entry["size"]) / 1048576
    context.log.info(f"backup {backup_id}: {config.database} dump {mib:.1f} MiB fetched and verified in "
                     f"{fetch_s:.1f}s")
    return _step(context, state, "fetch", time.monotonic() - started,
                 f"{backup_id} {config.database}.dump, {mib:.1f} MiB, SHA-256 verified"
                 + ("" if not vouched else ", vouched by the journal"))


@op(out=Out(dict), tags={"kind": "postgres"},
    description="Create the target database (refusing one that holds tables unless replace) and restore the "
    "pre-data section (schemas, tables, types, functions) in one transaction.")
def restore_pre_data(context: OpExecutionContext, state: State, cold_site: ColdSiteResource,
                     tracking_db: TrackingDatabaseResource, db_backups: DatabaseBackupResource) -> State:
    started = time.monotonic()
    try:
        report, described = _section(context, state, cold_site, tracking_db, db_backups, "pre-data", jobs=1,
                                     prepare=True)
    except STEP_ERRORS as exc:
        raise _fail("pre-data failed", exc) from None
    return _step(context, state, "pre-data", time.monotonic() - started,
                 f"{described}; {len(report.items)} item(s)", section_items(report))


@op(out=Out(dict), tags={"kind": "postgres"},
    description="Load the table data with pg_restore -j VAULT_PG_RESTORE_JOBS (tables a killed attempt "
    "loaded are truncated first), then count every table.")
def restore_data(context: OpExecutionContext, state: State, cold_site: ColdSiteResource,
                 tracking_db: TrackingDatabaseResource, db_backups: DatabaseBackupResource) -> State:
    started = time.monotonic()
    jobs = _jobs(state, db_backups)
    try:
        report, _ = _section(context, state, cold_site, tracking_db, db_backups, "data", jobs=jobs)
        counts = count_rows(_target(state, db_backups, tracking_db), sorted(state["entry"]["row_counts"]))
    except STEP_ERRORS as exc:
        raise _fail("data failed", exc) from None
    rows = sum(counts.values())
    state = {**state, "restored_counts": counts}
    return _step(context, state, "data", time.monotonic() - started,
                 f"{rows:,} rows in {len(counts)} tables, -j {jobs}", section_items(report))


@op(out=Out(dict), tags={"kind": "postgres"},
    description="Create constraints, indexes, foreign keys, triggers and row-level security policies "
    "(post-data, -j VAULT_PG_RESTORE_JOBS; what a killed attempt made is dropped and made again).")
def restore_post_data(context: OpExecutionContext, state: State, cold_site: ColdSiteResource,
                      tracking_db: TrackingDatabaseResource, db_backups: DatabaseBackupResource) -> State:
    started = time.monotonic()
    jobs = _jobs(state, db_backups)
    try:
        report, _ = _section(context, state, cold_site, tracking_db, db_backups, "post-data", jobs=jobs)
    except STEP_ERRORS as exc:
        raise _fail("post-data failed", exc) from None
    return _step(context, state, "post-data", time.monotonic() - started, f"{len(report.items)} item(s), -j {jobs}",
                 section_items(report))


@op(out=Out(dict), tags={"kind": "s3"},
    description="Replay the cold site's journal after the backup's head into the restored tracking database "
    "(incremental reconstruction), so it is as current as the storage.")
def restore_catch_up(context: OpExecutionContext, state: State, hot_site: S3SiteResource,
                     cold_site: ColdSiteResource, tracking_db: TrackingDatabaseResource, journal: JournalResource,
                     replication: ReplicationSettingsResource, db_backups: DatabaseBackupResource) -> State:
    started = time.monotonic()
    if state["database"] != "tracking" or not state["config"]["catch_up"]:
        return _step(context, state, "catch-up", 0.0, "skipped (" + (
            "Dagster's database has no journal" if state["database"] != "tracking" else "catch_up: false") + ")")
    try:
        report = catch_up(_target(state, db_backups, tracking_db), journal.segment_store(cold_site),
                          source_bucket=hot_site.bucket, reserved_prefixes=replication.reserved_prefixes)
    except STEP_ERRORS as exc:
        raise _fail("catch-up failed", exc) from None
    rebuild = report.rebuild
    seconds = time.monotonic() - started
    rate = report.entries / seconds if seconds > 0 else 0.0
    detail = (f"{report.entries:,} journal entries from seq {report.start_seq} "
              f"({rate:,.0f}/s), {rebuild.rows_upserted if rebuild else 0:,} rows upserted"
              + (f", {report.outbox_duplicates_dropped} outbox duplicate(s) dropped"
                 if report.outbox_duplicates_dropped else ""))
    context.log.info(f"catch-up: {detail}")
    return _step(context, {**state, "catch_up_entries": report.entries}, "catch-up", seconds, detail)


@op(out=Out(dict), tags={"kind": "postgres"},
    description="Row counts against the backup's manifest (taken in the dump's own snapshot), and the journal: "
    "nothing on the cold site beyond the restored head, every entry since the backup indexed, every copy "
    "since then on its row.")
def restore_verify(context: OpExecutionContext, state: State, cold_site: ColdSiteResource,
                   tracking_db: TrackingDatabaseResource, journal: JournalResource,
                   db_backups: DatabaseBackupResource) -> State:
    started = time.monotonic()
    expected = state["entry"]["row_counts"]
    restored = state.get("restored_counts", {})
    problems = [f"{table}: {restored.get(table)} rows restored, the backup has {n}"
                for table, n in sorted(expected.items()) if restored.get(table) != n]
    detail = f"{len(expected)} tables match the manifest's row counts" if not problems else ""
    if state["database"] == "tracking":
        try:
            start = state["journal_start"]
            consistency = journal_consistency(_target(state, db_backups, tracking_db),
                                              journal.segment_store(cold_site),
                                              ChainState(int(start["next_seq"]), str(start["last_hash"])))
        except STEP_ERRORS as exc:
            raise _fail("verification could not read the journal", exc) from None
        if consistency.storage_ahead:
            problems.append(f"the cold site's journal has {consistency.storage_ahead} beyond the restored head "
                            f"(seq {consistency.head_seq}): the catch-up did not finish")
        if consistency.missing_entries:
            problems.append(f"{consistency.missing_entries} journal entries since the backup are not indexed")
        problems += consistency.row_mismatches[:20]
        detail += (f"; journal head seq {consistency.head_seq}, {consistency.entries_since_backup} entries since "
                   f"the backup, {consistency.rows_checked} copied objects checked on their rows")
    if problems:
        raise Failure(description="the restored database does not match its backup:\n- " + "\n- ".join(problems),
                      metadata={"problems": MetadataValue.md("\n".join(f"- {p}" for p in problems))},
                      allow_retries=False)
    return _step(context, state, "verify", time.monotonic() - started, detail)


@op(out=Out(dict), tags={"kind": "webhook"},
    description="The step-duration report (metadata, and `vault-pipeline db-report RUN_ID`), the drill's clean-up, "
    "and the restore_complete completion notice.")
def restore_notify(context: OpExecutionContext, state: State, tracking_db: TrackingDatabaseResource,
                   db_backups: DatabaseBackupResource, completion_webhooks: CompletionWebhooksResource) -> State:
    started = time.monotonic()
    config = state["config"]
    target = _target(state, db_backups, tracking_db)
    name = database_name(target)
    if config["drop_after"]:
        try:
            drop_database(target)
        except STEP_ERRORS as exc:
            raise _fail("dropping the drill database failed", exc) from None
    path = db_backups.spool("restore", state["backup_id"])
    for leftover in path.glob("*.dump"):
        leftover.unlink(missing_ok=True)
    notified = False
    if config["notify"] and config["target"] != "drill":
        root = context.run.tags.get("dagster/root_run_id", context.run.run_id)
        notified = bool(completion_webhooks.enqueue(tracking_db.store(), "restore_complete", root, {
            "backup_id": state["backup_id"], "database": state["database"], "target_database": name,
            "run_id": context.run.run_id, "root_run_id": root,
            "steps": {s["step"]: s["seconds"] for s in state["steps"]},
            "catch_up_entries": state.get("catch_up_entries", 0)}))
        if notified:  # sent now if the receivers answer; completion_webhook_sensor retries what they did not take
            context.log.info(f"completion notice: {completion_webhooks.deliver(tracking_db.store(), 5.0).summary()}")
    state = _step(context, state, "notify", time.monotonic() - started,
                  ("drill database dropped; " if config["drop_after"] else "")
                  + ("completion notice queued" if notified else "no completion notice"))
    steps = state["steps"]
    totals = totals_by_kind(steps)
    context.add_output_metadata({
        "total_s": MetadataValue.float(round(sum(s["seconds"] for s in steps), 3)),
        **{f"step_{s['step'].replace('-', '_')}_s": MetadataValue.float(s["seconds"]) for s in steps},
        **{f"items_{k.lower().replace(' ', '_')}_s": MetadataValue.float(round(t["seconds"], 3))
           for k, t in totals.items()},
        "items_by_kind": MetadataValue.md(kinds_markdown(steps)),
        "slowest_items": MetadataValue.md(items_markdown(steps)),
        "target_database": MetadataValue.text(name),
    })
    return state


def section_items(report: Any) -> list[dict[str, Any]]:
    return [{"kind": item.kind, "name": item.name, "seconds": round(item.seconds, 4)} for item in report.items]


@graph
def restore_steps() -> Any:
    return restore_notify(restore_verify(restore_catch_up(restore_post_data(restore_data(
        restore_pre_data(fetch_backup()))))))


restore_tracking_db_job = restore_steps.to_job(
    name=RESTORE_JOB,
    description="Restore a backup of the tracking database (or Dagster's) step by step: fetch and verify, "
    "pre-data, data (parallel), post-data, journal catch-up, verify, notify. A failed step is re-executed "
    "alone: 'Re-execute from failure' (docs/backups.md).",
    tags={"vault/kind": "db-restore"},
)

db_restore_drill_job = restore_steps.to_job(
    name=DRILL_JOB,
    description="Weekly: the latest backup restored into a scratch database, caught up, compared with its "
    "manifest and the journal, then dropped. A failure raises the run-failure alert.",
    config={"ops": {"fetch_backup": {"config": {"target": "drill", "replace": True, "drop_after": True,
                                                  "notify": False}}}},
    tags={"vault/kind": "db-restore-drill"},
)


def build_db_restore_drill_schedule(cron: str) -> ScheduleDefinition:
    return ScheduleDefinition(name="db_restore_drill_schedule", job=db_restore_drill_job, cron_schedule=cron,
                              execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING)
