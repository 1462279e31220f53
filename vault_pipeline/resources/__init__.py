from vault_pipeline.resources.replication_settings import ReplicationSettingsResource, VerificationSettingsResource
from vault_pipeline.resources.s3_sites import ColdSiteResource, S3SiteResource
from vault_pipeline.resources.tracking_db import TrackingDatabaseResource

__all__ = ["ColdSiteResource", "ReplicationSettingsResource", "S3SiteResource", "TrackingDatabaseResource",
           "VerificationSettingsResource"]
