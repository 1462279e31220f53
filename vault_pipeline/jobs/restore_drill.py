"""restore_drill_job and its weekly schedule: the thin Dagster layer over retrieval/drills.py.

One op runs both phases: it samples and requests restores (phase 1), then reads back every pending item
of every drill that is readable (phase 2), polling for up to `wait_seconds` for servers that restore
quickly. A Bulk restore from Deep Archive takes up to 48 h, so on AWS the weekly run usually ends with
items still restoring; `restore_drill_followup_sensor` (sensors/restore_drill.py) launches a run with
`sample_size: 0` while items are pending, which finishes them. A run fails, with a markdown table of the
items concerned, when any item it finished is a mismatch or failed: each failure is reported once, by the
run that found it.
"""


import time
from typing import Any

from dagster import (
    Config,
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from vault_pipeline.assets.reporting import human_bytes
from vault_pipeline.replication.report import md_escape
from vault_pipeline.resources import ColdSiteResource, S3SiteResource, TrackingDatabaseResource
from vault_pipeline.resources.restore_drill import RestoreDrillResource
from vault_pipeline.retrieval.drills import ItemOutcome, RestoreDrill, StepReport

DRILL_OP = "restore_drill"
MiB = 1024 * 1024


class RestoreDrillConfig(Config):
    sample_size: int | None = Field(
        default=None, ge=0, le=100_000,
        description="Objects to sample for a new drill; empty = VAULT_RESTORE_DRILL_SAMPLE_SIZE. 0 starts no new "
        "drill and only finishes pending items (what the follow-up sensor does).",
    )
    tier: str | None = Field(
        default=None, description="Restore tier (Bulk, Standard, Expedited); empty = VAULT_RESTORE_DRILL_TIER. "
        "Deep Archive refuses Expedited.")
    wait_seconds: float = Field(
        default=0.0, ge=0, le=86_400,
        description="Keep polling pending items for up to this long within the run (servers that restore "
        "quickly); 0 = one pass, the follow-up sensor finishes the rest.")
    poll_interval_seconds: float = Field(default=30.0, ge=0.1, le=3600, description="Pause between passes.")
    restore_days: int = Field(
        default=7, ge=1, le=30,
        description="Days a restored copy stays readable; it must outlive the gap until a run reads it.")
    exclude_recent_days: int = Field(
        default=90, ge=0, le=36_500, description="Object versions drilled within this many days are not sampled.")
    read_concurrency: int = Field(default=4, ge=1, le=64, description="Objects read back at once.")
    chunk_size_mb: int = Field(default=1, ge=1, le=64,
                               description="Read chunk (MiB); memory = chunk x read_concurrency.")


@op(
    name=DRILL_OP,
    out=Out(Nothing),
    description="Sample replicated objects, restore them from the cold site, read them back and re-hash them.",
    tags={"kind": "s3"},
)
def restore_drill_op(
    context: OpExecutionContext,
    config: RestoreDrillConfig,
    hot_site: S3SiteResource,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
    restore_drill: RestoreDrillResource,
) -> Any:
    settings = restore_drill.drill_settings(
        tier=config.tier, restore_days=config.restore_days, exclude_recent_days=config.exclude_recent_days,
        read_concurrency=config.read_concurrency, chunk_size_mb=config.chunk_size_mb,
    )
    drill = RestoreDrill(store=tracking_db.store(), cold=cold_site.client(), cold_bucket=cold_site.bucket,
                         source_bucket=hot_site.bucket, settings=settings)
    sample_size = restore_drill.sample_size if config.sample_size is None else config.sample_size
    run_id = context.run.run_id
    started = time.monotonic()
    with drill.exclusive() as acquired:
        if not acquired:
            # Another drill run holds this bucket; it does the same work, and a run that fails here would
            # raise an alert about nothing.
            context.log.warning(f"another restore drill is running on {cold_site.bucket}; nothing done")
            yield Output(None, metadata={"skipped": MetadataValue.bool(True)})
            return
        phase1 = drill.start(sample_size, run_id=run_id)
        if phase1.drill_id:
            context.log.info(
                f"drill {phase1.drill_id}: sampled {len(phase1.outcomes)} object(s), "
                f"{_count(phase1.outcomes, restore_required=True)} restore(s) requested, "
                f"{_count(phase1.outcomes, restore_required=False)} readable without restore")
        elif sample_size:
            context.log.info("no replicated object left to sample (all drilled recently, or none yet)")
        finished: dict[int, ItemOutcome] = {o.item_id: o for o in phase1.outcomes if o.final}
        last = StepReport()
        bytes_read, read_wall = 0, 0.0
        while True:
            last = drill.advance(run_id=run_id, progress=lambda o: _log(context, o))
            finished.update((o.item_id, o) for o in last.outcomes if o.final)
            bytes_read += last.bytes_read
            read_wall += last.read_wall_seconds
            remaining = config.wait_seconds - (time.monotonic() - started)
            if not last.pending or remaining <= 0:
                break
            context.log.info(f"{len(last.pending)} item(s) still restoring; next look in "
                             f"{min(config.poll_interval_seconds, remaining):.0f} s")
            time.sleep(min(config.poll_interval_seconds, remaining))

    results = list(finished.values())
    bad = [o for o in results if o.state in ("mismatch", "failed")]
    metadata = {
        "drill_id": MetadataValue.text(phase1.drill_id or "-"),
        "sampled": MetadataValue.int(len(phase1.outcomes)),
        "restores_requested": MetadataValue.int(_count(phase1.outcomes, restore_required=True)),
        "read_without_restore": MetadataValue.int(_count(phase1.outcomes, restore_required=False)),
        "verified": MetadataValue.int(sum(o.state == "verified" for o in results)),
        "mismatched": MetadataValue.int(sum(o.state == "mismatch" for o in results)),
        "failed": MetadataValue.int(sum(o.state == "failed" for o in results)),
        "still_restoring": MetadataValue.int(len(last.pending)),
        "bytes_rehashed": MetadataValue.int(bytes_read),
        "mib_per_s": MetadataValue.float(round(bytes_read / MiB / read_wall, 2) if read_wall > 0 else 0.0),
        "duration_s": MetadataValue.float(round(time.monotonic() - started, 3)),
        "tier": MetadataValue.text(settings.tier),
        "results": MetadataValue.md(results_table(results, last.pending)),
    }
    if bad:
        raise Failure(
            description=f"restore drill: {sum(o.state == 'mismatch' for o in bad)} mismatch(es) and "
            f"{sum(o.state == 'failed' for o in bad)} failure(s). First: {bad[0].key!r}: {bad[0].detail}",
            metadata={**metadata, "problems": MetadataValue.md(results_table(bad, []))},
            allow_retries=False,
        )
    yield Output(None, metadata=metadata)


def _count(outcomes: list[ItemOutcome], *, restore_required: bool) -> int:
    return sum(1 for o in outcomes if o.restore_required is restore_required)


def _log(context: OpExecutionContext, outcome: ItemOutcome) -> None:
    if outcome.state in ("mismatch", "failed"):
        context.log.error(f"{outcome.state.upper()} {outcome.key!r} ({outcome.version_id}): {outcome.detail}")
    elif outcome.state == "verified":
        context.log.info(f"verified {outcome.key!r} ({outcome.version_id}), {human_bytes(outcome.bytes_read)}")


def results_table(results: list[ItemOutcome], pending: list[ItemOutcome], limit: int = 50) -> str:
    """Problems first, then the rest; pending items last with their restore status."""
    if not results and not pending:
        return "Nothing drilled in this run."
    order = {"mismatch": 0, "failed": 1, "verified": 2}
    rows = sorted(results, key=lambda o: (order.get(o.state, 3), o.key)) + pending
    lines = ["| object key | cold version | result | restored | bytes | detail |", "|---|---|---|---|---|---|"]
    for o in rows[:limit]:
        restored = {True: "yes", False: "not needed"}.get(o.restore_required, "?")  # type: ignore[arg-type]
        detail = o.detail if o.state != "verified" else ""
        lines.append(f"| `{md_escape(o.key)}` | `{md_escape(o.version_id)}` | {o.state} | {restored} | "
                     f"{human_bytes(o.bytes_read) if o.bytes_read else ''} | {md_escape(detail)[:300]} |")
    if len(rows) > limit:
        lines.append(f"| ... {len(rows) - limit} more | | | | | |")
    return "\n".join(lines)


@job(
    name="restore_drill_job",
    description="Restore a random sample of cold objects (Bulk tier by default), read them back and re-hash "
    "them; finishes the pending items of earlier drills. Results in vault_secure.restore_drills.",
    tags={"vault/kind": "restore-drill"},
)
def restore_drill_job() -> None:
    restore_drill_op()


def build_restore_drill_schedule(cron: str) -> ScheduleDefinition:
    """Weekly by default (VAULT_RESTORE_DRILL_CRON, UTC). Running by default: a drill nobody turned on
    proves nothing."""
    return ScheduleDefinition(
        name="restore_drill_schedule",
        job=restore_drill_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Starts a restore drill with the configured sample size and tier.",
    )
