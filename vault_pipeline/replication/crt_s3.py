"""The documents' S3 requests on the AWS Common Runtime: GET, PUT, HEAD and streamed UploadPart.

Why: on small documents the copy is bound by the client's CPU per request, and botocore spends most of
it around the request rather than in it (event hooks, endpoint rules, retries, parsers). awscrt's S3
client (the one `boto3[crt]` and the AWS CLI v2 use) does the signing (SigV4), the connections, TLS,
retries with a retry quota and response checksum validation (CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256)
in native code on its own I/O threads. Nothing of the protocol is written here: botocore serializes each
request from the S3 service model and parses each answer (headers, errors) with its own parser, so the
arguments, response keys and exceptions are exactly boto3's; botocore's endpoint rules say where a
bucket lives (learned once per bucket); botocore resolves the credentials (session tokens, refreshable
IAM roles) and awscrt signs with them. What is left here is plumbing between the two.

`CrtS3Client` wraps a boto3 client: `get_object`, `head_object` and `put_object` of documents, and
`upload_part_streamed`, go through awscrt; every other call (listing, multipart set-up, retention,
tagging, presigning), and any call with arguments this path does not handle, goes to boto3 unchanged.
awscrt receives a GetObject's body whole, so get_object is for documents known to be small (the copier
pins them to their listed ETag); reads that may be large (hash pass, parts, restores) use `streaming`,
the boto3 client.
`s3client.make_client` gives plain boto3 when a proxy applies to the endpoint (awscrt's S3 client in
Python takes no proxy).

Behaviours that awscrt leaves to the caller, done here as AWS's other SDKs do them:
* region redirects: an answer 301/307/400 naming another `x-amz-bucket-region` sends the request again
  signed for that region, to the endpoint botocore's rules give for it, and so are the bucket's next ones;
* clock skew: `RequestTimeTooSkewed` (or a HEAD's bodiless 403 whose `Date` is far off) sets an offset
  from the server's `Date` (asked with a HeadBucket when awscrt, after its own retries, kept no answer);
  from then on requests are signed by awscrt's signer at the corrected time and sent as they are, since
  awscrt's S3 client signs at its own clock whatever date it is given (botocore has no skew correction);
* an untrusted certificate fails at once (botocore's SSLError, when the client is made) rather than at
  the read timeout (see _check_certificate);
* stalled transfers: a request during which no byte moved for as long as all its attempts may take
  (`read_timeout` each, plus back-off: boto3's worst case) is cancelled, botocore's ReadTimeoutError;
* GET bodies whose checksum header awscrt did not recognise are checked with botocore's checksum
  classes (check_body).

Bodies are the object's bytes as stored: awscrt never decodes a `Content-Encoding`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import awscrt.exceptions
from awscrt.auth import AwsCredentialsProvider, aws_sign_request
from awscrt.http import HttpHeaders, HttpRequest
from awscrt.io import ClientBootstrap, ClientTlsContext, DefaultHostResolver, EventLoopGroup, TlsContextOptions
from awscrt.s3 import (
    S3ChecksumConfig,
    S3Client,
    S3RequestTlsMode,
    S3RequestType,
    S3ResponseError,
    S3RetryConfig,
    create_default_s3_signing_config,
)
from botocore import parsers, serialize, xform_name
from botocore.awsrequest import HeadersDict
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)
from botocore.handlers import validate_ascii_metadata, validate_bucket_name
from botocore.httpchecksum import (
    CrtCrc32cChecksum,
    CrtCrc32Checksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from botocore.httpsession import get_cert_path
from botocore.utils import percent_encode_sequence
from s3transfer.crt import BotocoreCRTCredentialsWrapper

log = logging.getLogger(__name__)
BUFFERED_GET_LIMIT = 16 * 1024 * 1024  # larger bodies are streamed by boto3, never held in memory
MAX_BACKOFF_S = 20.0  # awscrt's S3 client default (S3RetryConfig.max_backoff_secs)
SKEW_CODES = frozenset({"RequestTimeTooSkewed"})
REDIRECT_STATUS = frozenset({301, 307, 400})  # 400: AuthorizationHeaderMalformed names the right region
_CONNECT_ERRORS = frozenset({
    "AWS_IO_SOCKET_CONNECTION_REFUSED", "AWS_IO_SOCKET_TIMEOUT", "AWS_IO_DNS_INVALID_NAME",
    "AWS_IO_DNS_QUERY_FAILED", "AWS_IO_SOCKET_NO_ROUTE_TO_HOST", "AWS_IO_SOCKET_NETWORK_DOWN",
})
# Retryable answers (throttling, 5xx) still failing after the last attempt.
_RETRIES_EXHAUSTED = {"AWS_ERROR_S3_SLOW_DOWN": ("SlowDown", 503),
                      "AWS_ERROR_S3_INTERNAL_ERROR": ("InternalError", 500),
                      "AWS_ERROR_S3_REQUEST_TIME_TOO_SKEWED": ("RequestTimeTooSkewed", 403)}
# A Date this far from the time the client signs at is a clock skew (S3 refuses beyond 15 minutes; AWS's Java
# SDK adjusts beyond 4).
SKEW_LIMIT = dt.timedelta(minutes=5)
_TIMEOUT_ERRORS = frozenset({"AWS_ERROR_HTTP_RESPONSE_FIRST_BYTE_TIMEOUT", "AWS_ERROR_HTTP_CONNECTION_TIMEOUT"})


def parse_timestamp(value: str) -> dt.datetime:
    """botocore's timestamp parser, without dateutil for the two forms S3 puts in headers (an HTTP date,
    ISO 8601 with a zone): that parser was a third of the cost of reading an answer. Anything else is
    botocore's."""
    try:
        if value.endswith(" GMT"):
            return email.utils.parsedate_to_datetime(value)
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            return parsed
    except (TypeError, ValueError):
        pass
    return parsers.DEFAULT_TIMESTAMP_PARSER(value)


