"""Which files of an inbox are finished: a producer may still be writing a file when the inbox is listed.

A file is stable when two looks at least `settle_seconds` apart saw the same size and mtime: the first look
is remembered, the second confirms it. A file that changed between the looks is looked at again later; a
file that disappeared is forgotten. This is the rule of SFTP_STABLE_SECONDS (issue 16): SFTP has no "file
closed" event, and a size alone misses a writer that pre-allocates, so both size and mtime must hold still.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from vault_pipeline.replication.tracking.file_transfers import StableFile


@dataclass(frozen=True)
class Look:
    size: int
    mtime: dt.datetime
    seen_at: dt.datetime


@dataclass(frozen=True)
class StabilityVerdict:
    stable: list[StableFile]
    looks: dict[str, Look]  # what to remember for the next listing: files still settling
    settling: int  # files seen but not stable yet (new, or changed since their last look)


def judge(previous: Mapping[str, Look], listing: Mapping[str, tuple[int, dt.datetime]], *, now: dt.datetime,
          settle_seconds: float) -> StabilityVerdict:
    """`listing`: filename -> (size, mtime) as just listed. Files found stable are returned (and forgotten:
    the transfer log remembers them from now on); the others are remembered with their latest look."""
    stable: list[StableFile] = []
    looks: dict[str, Look] = {}
    for name, (size, mtime) in listing.items():
        before = previous.get(name)
        if before is not None and (before.size, before.mtime) == (size, mtime):
            if (now - before.seen_at).total_seconds() >= settle_seconds:
                stable.append(StableFile(name, size, mtime))
            else:
                looks[name] = before  # unchanged, but not yet for long enough: keep the first look
        else:
            looks[name] = Look(size, mtime, now)  # new, or changed: its settling starts again
    return StabilityVerdict(stable=sorted(stable, key=lambda f: f.filename), looks=looks, settling=len(looks))
