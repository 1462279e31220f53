"""The fast path (crt_s3.py) in the situations production puts it in, each reproduced over real HTTP(S).

Every client here comes from `make_client(SiteConfig(...))` as the pipeline builds it. The S3 servers are
the suite's SeaweedFS and moto servers; what they cannot do on demand (a TLS certificate of a private CA, a
bucket in another region, a clock an hour ahead, virtual-host names, a proxy) comes from small local
servers (s3_fronts.py) that behave as AWS or a corporate network does. Each test also runs the same
requests through plain boto3, so that a difference between the two is either a test failure or documented.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import trustme
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import ClientError, SSLError

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.devstack.ports import SITE_PORT_BLOCK
from vault_pipeline.devstack.seaweed import SeaweedSite
from vault_pipeline.replication.crt_s3 import CrtS3Client
from vault_pipeline.replication.s3client import SiteConfig, make_client
from vault_pipeline_tests.conftest import REPO, unique
from vault_pipeline_tests.replication.s3_fronts import (
    ForwardProxy,
    Reply,
    S3Front,
    Seen,
    botocore_authorization,
    s3_error,
)
from vault_pipeline_tests.stackfixtures import HOT_KEYS, start_on_free_ports

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
VHOST_DOMAIN = "s3.vault.test"


def sha256_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def site(endpoint: str, access: str, secret: str, bucket: str, **config: Any) -> SiteConfig:
    return SiteConfig("cold", endpoint, config.pop("region", "us-east-1"), access, secret, bucket, **config)


def fast_client(config: SiteConfig) -> CrtS3Client:
    client = make_client(config)
    assert isinstance(client, CrtS3Client)
    return client


def round_trip(client: Any, bucket: str, key: str, body: bytes) -> None:
    """PUT, HEAD and GET of one document; the bytes read back are the bytes written."""
    put = client.put_object(Bucket=bucket, Key=key, Body=body, ChecksumSHA256=sha256_b64(body))
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert client.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == body


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the developer's shell: a proxy turns the fast path off (see test_proxies...)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# -- 1. HTTPS with a private CA --------------------------------------------------------------------

@pytest.fixture(scope="module")
def private_ca() -> trustme.CA:
    return trustme.CA(organization_name="vault-pipeline test CA")


@pytest.fixture
def ca_pem(private_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "private-ca.pem"
    private_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_front(hot_site: Any, private_ca: trustme.CA) -> Iterator[S3Front]:
    """SeaweedFS behind a TLS terminator whose certificate (for `localhost`) a private CA signed, as on a site
    behind a company's load balancer."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    private_ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    with S3Front(hot_site.endpoint_url, ssl_context=context, host_name="localhost") as front:
        yield front


