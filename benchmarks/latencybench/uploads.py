"""The uploads of one benchmark: seeded Poisson arrivals of small documents on the hot site.

Gaps between uploads are exponential (a Poisson process, mean `mean_gap_s`), so uploads land at every
phase of the sensor interval rather than in step with it. Each document has a seeded size (log-uniform
between 4 KiB and 256 KiB), seeded random bytes and a seeded `document-type`. Its key starts with the UTC
day of the upload, `latency/YYYY-MM-DD/`, the day of its partition (partitions are UTC days of the hot
object's LastModified, vault_pipeline/partitions.py; the key prefix only makes that readable).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

DOCUMENT_TYPES = ("payslip", "invoice", "contract", "general")
MIN_SIZE, MAX_SIZE = 4 * 1024, 256 * 1024
KEY_PREFIX = "latency"


@dataclass(frozen=True)
class PlannedUpload:
    index: int
    offset_s: float  # seconds after the start of the upload phase
    name: str  # key without the day prefix (the day is the UTC day when it is uploaded)
    size: int
    document_type: str
    seed: int  # of its bytes


@dataclass
class Upload:
    index: int
    key: str
    size: int
    document_type: str
    planned_offset_s: float
    put_started: float  # Unix time, just before the PutObject request
    put_done: float  # Unix time, when the PutObject response arrived: the object exists from then on
    etag: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_uploads(count: int, mean_gap_s: float, seed: int, first_index: int = 0) -> list[PlannedUpload]:
    rng = random.Random(seed)
    offset = 0.0
    planned = []
    for index in range(first_index, first_index + count):
        offset += rng.expovariate(1.0 / mean_gap_s)
        size = int(math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE))))
        planned.append(PlannedUpload(index=index, offset_s=offset, name=f"{index:04d}-{rng.getrandbits(32):08x}.pdf",
                                     size=size, document_type=rng.choice(DOCUMENT_TYPES),
                                     seed=rng.getrandbits(63)))
    return planned


def document_body(planned: PlannedUpload) -> bytes:
    return b"%PDF-1.7\n" + random.Random(planned.seed).randbytes(max(0, planned.size - 9))


def key_for(planned: PlannedUpload, now: dt.datetime | None = None) -> str:
    day = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d")
    return f"{KEY_PREFIX}/{day}/{planned.name}"


def put_document(client: Any, bucket: str, planned: PlannedUpload) -> Upload:
    body = document_body(planned)
    key = key_for(planned)
    started = time.time()
    response = client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/pdf",
                                 Metadata={"document-type": planned.document_type})
    done = time.time()
    return Upload(index=planned.index, key=key, size=len(body), document_type=planned.document_type,
                  planned_offset_s=round(planned.offset_s, 3), put_started=started, put_done=done,
                  etag=response["ETag"].strip('"'))


def run_uploads(client: Any, bucket: str, plan: list[PlannedUpload],
                on_upload: Callable[[Upload], None]) -> list[Upload]:
    """Upload each planned document at its offset from now (a late upload goes at once, the schedule
    is not shifted). Runs in the caller's thread: Ctrl-C interrupts it."""
    origin = time.monotonic()
    uploads = []
    for planned in plan:
        delay = origin + planned.offset_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        upload = put_document(client, bucket, planned)
        uploads.append(upload)
        on_upload(upload)
    return uploads
