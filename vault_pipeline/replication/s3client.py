"""boto3 clients for the two sites, tuned once here.

Some S3-compatible providers broke on boto3's default flexible checksums (2025), so the two checksum
switches are per-site settings. Connection pools must be at least as large as the number of concurrent
requests or urllib3 discards connections and every request pays a new TCP handshake.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.credentials import Credentials

from vault_pipeline.replication.lean_s3 import LeanS3Client

ChecksumWhen = Literal["when_supported", "when_required"]


@dataclass(frozen=True)
class SiteConfig:
    name: str  # "hot" or "cold", used in messages
    endpoint_url: str | None
    region: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    request_checksum_calculation: ChecksumWhen = "when_supported"
    response_checksum_validation: ChecksumWhen = "when_supported"
    max_pool_connections: int = 64
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_attempts: int = 4  # botocore "standard" retries: throttling, 5xx, connection errors
    # GET, PUT and HEAD of documents on urllib3 instead of botocore (lean_s3.py): a third of the CPU.
    lean_client: bool = True

    def __repr__(self) -> str:  # never print a secret
        return f"SiteConfig(name={self.name!r}, endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r})"

    def describe(self) -> str:
        return f"{self.name} site {self.endpoint_url or 'AWS'} bucket {self.bucket}"


@functools.lru_cache(maxsize=32)
def shared_client(site: SiteConfig) -> Any:
    """One client per site configuration and process. Dagster builds resources again for every step of a
    run and a new boto3 client costs ~0.1 s (it loads the S3 service model); clients are thread-safe."""
    return make_client(site)


def make_client(site: SiteConfig) -> Any:
    config = Config(
        region_name=site.region,
        s3={"addressing_style": site.addressing_style},
        request_checksum_calculation=site.request_checksum_calculation,
        response_checksum_validation=site.response_checksum_validation,
        max_pool_connections=site.max_pool_connections,
        connect_timeout=site.connect_timeout,
        read_timeout=site.read_timeout,
        retries={"mode": "standard", "max_attempts": site.max_attempts},
        tcp_keepalive=True,
    )
    session = boto3.session.Session()
    client = session.client(
        "s3",
        endpoint_url=site.endpoint_url or None,
        aws_access_key_id=site.access_key_id or None,
        aws_secret_access_key=site.secret_access_key or None,
        config=config,
    )
    if not site.lean_client:
        return client
    credentials = (Credentials(site.access_key_id, site.secret_access_key) if site.access_key_id
                   else session.get_credentials())
    return LeanS3Client(
        client, endpoint_url=site.endpoint_url or None, region=site.region, credentials=credentials,
        addressing_style=site.addressing_style, max_pool_connections=site.max_pool_connections,
        connect_timeout=site.connect_timeout, read_timeout=site.read_timeout, max_attempts=site.max_attempts,
        validate_responses=site.response_checksum_validation == "when_supported",
    )
