"""What the operator commands share: the tracking database connection, the cold site's client, the hot
bucket, Dagster's URL."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vault_pipeline.cli.errors import CommandError, require_env


def add_dagster_url_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dagster-url", help="the Dagster webserver (default: VAULT_DAGSTER_URL, else "
                        "http://127.0.0.1:3000, where `make run` serves it)")


def dagster_url(args: argparse.Namespace) -> str:
    from vault_pipeline.settings import load_settings

    url = (args.dagster_url or "").strip() or load_settings()[0].dagster_url
    if not url.startswith(("http://", "https://")):
        raise CommandError(f"--dagster-url {url!r} is not an http(s) URL")
    return url


def hot_bucket(args: argparse.Namespace) -> str | None:
    """--bucket, else OVH_S3_BUCKET_DOCUMENTS, else None (every bucket the database tracks)."""
    return (getattr(args, "bucket", None) or os.environ.get("OVH_S3_BUCKET_DOCUMENTS", "")).strip() or None


@contextmanager
def tracking_connection() -> Iterator[Any]:
    """A read-only psycopg connection to VAULT_DATABASE_URL (autocommit): the operator commands only read
    the manifest (what they change goes through Dagster runs or the audit log's own store)."""
    import psycopg

    dsn = require_env("VAULT_DATABASE_URL", why="the operator commands read the tracking database")[
        "VAULT_DATABASE_URL"]
    with psycopg.connect(dsn, autocommit=True, connect_timeout=15) as conn:
        conn.execute("SET default_transaction_read_only = on")
        yield conn


def cold_client_from_env(why: str) -> tuple[Any, str, Any]:
    """(S3 client of the cold site, cold bucket, VaultSettings), configured exactly as the pipeline is;
    CommandError naming every missing variable, `why` saying who needs them."""
    from vault_pipeline.replication.s3client import SiteConfig, make_client
    from vault_pipeline.settings import load_settings

    settings, _ = load_settings()
    env = require_env("AWS_S3_BUCKET_DOCUMENTS_COLD", why=why)
    site = SiteConfig(
        name="cold", endpoint_url=os.environ.get("AWS_S3_ENDPOINT", "").strip() or None, region=settings.cold_region,
        access_key_id=os.environ.get("AWS_S3_ACCESS_KEY_ID", ""),
        secret_access_key=os.environ.get("AWS_S3_SECRET_ACCESS_KEY", ""),
        bucket=env["AWS_S3_BUCKET_DOCUMENTS_COLD"], addressing_style=settings.cold_addressing_style,
        request_checksum_calculation=settings.cold_request_checksum_calculation,
        response_checksum_validation=settings.cold_response_checksum_validation, max_pool_connections=8,
        fast_path=settings.cold_fast_path, session_token=os.environ.get("AWS_S3_SESSION_TOKEN", ""),
        connect_timeout=settings.s3_connect_timeout_seconds, read_timeout=settings.s3_read_timeout_seconds,
    )
    return make_client(site), site.bucket, settings
