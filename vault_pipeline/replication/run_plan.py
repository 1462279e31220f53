"""Which replication runs hot_bucket_sensor asks for on a tick, and why.

Input: the days with rows waiting for a copy (tracking.days_needing_runs, per partition) and what Dagster's
run storage says of those partitions' runs (in flight, and the newest finished ones). Output: run requests,
each with a run_key, and a line for the tick's log per day re-requested or held back.

- A day's run_key is `partition|latest|hour`: the same work asks once an hour at most (Dagster drops a
  request whose run_key it has seen), new work (a newer change, a lease that expired) asks at once.
- A large day is shared: one run per shard (shards.py), the key suffixed `|shard:i/n`.
- While a run of the day waits to start (queued, starting), nothing more is asked: it will claim whatever
  is waiting when it starts. While runs of the day are running, one more run (no shard) is asked only for
  work newer than theirs (a key of their own would already be known), as before shards existed.
- A day whose newest finished run FAILED (it died, or never started: a launcher whose broker was down fails
  the run) and still has rows waiting would wait for the hour to change, its key being used. It is asked
  again, the key suffixed `|after:<failed run id>` (so once per failed run), after a backoff that doubles
  with each consecutive failed attempt (a request's shards together are one attempt), up to a maximum.
  Newer work (a newer change, a lease that expired) has a key of its own and is asked for at once, as ever.
- A key some known run of the day already has is not asked again (Dagster would drop it anyway).

Plain Python: the sensor (sensors/hot_bucket.py) reads the run storage and turns the plan into requests.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vault_pipeline.replication.shards import SHARD_TAG, Shard, ShardPolicy

# Dagster's run statuses, by name. A run that has not started yet has not chosen its rows: it will claim
# whatever is waiting when it starts. CANCELING is still running (and holding its leases).
WAITING_TO_START = ("QUEUED", "STARTING")
RUNNING = ("STARTED", "CANCELING")
IN_FLIGHT = WAITING_TO_START + RUNNING
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
SHARD_SUFFIX = "|shard:"
AFTER_SUFFIX = "|after:"


@dataclass(frozen=True)
class DayBacklog:
    """One partition's rows waiting for a copy: how many, and their newest change or lease expiry."""

    partition: str
    objects: int
    latest: dt.datetime


@dataclass(frozen=True)
class KnownRun:
    """A run of the replication job as the run storage has it."""

    run_id: str
    partition: str
    status: str  # a DagsterRunStatus name
    run_key: str | None = None
    ended_at: dt.datetime | None = None  # finished runs


@dataclass(frozen=True)
class RetryPolicy:
    """VAULT_RUN_RETRY_BASE_SECONDS, doubled at each consecutive failure, at most VAULT_RUN_RETRY_MAX_SECONDS."""

    base_seconds: float = 30.0
    max_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.base_seconds <= self.max_seconds:
            raise ValueError(f"0 < base_seconds <= max_seconds (got {self.base_seconds}, {self.max_seconds})")

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th consecutive failed attempt (1 for the first)."""
        if failures < 1:
            return 0.0
        return min(self.max_seconds, self.base_seconds * 2.0 ** min(failures - 1, 64))

    @property
    def lookback(self) -> dt.timedelta:
        """How far back finished runs are read. Longer than any backoff, so a backoff under way is always
        seen; a failure older than this is forgotten (the hour in the run key asks for the day anyway)."""
        return dt.timedelta(seconds=2 * self.max_seconds + 3600)


@dataclass(frozen=True)
class PlannedRun:
    partition: str
    run_key: str
    objects: int
    shard: Shard | None = None
    after_failed_run: str | None = None

    def tags(self) -> dict[str, str]:
        tags = {"vault/pending_objects": str(self.objects)}
        if self.shard is not None:
            tags[SHARD_TAG] = str(self.shard)
        if self.after_failed_run is not None:
            tags["vault/after_failed_run"] = self.after_failed_run
        return tags


@dataclass
class RunPlan:
    runs: list[PlannedRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the tick's log: days re-requested or held back

    @property
    def partitions(self) -> list[str]:
        return list(dict.fromkeys(r.partition for r in self.runs))


def base_key(partition: str, latest: dt.datetime, hour: str) -> str:
    return f"{partition}|{latest.isoformat()}|{hour}"


def key_base(run_key: str | None) -> str | None:
    """The `partition|latest|hour` part of a run_key this planner made, without its suffixes."""
    return None if not run_key else "|".join(run_key.split("|")[:3])


def attempt_of(run: KnownRun) -> str:
    """What one request of the day was: the shards of a request together are one attempt."""
    return run.run_key.split(SHARD_SUFFIX)[0] if run.run_key else run.run_id


def consecutive_failures(finished: Sequence[KnownRun]) -> int:
    """Failed attempts in a row, from the newest finished run back to the first that did not fail."""
    attempts: set[str] = set()
    for run in finished:
        if run.status != "FAILURE":
            break
        attempts.add(attempt_of(run))
    return len(attempts)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def plan_runs(backlog: Iterable[DayBacklog], runs: Iterable[KnownRun], *, now: dt.datetime, shards: ShardPolicy,
              retry: RetryPolicy) -> RunPlan:
    """The runs to request now (`now`: timezone-aware) for the days of `backlog`, given their known runs."""
    hour = now.astimezone(dt.UTC).strftime("%Y%m%d%H")
    by_partition: dict[str, list[KnownRun]] = defaultdict(list)
    for run in runs:
        by_partition[run.partition].append(run)
    plan = RunPlan()
    for day in backlog:
        base = base_key(day.partition, day.latest, hour)
        known = by_partition.get(day.partition, [])
        in_flight = [r for r in known if r.status in IN_FLIGHT]
        if in_flight:
            if any(r.status in WAITING_TO_START for r in in_flight):
                continue  # it claims what is waiting when it starts
            if any(key_base(r.run_key) == base for r in in_flight):
                continue  # running on this very work
            # Work newer than the running runs': one more run, which also helps them (no shard).
            plan.runs.append(PlannedRun(day.partition, base, day.objects))
            continue
        finished = sorted((r for r in known if r.status in FINISHED),
                          key=lambda r: r.ended_at or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)
        after: str | None = None
        waiting = ""
        if finished and finished[0].status == "FAILURE":
            failed = finished[0]
            failures = consecutive_failures(finished)
            wait = retry.backoff(failures)
            waited = (now - failed.ended_at).total_seconds() if failed.ended_at else wait
            if waited >= wait:
                after = failed.run_id
            else:
                waiting = (f"{day.partition}: {day.objects} object(s) waiting; run {failed.run_id} failed "
                           f"({ordinal(failures)} consecutive failure), next run in {wait - waited:.0f} s "
                           f"(backoff {wait:g} s)")
        key = base + (f"{AFTER_SUFFIX}{after}" if after else "")
        used = {r.run_key for r in known if r.run_key}
        fresh = [PlannedRun(day.partition, key + (f"{SHARD_SUFFIX}{shard}" if shard else ""), day.objects, shard,
                            after) for shard in shards.shards(day.objects)]
        fresh = [run for run in fresh if run.run_key not in used]
        if fresh and after:
            plan.notes.append(f"{day.partition}: requested again after failed run {after}, {ordinal(failures)} "
                              f"consecutive failure, waited {waited:.0f} s (backoff {wait:g} s)")
        elif waiting and not fresh:  # (newer work than the failed run's is asked for at once)
            plan.notes.append(waiting)
        plan.runs.extend(fresh)
    return plan