def test_https_with_a_private_ca(hot_site: Any, tls_front: S3Front, ca_pem: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_CA_BUNDLE (or REQUESTS_CA_BUNDLE) names the CA that signed the endpoint's certificate: the fast
    path trusts it as boto3 does (its refusal without it: the next test). The Host header the client signed
    (`localhost:<port>`) reaches SeaweedFS unchanged, which checks the signature over it."""
    bucket = unique("tls")
    ensure_bucket(hot_site.client(), bucket, object_lock=False)
    config = site(tls_front.url, hot_site.access_key, hot_site.secret_key, bucket, max_attempts=1)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("AWS_CA_BUNDLE", ca_pem)

    client = fast_client(config)
    round_trip(client, bucket, "tls/document.pdf", b"%PDF-1.7 over TLS " * 500)
    assert [s.method for s in tls_front.seen] == ["PUT", "HEAD", "GET"]
    for seen in tls_front.seen:
        assert seen.host == f"localhost:{tls_front.port}" and "host" in seen.signed_headers
        assert botocore_authorization(seen, hot_site.access_key, hot_site.secret_key) == seen.headers[
            "authorization"]
    round_trip(client._boto, bucket, "tls/boto3.pdf", b"boto3 over TLS")  # boto3: the same bundle

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_pem)  # the other variable boto3 reads, alone
    monkeypatch.delenv("AWS_CA_BUNDLE")
    assert fast_client(config).get_object(Bucket=bucket, Key="tls/boto3.pdf")["Body"].read() == b"boto3 over TLS"



def test_https_with_an_unknown_ca_is_refused(hot_site: Any, tls_front: S3Front,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Without AWS_CA_BUNDLE / REQUESTS_CA_BUNDLE the default bundle does not hold the private CA: boto3 fails
    at once with botocore's SSLError, and so does the fast path, when the client is made: awscrt's S3 client
    (0.38.1) would keep opening new TLS connections instead of failing a request, until the read timeout, so
    make_client checks the certificate first, with one handshake of Python's ssl against the same bundle
    (awscrt's s2n holds a refused handshake 10-30 s, its blinding delay)."""
    bucket = unique("tls")
    ensure_bucket(hot_site.client(), bucket, object_lock=False)
    config = site(tls_front.url, hot_site.access_key, hot_site.secret_key, bucket, max_attempts=1, read_timeout=5)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    before = len(tls_front.seen)
    with pytest.raises(SSLError):
        make_client(SiteConfig(**{**config.__dict__, "fast_path": False})).head_object(
            Bucket=bucket, Key="tls/document.pdf")
    started = time.monotonic()
    with pytest.raises(SSLError) as refused:
        make_client(config)
    assert time.monotonic() - started < 5  # at once, not at the read timeout
    cause = refused.value.kwargs["error"]
    assert isinstance(cause, ssl.SSLCertVerificationError), cause
    assert tls_front.url in str(refused.value)  # the message names the endpoint
    assert len(tls_front.seen) == before  # no request got past the handshake


# -- 2. virtual-host addressing ---------------------------------------------------------------------

class VirtualHostSeaweed(SeaweedSite):
    """SeaweedFS serving `<bucket>.s3.vault.test` as virtual-host buckets (and path-style as before)."""

    def command(self, socket_dir: Path) -> list[str]:
        return [*super().command(socket_dir), f"-s3.domainName={VHOST_DOMAIN}"]


@pytest.fixture(scope="module")
def vhost_seaweed(servers_dir: Path) -> Iterator[SeaweedSite]:
    server = start_on_free_ports(
        lambda port: VirtualHostSeaweed("vhost", servers_dir / "vhost", port, *HOT_KEYS), SITE_PORT_BLOCK)
    try:
        yield server
    finally:
        server.stop()


VHOST_SCRIPT = """
import json, sys
from vault_pipeline.replication.crt_s3 import CrtS3Client
from vault_pipeline.replication.s3client import SiteConfig, make_client
endpoint, bucket, key, access, secret = sys.argv[1:6]
client = make_client(SiteConfig("cold", endpoint, "us-east-1", access, secret, bucket, addressing_style="virtual"))
body = b"virtual host " * 1000
put = client.put_object(Bucket=bucket, Key=key, Body=body, ChecksumSHA256=sys.argv[6])
head = client.head_object(Bucket=bucket, Key=key)
crt_body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
boto_body = client._boto.get_object(Bucket=bucket, Key=key)["Body"].read()
print(json.dumps({"fast_path": isinstance(client, CrtS3Client), "version": put.get("VersionId"),
                  "length": head["ContentLength"], "crt_same": crt_body == body, "boto_same": boto_body == body}))
"""


def in_private_hosts(hosts: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    """`command` in a mount namespace of its own where /etc/hosts is `hosts` (names like
    `<bucket>.s3.vault.test` resolve nowhere else, and this machine's /etc/hosts is not ours to change)."""
    return subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts),
                           *command], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})


