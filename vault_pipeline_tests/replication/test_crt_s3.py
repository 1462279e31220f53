"""The awscrt GET/PUT/HEAD path answers like boto3, on both real cold servers, for every odd key.

Faults no real server produces on demand (503 answers, a checksum that does not match the bytes) come
from a small local HTTP server: what is tested there is how the client reacts to them.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import http.server
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, FlexibleChecksumError, ParamValidationError

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.replication.crt_s3 import CrtS3Client
from vault_pipeline.replication.s3client import SiteConfig, make_client
from vault_pipeline_tests.conftest import unique
from vault_pipeline_tests.loop_thread import serve_http

ODD_KEYS = [
    "plain/document.pdf",
    "with space/a  b.pdf",
    "unicodé/文件 ✓.pdf",
    "percent%20and+plus=eq&amp;.pdf",
    "a//double/slash",
    "~tilde/(parens)[brackets]'quote'!*,;:@$.pdf",
    "s" * 200 + "/" + "t" * 200 + "/" + "u" * 200,  # long key, segments under SeaweedFS's 255 bytes
]
IGNORED = {"ResponseMetadata", "AcceptRanges"}


def crt_client(site: Any, *, secret: str | None = None) -> CrtS3Client:
    client = make_client(SiteConfig("cold", site.endpoint_url, "us-east-1", site.access_key,
                                    secret or site.secret_key, "unused"))
    assert isinstance(client, CrtS3Client)
    return client


def sha256_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


@pytest.fixture
def cold(request: pytest.FixtureRequest, cold_flavour: str) -> Iterator[tuple[Any, CrtS3Client, str]]:
    site = request.getfixturevalue("cold_seaweed" if cold_flavour == "seaweedfs" else "cold_moto")
    client = crt_client(site)
    bucket = unique("crt")
    ensure_bucket(client, bucket, object_lock=True)  # a boto3 call, through the wrapper
    yield site, client, bucket


@pytest.mark.parametrize("key", ODD_KEYS)
def test_put_head_get_match_boto3(cold: tuple[Any, CrtS3Client, str], cold_flavour: str, key: str) -> None:
    _site, client, bucket = cold
    boto = client._boto
    body = key.encode() * 3
    retain = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    put = client.put_object(
        Bucket=bucket, Key=key, Body=body, ChecksumSHA256=sha256_b64(body), ChecksumAlgorithm="SHA256",
        Metadata={"vault-sha256": hashlib.sha256(body).hexdigest(), "spaced": "a  b   c"},
        ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=retain, StorageClass="DEEP_ARCHIVE",
        Tagging="document-type=payslip&retention-years=50", ContentType="application/pdf", IfNoneMatch="*",
        ContentEncoding="gzip", ContentDisposition='attachment; filename="a b.pdf"', CacheControl="no-store",
        ContentLanguage="fr",  # gzip claimed for bytes that are not: stored, sent and read back as they are
    )
    assert put["VersionId"]
    crt_head = client.head_object(Bucket=bucket, Key=key, VersionId=put["VersionId"], ChecksumMode="ENABLED")
    boto_head = boto.head_object(Bucket=bucket, Key=key, VersionId=put["VersionId"], ChecksumMode="ENABLED")
    assert {k: v for k, v in crt_head.items() if k not in IGNORED} == {
        k: v for k, v in boto_head.items() if k not in IGNORED}
    assert crt_head["Metadata"]["spaced"] == "a  b   c"  # signed folded, sent as it was
    assert crt_head["ObjectLockRetainUntilDate"] == retain
    assert crt_head["ObjectLockMode"] == "COMPLIANCE" and crt_head["TagCount"] == 2
    assert crt_head["ChecksumSHA256"] == sha256_b64(body)
    assert (crt_head["ContentEncoding"], crt_head["CacheControl"], crt_head["ContentLanguage"]) == (
        "gzip", "no-store", "fr")
    if cold_flavour == "seaweedfs":  # the moto server refuses tag reads on DEEP_ARCHIVE (AWS answers them)
        tags = boto.get_object_tagging(Bucket=bucket, Key=key, VersionId=put["VersionId"])["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"document-type": "payslip", "retention-years": "50"}
        assert client.get_object(Bucket=bucket, Key=key, VersionId=put["VersionId"])["Body"].read() == body


def test_get_reads_whole_ranged_and_pinned(hot_site: Any) -> None:
    client = crt_client(hot_site)
    bucket = unique("crt-get")
    ensure_bucket(client, bucket, object_lock=False)
    body = bytes(range(256)) * 4096  # 1 MiB
    client._boto.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm="CRC32")
    whole = client.get_object(Bucket=bucket, Key="k")
    assert whole["ContentLength"] == len(body) and whole["LastModified"].tzinfo is not None
    assert b"".join(whole["Body"].iter_chunks(64 * 1024)) == body  # the server's CRC32 checked on the way
    ranged = client.get_object(Bucket=bucket, Key="k", Range="bytes=10-19", IfMatch=whole["ETag"])
    assert ranged["Body"].read() == body[10:20]
    with pytest.raises(ClientError) as changed:
        client.get_object(Bucket=bucket, Key="k", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert changed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with client.get_object(Bucket=bucket, Key="k")["Body"] as stream:  # closed before its end
        assert len(stream.read(100)) == 100
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == body  # the pool still works


def test_bodies_are_read_as_stored_never_decoded(hot_site: Any) -> None:
    """HTTP clients commonly decode gzip/deflate/br/zstd bodies; the stored bytes are what is copied and what
    the server's checksum covers (issue 12: a gzip object failed its CRC32 check on every GET)."""
    client = crt_client(hot_site)
    bucket = unique("crt-enc")
    ensure_bucket(client, bucket, object_lock=False)
    stored = {"gzip": gzip.compress(b"%PDF-1.7 " * 20_000), "deflate": zlib.compress(b"x" * 50_000),
              "br": b"\x8b\x03\x80not really brotli\x03", "zstd": b"not zstd either"}
    for encoding, body in stored.items():
        client._boto.put_object(Bucket=bucket, Key=encoding, Body=body, ContentEncoding=encoding,
                                ChecksumAlgorithm="CRC32")
        whole = client.get_object(Bucket=bucket, Key=encoding)
        assert whole["ContentEncoding"] == encoding and whole["ContentLength"] == len(body)
        assert whole["Body"].read() == body  # and its CRC32 matched on the way
        assert b"".join(client.get_object(Bucket=bucket, Key=encoding)["Body"].iter_chunks(1000)) == body
        assert client.get_object(Bucket=bucket, Key=encoding, Range="bytes=2-9")["Body"].read() == body[2:10]


