"""The hot and cold S3 sites as Dagster resources.

Keys arrive as EnvVar, so the UI shows only the variable names. One client per site configuration per
process (s3client.shared_client), whatever the number of steps and resource instances: clients are
thread-safe and keep a connection pool, which matters more than anything else for small objects.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from vault_pipeline.replication.s3client import SiteConfig, shared_client


class S3SiteResource(ConfigurableResource):
    """An S3-compatible site: endpoint, credentials, bucket and client tuning. Every field is given by
    definitions.py from the environment (tunables through VaultSettings, where their defaults are declared)."""

    site_name: str
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    addressing_style: str
    request_checksum_calculation: str
    response_checksum_validation: str
    max_pool_connections: int
    connect_timeout: float
    read_timeout: float
    fast_path: bool  # documents' GET/PUT/HEAD/UploadPart on awscrt (replication/crt_s3.py), the rest on boto3
    session_token: str = ""  # temporary credentials (STS), from the environment like the keys

    _client: Any = PrivateAttr(default=None)

    def site_config(self) -> SiteConfig:
        return SiteConfig(
            name=self.site_name, endpoint_url=self.endpoint_url or None, region=self.region,
            access_key_id=self.access_key_id, secret_access_key=self.secret_access_key, bucket=self.bucket,
            addressing_style=self.addressing_style,  # type: ignore[arg-type]
            request_checksum_calculation=self.request_checksum_calculation,  # type: ignore[arg-type]
            response_checksum_validation=self.response_checksum_validation,  # type: ignore[arg-type]
            max_pool_connections=self.max_pool_connections, fast_path=self.fast_path,
            connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
            session_token=self.session_token,
        )

    def client(self) -> Any:
        if self._client is None:
            self._client = shared_client(self.site_config())
        return self._client

    def describe(self) -> str:
        return f"{self.site_name} site {self.endpoint_url} bucket {self.bucket}"


class ColdSiteResource(S3SiteResource):
    """The cold site adds the storage class every copy is written in."""

    storage_class: str