# botocore's classes, in botocore's (and awscrt's) order of preference when an answer has several.
_RESPONSE_CHECKSUMS = {"crc64nvme": CrtCrc64NvmeChecksum, "crc32c": CrtCrc32cChecksum, "crc32": CrtCrc32Checksum,
                       "sha1": Sha1Checksum, "sha256": Sha256Checksum}


def check_body(headers: list[tuple[str, str]], data: bytes, where: str) -> str | None:
    """The body checked against the answer's full-object checksum where awscrt did not check it: awscrt
    (0.38.1) finds `x-amz-checksum-crc32` as AWS writes it but silently skips `X-Amz-Checksum-Crc32` as
    SeaweedFS (Go) writes it, and reports did_validate_checksum False. Every checksum the answer has must
    match (S3 sends one); returns the first checked in this order, None when there is none. A composite
    checksum of a multipart upload ("...-3") covers the parts' checksums, not these bytes, and is not checked
    (as in botocore and awscrt). A mismatch is botocore's FlexibleChecksumError, as from awscrt."""
    found = HeadersDict(headers)
    checked: list[str] = []
    for algorithm, checksum_cls in _RESPONSE_CHECKSUMS.items():
        expected = found.get(f"x-amz-checksum-{algorithm}")
        if expected is None or "-" in expected:
            continue
        checksum = checksum_cls()
        checksum.update(data)
        if checksum.b64digest() != expected:
            raise FlexibleChecksumError(error_msg=f"{where}: the body does not match the checksum S3 sent")
        checked.append(algorithm.upper())
    return checked[0] if checked else None


class _TooLarge(Exception):
    """The body is larger than the client buffers: the request is cancelled on its headers."""


class _Answer:
    __slots__ = ("body_error", "chunks", "headers", "last_activity", "limit", "status", "validated_with")

    def __init__(self, limit: int | None) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.last_activity = time.monotonic()
        self.limit = limit
        self.body_error: BaseException | None = None  # what reading the request body raised (awscrt keeps no trace)
        self.validated_with: str | None = None  # the algorithm awscrt checked the body with, if it did


