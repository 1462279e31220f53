"""The naive baseline: the buffered boto3 loop the specification sketches, in its own process.

    python benchmarks/copybench/naive_worker.py EVENTS_FILE

For each hot object: GetObject, read() the whole body into memory, PutObject it to the cold bucket with
its user metadata, a COMPLIANCE lock until now + the years of its document type, the tags and the
storage class; a ThreadPoolExecutor of BENCH_PARALLELISM objects at once. boto3's default request
checksum (CRC32, `when_supported`) is the checksum Object Lock needs. No SHA-256, no verification, no
database. Reads the pipeline's own variables (OVH_S3_*, AWS_S3_*, VAULT_COLD_STORAGE_CLASS).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from copybench.events import EventLog

RETENTION_YEARS = {"payslip": 50, "invoice": 10, "contract": 10, "general": 50}  # the built-in policy
DEFAULT_TYPE = "general"


def client(prefix: str, pool: int) -> Any:
    return boto3.client(
        "s3", endpoint_url=os.environ[f"{prefix}_ENDPOINT"],
        region_name=os.environ.get(f"{prefix}_REGION", "us-east-1"),
        aws_access_key_id=os.environ[f"{prefix}_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ[f"{prefix}_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                      retries={"mode": "standard", "max_attempts": 3}),
    )


def list_keys(hot: Any, bucket: str) -> list[str]:
    keys = []
    for page in hot.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def retain_until(years: int, now: dt.datetime) -> dt.datetime:
    try:
        return now.replace(year=now.year + years)
    except ValueError:  # 29 February
        return now.replace(year=now.year + years, month=3, day=1)


class NaiveCopier:
    def __init__(self, pool: int) -> None:
        self.hot, self.cold = client("OVH_S3", pool), client("AWS_S3", pool)
        self.hot_bucket = os.environ["OVH_S3_BUCKET_DOCUMENTS"]
        self.cold_bucket = os.environ["AWS_S3_BUCKET_DOCUMENTS_COLD"]
        self.storage_class = os.environ.get("VAULT_COLD_STORAGE_CLASS", "DEEP_ARCHIVE")

    def copy(self, key: str) -> int:
        source = self.hot.get_object(Bucket=self.hot_bucket, Key=key)
        body = source["Body"].read()
        metadata = source.get("Metadata", {})
        kind = metadata.get("document-type", "").lower()
        kind = kind if kind in RETENTION_YEARS else DEFAULT_TYPE
        years = RETENTION_YEARS[kind]
        self.cold.put_object(
            Bucket=self.cold_bucket, Key=key, Body=body, Metadata=metadata, StorageClass=self.storage_class,
            ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=retain_until(years, dt.datetime.now(dt.UTC)),
            Tagging=urlencode({"DocumentType": kind, "RetentionYears": str(years)}),
        )
        return len(body)


def main() -> int:
    events = EventLog(Path(sys.argv[1]))
    parallelism = int(os.environ.get("BENCH_PARALLELISM", "8"))
    copier = NaiveCopier(pool=parallelism * 2)
    events.emit("copy_start")
    keys = list_keys(copier.hot, copier.hot_bucket)
    failures: list[str] = []

    def copy_one(key: str) -> int:
        try:
            return copier.copy(key)
        except Exception as exc:  # one object's failure never stops the others
            failures.append(f"{key}: {exc}")
            return 0

    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        copied_bytes = sum(pool.map(copy_one, keys))
    events.emit("copy_end", success=not failures, objects=len(keys) - len(failures), bytes=copied_bytes,
                failures=failures[:20])
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
