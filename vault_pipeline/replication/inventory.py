"""Listing the hot bucket, a page at a time, and what of it is a document.

ListObjectsV2 returns at most 1000 keys: the reconciliation sweep (intake/sweep.py) lists each of its key
ranges page after page with StartAfter, so that a range resumes from the last key it recorded.
"""

from __future__ import annotations

import datetime as dt
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


def is_document(key: str, size: int | None) -> bool:
    """Folder markers (zero-byte keys ending in "/") and the pipeline's own probes are not documents. An
    unknown size (a change feed that does not say) is not judged: the object's HEAD will tell."""
    return not (key.startswith(PROBE_PREFIX) or (key.endswith("/") and size == 0))


@dataclass(frozen=True)
class ListingPage:
    objects: list[ListedObject]  # the documents listed, in key order
    folder_markers: int  # zero-byte keys ending in "/" are folders, not documents
    keys_listed: int  # every key of the page up to end_key, documents or not
    last_key: str | None  # the last of those keys: where the next page starts
    complete: bool  # nothing is left to list up to end_key


def strip_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


def list_page(client: Any, bucket: str, *, start_after: str | None = None, end_key: str | None = None,
              page_size: int = 1000) -> ListingPage:
    """One ListObjectsV2 page of the keys after `start_after` (exclusive), up to `end_key` (inclusive; None: to
    the last key). Keys compare as S3 lists them, by UTF-8 bytes, which is Python's code point order."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": page_size}
    if start_after is not None:
        kwargs["StartAfter"] = start_after
    response = client.list_objects_v2(**kwargs)
    items = response.get("Contents", [])
    within = [item for item in items if end_key is None or item["Key"] <= end_key]
    objects: list[ListedObject] = []
    markers = 0
    for item in within:
        key, size = item["Key"], int(item["Size"])
        if is_document(key, size):
            objects.append(ListedObject(key=key, etag=strip_etag(item.get("ETag")), size=size,
                                        last_modified=item["LastModified"].astimezone(dt.UTC)))
        elif not key.startswith(PROBE_PREFIX):
            markers += 1
    complete = not response.get("IsTruncated") or len(within) < len(items) or not items
    return ListingPage(objects=objects, folder_markers=markers, keys_listed=len(within),
                       last_key=within[-1]["Key"] if within else None, complete=complete)