def test_virtual_host_addressing(vhost_seaweed: SeaweedSite, tmp_path: Path) -> None:
    """addressing_style="virtual" (AWS's default, the only style of some providers): the bucket is in the
    host name, `<bucket>.s3.vault.test`, resolved by the system resolver, and the path is the key alone.
    The fast path learns that placement from botocore's endpoint rules and signs that Host."""
    bucket, key = unique("vhost"), "virtual/a b.pdf"
    ensure_bucket(vhost_seaweed.client(), bucket, object_lock=False)
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {VHOST_DOMAIN} {bucket}.{VHOST_DOMAIN}\n")
    probe = in_private_hosts(hosts, ["getent", "hosts", f"{bucket}.{VHOST_DOMAIN}"])
    if probe.returncode != 0:
        pytest.skip(f"unshare -m with a bind-mounted /etc/hosts is not permitted here: {probe.stderr.strip()}")
    body = b"virtual host " * 1000
    with S3Front(vhost_seaweed.endpoint_url, host_name=VHOST_DOMAIN) as front:
        run = in_private_hosts(hosts, [sys.executable, "-c", VHOST_SCRIPT, front.url, bucket, key,
                                       vhost_seaweed.access_key, vhost_seaweed.secret_key, sha256_b64(body)])
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout.splitlines()[-1]) == {
            "fast_path": True, "version": None, "length": len(body), "crt_same": True, "boto_same": True}
    assert [s.method for s in front.seen] == ["PUT", "HEAD", "GET", "GET"]
    for seen in front.seen:
        assert seen.host == f"{bucket}.{VHOST_DOMAIN}:{front.port}"
        assert seen.path == "/virtual/a%20b.pdf"  # the key alone: no bucket in the path
        assert botocore_authorization(seen, vhost_seaweed.access_key, vhost_seaweed.secret_key) == seen.headers[
            "authorization"]
    # The document is where a path-style client finds it: the same bucket, not a bucket named "virtual".
    assert vhost_seaweed.client().get_object(Bucket=bucket, Key=key)["Body"].read() == body


# -- 3. a bucket in another region: 301 PermanentRedirect ------------------------------------------

def redirect_unless_signed_for(region: str) -> Any:
    """AWS's answer to a request signed for another region than the bucket's: 301 PermanentRedirect with the
    bucket's region in `x-amz-bucket-region` (an S3 XML body, none for HEAD). Requests signed for `region`
    go through."""
    def answer(seen: Seen) -> Reply | None:
        if seen.region == region:
            return None
        bucket = seen.path.lstrip("/").split("/", 1)[0]
        body = s3_error("PermanentRedirect", "The bucket you are attempting to access must be addressed using the "
                        "specified endpoint. Please send all future requests to this endpoint.",
                        Endpoint=f"{bucket}.s3.{region}.amazonaws.com", Bucket=bucket)
        return Reply(301, {"x-amz-bucket-region": region, "Content-Type": "application/xml"}, body)
    return answer


