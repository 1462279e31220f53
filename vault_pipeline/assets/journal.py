"""journal_seal[day]: the daily signed Merkle seal of the cold site's write journal.

Thin Dagster layer over vault_pipeline/journal/seal.py: it seals every unsealed day up to the partition's
day (the last day of a backfill range), each day once, in order. The signing key reaches it only as
EnvVar("VAULT_JOURNAL_SIGNING_KEY"); the materialization shows the public key id, never the key.
"""

import datetime as dt

from dagster import AssetExecutionContext, BackfillPolicy, Failure, MaterializeResult, MetadataValue, asset

from vault_pipeline.assets.replication import cold_copies
from vault_pipeline.journal.chain import ChainError
from vault_pipeline.journal.seal import DayNotOver, SealRun, seal_through
from vault_pipeline.journal.segments import JournalError
from vault_pipeline.journal.signing import SealSigner, SigningKeyError
from vault_pipeline.partitions import daily_partitions
from vault_pipeline.replication.errors import describe_s3_error
from vault_pipeline.resources.journal import JournalResource
from vault_pipeline.resources.s3_sites import ColdSiteResource
from vault_pipeline.resources.tracking_db import TrackingDatabaseResource


def seal_metadata(run: SealRun, signer: SealSigner) -> dict:
    target = run.target
    rows = ["| day | tree size | seqs | root | seal key | |", "|---|---|---|---|---|---|"]
    for sealed in [*run.sealed, *run.already_sealed]:
        seal = sealed.seal
        rows.append(f"| {sealed.day.isoformat()} | {seal['tree_size']} | {seal['first_seq']}..{seal['last_seq']} | "
                    f"`{seal['root'][:16]}…` | `{sealed.key}` | {'written' if sealed.written else 'already sealed'} |")
    metadata = {
        "day": MetadataValue.text(run.requested_day.isoformat()),
        "days_sealed": MetadataValue.int(len(run.sealed)),
        "sealed_days": MetadataValue.text(", ".join(s.day.isoformat() for s in run.sealed) or "none"),
        "already_sealed": MetadataValue.bool(bool(run.already_sealed)),
        "journal_entries_flushed": MetadataValue.int(run.flushed_entries),
        "signing_key_id": MetadataValue.text(signer.key_id),
        "duration_s": MetadataValue.float(round(run.duration_s, 3)),
    }
    if target is not None:
        seal = target.seal
        metadata.update({
            "tree_size": MetadataValue.int(seal["tree_size"]),
            "first_seq": MetadataValue.int(seal["first_seq"]),
            "last_seq": MetadataValue.int(seal["last_seq"]),
            "root": MetadataValue.text(seal["root"]),
            "chain_head": MetadataValue.text(seal["chain_head"]),
            "prev_seal_hash": MetadataValue.text(seal["prev_seal_hash"]),
            "seal_key": MetadataValue.text(target.key),
            "seal_version_id": MetadataValue.text(target.version_id or ""),
            "seal_hash": MetadataValue.text(target.seal_hash),
        })
    if len(rows) > 2:
        metadata["seals"] = MetadataValue.md("\n".join(rows))
    if run.note:
        metadata["note"] = MetadataValue.text(run.note)
    return metadata


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[cold_copies],
    group_name="journal",
    kinds={"s3", "postgres"},
    description="Daily seal of the write journal: an Ed25519-signed RFC 9162 Merkle checkpoint over the day's "
    "journal entries (tree size, root, seq range, chain head, previous seal's hash), written once and locked "
    "COMPLIANCE at journal/seals/YYYY-MM-DD.json. Seals every unsealed day up to the partition's, in order; a "
    "day can be sealed once it is over (UTC). See docs/journal.md.",
)
def journal_seal(
    context: AssetExecutionContext,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
    journal: JournalResource,
) -> MaterializeResult:
    day = dt.date.fromisoformat(context.partition_key_range.end)
    try:
        signer = SealSigner.from_seed_b64(journal.signing_key)
    except SigningKeyError as exc:
        raise Failure(description=f"journal_seal: {exc}", allow_retries=False) from None
    try:
        run = seal_through(day, dsn=tracking_db.dsn, store=journal.segment_store(cold_site), signer=signer,
                           writer=journal.writer(cold_site, tracking_db), public_keys=journal.public_keys,
                           run_id=context.run.run_id)
    except DayNotOver as exc:
        raise Failure(description=f"journal_seal: {exc}", allow_retries=False) from None
    except (JournalError, ChainError, SigningKeyError) as exc:
        raise Failure(description=f"journal_seal {day.isoformat()}: {exc}", allow_retries=False) from None
    except Exception as exc:
        text, _ = describe_s3_error(exc)
        raise Failure(description=f"journal_seal {day.isoformat()} failed ({text}); rerun it: a seal is written "
                      "once and an existing one is never rewritten") from None
    for warning in run.warnings:
        context.log.warning(warning)
    if run.note:
        context.log.info(run.note)
    for sealed in run.sealed:
        context.log.info(f"sealed {sealed.day.isoformat()}: {sealed.seal['tree_size']} entries, root "
                         f"{sealed.seal['root']}, {sealed.key}")
    return MaterializeResult(metadata=seal_metadata(run, signer))
