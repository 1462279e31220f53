"""The fast path's requests are the ones boto3 sends and are signed correctly, for any object key.

awscrt signs (SigV4) what crt_s3 builds from botocore's serializer: a wrong path encoding or a header signed
differently from how it is sent would be refused by S3 with 403 SignatureDoesNotMatch, or worse, reach another
key. A property test sends awkward keys, metadata and version ids through both clients to a local recording
server and checks, independently of awscrt, (a) that the fast path sends what boto3 sends and (b) that
botocore's own signer, given what arrived, produces the same Authorization. SeaweedFS, which verifies
signatures itself, then takes the nastiest keys for real.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import string
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.replication.crt_s3 import CrtS3Client
from vault_pipeline.replication.s3client import SiteConfig, make_client
from vault_pipeline_tests.conftest import unique

ACCESS_KEY, SECRET_KEY, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-3"
BUCKET = "recorded"
settings.register_profile("crt-signing", max_examples=60, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Headers whose value legitimately differs between boto3 and the fast path, left out of comparison (a):
# * date and signature: x-amz-date, authorization (checked by (b) instead);
# * x-amz-content-sha256: boto3 over http signs the payload's SHA-256, awscrt sends UNSIGNED-PAYLOAD (the
#   body is covered by x-amz-checksum-sha256, which is compared);
# * who is calling: user-agent, x-amz-user-agent, amz-sdk-invocation-id, amz-sdk-request;
# * x-amz-sdk-checksum-algorithm: boto3 adds it when it resolves a checksum itself (it names the algorithm of
#   the x-amz-checksum-* header sent, which is compared);
# * transport: host (the same endpoint anyway), accept-encoding, connection, expect, content-length on a
#   request without body (awscrt sends "0", boto3 nothing; on PUT both send the body's length, compared).
NOT_COMPARED = frozenset({
    "x-amz-date", "authorization", "x-amz-content-sha256", "user-agent", "x-amz-user-agent",
    "amz-sdk-invocation-id", "amz-sdk-request", "x-amz-sdk-checksum-algorithm", "host", "accept-encoding",
    "connection", "expect",
})


@dataclass
class Received:
    method: str
    target: str  # the raw request target: path and query exactly as on the request line
    headers: list[tuple[str, str]]  # as sent, names in their case, in order
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def compared(self) -> dict[str, str]:
        """The headers that must be equal between boto3 and the fast path (see NOT_COMPARED)."""
        kept = {k.lower(): v for k, v in self.headers
                if k.lower() not in NOT_COMPARED and k.lower().startswith(("x-amz-", "content-"))}
        if not self.body:
            kept.pop("content-length", None)
        return kept


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records every request as it arrived and answers 200 with the headers S3 would."""

    protocol_version = "HTTP/1.1"
    received: list[Received] = []

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        # The request line, not self.path: nothing of http.server's path handling gets in between.
        target = self.requestline.split(" ")[1]
        Recorder.received.append(Received(self.command, target, list(self.headers.items()), body))
        self.send_response(200)
        for name, value in [("ETag", '"9b2cf535f27731c974343645a3985328"'), ("x-amz-version-id", "v-recorded"),
                            ("Last-Modified", "Wed, 21 Oct 2026 07:28:00 GMT"), ("Content-Length", "0"),
                            ("Content-Type", "application/pdf")]:
            self.send_header(name, value)
        self.end_headers()

    do_HEAD = do_PUT = do_GET = _record

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[CrtS3Client, Any]]:
    """The recording server, a fast-path client and a plain boto3 client, both path-style, same credentials."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    fast = make_client(SiteConfig("hot", endpoint, REGION, ACCESS_KEY, SECRET_KEY, BUCKET, max_attempts=1))
    assert isinstance(fast, CrtS3Client)
    plain = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    yield fast, plain
    server.shutdown()
    server.server_close()


def sha256_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def verify_signature(request: Received, host: str) -> None:
    """(b): botocore's S3 signer, run on what arrived (method, raw target, the headers named in SignedHeaders)
    at the request's own x-amz-date, must produce exactly the Authorization header awscrt sent."""
    authorization = request.header("authorization")
    assert authorization is not None and authorization.startswith("AWS4-HMAC-SHA256 Credential=")
    signed_names = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "x-amz-content-sha256"} <= set(signed_names)
    assert request.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    signed = AWSRequest(method=request.method, url=f"http://{host}{request.target}",
                        headers={name: request.header(name) for name in signed_names if name != "host"})
    # The payload is not signed, as awscrt sends it: botocore's S3 signer says so for this client setting.
    signed.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    amz_date = request.header("x-amz-date")
    assert amz_date is not None
    when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")  # naive, in UTC: what botocore signs with
    # botocore 1.44 takes its signing time from botocore.compat.get_current_datetime, imported into botocore.auth.
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(signed)
    assert signed.headers["Authorization"] == authorization