def test_a_bucket_in_another_region_is_followed(hot_site: Any) -> None:
    """A client configured for us-east-1 meets a bucket in eu-west-3: the first request is answered 301
    with the bucket's region, sent again signed for eu-west-3, and every later request of that bucket is
    signed for eu-west-3 at once. boto3 follows the same redirect with its own redirector."""
    first, second = unique("region"), unique("region")
    for bucket in (first, second):
        ensure_bucket(hot_site.client(), bucket, object_lock=False)
    with S3Front(hot_site.endpoint_url, redirect_unless_signed_for("eu-west-3")) as front:
        def regions() -> list[tuple[str, str]]:
            seen, front.seen[:] = list(front.seen), []
            return [(s.method, s.region) for s in seen]

        config = site(front.url, hot_site.access_key, hot_site.secret_key, first)
        client = fast_client(config)
        body = b"a document in Paris " * 100
        client.put_object(Bucket=first, Key="k", Body=body, ChecksumSHA256=sha256_b64(body))
        assert regions() == [("PUT", "us-east-1"), ("PUT", "eu-west-3")]
        assert client.head_object(Bucket=first, Key="k")["ContentLength"] == len(body)
        assert client.get_object(Bucket=first, Key="k")["Body"].read() == body
        assert regions() == [("HEAD", "eu-west-3"), ("GET", "eu-west-3")]

        client._boto.put_object(Bucket=second, Key="k", Body=b"second")  # boto3: learns nothing for the fast path
        assert regions() == [("PUT", "us-east-1"), ("PUT", "eu-west-3")]
        assert client.head_object(Bucket=second, Key="k")["ContentLength"] == 6  # a HEAD's 301 has no body
        assert regions() == [("HEAD", "us-east-1"), ("HEAD", "eu-west-3")]
        assert client.get_object(Bucket=second, Key="k")["Body"].read() == b"second"
        assert regions() == [("GET", "eu-west-3")]

        boto = make_client(SiteConfig(**{**config.__dict__, "fast_path": False}))
        assert not isinstance(boto, CrtS3Client)
        assert boto.head_object(Bucket=first, Key="k")["ContentLength"] == len(body)
        assert regions() == [("HEAD", "us-east-1"), ("HEAD", "eu-west-3")]
        assert boto.get_object(Bucket=first, Key="k")["Body"].read() == body
        assert regions() == [("GET", "eu-west-3")]  # botocore caches the bucket's region too


# -- 4. session-token credentials ---------------------------------------------------------------

def test_temporary_credentials_sign_their_session_token(cold_moto: Any) -> None:
    """Temporary credentials (STS: an access key, a secret and a session token, as an assumed role or an SSO
    login gives): the token travels in x-amz-security-token, inside the signature, and the signature is the
    one botocore computes with the same key, secret and token."""
    sts = boto3.client("sts", endpoint_url=cold_moto.endpoint_url, region_name="us-east-1",
                       aws_access_key_id=cold_moto.access_key, aws_secret_access_key=cold_moto.secret_key)
    credentials = sts.get_session_token(DurationSeconds=900)["Credentials"]
    access, secret, token = credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    bucket = unique("sts")
    ensure_bucket(cold_moto.client(), bucket, object_lock=False)
    with S3Front(cold_moto.endpoint_url) as front:
        client = fast_client(site(front.url, access, secret, bucket, session_token=token))
        round_trip(client, bucket, "temporary/document.pdf", b"signed with a session token")
    assert [s.method for s in front.seen] == ["PUT", "HEAD", "GET"]
    for seen in front.seen:
        assert seen.access_key == access and seen.headers["x-amz-security-token"] == token
        assert "x-amz-security-token" in seen.signed_headers
        assert botocore_authorization(seen, access, secret, token) == seen.headers["authorization"]
        assert botocore_authorization(seen, access, secret + "x", token) != seen.headers["authorization"]


def test_refreshable_credentials_are_asked_before_each_signature(cold_moto: Any) -> None:
    """Credentials that expire (an IAM role, a container's credentials) are refreshed by botocore when they
    near expiry; awscrt signs with whatever botocore holds at that moment, never with keys it kept."""
    issued: list[dict[str, str]] = []

    def refresh() -> dict[str, str]:
        number = len(issued) + 1
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)  # within botocore's mandatory refresh window
        issued.append({"access_key": f"ASIAREFRESH{number:09d}", "secret_key": f"secret-{number}",
                       "token": f"token-{number}", "expiry_time": expiry.isoformat()})
        return issued[-1]

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test-refresh")
    bucket = unique("refresh")
    ensure_bucket(cold_moto.client(), bucket, object_lock=False)
    with S3Front(cold_moto.endpoint_url) as front:
        boto = make_client(site(front.url, "AKIDUNUSED", "unused", bucket, fast_path=False))
        client = CrtS3Client(boto, credentials=credentials, make_regional_client=lambda region: boto)
        round_trip(client, bucket, "refreshed.pdf", b"each request its own keys")
    assert [s.method for s in front.seen] == ["PUT", "HEAD", "GET"]
    keys = [s.access_key for s in front.seen]
    assert len(set(keys)) == 3 and keys[0] != issued[0]["access_key"]  # each request signed after a refresh
    by_key = {c["access_key"]: c for c in issued}
    for seen in front.seen:
        used = by_key[seen.access_key]
        assert seen.headers["x-amz-security-token"] == used["token"]
        assert botocore_authorization(seen, used["access_key"], used["secret_key"], used["token"]) == seen.headers[
            "authorization"]


