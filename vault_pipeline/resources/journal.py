"""The cold site's write journal as a Dagster resource: where it lives, how it is written and sealed.

The seal signing key is a secret: it only arrives as EnvVar("VAULT_JOURNAL_SIGNING_KEY"), so the UI shows
the variable's name. The public keys that verify seals are not secret.
"""

from __future__ import annotations

import os

from dagster import ConfigurableResource, EnvVar

from vault_pipeline.journal.segments import SegmentStore
from vault_pipeline.journal.writer import JournalWriter
from vault_pipeline.resources.s3_sites import ColdSiteResource
from vault_pipeline.resources.tracking_db import TrackingDatabaseResource

SIGNING_KEY_VARIABLE = "VAULT_JOURNAL_SIGNING_KEY"
REBUILD_DSN_VARIABLE = "VAULT_REBUILD_DATABASE_URL"


class JournalResource(ConfigurableResource):
    """Write journal of the cold site (segments and daily seals under `prefix`)."""

    prefix: str  # these three from VaultSettings (VAULT_JOURNAL_*), where the defaults are declared
    max_entries_per_segment: int
    retention_years: int
    signing_key: str | None = None
    public_keys: list[str] = []

    def segment_store(self, cold_site: ColdSiteResource) -> SegmentStore:
        return SegmentStore(cold_site.client(), cold_site.bucket, prefix=self.prefix,
                            retention_years=self.retention_years)

    def writer(self, cold_site: ColdSiteResource, tracking_db: TrackingDatabaseResource) -> JournalWriter:
        tracking_db.store()  # migrated before the writer's own connection uses the journal tables
        return JournalWriter(tracking_db.dsn, self.segment_store(cold_site),
                             max_entries_per_segment=self.max_entries_per_segment)


def journal_resource_from_env(*, prefix: str, max_entries_per_segment: int, retention_years: int,
                              public_keys: list[str]) -> JournalResource:
    signing_key = EnvVar(SIGNING_KEY_VARIABLE) if os.environ.get(SIGNING_KEY_VARIABLE, "").strip() else None
    return JournalResource(prefix=prefix, max_entries_per_segment=max_entries_per_segment,
                           retention_years=retention_years, signing_key=signing_key, public_keys=public_keys)
