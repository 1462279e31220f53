"""vault_secure.file_transfer_log on real PostgreSQL: stable files registered once, claims that never give a
file to two workers, stale claims taken over after their lease, results fenced by the lease, a new delivery
under a known name transferred again."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest

from vault_pipeline.replication.tracking.file_transfers import StableFile, TransferLog, TransferResult

INBOX = "sftp://vault@127.0.0.1:2222/inbox"
T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def log(tracking_dsn: str) -> Iterator[TransferLog]:
    store = TransferLog(tracking_dsn)
    store.migrate()
    yield store
    store.close()


def result(key: str) -> TransferResult:
    return TransferResult(hot_bucket="hot", hot_key=key, hot_etag="etag", hot_version_id=None, sha256="ab" * 32,
                          document_type="general", download_seconds=0.5, upload_seconds=0.25, total_seconds=0.8,
                          after_transfer="moved")


def rows(log: TransferLog) -> dict[str, dict]:
    with log.pool.connection() as conn:
        cur = conn.execute("SELECT * FROM vault_secure.file_transfer_log ORDER BY filename")
        names = [c.name for c in cur.description]
        return {r[names.index("filename")]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def test_registration_is_idempotent_and_a_new_delivery_starts_again(log: TransferLog) -> None:
    files = [StableFile("a/b.pdf", 2 * 1024 * 1024, T0), StableFile("été/scan 1.pdf", 0, T0)]
    assert log.register_stable(INBOX, files) == 2
    assert log.register_stable(INBOX, files) == 0  # the same look: nothing new
    assert log.register_stable("sftp://other/inbox", files[:1]) == 1  # unique per inbox, not globally
    [claimed] = log.claim_files(INBOX, owner="w1", limit=1, lease_seconds=60)
    assert log.complete_file(claimed.id, "w1", result("sftp/a/b.pdf"))
    row = rows(log)["a/b.pdf"]
    assert (row["status"], row["file_size_mb"], row["hot_key"], row["worker_id"]) == (
        "COMPLETED", 2, "sftp/a/b.pdf", "w1")
    assert row["transfer_end_time"] >= row["transfer_start_time"] and row["total_duration"] == 0.8
    # Delivered again under the same name with other bytes: a new transfer, the old result cleared.
    assert log.register_stable(INBOX, [StableFile("a/b.pdf", 10, T0 + dt.timedelta(hours=1))]) == 1
    again = rows(log)["a/b.pdf"]
    assert (again["status"], again["hot_key"], again["attempts"], again["file_size"]) == ("PENDING", None, 0, 10)


def test_concurrent_claims_never_share_a_file(log: TransferLog) -> None:
    log.register_stable(INBOX, [StableFile(f"f{i:04d}.pdf", i, T0) for i in range(400)])
    taken: dict[str, list[str]] = {}
    lock = threading.Lock()

    def worker(name: str) -> None:
        while batch := log.claim_files(INBOX, owner=name, limit=7, lease_seconds=60):
            with lock:
                for f in batch:
                    taken.setdefault(f.filename, []).append(name)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 400 and all(len(owners) == 1 for owners in taken.values())
    assert len({owners[0] for owners in taken.values()}) > 1  # the work was shared


def test_a_stale_claim_is_taken_over_and_the_old_worker_is_fenced(log: TransferLog) -> None:
    log.register_stable(INBOX, [StableFile("slow.pdf", 5, T0)])
    [first] = log.claim_files(INBOX, owner="dead", limit=5, lease_seconds=1)
    assert log.claim_files(INBOX, owner="other", limit=5, lease_seconds=60) == []  # held: nobody else
    time.sleep(1.2)  # SFTP_STALE_LOCK_MINUTES, in seconds here
    [taken] = log.claim_files(INBOX, owner="other", limit=5, lease_seconds=60)
    assert (taken.id, taken.attempts) == (first.id, 2)
    assert not log.complete_file(first.id, "dead", result("sftp/slow.pdf"))  # the old worker records nothing
    assert not log.fail_file(first.id, "dead", "too late")
    assert log.complete_file(taken.id, "other", result("sftp/slow.pdf"))


def test_failures_are_retried_up_to_the_limit_and_released_files_go_back(log: TransferLog) -> None:
    log.register_stable(INBOX, [StableFile("broken.pdf", 5, T0), StableFile("later.pdf", 6, T0)])
    for attempt in (1, 2):
        [claimed] = log.claim_files(INBOX, owner="w", limit=1, lease_seconds=60)
        assert (claimed.filename, claimed.attempts) == ("broken.pdf", attempt)
        assert log.fail_file(claimed.id, "w", "SFTP: permission denied", total_seconds=0.1)
    row = rows(log)["broken.pdf"]
    assert (row["status"], row["error_message"]) == ("FAILED", "SFTP: permission denied")
    [later] = log.claim_files(INBOX, owner="w", limit=5, lease_seconds=60, max_attempts=2)
    assert later.filename == "later.pdf"  # broken.pdf has had its 2 attempts
    assert log.release_files("w") == 1
    assert rows(log)["later.pdf"]["status"] == "PENDING"
    summary = log.transfer_summary(INBOX)
    assert summary["by_status"] == {"FAILED": {"files": 1, "bytes": 5}, "PENDING": {"files": 1, "bytes": 6}}
