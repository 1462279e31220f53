"""Flushing the write journal at the end of every asset that writes to the cold site."""


from typing import Any

from dagster import AssetExecutionContext, Failure, MetadataValue

from vault_pipeline.journal.segments import JournalError
from vault_pipeline.replication.errors import describe_s3_error
from vault_pipeline.resources.journal import JournalResource
from vault_pipeline.resources.s3_sites import ColdSiteResource
from vault_pipeline.resources.tracking_db import TrackingDatabaseResource


def flush_journal(context: AssetExecutionContext, journal: JournalResource, cold_site: ColdSiteResource,
                  tracking_db: TrackingDatabaseResource) -> dict[str, Any]:
    """Write this run's journal entries (and any left by a crashed run) to the cold site.

    A failure here loses nothing (the entries wait in the outbox and the next flush writes them) but it
    fails the step loudly: a vault whose journal lags is not one whose database can be rebuilt."""
    try:
        result = journal.writer(cold_site, tracking_db).flush(run_id=context.run.run_id)
    except JournalError as exc:
        raise Failure(description=f"write journal: {exc}", allow_retries=False) from None
    except Exception as exc:
        text, _ = describe_s3_error(exc)
        raise Failure(description=f"write journal flush failed ({text}); the entries stay in the outbox and "
                      "the next run writes them") from None
    if result.repaired_rows or result.resumed_segments:
        context.log.warning(f"journal repair: {result.repaired_rows} replicated row(s) journaled late, "
                            f"{result.resumed_segments} segment(s) left by an interrupted flush completed")
    return {
        "journal_entries_written": MetadataValue.int(result.entries),
        "journal_segments_written": MetadataValue.int(len(result.segments)),
        "journal_rows_repaired": MetadataValue.int(result.repaired_rows),
        "journal_segments_resumed": MetadataValue.int(result.resumed_segments),
        "journal_next_seq": MetadataValue.int(result.next_seq),
    }
