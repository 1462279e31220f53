"""What a change feed hands over: changed keys, with whatever the source knows about them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class FeedUnavailable(RuntimeError):
    """A feed cannot be read now (its source unreachable, its tool missing, an answer not understood). The
    message names the source, never a secret; the cursor is not moved, so the next read starts from the same
    place and nothing is lost."""


@dataclass(frozen=True)
class Change:
    """One key that may be new or rewritten on the hot site.

    A feed fills in what its source tells: a listing knows ETag, size and LastModified; an S3 event knows
    ETag and size but not LastModified (the day the document belongs to); a filer event or an application
    row only the key. What is missing is read from the hot site (HeadObject) before registration, so the
    manifest only ever holds what the hot site itself says.
    """

    key: str
    etag: str | None = None
    size: int | None = None
    last_modified: dt.datetime | None = None
    # When the change happened at its source (event time, row creation): detection latency is measured
    # from it. None when the source does not say.
    seen_at: dt.datetime | None = None
    # What the application's own table says of the document (application-table feed only).
    document_id: str | None = None
    user_id: str | None = None
    document_type: str | None = None

    @property
    def complete(self) -> bool:
        return self.etag is not None and self.size is not None and self.last_modified is not None


@dataclass
class FeedBatch:
    """A feed's changes since a cursor, and the cursor to keep once they are registered.

    `acknowledge` (if any) is called only after the changes are committed to the tracking database: a
    queue deletes its messages then, so a crash before it redelivers them (at least once) and never loses
    one. `caught_up` says the feed had nothing more to give when the batch was cut.
    """

    changes: list[Change]
    cursor: str | None
    caught_up: bool = True
    acknowledge: Callable[[], None] | None = None
    # What the feed skipped and why (test events, multipart parts, deletions...), for the tick's log.
    skipped: dict[str, int] = field(default_factory=dict)


class ChangeFeed(Protocol):
    """A source of changed keys that resumes from a cursor it made itself.

    `read` returns at most `max_changes` changes and spends at most about `budget_seconds` (a sensor tick
    must stay well under Dagster's 60 s). It must not lose a change: a change is behind the returned cursor
    only if it is in the batch.
    """

    name: str

    def read(self, cursor: str | None, *, budget_seconds: float, max_changes: int) -> FeedBatch: ...

    def close(self) -> None: ...
