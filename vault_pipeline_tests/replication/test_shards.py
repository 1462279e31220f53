"""A day shared by several runs (shards, the run tag vault/shard = "i/n"), on the real servers: a shard claims
its own slice first, then helps with the rest of the day; shards running at once, or one dying, still leave
every object copied exactly once and no multipart upload open; a malformed tag stops the run before it
claims anything."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline.replication.shards import Shard, ShardError, ShardPolicy
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.replication.tracking.claims import CLAIM_SQL, SLICE_CLAIM_SQL, STEAL_CLAIM_SQL
from vault_pipeline_tests.conftest import REPO, Vault, sql, today_key

MiB = 1024 * 1024
DAY = dt.date(2026, 2, 10)


# ---------------------------------------------------------------- the value type


def test_a_shard_tag_is_i_of_n() -> None:
    assert Shard.parse("1/4") == Shard(1, 4) and str(Shard.parse(" 0/2 ")) == "0/2"
    assert Shard.from_tags({"vault/shard": "63/64"}) == Shard(63, 64)
    assert Shard.from_tags({"dagster/partition": "2026-02-10"}) is None  # no tag: the whole day
    for bad in ("4/4", "5/4", "1/0", "0/65", "-1/4", "1/-4", "a/b", "1", "1/4/5", "", "1 / 4x", "1.0/4"):
        with pytest.raises(ShardError) as raised:
            Shard.from_tags({"vault/shard": bad})
        assert f"vault/shard tag {bad!r} is not a shard" in str(raised.value), bad
        assert 'expected "i/n", two integers with 0 <= i < n <= 64' in str(raised.value)
    assert [s.index for s in ShardPolicy(3, 4).shards(10)] == [0, 1, 2, 3]
    assert ShardPolicy(2000, 4).shards(1999) == [None] and ShardPolicy(2000, 4).shards(2000) == [None]
    assert ShardPolicy(2000, 4).shards(2001) == [Shard(0, 2), Shard(1, 2)]
    assert ShardPolicy(2000, 1).shards(10**6) == [None]


# ---------------------------------------------------------------- claims on the real database


@pytest.fixture
def store(tracking_dsn: str) -> Iterator[TrackingStore]:
    with TrackingStore(tracking_dsn) as s:
        s.migrate()
        yield s


def register(store: TrackingStore, count: int, day: dt.date = DAY, prefix: str = "k") -> None:
    at = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    for start in range(0, count, 1000):
        store.register([ListedObject(f"{prefix}{i:06d}", "e", 10, at) for i in range(start, min(count, start + 1000))],
                       source_bucket="hot", destination_bucket="cold")


def claim(store: TrackingStore, owner: str, *, shard: Shard | None = None, steal: bool = False, limit: int = 100,
          lease: float = 60) -> list[int]:
    rows = store.claim(owner=owner, source_bucket="hot", first_day=DAY, last_day=DAY, limit=limit,
                       lease_seconds=lease, not_attempted_since=store.db_now(), own_slice=shard, steal=steal)
    return [row.id for row in rows]


def test_shards_claim_disjoint_slices_first_then_steal_from_the_end(store: TrackingStore) -> None:
    register(store, 40)
    every = {r["id"] for r in store.rows("hot")}
    slices = {i: claim(store, f"shard-{i}", shard=Shard(i, 4), limit=6) for i in (0, 2)}
    for i, ids in slices.items():
        assert len(ids) == 6 and all(row_id % 4 == i for row_id in ids)
        assert ids == sorted(ids)  # the index's (partition_day, id) order
    slices[0] += claim(store, "shard-0", shard=Shard(0, 4))
    assert sorted(slices[0]) == sorted(r for r in every if r % 4 == 0)  # the whole slice, nothing else
    assert claim(store, "shard-0", shard=Shard(0, 4)) == []  # exhausted: shard 0 now helps
    stolen = claim(store, "shard-0", steal=True, limit=5)
    waiting = sorted((r for r in every if r % 4 in (1, 3) or (r % 4 == 2 and r not in slices[2])), reverse=True)
    assert stolen == waiting[:5]  # from the end of the day: what the owners reach last
    assert not set(stolen) & set(slices[2])  # never a row another shard holds
    # Shard 1 never ran: its slice is finished by the others; shard 3 starts late and finds what is left.
    rest = claim(store, "shard-2", steal=True)
    late = claim(store, "shard-3", shard=Shard(3, 4)) + claim(store, "shard-3", steal=True)
    claimed = [*slices[0], *slices[2], *stolen, *rest, *late]
    assert sorted(claimed) == sorted(every) and len(claimed) == len(set(claimed))


def test_a_dead_shard_s_slice_is_taken_over_once_its_leases_expire(store: TrackingStore) -> None:
    register(store, 12)
    dead = claim(store, "shard-1-died", shard=Shard(1, 2))
    alive = claim(store, "shard-0", shard=Shard(0, 2))
    assert len(dead) == len(alive) == 6
    assert claim(store, "shard-0", steal=True) == []  # the dead shard's leases still hold
    with store.pool.connection() as conn:
        conn.execute("UPDATE vault_secure.replication_status SET lease_expires_at = now() - interval '1 second'"
                     " WHERE lease_owner = 'shard-1-died'")
    rows = store.claim(owner="shard-0", source_bucket="hot", first_day=DAY, last_day=DAY, limit=100,
                       lease_seconds=60, not_attempted_since=store.db_now(), steal=True)
    assert sorted(r.id for r in rows) == sorted(dead) and all(r.reclaimed for r in rows)


def plan_of(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of the claim's plan (EXPLAIN ANALYZE in a transaction rolled back: a claim updates rows)."""
    with conn.transaction(force_rollback=True):
        [[document]] = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchall()
    nodes, todo = [], [document[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


def test_the_shard_claims_read_the_work_index_in_its_order(store: TrackingStore, tracking_dsn: str) -> None:
    for offset in range(5):  # 5 days of 2000 waiting rows: the smallest day that is shared by default
        register(store, 2000, DAY - dt.timedelta(days=offset), prefix=f"d{offset}-")
    params = {"owner": "explain", "lease": 60, "src": "hot", "d0": DAY, "d1": DAY, "limit": 32,
              "since": dt.datetime.now(dt.UTC), "shards": 4, "shard": 1}
    with psycopg.connect(tracking_dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) vault_secure.replication_status")
        plans = {name: plan_of(conn, query, params) for name, query in
                 (("all", CLAIM_SQL), ("slice", SLICE_CLAIM_SQL), ("steal", STEAL_CLAIM_SQL))}
    for name, nodes in plans.items():
        scans = [n for n in nodes if n.get("Relation Name") == "replication_status" and "Scan" in n["Node Type"]]
        candidate = [n for n in scans if n.get("Index Name") == "replication_status_work"]
        assert candidate and candidate[0]["Node Type"] == "Index Scan", (name, [n["Node Type"] for n in scans])
        assert not [n for n in nodes if n["Node Type"] in ("Sort", "Seq Scan", "Bitmap Heap Scan")], name
        assert candidate[0]["Scan Direction"] == ("Backward" if name == "steal" else "Forward"), name
        assert candidate[0]["Actual Rows"] <= (32 * 4 + 4 if name == "slice" else 32), name  # stops at LIMIT


# ---------------------------------------------------------------- shard runs on both sites

pytestmark_sites = pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)


def start_shard(vault: Vault, shard: str, **extra_env: str) -> subprocess.Popen[str]:
    """A separate process running one shard of today's run, configured only from the environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "vault_pipeline_tests.replication.shard_worker", today_key(), shard],
        cwd=REPO, env={**os.environ, **vault.env, **extra_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def finished(worker: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    out, err = worker.communicate(timeout=timeout)
    assert out.strip(), err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def put_day(vault: Vault, small: int, large: int = 0) -> list[str]:
    keys = [f"shared/s-{i:04d}.pdf" for i in range(small)] + [f"shared/a-large-{i}.bin" for i in range(large)]
    for key in keys:
        vault.put(key, os.urandom(6 * MiB + 17 if "large" in key else 3000), {"document-type": "invoice"})
    vault.sweep()
    return keys


def assert_copied_exactly_once(vault: Vault, keys: list[str]) -> None:
    rows = vault.store.rows(vault.hot_bucket)
    assert sorted(r["s3_key"] for r in rows) == sorted(keys)
    assert {r["status"] for r in rows} == {"replicated"}
    versions = vault.cold_versions_under("shared/")
    for row in rows:  # one locked cold version per key, the one the manifest names
        assert [v["VersionId"] for v in versions[row["s3_key"]]] == [row["aws_version_id"]], row["s3_key"]
    assert vault.open_uploads() == []


@pytestmark_sites
@pytest.mark.slow
def test_four_shard_processes_copy_a_day_once_and_help_a_slow_one(vault: Vault) -> None:
    keys = put_day(vault, 240, large=4)
    # Shard 3's link is slow (its slice of ~61 objects alone would take ~15 s): the others finish their
    # slices and take what it has not claimed yet (a run holds one claim batch, 32 rows, ahead of its copies).
    workers = [start_shard(vault, f"{i}/4", REPLICATION_CONCURRENCY="4" if i < 3 else "2",
                           **({"VAULT_TEST_COPY_DELAY_S": "0.5"} if i == 3 else {})) for i in range(4)]
    reports = [finished(worker) for worker in workers]
    assert all(r["success"] for r in reports), reports
    assert_copied_exactly_once(vault, keys)
    metadata = [r["metadata"] for r in reports]
    assert [m["shard"] for m in metadata] == ["0/4", "1/4", "2/4", "3/4"]
    assert sum(m["objects_own_slice"] + m["objects_stolen"] for m in metadata) == len(keys)
    assert sum(m["objects_copied"] for m in metadata) == len(keys)
    slow_slice = sum(1 for r in vault.store.rows(vault.hot_bucket) if r["id"] % 4 == 3)
    assert metadata[3]["objects_own_slice"] < slow_slice  # part of its slice was done by the others
    assert sum(m["objects_stolen"] for m in metadata[:3]) >= slow_slice - metadata[3]["objects_own_slice"]


@pytestmark_sites
@pytest.mark.slow
def test_a_shard_that_dies_is_finished_by_the_other_once_its_leases_expire(vault: Vault) -> None:
    keys = put_day(vault, 60, large=4)
    # Shard 1 dies right after its first verified copies, before recording them; uploads of its other
    # threads may be open on the cold site.
    dying = start_shard(vault, "1/2", VAULT_TEST_KILL_AT="before_mark_replicated", REPLICATION_CONCURRENCY="4")
    dying.communicate(timeout=300)
    assert dying.returncode == 137
    held = sql(vault.dsn, "SELECT count(*) FROM vault_secure.replication_status WHERE status = 'in_progress'")[0][0]
    assert held > 0  # the dead shard's leases hold its rows
    # Shard 0, on a slow link, is still on its own slice (~32 objects, 2 at a time, 0.5 s each) when the dead
    # shard's leases (5 s here) expire: then it takes over the dead shard's rows.
    report = finished(start_shard(vault, "0/2", VAULT_TEST_COPY_DELAY_S="0.5", REPLICATION_CONCURRENCY="2"))
    assert report["success"], report
    assert_copied_exactly_once(vault, keys)
    metadata = report["metadata"]
    assert metadata["objects_stolen"] >= held
    assert metadata["objects_own_slice"] + metadata["objects_stolen"] == len(keys)
    assert metadata["objects_adopted"] >= 1  # copied by the dead shard, found on the cold site, not copied again


@pytestmark_sites
def test_a_malformed_shard_tag_fails_clearly_and_claims_nothing(vault: Vault) -> None:
    put_day(vault, 3)
    for bad in ("4/4", "two of four"):
        result = vault.run_partition(today_key(), tags={"vault/shard": bad}, sweep=False)
        assert not result.success
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failures[0].step_failure_data.error.message
        assert f"vault/shard tag {bad!r} is not a shard" in message, message
        assert 'expected "i/n", two integers with 0 <= i < n <= 64' in message
        assert failures[0].step_failure_data.user_failure_data is not None
        rows = vault.store.rows(vault.hot_bucket)
        assert {(r["status"], r["last_attempt_at"]) for r in rows} == {("pending", None)}  # nothing claimed
    result = vault.run_partition(today_key(), tags={"vault/shard": "0/2"}, sweep=False)  # a good one works
    assert result.success
    metadata = result.asset_materializations_for_node("cold_copies")[0].metadata
    assert metadata["shard"].value == "0/2"
    own = sum(1 for r in vault.store.rows(vault.hot_bucket) if r["id"] % 2 == 0)
    assert (metadata["objects_own_slice"].value, metadata["objects_stolen"].value) == (own, 3 - own)
    assert {r["status"] for r in vault.store.rows(vault.hot_bucket)} == {"replicated"}
