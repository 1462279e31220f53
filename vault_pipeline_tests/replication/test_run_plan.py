"""The run planner on its own (no servers): shards for large days, nothing more while a day's run waits to
start, the re-request after a failed run with its doubling backoff. The sensor's tests
(sensors/test_run_requests.py) check the same against Dagster's run storage and the tracking database."""

from __future__ import annotations

import datetime as dt

import pytest

from vault_pipeline.replication.run_plan import (
    DayBacklog,
    KnownRun,
    RetryPolicy,
    attempt_of,
    consecutive_failures,
    key_base,
    ordinal,
    plan_runs,
)
from vault_pipeline.replication.shards import Shard, ShardPolicy

NOW = dt.datetime(2026, 5, 4, 10, 30, tzinfo=dt.UTC)
LATEST = dt.datetime(2026, 5, 4, 10, 29, 12, 345678, tzinfo=dt.UTC)
DAY = "2026-05-04"
BASE = f"{DAY}|{LATEST.isoformat()}|2026050410"
SHARDS = ShardPolicy(min_objects=100, max_shards=4)
RETRY = RetryPolicy(base_seconds=30, max_seconds=3600)


def plan(objects: int, *runs: KnownRun, now: dt.datetime = NOW) -> tuple[list[tuple[str, str | None]], list[str]]:
    result = plan_runs([DayBacklog(DAY, objects, LATEST)], runs, now=now, shards=SHARDS, retry=RETRY)
    return [(r.run_key, r.tags().get("vault/shard")) for r in result.runs], result.notes


def finished(run_id: str, status: str, seconds_ago: float, key: str | None = None) -> KnownRun:
    return KnownRun(run_id, DAY, status, key, NOW - dt.timedelta(seconds=seconds_ago))


def test_backoff_doubles_up_to_its_maximum() -> None:
    assert [RETRY.backoff(n) for n in (1, 2, 3, 4, 7, 8, 9, 500)] == [30, 60, 120, 240, 1920, 3600, 3600, 3600]
    assert RETRY.lookback > dt.timedelta(seconds=3600)  # a backoff under way is always within what is read
    with pytest.raises(ValueError):
        RetryPolicy(base_seconds=60, max_seconds=30)


def test_a_small_day_gets_one_run_and_a_large_day_one_per_shard() -> None:
    assert plan(99) == ([(BASE, None)], [])
    assert plan(100) == ([(BASE, None)], [])  # one shard's worth: no shard
    assert plan(101) == ([(f"{BASE}|shard:0/2", "0/2"), (f"{BASE}|shard:1/2", "1/2")], [])
    keys, _ = plan(10_000)
    assert [shard for _, shard in keys] == ["0/4", "1/4", "2/4", "3/4"]  # at most VAULT_MAX_SHARDS
    assert len({key for key, _ in keys}) == 4


def test_nothing_more_while_a_run_of_the_day_waits_to_start_or_runs_on_the_same_work() -> None:
    assert plan(5000, KnownRun("q", DAY, "QUEUED", "older-key")) == ([], [])
    assert plan(5000, KnownRun("s", DAY, "STARTING", None)) == ([], [])
    running = [KnownRun(f"r{i}", DAY, "STARTED", f"{BASE}|shard:{i}/4") for i in range(4)]
    assert plan(5000, *running) == ([], [])
    # Newer work than the running shards': one more run, no shard (it helps them with the whole day).
    older = [KnownRun(f"r{i}", DAY, "STARTED", f"{DAY}|2026-05-04T09:00:00+00:00|2026050409|shard:{i}/4")
             for i in range(4)]
    assert plan(5000, *older) == ([(BASE, None)], [])
    # A run of another day changes nothing.
    assert plan(5, KnownRun("x", "2026-05-03", "QUEUED", None)) == ([(BASE, None)], [])


def test_after_a_failed_run_the_day_is_asked_again_once_the_backoff_has_passed() -> None:
    ok = finished("ok", "SUCCESS", 500, "k0")
    # f1 was this very work (its key is BASE, so Dagster would drop BASE): nothing before the backoff.
    assert plan(5, finished("f1", "FAILURE", 10, BASE), ok) == (
        [], [f"{DAY}: 5 object(s) waiting; run f1 failed (1st consecutive failure), next run in 20 s (backoff 30 s)"])
    keys, notes = plan(5, finished("f1", "FAILURE", 31, BASE), ok)
    assert keys == [(f"{BASE}|after:f1", None)]
    assert notes == [f"{DAY}: requested again after failed run f1, 1st consecutive failure, waited 31 s "
                     "(backoff 30 s)"]
    # Second consecutive failure: 60 s.
    assert plan(5, finished("f2", "FAILURE", 45, f"{BASE}|after:f1"), finished("f1", "FAILURE", 200, BASE),
                ok)[0] == []
    keys, notes = plan(5, finished("f2", "FAILURE", 61, f"{BASE}|after:f1"), finished("f1", "FAILURE", 200, BASE),
                       ok)
    assert keys == [(f"{BASE}|after:f2", None)] and "2nd consecutive failure" in notes[0]
    assert plan(5, finished("f2", "FAILURE", 7200, "k2"), finished("f1", "FAILURE", 9000, "k1"))[0] == [
        (f"{BASE}|after:f2", None)]  # waited longer than the longest backoff
    # Newer work than the failed run's has a key of its own: asked for at once, as without the rule.
    assert plan(5, finished("f1", "FAILURE", 10, "older-work"), ok) == ([(BASE, None)], [])
    # A large day is asked again in shards, each key naming the failed run.
    keys, _ = plan(300, finished("f1", "FAILURE", 31, f"{BASE}|shard:0/3"))
    assert keys == [(f"{BASE}|after:f1|shard:{i}/3", f"{i}/3") for i in range(3)]
    # While the new run waits or runs, nothing more; a success or a cancel ends the rule.
    assert plan(5, KnownRun("new", DAY, "QUEUED", f"{BASE}|after:f1"), finished("f1", "FAILURE", 99, BASE)) == (
        [], [])
    assert plan(5, finished("ok2", "SUCCESS", 1), finished("f1", "FAILURE", 9, BASE)) == ([], [])  # BASE is used
    assert plan(5, finished("c", "CANCELED", 1, "k3"), finished("f1", "FAILURE", 9, "k1")) == ([(BASE, None)], [])


def test_the_shards_of_one_request_are_one_attempt() -> None:
    shards = [finished(f"s{i}", "FAILURE", 10 + i, f"{BASE}|after:f0|shard:{i}/4") for i in range(4)]
    history = [*shards, finished("f0", "FAILURE", 100, BASE), finished("ok", "SUCCESS", 200), finished(
        "f-old", "FAILURE", 300)]
    assert consecutive_failures(history) == 2
    assert {attempt_of(r) for r in shards} == {f"{BASE}|after:f0"}
    assert attempt_of(finished("manual", "FAILURE", 1)) == "manual"  # launched by hand: no run_key
    keys, notes = plan(5, *history)  # 2nd failure: 60 s, the newest ended 10 s ago; BASE was f0's request
    assert keys == [] and "run s0 failed (2nd consecutive failure), next run in 50 s" in notes[0]


def test_keys_and_words() -> None:
    assert key_base(f"{BASE}|after:x|shard:1/2") == BASE and key_base(None) is None
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
    assert plan(5)[0] == [(BASE, None)]
    assert plan(5, now=NOW + dt.timedelta(hours=1))[0] == [(BASE.replace("2026050410", "2026050411"), None)]
    assert Shard.parse("3/4").owns(7) and not Shard.parse("3/4").owns(8)
