"""Reproducible document keys, shaped like a real vault's, and their fast upload to the hot site.

A key looks like `tenants/t0042/2026/11/20/payslip/PAY-20261120-0001234.pdf`: a tenant, the day the
document belongs to (spread over `days` days ending yesterday), its type and a numbered file name. The
same index always gives the same key, type and body, so a key range can be generated in any process.
SeaweedFS stamps LastModified itself at upload, so the objects' partition days are the upload day(s),
whatever day their key names; the `document-date` metadata carries the key's day.
"""

import datetime as dt
import functools
import hashlib
import http.client
import multiprocessing
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

DOCUMENT_TYPES = ("payslip", "invoice", "contract", "general")
TYPE_WEIGHTS = (55, 25, 10, 10)  # payslips dominate an HR vault
TENANTS = 250


@functools.cache
def _day(last_day: dt.date, back: int) -> tuple[dt.date, str, str]:
    day = last_day - dt.timedelta(days=back)
    return day, f"{day:%Y/%m/%d}", f"{day:%Y%m%d}"


def _weighted_type(pick: int) -> str:
    for kind, weight in zip(DOCUMENT_TYPES, TYPE_WEIGHTS, strict=True):
        if pick < weight:
            return kind
        pick -= weight
    raise ValueError(pick)


@dataclass(frozen=True)
class KeySpace:
    """Which keys a benchmark uses: `count` documents over `days` days ending on `last_day`."""

    count: int
    days: int
    last_day: dt.date
    seed: int = 5

    def document(self, i: int) -> tuple[str, str, dt.date]:
        """(key, document type, document day) of document `i`."""
        digest = hashlib.blake2b(f"{self.seed}:{i}".encode(), digest_size=8).digest()
        draw = int.from_bytes(digest, "big")
        day, slashed, compact = _day(self.last_day, i % self.days)
        kind = _weighted_type((draw >> 16) % sum(TYPE_WEIGHTS))
        return f"tenants/t{draw % TENANTS:04d}/{slashed}/{kind}/{kind[:3].upper()}-{compact}-{i:07d}.pdf", kind, day

    def __iter__(self) -> Iterator[tuple[str, str, dt.date]]:
        return (self.document(i) for i in range(self.count))


def body(i: int) -> bytes:
    """A tiny, distinct body (distinct ETags), shaped like the start of a PDF."""
    return b"%PDF-1.7\n%sensor-bench " + str(i).encode() + b"\n%%EOF\n"


@dataclass(frozen=True)
class Target:
    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str


def _client(target: Target, connections: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=target.endpoint_url, region_name="us-east-1", aws_access_key_id=target.access_key,
        aws_secret_access_key=target.secret_key,
        config=Config(max_pool_connections=connections, retries={"max_attempts": 10, "mode": "standard"},
                      s3={"addressing_style": "path"}))


class _Putter:
    """PutObject over one keep-alive connection, signed with botocore's SigV4 signer but without the
    boto3 client's request pipeline: a third of the client CPU per tiny PUT (1 ms instead of 3 here),
    which matters when 200,000 of them share two cores with the server."""

    attempts = 5

    def __init__(self, target: Target) -> None:
        from botocore.auth import S3SigV4Auth
        from botocore.credentials import Credentials

        self.target = target
        self.auth = S3SigV4Auth(Credentials(target.access_key, target.secret_key), "s3", "us-east-1")
        self.url = urllib.parse.urlsplit(target.endpoint_url)
        self.conn: http.client.HTTPConnection | None = None

    def put(self, key: str, data: bytes, metadata: dict[str, str]) -> None:
        from botocore.awsrequest import AWSRequest

        path = f"/{self.target.bucket}/{urllib.parse.quote(key, safe='/-_.~')}"
        headers = {f"x-amz-meta-{name}": value for name, value in metadata.items()}
        for attempt in range(1, self.attempts + 1):
            request = AWSRequest(method="PUT", url=self.target.endpoint_url + path, data=data, headers=headers)
            self.auth.add_auth(request)  # signs the time too: re-signed on every attempt
            prepared = request.prepare()
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=60)
                self.conn.request("PUT", path, body=prepared.body, headers=dict(prepared.headers))
                response = self.conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.conn = None
                if attempt == self.attempts:
                    raise RuntimeError(f"PUT {key}: {exc}") from exc
            else:
                if response.status == 200:
                    return
                if response.status < 500 or attempt == self.attempts:
                    raise RuntimeError(f"PUT {key}: HTTP {response.status} {answer[:300]!r}")
            time.sleep(0.2 * attempt)


def _upload_range(args: tuple[Target, KeySpace, int, int, int]) -> int:
    target, space, first, stop, threads = args
    local = threading.local()

    def put(i: int) -> None:
        putter = getattr(local, "putter", None)
        if putter is None:
            putter = local.putter = _Putter(target)
        key, kind, day = space.document(i)
        putter.put(key, body(i), {"document-type": kind, "document-date": day.isoformat()})

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(put, range(first, stop)):
            pass
    return stop - first


def upload(target: Target, space: KeySpace, *, processes: int = 2, threads: int = 12) -> float:
    """Put every document of `space` on the hot site (processes x threads PUTs in flight); seconds taken."""
    started = time.monotonic()
    per_process = -(-space.count // processes)
    ranges = [(target, space, first, min(space.count, first + per_process), threads)
              for first in range(0, space.count, per_process)]
    # fork: the parent holds no client, pool or lock yet, and the children need nothing re-imported.
    with multiprocessing.get_context("fork").Pool(len(ranges)) as pool:
        done = sum(pool.imap_unordered(_upload_range, ranges))
    if done != space.count:
        raise RuntimeError(f"uploaded {done} of {space.count} objects")
    return time.monotonic() - started


def listed_days(target: Target) -> dict[str, int]:
    """Objects per UTC day of LastModified, from an independent listing (what the partitions must be)."""
    client = _client(target, 4)
    days: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket):
        for item in page.get("Contents", []):
            day = item["LastModified"].astimezone(dt.UTC).date().isoformat()
            days[day] = days.get(day, 0) + 1
    return dict(sorted(days.items()))
