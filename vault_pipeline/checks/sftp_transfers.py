"""The checks on sftp_transfers, partition-aware: files the intake could not take (a warning: each has its
reason in the transfer log and never stops the others), and the end-to-end fixity of the SFTP path (an
error): each file transferred that day whose hot object is replicated has a cold copy with the very SHA-256
taken while it was read from the SFTP server."""


import datetime as dt
from collections.abc import Iterator

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from vault_pipeline.assets.sftp import sftp_transfers
from vault_pipeline.partitions import daily_partitions
from vault_pipeline.replication.report import md_escape
from vault_pipeline.resources import TrackingDatabaseResource
from vault_pipeline.resources.sftp_inbox import SftpInboxResource

FAILED_FILES = "no_failed_sftp_files"
FIXITY = "intake_sha256_matches_cold_copy"
SPECS = [
    AssetCheckSpec(FAILED_FILES, asset=sftp_transfers, partitions_def=daily_partitions,
                   description="No file of the inbox is FAILED in vault_secure.file_transfer_log (a symlink, a file "
                   "that vanished or changed, permission denied...). A warning: each failure is recorded with its "
                   "reason."),
    AssetCheckSpec(FIXITY, asset=sftp_transfers, partitions_def=daily_partitions,
                   description="For the day's transferred files whose hot object is replicated: the cold copy's "
                   "SHA-256 equals the one computed while the file was read from the SFTP server."),
]


@multi_asset_check(specs=SPECS, name="sftp_transfers_checks", can_subset=True,
                   description="The SFTP intake's failures and its end-to-end fixity, for the day.")
def sftp_transfers_checks(context: AssetCheckExecutionContext, sftp_inbox: SftpInboxResource,
                          tracking_db: TrackingDatabaseResource) -> Iterator[AssetCheckResult]:
    selected = {key.name for key in context.selected_asset_check_keys}
    if not sftp_inbox.configured:
        for name in selected:
            yield AssetCheckResult(check_name=name, passed=True, metadata={"configured": MetadataValue.bool(False)})
        return
    store, inbox = tracking_db.store(), sftp_inbox.config().inbox_id
    if FAILED_FILES in selected:
        total, rows = store.failed_files(inbox)
        table = "\n".join(["| file | attempts | retried | error |", "|---|---|---|---|", *(
            f"| {md_escape(n)} | {a} | {'yes' if r else 'no'} | {md_escape(e)} |" for n, e, r, a in rows)])
        yield AssetCheckResult(check_name=FAILED_FILES, passed=total == 0, severity=AssetCheckSeverity.WARN,
                               metadata={"files_failed": MetadataValue.int(total), "failures": MetadataValue.md(table)})
    if FIXITY in selected:
        keys = context.partition_key_range
        since = dt.datetime.combine(dt.date.fromisoformat(keys.start), dt.time(), dt.UTC)
        until = dt.datetime.combine(dt.date.fromisoformat(keys.end), dt.time(), dt.UTC) + dt.timedelta(days=1)
        compared, mismatches = store.intake_hashes_against_copies(inbox, since, until)
        table = "\n".join(["| key | intake SHA-256 | cold SHA-256 |", "|---|---|---|",
                           *(f"| {md_escape(k)} | {i} | {c} |" for k, i, c in mismatches)])
        yield AssetCheckResult(check_name=FIXITY, passed=not mismatches, severity=AssetCheckSeverity.ERROR, metadata={
            "files_compared": MetadataValue.int(compared), "mismatches": MetadataValue.int(len(mismatches)),
            "first_mismatches": MetadataValue.md(table)})