def test_errors_carry_the_s3_code(cold: tuple[Any, CrtS3Client, str], cold_flavour: str) -> None:
    _site, client, bucket = cold
    with pytest.raises(ClientError) as missing:
        client.head_object(Bucket=bucket, Key="missing")
    assert missing.value.response["Error"]["Code"] == "404"
    with pytest.raises(ClientError) as missing_get:
        client.get_object(Bucket=bucket, Key="missing")
    assert missing_get.value.response["Error"]["Code"] == "NoSuchKey"
    body = b"first"
    client.put_object(Bucket=bucket, Key="once", Body=body, ChecksumSHA256=sha256_b64(body), IfNoneMatch="*")
    with pytest.raises(ClientError) as exists:
        client.put_object(Bucket=bucket, Key="once", Body=b"second", ChecksumSHA256=sha256_b64(b"second"),
                          IfNoneMatch="*")
    assert exists.value.response["ResponseMetadata"]["HTTPStatusCode"] in (409, 412)
    if cold_flavour == "seaweedfs":  # the moto server does not check request checksums
        with pytest.raises(ClientError) as corrupt:
            client.put_object(Bucket=bucket, Key="corrupt", Body=b"abc", ChecksumSHA256=sha256_b64(b"abd"))
        assert corrupt.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ParamValidationError):
        client.put_object(Bucket=bucket, Key="meta", Body=b"x", ChecksumSHA256=sha256_b64(b"x"),
                          Metadata={"name": "café"})


