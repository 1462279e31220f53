"""The one partitioning of the project: UTC days of the hot object's LastModified.

Days, never objects: Dagster's practical ceiling is ~100k partitions per asset. Today's partition
exists (end_offset=1) because documents uploaded today must be replicated today. Objects dated before
the first partition belong to it, objects dated after the last (clock skew) to the last, so no object
is ever outside every partition.
"""

from __future__ import annotations

import datetime as dt
import os

from dagster import DailyPartitionsDefinition, PartitionKeyRange

PARTITION_FORMAT = "%Y-%m-%d"
DEFAULT_START = "2024-01-01"


def _start_date() -> str:
    raw = os.environ.get("VAULT_PARTITIONS_START_DATE", "").strip() or DEFAULT_START
    try:
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ValueError(f"VAULT_PARTITIONS_START_DATE={raw!r} is not a YYYY-MM-DD date") from None


daily_partitions = DailyPartitionsDefinition(
    start_date=_start_date(), end_offset=1, timezone="UTC", fmt=PARTITION_FORMAT
)


def partition_key_for(day: dt.date) -> str:
    first = dt.date.fromisoformat(daily_partitions.get_first_partition_key())
    last = dt.date.fromisoformat(daily_partitions.get_last_partition_key())
    return min(max(day, first), last).strftime(PARTITION_FORMAT)


def day_range(keys: PartitionKeyRange) -> tuple[dt.date, dt.date]:
    """Days of LastModified covered by a partition key range, edges widened as described above."""
    first_day = dt.date.fromisoformat(keys.start)
    last_day = dt.date.fromisoformat(keys.end)
    if keys.start == daily_partitions.get_first_partition_key():
        first_day = dt.date.min
    if keys.end == daily_partitions.get_last_partition_key():
        last_day = dt.date.max
    return first_day, last_day