def check_same_request(fast: Received, plain: Received, host: str) -> None:
    """(a) what the fast path sent is what boto3 sent for the same call, and (b) its signature verifies."""
    assert fast.method == plain.method
    assert fast.target == plain.target  # path encoding and query string, byte for byte
    assert fast.compared() == plain.compared()
    assert fast.body == plain.body
    verify_signature(fast, host)


# -- the generated calls ------------------------------------------------------------------------------------

AWKWARD = [*" %+=&?#;~*'\"!$(),:@[]{}|\\^`<>", "é", "文", "✓", "\u00a0", "\u200b", "\U0001f600", "\U00010348"]
SEGMENTS = st.one_of(
    st.sampled_from(["", ".", "..", "./", "../", "a b", "%2F", "%", "+", "~user"]),
    st.text(alphabet=st.one_of(st.sampled_from(AWKWARD), st.characters(blacklist_categories=("Cs",))),
            min_size=1, max_size=12),
)


@st.composite
def object_keys(draw: st.DrawFn) -> str:
    """Keys of S3's full range: any unicode (astral plane included), reserved and unsafe characters, empty,
    "." and ".." segments, a leading slash, runs of slashes, up to S3's 1024 bytes of UTF-8."""
    key = ("/" if draw(st.booleans()) else "") + "/".join(draw(st.lists(SEGMENTS, min_size=1, max_size=8)))
    if draw(st.integers(0, 4)) == 0:  # a long key: padded with a multi-byte character up to the limit
        key += draw(st.sampled_from(["é", "x", "\U0001f600", "/"])) * 1024
    key = key.encode()[:1024].decode(errors="ignore")  # cut on a character boundary
    return key or "k"


WORDS = st.lists(st.text(alphabet=string.ascii_letters + string.digits + string.punctuation, min_size=1, max_size=8),
                 min_size=1, max_size=4)
# ASCII words (S3 metadata is ASCII) separated by runs of spaces: sent as they are, signed folded to one.
METADATA_VALUES = WORDS.flatmap(lambda words: st.lists(
    st.sampled_from([" ", "  ", "     "]), min_size=len(words) - 1, max_size=len(words) - 1).map(
    lambda gaps: words[0] + "".join(gap + word for gap, word in zip(gaps, words[1:], strict=True))))
METADATA = st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True), METADATA_VALUES, max_size=3)
VERSION_IDS = st.one_of(st.none(), st.text(alphabet=st.one_of(st.sampled_from(AWKWARD), st.characters(
    blacklist_categories=("Cs",))), min_size=1, max_size=40))


@settings(settings.get_profile("crt-signing"))
@given(key=object_keys(), metadata=METADATA, version_id=VERSION_IDS,
       body=st.binary(min_size=0, max_size=64))
def test_requests_match_boto3_and_their_signatures_verify(
        recorder: tuple[CrtS3Client, Any], key: str, metadata: dict[str, str], version_id: str | None,
        body: bytes) -> None:
    """For any key, metadata (runs of spaces included: sent as they are, signed folded) and version id, the
    fast path's HEAD and PUT reach the server exactly as boto3's do, and carry a valid SigV4 signature."""
    fast, plain = recorder
    host = fast.meta.endpoint_url.removeprefix("http://")
    version = {"VersionId": version_id} if version_id is not None else {}
    put = {"Bucket": BUCKET, "Key": key, "Body": body, "ChecksumSHA256": sha256_b64(body), "Metadata": metadata}
    for call in (lambda client: client.head_object(Bucket=BUCKET, Key=key, **version),
                 lambda client: client.put_object(**put)):
        Recorder.received = []
        call(fast)
        call(plain)
        assert len(Recorder.received) == 2, "one request each, no retry"
        check_same_request(*Recorder.received, host)


