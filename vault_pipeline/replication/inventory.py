"""Paginated listing of the hot bucket.

Never a single page: ListObjectsV2 returns at most 1000 keys, so a sweep follows continuation tokens.
A sweep can be resumed from a token (the sensor keeps it in its cursor and spans several ticks).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Objects the pipeline itself writes briefly on the hot site (hot_cleanup's conditional-delete probe):
# never documents, never listed.
PROBE_PREFIX = ".vault-pipeline/probes/"


@dataclass(frozen=True)
class ListedObject:
    key: str
    etag: str  # without quotes
    size: int
    last_modified: dt.datetime  # UTC

    @property
    def partition_day(self) -> dt.date:
        return self.last_modified.astimezone(dt.UTC).date()


@dataclass(frozen=True)
class ListingPage:
    objects: list[ListedObject]
    folder_markers: int  # zero-byte keys ending in "/" are folders, not documents
    next_token: str | None  # None when the listing is complete


def strip_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


def list_page(client: Any, bucket: str, token: str | None = None, page_size: int = 1000) -> ListingPage:
    kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": page_size}
    if token:
        kwargs["ContinuationToken"] = token
    response = client.list_objects_v2(**kwargs)
    objects: list[ListedObject] = []
    markers = 0
    for item in response.get("Contents", []):
        if item["Key"].endswith("/") and item["Size"] == 0:
            markers += 1
            continue
        if item["Key"].startswith(PROBE_PREFIX):
            continue
        objects.append(
            ListedObject(
                key=item["Key"],
                etag=strip_etag(item.get("ETag")),
                size=int(item["Size"]),
                last_modified=item["LastModified"].astimezone(dt.UTC),
            )
        )
    next_token = response.get("NextContinuationToken") if response.get("IsTruncated") else None
    return ListingPage(objects=objects, folder_markers=markers, next_token=next_token)


def iter_pages(client: Any, bucket: str, token: str | None = None, page_size: int = 1000) -> Iterator[ListingPage]:
    while True:
        page = list_page(client, bucket, token, page_size)
        yield page
        if page.next_token is None:
            return
        token = page.next_token