# -- 5. clock skew ---------------------------------------------------------------------------------

class ClockAheadS3:
    """An S3 endpoint whose clock is `ahead` of this machine's: like AWS, it refuses a request signed more
    than 15 minutes away from its time (403 RequestTimeTooSkewed, RequestTime and ServerTime in the body, its
    Date header; no body for a HEAD) and answers the others, keeping the documents in memory."""

    def __init__(self, ahead: dt.timedelta) -> None:
        self.ahead = ahead
        self.objects: dict[str, bytes] = {}

    def __call__(self, seen: Seen) -> Reply:
        now = dt.datetime.now(dt.UTC) + self.ahead
        date = {"Date": email.utils.format_datetime(now, usegmt=True), "x-amz-request-id": "clock-ahead"}
        if abs(seen.amz_date - now) > dt.timedelta(minutes=15):
            body = s3_error("RequestTimeTooSkewed", "The difference between the request time and the current "
                            "time is too large.", RequestTime=seen.headers["x-amz-date"],
                            ServerTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"), MaxAllowedSkewMilliseconds="900000")
            return Reply(403, {**date, "Content-Type": "application/xml"}, b"" if seen.method == "HEAD" else body)
        key = seen.path.split("?")[0]
        etag = {"ETag": f'"{hashlib.md5(self.objects.get(key, seen.body)).hexdigest()}"'}
        if seen.method == "PUT":
            self.objects[key] = seen.body
            return Reply(200, {**date, **etag})
        if key not in self.objects:
            return Reply(404, {**date, "Content-Type": "application/xml"},
                         b"" if seen.method == "HEAD" else s3_error("NoSuchKey", "The specified key does not exist."))
        modified = {"Last-Modified": date["Date"], "Content-Type": "application/pdf"}
        return Reply(200, {**date, **etag, **modified, "Content-Length": str(len(self.objects[key]))},
                     self.objects[key])


def test_a_clock_an_hour_behind_is_corrected(hot_site: Any) -> None:
    """This machine's clock is an hour behind S3's (a VM without NTP): the first request is refused as
    RequestTimeTooSkewed, signed again at the server's time (awscrt's signer, then sent as signed, since
    awscrt's S3 client signs at its own clock), and every later request is signed at the corrected time. A
    HEAD's refusal has no body to name the error: its 403 and the server's Date say it.
    botocore itself has no skew correction (its only use of the server's Date is the retry header
    `amz-sdk-request: ttl=...`, endpoint.py): boto3 fails on such a server, which this test also shows."""
    ahead = dt.timedelta(hours=1)
    with S3Front(answer=ClockAheadS3(ahead)) as front:
        def signed_at() -> list[tuple[str, str, int]]:  # (method, path, minutes off the server's time)
            seen, front.seen[:] = list(front.seen), []
            now = dt.datetime.now(dt.UTC) + ahead
            return [(s.method, s.path, round((s.amz_date - now).total_seconds() / 60)) for s in seen]

        config = site(front.url, "AKIDEXAMPLE", "secret", "skewed", max_attempts=2)
        put_first = fast_client(config)
        round_trip(put_first, "skewed", "k", b"signed at the server's time")
        # awscrt retries a RequestTimeTooSkewed itself (signed at the same wrong clock), then reports it without
        # the answer's Date: boto3's HeadBucket asks the server's time, and the PUT is signed at it.
        assert signed_at() == [("PUT", "/skewed/k", -60)] * 2 + [("HEAD", "/skewed", -60)] + [
            ("PUT", "/skewed/k", 0), ("HEAD", "/skewed/k", 0), ("GET", "/skewed/k", 0)]

        head_first = fast_client(config)  # a HEAD first: a 403 without a body
        assert head_first.head_object(Bucket="skewed", Key="k")["ContentLength"] == len(b"signed at the server's time")
        assert head_first.get_object(Bucket="skewed", Key="k")["Body"].read() == b"signed at the server's time"
        assert signed_at() == [("HEAD", "/skewed/k", -60), ("HEAD", "/skewed/k", 0), ("GET", "/skewed/k", 0)]

        boto = make_client(SiteConfig(**{**config.__dict__, "fast_path": False}))
        with pytest.raises(ClientError) as refused:
            boto.get_object(Bucket="skewed", Key="k")
        assert refused.value.response["Error"]["Code"] == "RequestTimeTooSkewed"
        assert {minutes for _method, _path, minutes in signed_at()} == {-60}  # every attempt at its own clock


def test_a_forbidden_head_with_the_right_time_is_not_retried(hot_site: Any) -> None:
    """The other side of the skew rule: a HEAD refused 403 by a server whose clock agrees (wrong keys) is sent
    once and fails as boto3's ClientError 403, without any retry."""
    front_answer = ClockAheadS3(dt.timedelta(0))
    with S3Front(answer=lambda seen: Reply(403, {"Date": email.utils.format_datetime(dt.datetime.now(dt.UTC),
                                                                                       usegmt=True)})
                 if seen.method == "HEAD" else front_answer(seen)) as front:
        client = fast_client(site(front.url, "AKIDEXAMPLE", "secret", "b"))
        with pytest.raises(ClientError) as forbidden:
            client.head_object(Bucket="b", Key="k")
    assert forbidden.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert len(front.seen) == 1


# -- 6. proxies --------------------------------------------------------------------------------

def test_proxies_send_every_request_through_boto3(hot_site: Any, tls_front: S3Front, ca_pem: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY / HTTPS_PROXY (a company network): awscrt's S3 client in Python takes no proxy, so
    make_client returns plain boto3, whose requests go through the proxy (absolute-URI requests for http://,
    a CONNECT tunnel for https://). NO_PROXY exempting the endpoint gives the fast path back."""
    bucket = unique("proxy")
    ensure_bucket(hot_site.client(), bucket, object_lock=False)
    monkeypatch.setenv("AWS_CA_BUNDLE", ca_pem)
    plain = site(hot_site.endpoint_url, hot_site.access_key, hot_site.secret_key, bucket)
    tls = site(tls_front.url, hot_site.access_key, hot_site.secret_key, bucket)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = make_client(plain)
        assert not isinstance(client, CrtS3Client)
        round_trip(client, bucket, "proxied.pdf", b"through the proxy")
        url = f"{hot_site.endpoint_url}/{bucket}/proxied.pdf"
        assert proxy.seen == [("PUT", url), ("HEAD", url), ("GET", url)]
        assert isinstance(make_client(tls), CrtS3Client)  # HTTP_PROXY is for http:// endpoints only

        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        proxy.seen.clear()
        client = make_client(tls)
        assert not isinstance(client, CrtS3Client)
        assert client.get_object(Bucket=bucket, Key="proxied.pdf")["Body"].read() == b"through the proxy"
        assert proxy.seen == [("CONNECT", f"localhost:{tls_front.port}")]
        assert tls_front.seen[-1].method == "GET"  # the tunnel's far end is the TLS front

        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        proxy.seen.clear()
        for config in (plain, tls):
            round_trip(fast_client(config), bucket, "direct.pdf", b"not through the proxy")
        assert proxy.seen == []
