"""Shards: a day's copy work split between several runs that copy it in parallel.

Shard i of n (the run tag `vault/shard` = "i/n") first claims the rows of its own slice, those whose id
% n = i, then, once its slice is exhausted, helps with the rest of the day (work stealing). Every claim
goes through the leases, so the shards never copy a row twice, and a shard whose run died is finished by
the others (or by the next run) once its leases expire. A run without the tag claims the whole day.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

SHARD_TAG = "vault/shard"
# A day is shared by at most this many runs: more would be more runs than a deployment runs at once, and
# each run has a fixed start-up cost. VAULT_MAX_SHARDS is bounded by the same number (settings.py).
MAX_SHARDS = 64
_FORM = re.compile(r"(\d{1,6})/(\d{1,6})")


class ShardError(ValueError):
    """A malformed shard; the message names the tag and the expected form."""


@dataclass(frozen=True, order=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count <= MAX_SHARDS:
            raise ShardError(f"shard {self.index}/{self.count}: {_EXPECTED}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = _FORM.fullmatch(text.strip())
        if match is None:
            raise ShardError(f"{SHARD_TAG} tag {text!r} is not a shard: {_EXPECTED}")
        try:
            return cls(int(match[1]), int(match[2]))
        except ShardError:
            raise ShardError(f"{SHARD_TAG} tag {text!r} is not a shard: {_EXPECTED}") from None

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Shard | None:
        """The shard a run's tags name; None without the tag (the run takes the whole day)."""
        raw = tags.get(SHARD_TAG)
        return None if raw is None else cls.parse(raw)

    def owns(self, row_id: int) -> bool:
        return row_id % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


_EXPECTED = f'expected "i/n", two integers with 0 <= i < n <= {MAX_SHARDS}, e.g. "0/4"'


@dataclass(frozen=True)
class ShardPolicy:
    """How many runs share a day: one per `min_objects` rows waiting, at most `max_shards`; a day with fewer
    rows than `min_objects` gets one run without a shard (VAULT_SHARD_MIN_OBJECTS, VAULT_MAX_SHARDS)."""

    min_objects: int = 2000
    max_shards: int = 4

    def __post_init__(self) -> None:
        if self.min_objects < 1 or not 1 <= self.max_shards <= MAX_SHARDS:
            raise ValueError(f"min_objects >= 1 and 1 <= max_shards <= {MAX_SHARDS} "
                             f"(got {self.min_objects}, {self.max_shards})")

    def count(self, objects: int) -> int:
        if objects < self.min_objects:
            return 1
        return max(1, min(self.max_shards, math.ceil(objects / self.min_objects)))

    def shards(self, objects: int) -> list[Shard | None]:
        """One entry per run to request: [None] (the whole day in one run) or every shard of n."""
        n = self.count(objects)
        return [None] if n == 1 else [Shard(i, n) for i in range(n)]