def test_a_wrong_secret_is_refused_by_seaweedfs(cold_seaweed: Any) -> None:
    """SeaweedFS checks SigV4 signatures: a request signed with another secret does not get through."""
    good, bad = crt_client(cold_seaweed), crt_client(cold_seaweed, secret="not-the-secret")
    bucket = unique("crt-auth")
    ensure_bucket(good, bucket, object_lock=False)
    good.put_object(Bucket=bucket, Key="k", Body=b"x", ChecksumSHA256=sha256_b64(b"x"))
    with pytest.raises(ClientError) as refused:
        bad.head_object(Bucket=bucket, Key="k")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_other_calls_and_arguments_go_to_boto3(hot_site: Any) -> None:
    client = crt_client(hot_site)
    bucket = unique("crt-boto")
    ensure_bucket(client, bucket, object_lock=False)
    client.put_object(Bucket=bucket, Key="no-checksum", Body=b"boto3 computes one")  # no checksum: boto3's PUT
    pages = list(client.get_paginator("list_objects_v2").paginate(Bucket=bucket))
    assert [o["Key"] for o in pages[0]["Contents"]] == ["no-checksum"]
    assert client.get_object(Bucket=bucket, Key="no-checksum", ResponseContentType="text/plain")[
        "ContentType"] == "text/plain"


# -- faults from a local HTTP server ----------------------------------------------------------------

class FaultyS3(http.server.BaseHTTPRequestHandler):
    script: list[tuple[int, dict[str, str], bytes]] = []
    seen: list[dict[str, str]] = []

    def _answer(self) -> None:
        FaultyS3.seen.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
        status, headers, body = FaultyS3.script.pop(0)
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def faulty() -> Iterator[str]:
    FaultyS3.script, FaultyS3.seen = [], []
    with serve_http(FaultyS3) as url:
        yield url


def faulty_client(endpoint: str, **config: Any) -> CrtS3Client:
    client = make_client(SiteConfig("hot", endpoint, "eu-west-3", "AKIDEXAMPLE", "secret", "b", **config))
    assert isinstance(client, CrtS3Client)
    return client


def test_throttling_and_5xx_are_retried(faulty: str) -> None:
    slow_down = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    FaultyS3.script = [(503, {}, slow_down), (500, {}, b""), (200, {"x-amz-version-id": "v1", "ETag": '"e"'}, b"")]
    put = faulty_client(faulty).put_object(Bucket="b", Key="a b/c", Body=b"x", ChecksumSHA256=sha256_b64(b"x"))
    assert put["VersionId"] == "v1" and len(FaultyS3.seen) == 3
    request = FaultyS3.seen[-1]
    assert request["path"] == "/b/a%20b/c"
    assert request["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-3/s3/aws4_request" in request["authorization"]
    assert request["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert request["x-amz-checksum-sha256"] == sha256_b64(b"x")
    FaultyS3.script = [(503, {}, slow_down)] * 2
    with pytest.raises(ClientError) as exhausted:
        faulty_client(faulty, max_attempts=2).head_object(Bucket="b", Key="k")
    assert exhausted.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_a_body_that_does_not_match_its_checksum_is_refused(faulty: str) -> None:
    body = b"the bytes the server holds"
    wrong = base64.b64encode(zlib.crc32(b"other bytes").to_bytes(4, "big")).decode()
    right = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    FaultyS3.script = [(200, {"x-amz-checksum-crc32": right, "Last-Modified": "Wed, 21 Oct 2026 07:28:00 GMT"}, body),
                       (200, {"x-amz-checksum-crc32": wrong}, body)]
    client = faulty_client(faulty)
    assert client.get_object(Bucket="b", Key="k")["Body"].read() == body
    with pytest.raises(FlexibleChecksumError):
        client.get_object(Bucket="b", Key="k")["Body"].read()


def test_an_unreachable_endpoint_is_a_connection_error() -> None:
    with pytest.raises(EndpointConnectionError):
        faulty_client("http://127.0.0.1:9", max_attempts=1).head_object(Bucket="b", Key="k")


def test_a_site_without_keys_signs_with_the_aws_credential_chain(hot_site: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """No OVH_S3_/AWS_S3_ keys: the site signs with botocore's credential chain (here its environment
    provider; on AWS an instance or container role), on the fast path too. SeaweedFS checks the signatures."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", hot_site.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", hot_site.secret_key)
    client = make_client(SiteConfig("hot", hot_site.endpoint_url, "us-east-1", "", "", "unused"))
    assert isinstance(client, CrtS3Client)
    bucket = unique("crt-chain")
    ensure_bucket(client, bucket, object_lock=False)
    client.put_object(Bucket=bucket, Key="k", Body=b"chain", ChecksumSHA256=sha256_b64(b"chain"))
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"chain"


def test_a_key_without_its_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="access key id without its secret access key"):
        make_client(SiteConfig("cold", "http://127.0.0.1:9", "us-east-1", "AKID", "", "b"))
