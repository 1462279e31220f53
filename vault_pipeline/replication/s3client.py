"""boto3 clients for the two sites, tuned once here.

Some S3-compatible providers broke on boto3's default flexible checksums (2025), so the two checksum
switches are per-site settings. Connection pools must be at least as large as the number of concurrent
requests or urllib3 discards connections and every request pays a new TCP handshake.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import NoCredentialsError
from botocore.utils import get_environ_proxies

from vault_pipeline.replication.crt_s3 import CrtS3Client, parse_timestamp
from vault_pipeline.settings import setting_default

log = logging.getLogger(__name__)
ChecksumWhen = Literal["when_supported", "when_required"]


@dataclass(frozen=True)
class SiteConfig:
    name: str  # "hot" or "cold", used in messages
    endpoint_url: str | None
    region: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    session_token: str = ""  # temporary credentials (STS); no keys at all: botocore's chain (IAM role...)
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    request_checksum_calculation: ChecksumWhen = "when_supported"
    response_checksum_validation: ChecksumWhen = "when_supported"
    max_pool_connections: int = 64
    connect_timeout: float = setting_default("s3_connect_timeout_seconds")
    read_timeout: float = setting_default("s3_read_timeout_seconds")
    max_attempts: int = 4  # botocore "standard" retries: throttling, 5xx, connection errors
    # GET, PUT, HEAD and UploadPart of documents on awscrt (crt_s3.py) instead of botocore: a third of the CPU.
    fast_path: bool = True

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
    if bool(site.access_key_id) != bool(site.secret_access_key):
        raise ValueError(f"{site.describe()}: an access key id without its secret access key, or the reverse: set "
                         "both, or neither to sign with the AWS credential chain (instance or container role, "
                         "profile, AWS_ACCESS_KEY_ID...)")
    boto_client = _boto_client(site, site.region)
    if not site.fast_path:
        return boto_client
    if proxy_applies(boto_client):
        log.info("%s: a proxy applies to %s; every request goes through boto3 (awscrt's S3 client takes no "
                 "proxy)", site.describe(), boto_client.meta.endpoint_url)
        return boto_client
    credentials = _credentials(site)
    if credentials is None:
        raise NoCredentialsError()
    return CrtS3Client(
        boto_client, credentials=credentials, verify=ca_verify(),
        max_attempts=site.max_attempts, connect_timeout=site.connect_timeout, read_timeout=site.read_timeout,
        validate_responses=site.response_checksum_validation == "when_supported",
        make_regional_client=lambda region: _boto_client(site, region),
    )


def proxy_applies(client: Any) -> bool:
    """Whether boto3 would send this client's requests through a proxy (its config or the environment). As
    botocore's ProxyConfiguration, only the proxy of the endpoint's scheme counts (HTTP_PROXY is not used for
    an https:// endpoint)."""
    url = client.meta.endpoint_url
    proxies = client.meta.config.proxies or get_environ_proxies(url)
    return bool(proxies.get(urllib.parse.urlsplit(url).scheme))


def ca_verify() -> bool | str:
    """The certificate check boto3 applies: AWS_CA_BUNDLE (or ca_bundle), else REQUESTS_CA_BUNDLE, else
    its own bundle."""
    with _SESSION_LOCK:
        bundle = _botocore_session().get_config_variable("ca_bundle")
    return bundle or os.environ.get("REQUESTS_CA_BUNDLE") or True


def _boto_client(site: SiteConfig, region: str) -> Any:
    config = Config(
        region_name=region,
        s3={"addressing_style": site.addressing_style},
        request_checksum_calculation=site.request_checksum_calculation,
        response_checksum_validation=site.response_checksum_validation,
        max_pool_connections=site.max_pool_connections,
        connect_timeout=site.connect_timeout,
        read_timeout=site.read_timeout,
        retries={"mode": "standard", "max_attempts": site.max_attempts},
        tcp_keepalive=True,
    )
    # Keys given: they (and their token) sign; none: botocore's own chain (environment, profile, container or
    # instance role), refreshed as botocore does.
    with _SESSION_LOCK:  # boto3 sessions are not thread-safe
        client = _session().client(
            "s3", endpoint_url=site.endpoint_url or None, config=config,
            aws_access_key_id=site.access_key_id or None, aws_secret_access_key=site.secret_access_key or None,
            aws_session_token=site.session_token or None)
    return client


def _credentials(site: SiteConfig) -> Any:
    if site.access_key_id:
        return Credentials(site.access_key_id, site.secret_access_key, site.session_token or None)
    with _SESSION_LOCK:
        return _botocore_session().get_credentials()


_SESSION_LOCK = threading.Lock()


@functools.cache
def _botocore_session() -> botocore.session.Session:
    """One session per process: the S3 model is loaded once for every client (~0.1 s each otherwise), and
    timestamps in answers (a listing page has a thousand) are parsed without dateutil."""
    session = botocore.session.Session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return session


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session(botocore_session=_botocore_session())


def session_client(service: str, **kwargs: Any) -> Any:
    """A boto3 client of `service` (SQS for the change feed) on the process's shared session: models loaded
    and credentials resolved once. boto3 sessions are not thread-safe, hence the lock."""
    with _SESSION_LOCK:
        return _session().client(service, **kwargs)
