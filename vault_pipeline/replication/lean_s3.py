"""A lean HTTP path for the three S3 requests every copied document makes: GET, PUT and HEAD.

Why: on small documents the copy is bound by the client's CPU per request, and botocore spends about
three times more CPU per request than the request itself costs (event hooks, endpoint rules, parsers,
user-agent building; measured ~1.3 ms against ~0.4 ms for the same signed request on urllib3). Every
document needs a GET on the hot site and a PUT and a HEAD on the cold site, and every audit needs HEADs,
so that overhead sets the copy rate of small documents.

`LeanS3Client` wraps a boto3 client: it answers `get_object`, `head_object` and `put_object` itself, on
urllib3 with SigV4 signing (AWS4-HMAC-SHA256, the signing key cached per day), with the same arguments,
the same response keys and the same exceptions (`ClientError` with the S3 error code, BotoCoreError
subclasses for connection failures) as boto3, and hands every other call (listing, multipart, retention,
tagging, presigning...) to the boto3 client. Payloads are sent as UNSIGNED-PAYLOAD: the body's integrity
is the x-amz-checksum-sha256 header the server checks (every PUT here carries one), as for boto3 over
HTTPS. Throttling, 5xx answers and connection failures are retried like botocore's "standard" mode.
A response that carries a full-object CRC32 or SHA-1/SHA-256 checksum for a GET asked with checksum mode
is validated while it is read, as botocore does.

Bodies are the object's bytes as stored, never decoded: an object stored with `Content-Encoding: gzip` (or
br, or an encoding its bytes are not in) is read as its gzip bytes, which are what its checksum covers and
what the cold copy must hold. urllib3 decodes gzip, deflate, br and zstd bodies by default; every request
here turns that off (botocore does the same: `decode_content=False`).

Switch it off per site (`OVH_S3_LEAN_CLIENT` / `AWS_S3_LEAN_CLIENT` = false) to have boto3 do everything.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import random
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from xml.etree import ElementTree

import urllib3
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    FlexibleChecksumError,
    ParamValidationError,
    ReadTimeoutError,
)

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
THROTTLING_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                              "TooManyRequestsException", "RequestTimeout", "RequestTimeTooSkewed"})
MAX_BACKOFF_S = 20.0
META_PREFIX = "x-amz-meta-"
# RFC 3986 unreserved characters stay as they are; S3 keys keep their slashes (no double encoding).
_PATH_SAFE = "/-_.~"
_QUERY_SAFE = "-_.~"


def _quote_path(value: str) -> str:
    return urllib.parse.quote(value, safe=_PATH_SAFE)


def _parse_http_date(value: str | None) -> dt.datetime | None:
    return email.utils.parsedate_to_datetime(value) if value else None


def _parse_iso_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _iso_z(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class _Signer:
    """AWS Signature Version 4 for S3 requests (headers only, unsigned payload)."""

    def __init__(self, credentials: Any, region: str) -> None:
        self._credentials = credentials  # botocore Credentials (possibly refreshable)
        self.region = region
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): key}  # one day, one secret: nothing else is worth keeping
        return key

    def sign(self, method: str, host: str, path: str, query: str, headers: dict[str, str]) -> dict[str, str]:
        """The headers to send: `headers` unchanged, plus host, date, payload and authorization headers."""
        frozen = self._credentials.get_frozen_credentials()
        amz_date = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        wire = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": UNSIGNED_PAYLOAD, **headers}
        if frozen.token:
            wire["x-amz-security-token"] = frozen.token
        # Canonical values are trimmed with inner runs of spaces folded (SigV4); the wire keeps the value.
        canonical_values = {name.lower(): " ".join(value.split()) for name, value in wire.items()}
        names = sorted(canonical_values)
        canonical_headers = "".join(f"{name}:{canonical_values[name]}\n" for name in names)
        signed_names = ";".join(names)
        canonical = f"{method}\n{path}\n{query}\n{canonical_headers}\n{signed_names}\n{UNSIGNED_PAYLOAD}"
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(frozen.secret_key, day), to_sign.encode(), hashlib.sha256).hexdigest()
        wire["authorization"] = (f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, "
                                 f"SignedHeaders={signed_names}, Signature={signature}")
        return wire


class _ValidatingBody:
    """A GET body read in chunks, checking the server's full-object checksum when it gave one."""

    def __init__(self, response: urllib3.BaseHTTPResponse, checksum: tuple[str, str] | None, what: str) -> None:
        self._response = response
        self._what = what
        self._algorithm, self._expected = checksum if checksum else (None, None)
        self._hash: Any = None
        self._crc = 0
        self._done = False
        if self._algorithm in ("sha256", "sha1"):
            self._hash = hashlib.new(self._algorithm)

    def _feed(self, data: bytes) -> None:
        if self._algorithm == "crc32":
            self._crc = zlib.crc32(data, self._crc)
        elif self._hash is not None:
            self._hash.update(data)

    def _finish(self) -> None:
        if self._algorithm is None:
            return
        if self._algorithm == "crc32":
            actual = base64.b64encode(self._crc.to_bytes(4, "big")).decode()
        else:
            actual = base64.b64encode(self._hash.digest()).decode()
        self._algorithm = None
        if actual != self._expected:
            raise FlexibleChecksumError(error_msg=f"{self._what}: expected checksum {self._expected} did not match "
                                                  f"calculated checksum {actual}")

    def read(self, amt: int | None = None) -> bytes:
        try:
            data = self._response.read(amt, decode_content=False)  # the stored bytes, whatever Content-Encoding says
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ConnectionClosedError(endpoint_url=self._what) from exc
        self._feed(data)
        if amt is None or not data:
            self._finish()
            self._done = True
            self._response.release_conn()
        return data

    def iter_chunks(self, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        while True:
            chunk = self.read(chunk_size)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        """Stop reading. A body not read to its end closes its connection: the rest may be gigabytes."""
        if not self._done:
            self._response.close()
        self._response.release_conn()

    def __enter__(self) -> _ValidatingBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LeanS3Client:
    """boto3-compatible get_object / head_object / put_object on urllib3; everything else goes to boto3."""

    def __init__(self, boto_client: Any, *, endpoint_url: str | None, region: str, credentials: Any,
                 addressing_style: str = "path", max_pool_connections: int = 64, connect_timeout: float = 10.0,
                 read_timeout: float = 120.0, max_attempts: int = 4, validate_responses: bool = True) -> None:
        self._boto = boto_client
        self.meta = boto_client.meta
        self.exceptions = boto_client.exceptions
        self._endpoint = urllib.parse.urlsplit(endpoint_url or f"https://s3.{region}.amazonaws.com")
        self._virtual = addressing_style == "virtual" or (addressing_style == "auto" and endpoint_url is None)
        self._signer = _Signer(credentials, region)
        self._max_attempts = max(1, max_attempts)
        self._validate = validate_responses
        pool_args: dict[str, Any] = {
            "maxsize": max_pool_connections, "block": False, "retries": False,
            "timeout": urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        }
        if self._endpoint.scheme == "https":
            from botocore.httpsession import get_cert_path  # the CA bundle boto3 itself would use

            pool_args["ca_certs"] = get_cert_path(True)
        self._http = urllib3.PoolManager(**pool_args)

    def __getattr__(self, name: str) -> Any:  # list_objects_v2, create_multipart_upload, get_paginator...
        return getattr(self._boto, name)

    # -- the three requests -------------------------------------------------------------------------
    # Calls with any other argument (SSE-C keys, part numbers, file bodies...) go to boto3 unchanged.
    _GET_ARGS = frozenset({"Bucket", "Key", "IfMatch", "Range", "VersionId", "ChecksumMode"})
    _HEAD_ARGS = frozenset({"Bucket", "Key", "VersionId", "ChecksumMode"})
    # Representation headers of an object, as (boto3 argument and response key, HTTP header).
    _CONTENT_HEADERS = (("ContentType", "content-type"), ("ContentEncoding", "content-encoding"),
                        ("ContentDisposition", "content-disposition"), ("CacheControl", "cache-control"),
                        ("ContentLanguage", "content-language"))
    _PUT_ARGS = frozenset({"Bucket", "Key", "Body", "ChecksumSHA256", "ChecksumAlgorithm", "Metadata",
                           "ObjectLockMode", "ObjectLockRetainUntilDate", "StorageClass", "Tagging",
                           "IfNoneMatch", *(arg for arg, _ in _CONTENT_HEADERS)})

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        if not kwargs.keys() <= self._GET_ARGS:
            return self._boto.get_object(**kwargs)
        bucket, key = kwargs["Bucket"], kwargs["Key"]
        headers = {}
        if kwargs.get("IfMatch") is not None:
            headers["if-match"] = kwargs["IfMatch"]
        if kwargs.get("Range") is not None:
            headers["range"] = kwargs["Range"]
        if kwargs.get("ChecksumMode") or self._validate:
            headers["x-amz-checksum-mode"] = "ENABLED"
        response = self._send("GET", "GetObject", bucket, key, {"versionId": kwargs.get("VersionId")}, headers,
                              stream=True)
        result = self._object_fields(response.headers)
        result["Body"] = _ValidatingBody(response, self._full_checksum(response.headers, kwargs.get("Range")),
                                         f"GET {bucket}/{key}")
        return result

    def head_object(self, **kwargs: Any) -> dict[str, Any]:
        if not kwargs.keys() <= self._HEAD_ARGS:
            return self._boto.head_object(**kwargs)
        headers = {"x-amz-checksum-mode": "ENABLED"} if kwargs.get("ChecksumMode") else {}
        response = self._send("HEAD", "HeadObject", kwargs["Bucket"], kwargs["Key"],
                              {"versionId": kwargs.get("VersionId")}, headers)
        return self._object_fields(response.headers)

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        body = kwargs.get("Body")
        if (not kwargs.keys() <= self._PUT_ARGS or not isinstance(body, bytes) or not kwargs.get("ChecksumSHA256")
                or kwargs.get("ChecksumAlgorithm") not in (None, "SHA256")):
            return self._boto.put_object(**kwargs)
        headers = {"content-length": str(len(body)), "x-amz-checksum-sha256": kwargs["ChecksumSHA256"],
                   "x-amz-sdk-checksum-algorithm": "SHA256"}
        for name, value in (kwargs.get("Metadata") or {}).items():
            if not (name.isascii() and value.isascii()):  # as botocore: S3 metadata travels in HTTP headers
                raise ParamValidationError(report=f"Non ascii characters found in S3 metadata for key {name!r}")
            headers[META_PREFIX + name.lower()] = value
        optional = (("ObjectLockMode", "x-amz-object-lock-mode"), ("StorageClass", "x-amz-storage-class"),
                    ("Tagging", "x-amz-tagging"), ("IfNoneMatch", "if-none-match"), *self._CONTENT_HEADERS)
        for arg, header in optional:
            if kwargs.get(arg):
                headers[header] = kwargs[arg]
        if kwargs.get("ObjectLockRetainUntilDate") is not None:
            headers["x-amz-object-lock-retain-until-date"] = _iso_z(kwargs["ObjectLockRetainUntilDate"])
        response = self._send("PUT", "PutObject", kwargs["Bucket"], kwargs["Key"], {}, headers, body=body)
        result = {"ResponseMetadata": self._response_metadata(response)}
        for field, header in (("ETag", "etag"), ("VersionId", "x-amz-version-id"),
                              ("ChecksumSHA256", "x-amz-checksum-sha256"), ("ChecksumType", "x-amz-checksum-type")):
            value = response.headers.get(header)
            if value is not None:
                result[field] = value
        return result

    def upload_part_streamed(self, *, Bucket: str, Key: str, UploadId: str, PartNumber: int,
                             ChecksumSHA256: str, length: int,
                             open_body: Callable[[], Iterable[bytes]]) -> dict[str, Any]:
        """UploadPart with a body streamed from `open_body()` (called again for each attempt), so that a part
        is never held whole in memory. Not a boto3 method: the copier uses it when the client has it."""
        headers = {"content-length": str(length), "x-amz-checksum-sha256": ChecksumSHA256,
                   "x-amz-sdk-checksum-algorithm": "SHA256"}
        response = self._send("PUT", "UploadPart", Bucket, Key,
                              {"partNumber": str(PartNumber), "uploadId": UploadId}, headers, body=open_body)
        return {"ETag": response.headers.get("etag"), "ChecksumSHA256": response.headers.get("x-amz-checksum-sha256")}

    # -- HTTP -----------------------------------------------------------------------------------------
    def _target(self, bucket: str, key: str, params: dict[str, str | None]) -> tuple[str, str, str, str]:
        """Host name, Host header, canonical path and canonical query string of a request."""
        hostname, host = self._endpoint.hostname or "", self._endpoint.netloc
        base = self._endpoint.path.rstrip("/")
        if self._virtual and "." not in bucket:  # a dotted bucket name breaks TLS names: path style, as boto3
            hostname, host = f"{bucket}.{hostname}", f"{bucket}.{host}"
            path = f"{base}/{_quote_path(key)}"
        else:
            path = f"{base}/{_quote_path(bucket)}/{_quote_path(key)}"
        query = "&".join(f"{urllib.parse.quote(k, safe=_QUERY_SAFE)}={urllib.parse.quote(v, safe=_QUERY_SAFE)}"
                         for k, v in sorted(params.items()) if v is not None)
        return hostname, host, path, query

    def _send(self, method: str, operation: str, bucket: str, key: str, params: dict[str, str | None],
              headers: dict[str, str], *, body: bytes | Callable[[], Iterable[bytes]] | None = None,
              stream: bool = False) -> Any:
        hostname, host, path, query = self._target(bucket, key, params)
        # A pool per host, asked for the path itself: urllib3 would otherwise normalise "./" and "../"
        # segments out of a URL, and in S3 they are part of the key.
        pool = self._http.connection_from_host(hostname, port=self._endpoint.port, scheme=self._endpoint.scheme)
        target = path + (f"?{query}" if query else "")
        for attempt in range(1, self._max_attempts + 1):
            signed = self._signer.sign(method, host, path, query, headers)
            try:
                payload = body() if callable(body) else body  # a stream is opened anew for every attempt
                response = pool.urlopen(method, target, body=payload, headers=signed, preload_content=not stream,
                                        decode_content=False, redirect=False, retries=False)
            except urllib3.exceptions.HTTPError as exc:
                if attempt == self._max_attempts:
                    raise self._connection_error(exc, f"{self._endpoint.scheme}://{host}{target}") from exc
                self._back_off(attempt)
                continue
            if response.status < 300:
                return response
            error = self._client_error(response, operation, method)
            code = error.response["Error"]["Code"]
            if attempt < self._max_attempts and (response.status in RETRYABLE_STATUS or code in THROTTLING_CODES):
                self._back_off(attempt)
                continue
            raise error
        raise AssertionError("unreachable")

    @staticmethod
    def _back_off(attempt: int) -> None:
        time.sleep(min(random.random() * (2 ** attempt), MAX_BACKOFF_S))  # botocore "standard": full jitter

    @staticmethod
    def _connection_error(exc: Exception, url: str) -> Exception:
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            return ReadTimeoutError(endpoint_url=url, error=exc)
        if isinstance(exc, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError):
            return EndpointConnectionError(endpoint_url=url, error=exc)
        return ConnectionClosedError(endpoint_url=url, error=exc)

    @staticmethod
    def _response_metadata(response: Any) -> dict[str, Any]:
        headers = {name.lower(): value for name, value in response.headers.items()}
        return {"HTTPStatusCode": response.status, "HTTPHeaders": headers,
                "RequestId": headers.get("x-amz-request-id", "")}

    def _client_error(self, response: Any, operation: str, method: str) -> ClientError:
        data = b"" if method == "HEAD" else response.data
        response.release_conn()
        code, message = str(response.status), ""
        if data:
            try:
                root = ElementTree.fromstring(data)
                code = root.findtext("Code") or code
                message = root.findtext("Message") or ""
            except ElementTree.ParseError:
                message = data[:200].decode("utf-8", "replace")
        error = {"Code": code, "Message": message or {404: "Not Found", 403: "Forbidden",
                                                      412: "Precondition Failed"}.get(response.status, "")}
        return ClientError({"Error": error, "ResponseMetadata": self._response_metadata(response)}, operation)

    # -- responses --------------------------------------------------------------------------------------
    @staticmethod
    def _object_fields(headers: Any) -> dict[str, Any]:
        """The keys boto3 gives for GetObject/HeadObject, from the response headers."""
        result: dict[str, Any] = {}
        metadata: dict[str, str] = {}
        for name, value in headers.items():
            lower = name.lower()
            if lower.startswith(META_PREFIX):
                metadata[lower[len(META_PREFIX):]] = value
        result["Metadata"] = metadata
        simple = (("ETag", "etag"), ("VersionId", "x-amz-version-id"), *LeanS3Client._CONTENT_HEADERS,
                  ("StorageClass", "x-amz-storage-class"), ("ObjectLockMode", "x-amz-object-lock-mode"),
                  ("ChecksumSHA256", "x-amz-checksum-sha256"), ("ChecksumCRC32", "x-amz-checksum-crc32"),
                  ("ChecksumType", "x-amz-checksum-type"), ("ContentRange", "content-range"),
                  ("ObjectLockLegalHoldStatus", "x-amz-object-lock-legal-hold"), ("Restore", "x-amz-restore"))
        for field, header in simple:
            value = headers.get(header)
            if value is not None:
                result[field] = value
        if (length := headers.get("content-length")) is not None:
            result["ContentLength"] = int(length)
        if (modified := headers.get("last-modified")) is not None:
            result["LastModified"] = _parse_http_date(modified)
        if (until := headers.get("x-amz-object-lock-retain-until-date")) is not None:
            result["ObjectLockRetainUntilDate"] = _parse_iso_date(until)
        if (count := headers.get("x-amz-tagging-count")) is not None:
            result["TagCount"] = int(count)
        if headers.get("x-amz-delete-marker") == "true":
            result["DeleteMarker"] = True
        return result

    def _full_checksum(self, headers: Any, range_header: str | None) -> tuple[str, str] | None:
        """The full-object checksum to validate a whole GET against, when the server sent one."""
        if not self._validate or range_header is not None or headers.get("x-amz-checksum-type") == "COMPOSITE":
            return None
        for algorithm in ("crc32", "sha256", "sha1"):
            value = headers.get(f"x-amz-checksum-{algorithm}")
            if value and "-" not in value:  # "<digest>-N" is composite: not a checksum of these bytes
                return algorithm, value
        return None