def test_spaces_in_metadata_are_sent_as_they_are(recorder: tuple[CrtS3Client, Any]) -> None:
    """A fixed example of what the property covers: "a  b   c" arrives unfolded, and the signature (computed
    on the folded value, as SigV4 says) verifies."""
    fast, _plain = recorder
    Recorder.received = []
    fast.put_object(Bucket=BUCKET, Key="/./../a b/%/+/~/\U0001f600", Body=b"x", ChecksumSHA256=sha256_b64(b"x"),
                    Metadata={"spaced": "a  b   c"})
    (request,) = Recorder.received
    assert request.header("x-amz-meta-spaced") == "a  b   c"
    assert request.target == f"/{BUCKET}//./../a%20b/%25/%2B/~/%F0%9F%98%80"
    verify_signature(request, fast.meta.endpoint_url.removeprefix("http://"))


# -- SeaweedFS verifies signatures itself ------------------------------------------------------------------

NASTY_KEYS = [
    "/leading/slash",
    "a//double///slashes",  # not ending in "/": SeaweedFS makes such a key a directory, without body
    "..x/.../dots.in.segments/..y",
    "sp ace/ +plus+/=eq=/&amp/?q/#hash/;semi/~tilde/*star",
    "%/%25/%2F/%zz",
    "quotes/'single'/\"double\"/`back`",
    "unicodé/文件/✓/\u00a0nbsp/\U0001f600/\U00010348",
    "long/" + "é" * 120 + "/" + "\U0001f600" * 60,  # segments under SeaweedFS's 255 bytes, 490 bytes in all
]


@pytest.mark.parametrize("key", NASTY_KEYS)
def test_seaweedfs_accepts_the_signatures_of_nasty_keys(hot_site: Any, key: str) -> None:
    """PUT, HEAD and GET of each key through the fast path succeed on SeaweedFS, which refuses a request whose
    SigV4 signature does not match (403): path encoding and signing agree with what a real server computes."""
    client = make_client(SiteConfig("hot", hot_site.endpoint_url, "us-east-1", hot_site.access_key,
                                    hot_site.secret_key, "unused"))
    assert isinstance(client, CrtS3Client)
    bucket = unique("crt-sign")
    ensure_bucket(client, bucket, object_lock=False)
    body = key.encode() * 2
    client.put_object(Bucket=bucket, Key=key, Body=body, ChecksumSHA256=sha256_b64(body),
                      Metadata={"spaced": "a  b   c"})
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(body) and head["Metadata"]["spaced"] == "a  b   c"
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    # The same object as boto3 addresses with that key. (SeaweedFS stores keys as file paths: it lists
    # "/leading/slash" as "leading/slash", a server's normalisation that is the same for both clients.)
    assert client._boto.head_object(Bucket=bucket, Key=key)["ETag"] == head["ETag"]
    assert client._boto.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


@pytest.mark.parametrize("key", ["./dot", "a/../b", "a/./b", "a/."])
def test_seaweedfs_refuses_dot_segments_from_both_clients_alike(hot_site: Any, key: str) -> None:
    """SeaweedFS refuses keys with "." or ".." segments (400 InvalidRequest; AWS stores them): the fast path
    gets the same refusal as boto3, not a 403. Their signing is covered by the recording server above."""
    client = make_client(SiteConfig("hot", hot_site.endpoint_url, "us-east-1", hot_site.access_key,
                                    hot_site.secret_key, "unused"))
    bucket = unique("crt-sign")
    ensure_bucket(client, bucket, object_lock=False)
    codes = []
    for put in (client.put_object, client._boto.put_object):
        with pytest.raises(ClientError) as refused:
            put(Bucket=bucket, Key=key, Body=b"x", ChecksumSHA256=sha256_b64(b"x"))
        codes.append((refused.value.response["Error"]["Code"],
                      refused.value.response["ResponseMetadata"]["HTTPStatusCode"]))
    assert codes == [("InvalidRequest", 400)] * 2