class BufferedBody:
    """A GET body received whole by awscrt (its checksum already validated), read like botocore's
    StreamingBody: read(), read(n), iter_chunks(), close(). `validated_with` names the checksum algorithm
    the body was checked against ("CRC64NVME"...), None if the answer carried no checksum that could be."""

    def __init__(self, data: bytes, validated_with: str | None = None) -> None:
        self._stream = io.BytesIO(data)
        self.validated_with = validated_with

    def read(self, amt: int | None = None) -> bytes:
        return self._stream.read(amt)

    def iter_chunks(self, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        while chunk := self._stream.read(chunk_size):
            yield chunk

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> BufferedBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeferredBody:
    """The body of an object too large to buffer: opened on first read as boto3's stream of the same
    version (If-Match on the ETag the headers gave), so that memory never grows with the object."""

    def __init__(self, open_stream: Callable[[], Any]) -> None:
        self._open = open_stream
        self._stream: Any = None

    def _body(self) -> Any:
        if self._stream is None:
            self._stream = self._open()
        return self._stream

    def read(self, amt: int | None = None) -> bytes:
        return self._body().read(amt)

    def iter_chunks(self, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        return self._body().iter_chunks(chunk_size)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def __enter__(self) -> DeferredBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _IterableStream(io.RawIOBase):
    """A request body awscrt reads from: the chunks of `open_body()`; seeking to 0 opens it again (a retry)."""

    def __init__(self, open_body: Callable[[], Iterable[bytes]], answer: _Answer) -> None:
        self._open = open_body
        self._answer = answer
        self._chunks: Iterator[bytes] = iter(open_body())
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if offset != 0 or whence != io.SEEK_SET:
            raise io.UnsupportedOperation("a streamed part can only be read again from its start")
        self._chunks, self._pending = iter(self._open()), memoryview(b"")
        return 0

    def readinto(self, buffer: Any) -> int:
        try:
            return self._readinto(buffer)
        except BaseException as exc:  # awscrt turns it into AWS_ERROR_UNKNOWN: keep it to raise it as it was
            self._answer.body_error = exc
            raise

    def _readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self._answer.last_activity = time.monotonic()
        return size


def crt_credentials(credentials: Any) -> AwsCredentialsProvider:
    """awscrt credentials from botocore's: fixed ones as they are (with their session token), refreshable
    ones (IAM roles, SSO, assume-role) asked of botocore before each signature, so they refresh as in boto3."""
    if isinstance(credentials, RefreshableCredentials):
        return BotocoreCRTCredentialsWrapper(credentials).to_crt_credentials_provider()
    frozen = credentials.get_frozen_credentials()
    return AwsCredentialsProvider.new_static(frozen.access_key, frozen.secret_key, frozen.token)


def _tls_context(ca_file: str | None) -> ClientTlsContext:
    """TLS of the S3 client: peers checked against `ca_file`, or not checked at all when None (verify=False)."""
    options = TlsContextOptions()
    if ca_file is None:
        options.verify_peer = False
    else:
        options.override_default_trust_store_from_path(ca_filepath=ca_file)
    return ClientTlsContext(options)


def _check_certificate(endpoint: urllib.parse.SplitResult, ca_file: str, timeout: float) -> None:
    """Fail now, as boto3 would on its first request, when the endpoint's certificate is not trusted. awscrt
    (0.38.1, s2n) answers a certificate it refuses by holding the connection 10-30 s (s2n's blinding delay
    against timing attacks) and its S3 client then tries new connections, so a request would only end at the
    read timeout. One handshake with Python's ssl (OpenSSL, the library boto3 uses) against the same CA
    bundle says it at once. Any other failure (the endpoint down) is left to the requests themselves."""
    context = ssl.create_default_context(cafile=ca_file)
    host = endpoint.hostname or ""
    try:
        with socket.create_connection((host, endpoint.port or 443), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            pass
    except ssl.SSLError as error:
        raise SSLError(endpoint_url=endpoint.geturl(), error=error) from None
    except OSError:
        log.debug("TLS check of %s did not complete", endpoint.geturl(), exc_info=True)


class CrtS3Client:
    """boto3-compatible get_object / head_object / put_object (and upload_part_streamed) on awscrt's S3
    client; everything else goes to the boto3 client it wraps."""

    # Calls with any other argument (SSE-C keys, ranges, file bodies...) go to boto3 unchanged.
    _GET_ARGS = frozenset({"Bucket", "Key", "IfMatch", "VersionId", "ChecksumMode"})
    _HEAD_ARGS = frozenset({"Bucket", "Key", "IfMatch", "VersionId", "ChecksumMode"})
    _PUT_ARGS = frozenset({"Bucket", "Key", "Body", "ChecksumSHA256", "ChecksumAlgorithm", "Metadata",
                           "ObjectLockMode", "ObjectLockRetainUntilDate", "StorageClass", "Tagging", "IfNoneMatch",
                           "ContentType", "ContentEncoding", "ContentDisposition", "CacheControl", "ContentLanguage"})

    def __init__(self, boto_client: Any, *, credentials: Any, verify: bool | str = True, max_attempts: int = 4,
                 connect_timeout: float = 10.0, read_timeout: float = 120.0, validate_responses: bool = True,
                 buffer_limit: int = BUFFERED_GET_LIMIT, make_regional_client: Callable[[str], Any],
                 io_threads: int | None = None) -> None:
        self._boto = boto_client
        self.meta = boto_client.meta
        self.exceptions = boto_client.exceptions
        self._region = boto_client.meta.region_name
        self._model = boto_client.meta.service_model
        self._serializer = serialize.create_serializer("rest-xml", include_validation=True)
        self._parser = parsers.RestXMLParser(timestamp_parser=parse_timestamp)
        self._validate = validate_responses
        self._buffer_limit = buffer_limit
        self._read_timeout = read_timeout
        # awscrt retries throttling, 5xx and broken connections itself, with no callback in between: a request
        # is only stalled when no byte moved for as long as all its attempts and their back-off may take
        # (boto3's own worst case: the read timeout per attempt, plus its back-off).
        self._stall_limit = read_timeout * max(1, max_attempts) + sum(
            min(MAX_BACKOFF_S, 0.5 * 2 ** attempt) for attempt in range(max(1, max_attempts)))
        self._make_regional_client = make_regional_client
        self._credentials = crt_credentials(credentials)
        self._lock = threading.Lock()
        self._endpoints: dict[str, tuple[str, str]] = {}  # bucket -> (Host, path prefix)
        self._bucket_regions: dict[str, str] = {}  # buckets found in another region through a redirect
        self._regional_clients: dict[str, Any] = {}
        self._skew = dt.timedelta(0)  # server time - local time, once a server said the clock is off
        endpoint = urllib.parse.urlsplit(boto_client.meta.endpoint_url)
        elg = EventLoopGroup(io_threads)
        # The CA bundle boto3 itself uses (its own, or AWS_CA_BUNDLE...); None: certificates not checked.
        ca_file = None if verify is False else get_cert_path(verify)
        tls = _tls_context(ca_file) if endpoint.scheme == "https" else None
        self._client_options = {
            "bootstrap": ClientBootstrap(elg, DefaultHostResolver(elg)), "region": self._region,
            "tls_mode": S3RequestTlsMode.ENABLED if tls else S3RequestTlsMode.DISABLED,
            "tls_connection_options": tls.new_connection_options() if tls else None,
            "connect_timeout_ms": int(connect_timeout * 1000),
            "retry_config": S3RetryConfig(max_retries=max(0, max_attempts - 1)),
        }
        if tls is not None and ca_file is not None:
            _check_certificate(endpoint, ca_file, connect_timeout)
        self._crt = S3Client(signing_config=create_default_s3_signing_config(
            region=self._region, credential_provider=self._credentials), **self._client_options)
        self._presigned_crt: S3Client | None = None  # sends requests signed here (at a corrected clock)
        self._operations = {name: self._model.operation_model(name)
                            for name in ("GetObject", "HeadObject", "PutObject", "UploadPart")}
        # botocore's endpoint rules place the bucket (in the host or the path), and its client takes
        # "/{Bucket}" out of an operation's path the first time it prepares one. Prepare ours now, so that
        # their serialized path is the key's alone whatever ran before, and check that it is.
        for name in self._operations:
            boto_client.generate_presigned_url(xform_name(name), Params={
                "Bucket": "b", "Key": "k", **({"UploadId": "u", "PartNumber": 1} if name == "UploadPart" else {})})
            if "{Bucket}" in self._operations[name].http["requestUri"]:
                raise RuntimeError(f"botocore left the bucket in the path of {name}: this client needs updating")

    @property
    def streaming(self) -> Any:
        """The boto3 client, for reads that may be large: get_object here receives a body whole."""
        return self._boto

    def __getattr__(self, name: str) -> Any:  # list_objects_v2, create_multipart_upload, get_paginator...
        return getattr(self._boto, name)

    # -- the requests ----------------------------------------------------------------------------------
    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        """boto3's get_object for documents known to be small (at most `buffer_limit`, pinned to a version
        or ETag): awscrt receives a GetObject's body whole before it hands it over and cannot stop it once
        started, so a larger answer costs its size in memory (it is then read again, streamed, by boto3).
        Reads that may be large go through `streaming`."""
        if not kwargs.keys() <= self._GET_ARGS:
            return self._boto.get_object(**kwargs)
        params = dict(kwargs)
        if self._validate:
            params["ChecksumMode"] = "ENABLED"
        try:
            answer = self._call("GetObject", params, want_body=True, limit=self._buffer_limit)
        except _TooLarge as too_large:
            parsed = self._parse("GetObject", too_large.args[0])
            pinned = {**kwargs, "IfMatch": parsed["ETag"]} if "VersionId" not in kwargs and parsed.get("ETag") \
                else kwargs
            parsed["Body"] = DeferredBody(lambda: self._boto.get_object(**pinned)["Body"])
            return parsed
        parsed = self._parse("GetObject", answer)
        data = b"".join(answer.chunks)
        validated = answer.validated_with
        if validated is None and self._validate:
            validated = check_body(answer.headers, data, f"GetObject {kwargs['Bucket']}")
        parsed["Body"] = BufferedBody(data, validated)
        return parsed

    def head_object(self, **kwargs: Any) -> dict[str, Any]:
        if not kwargs.keys() <= self._HEAD_ARGS:
            return self._boto.head_object(**kwargs)
        return self._parse("HeadObject", self._call("HeadObject", kwargs))

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        body = kwargs.get("Body")
        if not kwargs.keys() <= self._PUT_ARGS or not isinstance(body, bytes | bytearray):
            return self._boto.put_object(**kwargs)
        answer = self._call("PutObject", kwargs, body=lambda _answer: io.BytesIO(body), length=len(body))
        return self._parse("PutObject", answer)

    def upload_part_streamed(self, *, Bucket: str, Key: str, UploadId: str, PartNumber: int,
                             ChecksumSHA256: str, length: int,
                             open_body: Callable[[], Iterable[bytes]]) -> dict[str, Any]:
        """UploadPart with a body read from `open_body()` (opened again for a retry), so that a part is never
        held whole in Python. Not a boto3 method: the copier uses it when the client has it."""
        params = {"Bucket": Bucket, "Key": Key, "UploadId": UploadId, "PartNumber": PartNumber,
                  "ChecksumSHA256": ChecksumSHA256, "ChecksumAlgorithm": "SHA256"}
        answer = self._call("UploadPart", params, body=lambda answer: _IterableStream(open_body, answer),
                            length=length)
        return self._parse("UploadPart", answer)

    # -- plumbing ----------------------------------------------------------------------------------------
    def _endpoint(self, bucket: str) -> tuple[str, str]:
        """Host and path prefix of `bucket`, as botocore's endpoint rules resolve them (addressing
        style, region, FIPS, dual-stack...): learned once per bucket from a presigned URL."""
        endpoint = self._endpoints.get(bucket)
        if endpoint is None:
            region = self._bucket_regions.get(bucket)
            client = self._regional_client(region) if region else self._boto
            url = urllib.parse.urlsplit(client.generate_presigned_url(
                "head_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60))
            endpoint = (url.netloc, url.path[:-len("/k")])
            with self._lock:
                self._endpoints[bucket] = endpoint
        return endpoint

    def _regional_client(self, region: str) -> Any:
        """A boto3 client of the same site for `region`: its endpoint rules place the bucket."""
        with self._lock:
            client = self._regional_clients.get(region)
            if client is None:
                client = self._regional_clients[region] = self._make_regional_client(region)
        return client

    def _request(self, operation: str, params: dict[str, Any], body: Any, length: int | None) -> HttpRequest:
        validate_bucket_name(params)  # botocore's checks of these operations' parameters, as in boto3
        validate_ascii_metadata(params)
        serialized = self._serializer.serialize_to_request(
            {k: v for k, v in params.items() if k != "Body"}, self._operations[operation])
        host, prefix = self._endpoint(params["Bucket"])
        path = prefix + serialized["url_path"]
        query = serialized["query_string"]
        if query:
            path += "?" + (percent_encode_sequence(query) if isinstance(query, dict) else query)
        headers = [("host", host), ("content-length", str(length or 0))]
        headers.extend((name, value) for name, value in serialized["headers"].items()
                       if name.lower() not in ("content-length", "content-md5"))
        return HttpRequest(serialized["method"], path, HttpHeaders(headers), body)

    def _signing_config(self, bucket: str) -> Any:
        region = self._bucket_regions.get(bucket)
        if region is None and not self._skew:
            return None  # the client's own: its region, signed at the current time
        # create_default_s3_signing_config swallows unknown keywords (a `date` among them): set it on the config.
        return create_default_s3_signing_config(region=region or self._region, credential_provider=self._credentials
                                                ).replace(date=dt.datetime.now(dt.UTC) + self._skew)

    def _presigned_client(self) -> S3Client:
        """An awscrt S3 client that sends requests as they are (signed here): awscrt's S3 client signs at its
        own clock whatever date a signing config gives, so a corrected clock needs awscrt's signer first."""
        with self._lock:
            if self._presigned_crt is None:
                self._presigned_crt = S3Client(**self._client_options)
            return self._presigned_crt

    def _adopt_clock(self, server_date: str | None) -> bool:
        """Take the server's clock when its Date is more than SKEW_LIMIT away from this machine's."""
        if not server_date:
            return False
        try:
            skew = email.utils.parsedate_to_datetime(server_date) - dt.datetime.now(dt.UTC)
        except (TypeError, ValueError):
            return False
        if abs(skew) <= SKEW_LIMIT:
            return False
        log.warning("this machine's clock is %.0f s %s the S3 server's: requests are signed at the server's time",
                    abs(skew.total_seconds()), "behind" if skew > dt.timedelta(0) else "ahead of")
        self._skew = skew
        return True

    def _ask_server_clock(self, bucket: str) -> bool:
        """The server's Date from a HeadBucket (answered, even refused, with the server's time): what awscrt
        does not keep when it gives up on RequestTimeTooSkewed after its own retries."""
        try:
            metadata = self._boto.head_bucket(Bucket=bucket)["ResponseMetadata"]
        except ClientError as refused:
            metadata = refused.response.get("ResponseMetadata", {})
        except BotoCoreError:
            return False
        return self._adopt_clock((metadata.get("HTTPHeaders") or {}).get("date"))

    def _call(self, operation: str, params: dict[str, Any], *, body: Callable[..., Any] | None = None,
              length: int | None = None, want_body: bool = False, limit: int | None = None) -> _Answer:
        """Send one request and return its answer; sent once more when its error answer taught something
        (the bucket's region, the server's clock). S3 errors become boto3's exceptions (ClientError,
        NoSuchKey...), other failures botocore's (EndpointConnectionError, ReadTimeoutError...)."""
        for attempt in (1, 2):
            answer = _Answer(limit)
            stream = body(answer) if body is not None else None
            request = self._request(operation, params, stream, length)
            try:
                self._send(operation, request, answer, params["Bucket"], want_body)
                return answer
            except S3ResponseError as error:
                if attempt == 1 and self._learn_from(error, params["Bucket"]):
                    continue
                raise self._client_error(operation, error) from None
            except ClientError as error:  # RequestTimeTooSkewed after awscrt's own retries, without its Date
                if attempt == 1 and error.response["Error"]["Code"] in SKEW_CODES \
                        and self._ask_server_clock(params["Bucket"]):
                    continue
                raise
        raise AssertionError("unreachable")

    def _send(self, operation: str, request: HttpRequest, answer: _Answer, bucket: str, want_body: bool) -> None:
        done = threading.Lock()  # released by on_done: the lightest signal between awscrt's thread and this one
        done.acquire()
        failure: list[BaseException] = []

        def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            answer.status, answer.headers, answer.last_activity = status_code, headers, time.monotonic()
            if answer.limit is not None and status_code < 300:
                size = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
                if size > answer.limit:
                    # Not kept. awscrt reads a started response to its end whatever is done here (failing this
                    # callback or cancelling the request, a 200 MiB GET still cost +250 MiB): on_body drops it.
                    answer.body_error = _TooLarge(answer)

        def on_body(chunk: Any, offset: int, **_: Any) -> None:
            if answer.body_error is None:
                answer.chunks.append(bytes(chunk))
            answer.last_activity = time.monotonic()

        def on_done(error: BaseException | None = None, did_validate_checksum: bool = False,
                    checksum_validation_algorithm: Any = None, **_: Any) -> None:
            if error is not None:
                failure.append(error)
            if did_validate_checksum and checksum_validation_algorithm is not None:
                answer.validated_with = checksum_validation_algorithm.name
            done.release()

        checksum = S3ChecksumConfig(validate_response=True) if want_body and self._validate else None
        client, signing = self._crt, self._signing_config(bucket)
        if self._skew:
            request, client, signing = aws_sign_request(request, signing).result(), self._presigned_client(), None
        crt_request = client.make_request(
            type=S3RequestType.DEFAULT, operation_name=operation, request=request,
            signing_config=signing, checksum_config=checksum, on_headers=on_headers,
            on_body=on_body if want_body else None, on_done=on_done)
        # The callbacks must not refer to the request: the cycle would keep each request's native buffers
        # until Python's cyclic collector runs (measured on W1: +100 MiB RSS, +10% CPU).
        while not done.acquire(timeout=min(self._read_timeout, 5.0)):
            if time.monotonic() - answer.last_activity > self._stall_limit:
                crt_request.cancel()
                done.acquire(timeout=30)  # cancelled: the timeout is the error to report
                raise ReadTimeoutError(endpoint_url=f"{operation} {bucket}")
        if answer.body_error is not None:  # a callback's own error (a body too large, a part's source failing)
            raise answer.body_error
        if failure:
            error = failure[0]
            if isinstance(error, awscrt.exceptions.AwsCrtError) and not isinstance(error, S3ResponseError):
                raise self._failure(error, operation, bucket) from error
            raise error

    def _learn_from(self, error: S3ResponseError, bucket: str) -> bool:
        """Whether the request is worth sending again after what its error answer says: the bucket's region
        (a redirect) or the server's clock (a skew)."""
        headers = HeadersDict(error.headers or [])
        region = headers.get("x-amz-bucket-region")
        if error.status_code in REDIRECT_STATUS and region and region != self._bucket_regions.get(bucket, self._region):
            with self._lock:
                self._bucket_regions[bucket] = region
                self._endpoints.pop(bucket, None)
            return True
        # A HEAD's refusal has no body to name RequestTimeTooSkewed: a 403 with a Date far off says it.
        skewed = self._error_code(error) in SKEW_CODES or (error.status_code == 403 and not error.body)
        return skewed and self._adopt_clock(headers.get("date"))

    def _error_code(self, error: S3ResponseError) -> str:
        parsed = self._parser.parse({"headers": HeadersDict(error.headers or []), "status_code": error.status_code,
                                     "body": error.body or b""}, None)
        return str(parsed.get("Error", {}).get("Code", ""))

    def _client_error(self, operation: str, error: S3ResponseError) -> Exception:
        """boto3's exception for an S3 error answer, parsed by botocore (NoSuchKey, ClientError...)."""
        response = {"headers": HeadersDict(error.headers or []), "status_code": error.status_code,
                    "body": error.body or b""}
        parsed = self._parser.parse(response, self._operations[operation].output_shape)
        code = parsed.get("Error", {}).get("Code")
        return self.exceptions.from_code(code)(parsed, operation)

    @staticmethod
    def _failure(error: awscrt.exceptions.AwsCrtError, operation: str, bucket: str) -> Exception:
        """botocore's exception for a failure without an S3 answer, so callers classify it as boto3's."""
        where = f"{operation} {bucket}"
        if error.name in _RETRIES_EXHAUSTED:  # awscrt keeps no answer of its last attempt: say what boto3 says
            code, status = _RETRIES_EXHAUSTED[error.name]
            return ClientError({"Error": {"Code": code, "Message": error.message},
                                "ResponseMetadata": {"HTTPStatusCode": status}}, operation)
        if error.name == "AWS_ERROR_S3_RESPONSE_CHECKSUM_MISMATCH":
            return FlexibleChecksumError(error_msg=f"{where}: the body does not match the checksum S3 sent")
        if error.name in _CONNECT_ERRORS:
            return EndpointConnectionError(endpoint_url=where, error=error)
        if error.name in _TIMEOUT_ERRORS:
            return ReadTimeoutError(endpoint_url=where, error=error)
        if error.name.startswith("AWS_IO_TLS"):
            return SSLError(endpoint_url=where, error=error)
        if "CLOSED" in error.name or "CONNECTION" in error.name:
            return ConnectionClosedError(endpoint_url=where, error=error)
        return HTTPClientError(error=f"{where}: {error.name}: {error.message}")

    def _parse(self, operation: str, answer: _Answer) -> dict[str, Any]:
        response = {"headers": HeadersDict(answer.headers), "status_code": answer.status, "body": b""}
        return self._parser.parse(response, self._operations[operation].output_shape)
