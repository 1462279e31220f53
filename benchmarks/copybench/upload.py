"""Putting a workload on the hot site once, before any contender runs (not timed against anyone)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from boto3.s3.transfer import TransferConfig

from copybench.workloads import MIB, GeneratedBody, ObjectSpec, Workload

UPLOAD_THREADS = 8
# Objects up to 64 MiB are single PUTs (their hot ETag is an MD5, as for most documents a client
# uploads); larger ones multipart, streamed: memory stays at threads x concurrency x chunk.
HOT_TRANSFER = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=16 * MIB, max_concurrency=4)


def upload_object(client: Any, bucket: str, spec: ObjectSpec) -> None:
    client.upload_fileobj(GeneratedBody(spec), bucket, spec.key, Config=HOT_TRANSFER,
                          ExtraArgs={"Metadata": {"document-type": spec.document_type}})


def hot_object_count(client: Any, bucket: str) -> int:
    return sum(page.get("KeyCount", 0) for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket))


def upload_workload(client: Any, bucket: str, workload: Workload) -> float:
    """Upload every object of `workload` (parallel, streamed); the seconds it took."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        list(pool.map(lambda spec: upload_object(client, bucket, spec), workload.objects))
    found = hot_object_count(client, bucket)
    if found != len(workload.objects):
        raise RuntimeError(f"hot bucket {bucket} holds {found} objects after uploading {len(workload.objects)}")
    return time.monotonic() - started
