"""The fault proxy itself: SigV4 requests pass unchanged (Host forwarded, path and query byte for byte), bodies
and Content-Encoding are not touched, and each fault kind reaches the client as the failure it models."""

from __future__ import annotations

import os

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from vault_pipeline_tests.conftest import Vault
from vault_pipeline_tests.faults.proxy import FaultProxy, Rule


def raw_client(vault: Vault, url: str) -> object:
    """The cold site's keys, through `url`, no retries, short timeouts."""
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=vault.env["AWS_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=vault.env["AWS_S3_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, read_timeout=1, retries={"total_max_attempts": 1}))


def test_signed_requests_and_encoded_bodies_pass_unchanged(vault: Vault) -> None:
    with FaultProxy(vault.env["AWS_S3_ENDPOINT"]) as proxy:
        client = raw_client(vault, proxy.url)
        body = os.urandom(3 * 1024 * 1024)
        key = "a dir/é+x?.gz"
        client.put_object(Bucket=vault.cold_bucket, Key=key, Body=body, ContentEncoding="gzip")
        got = client.get_object(Bucket=vault.cold_bucket, Key=key)
        assert got["Body"].read() == body and got["ContentEncoding"] == "gzip"
        assert client.head_object(Bucket=vault.cold_bucket, Key=key)["ContentLength"] == len(body)
        assert proxy.requests == 3 and proxy.injected == []


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
@pytest.mark.parametrize("kind", ["error500", "slowdown", "reset_request", "reset_response", "truncate", "stall"])
def test_each_fault_reaches_the_client(vault: Vault, kind: str) -> None:
    vault.cold.put_object(Bucket=vault.cold_bucket, Key="doc", Body=os.urandom(256 * 1024))
    with FaultProxy(vault.env["AWS_S3_ENDPOINT"]) as proxy:
        client = raw_client(vault, proxy.url)
        method = "PUT" if kind == "reset_request" else "GET"
        proxy.add(Rule(kind, methods={method}, count=1, stall_seconds=2))
        with pytest.raises((ClientError, BotoCoreError)) as raised:
            if method == "PUT":
                client.put_object(Bucket=vault.cold_bucket, Key="other", Body=os.urandom(256 * 1024))
            else:
                client.get_object(Bucket=vault.cold_bucket, Key="doc")["Body"].read()
        if kind == "slowdown":
            assert raised.value.response["Error"]["Code"] == "SlowDown"  # type: ignore[union-attr]
        assert [i.kind for i in proxy.injected] == [kind]
        assert len(client.get_object(Bucket=vault.cold_bucket, Key="doc")["Body"].read()) == 256 * 1024
