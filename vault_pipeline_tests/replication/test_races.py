"""Races between workers on one row, made deterministic with hooks (events), never sleeps (issue 12 §4, §5):
one locked cold version per source version, a lease lifecycle that holds rows until their copy is done,
takeovers that abort only dead owners' uploads, no writes after a lost lease, bugs never retried."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from vault_pipeline.replication.copier import CopyOptions, ObjectCopier
from vault_pipeline.replication.engine import EngineSettings, RunReport, replicate_days
from vault_pipeline.replication.errors import describe_s3_error
from vault_pipeline.replication.policy import RetentionPolicy
from vault_pipeline.replication.spool import MiB
from vault_pipeline_tests.conftest import Vault, sql

LARGE = 6 * MiB + 123  # two parts of 5 MiB


def TODAY() -> dt.date:  # read at each use: a suite may cross midnight
    return dt.datetime.now(dt.UTC).date()


class Hooked:
    """A client that forwards everything, with `before(name, kwargs)` called before the named methods."""

    def __init__(self, client: Any, before: Callable[[str, dict[str, Any]], None], *names: str) -> None:
        self._client, self._before, self._names = client, before, set(names)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name not in self._names:
            return target

        def call(**kwargs: Any) -> Any:
            self._before(name, kwargs)
            return target(**kwargs)
        return call


class Gate:
    """One thread stops at a point (`arrive`) until the test lets it go (`release`)."""

    def __init__(self) -> None:
        self.arrived, self.go = threading.Event(), threading.Event()

    def stop_here(self) -> None:
        self.arrived.set()
        assert self.go.wait(60), "the test never released the gate"


def copier_for(vault: Vault, cold: Any = None, hot: Any = None) -> ObjectCopier:
    return ObjectCopier(hot=hot or vault.hot, hot_bucket=vault.hot_bucket, cold=cold or vault.cold,
                        cold_bucket=vault.cold_bucket, policy=RetentionPolicy.default(),
                        options=CopyOptions(storage_class="DEEP_ARCHIVE", multipart_threshold=5 * MiB,
                                            part_size=5 * MiB, spool_max_bytes=0))


def run(vault: Vault, copier: ObjectCopier, owner: str, store: Any = None, **settings: Any) -> RunReport:
    options = {"lease_seconds": 600.0, "retry_base_seconds": 0.01, "concurrency": 2, **settings}
    return replicate_days(store=store or vault.store, copier=copier, source_bucket=vault.hot_bucket,
                          first_day=TODAY(), last_day=TODAY(), owner=owner, run_id=None,
                          settings=EngineSettings(**options))


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(target()), daemon=True)
    thread.start()
    return thread, out


def expire_lease(vault: Vault, key: str) -> None:
    sql(vault.dsn, "UPDATE vault_secure.replication_status SET lease_expires_at = now() - interval '1 second'"
                   " WHERE s3_key = %s RETURNING id", (key,))


def audit_events(vault: Vault) -> list[str]:
    return [e for (e,) in sql(vault.dsn, "SELECT event_type FROM vault_secure.audit_logs ORDER BY id")]


# -- §4: one locked cold version per source version ------------------------------------------------------

def test_two_owners_completing_one_large_first_copy_leave_one_version(vault: Vault) -> None:
    """Both reach CompleteMultipartUpload; the second one's If-None-Match is refused and it adopts."""
    vault.put("big.bin", os.urandom(LARGE), {"document-type": "invoice"})
    gate = Gate()
    completes: list[dict[str, Any]] = []

    def before(_name: str, kwargs: dict[str, Any]) -> None:
        completes.append(kwargs)
        gate.stop_here()

    slow = copier_for(vault, cold=Hooked(vault.cold, before, "complete_multipart_upload"))
    thread, out = in_thread(lambda: slow.replicate("big.bin", listed_size=LARGE, first_copy=True))
    assert gate.arrived.wait(60)
    fast = copier_for(vault).replicate("big.bin", listed_size=LARGE, first_copy=True)
    gate.go.set()
    thread.join(60)
    (late,) = out
    assert completes[0]["IfNoneMatch"] == "*"
    assert not fast.adopted and late.adopted and late.cold_version_id == fast.cold_version_id
    assert len(vault.cold_versions("big.bin")) == 1
    assert vault.open_uploads() == []  # the loser's upload is aborted


def test_a_server_ignoring_if_none_match_is_fenced_by_the_lease(vault: Vault) -> None:
    """Owner A loses its lease while sending parts; B takes the row over, but B's abort of A's upload fails,
    and the cold server ignores If-None-Match: the lease check right before A's Complete is what keeps the
    key at one locked version. A then writes nothing (no status, no audit)."""
    vault.put("fenced.bin", os.urandom(LARGE), {"document-type": "invoice"})
    vault.run_sensor()  # registers the row
    gate = Gate()

    def a_before(name: str, kwargs: dict[str, Any]) -> None:
        kwargs.pop("IfNoneMatch", None)  # a server that ignores the condition
        if name == "upload_part" and kwargs["PartNumber"] == 2:
            gate.stop_here()

    def b_before(name: str, kwargs: dict[str, Any]) -> None:
        kwargs.pop("IfNoneMatch", None)
        if name == "abort_multipart_upload":
            raise ClientError({"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                              "AbortMultipartUpload")

    a_cold = Hooked(vault.cold, a_before, "upload_part", "complete_multipart_upload")
    thread, out = in_thread(lambda: run(vault, copier_for(vault, cold=a_cold), "owner-A", concurrency=1))
    assert gate.arrived.wait(60)
    assert vault.row("fenced.bin")["cold_upload_owner"] == "owner-A"
    expire_lease(vault, "fenced.bin")
    b_cold = Hooked(vault.cold, b_before, "abort_multipart_upload", "complete_multipart_upload")
    b = run(vault, copier_for(vault, cold=b_cold), "owner-B")
    assert [r.status for r in b.results] == ["replicated"]
    gate.go.set()
    thread.join(60)
    (a,) = out
    assert [r.status for r in a.results] == ["lost"]
    assert len(vault.cold_versions("fenced.bin")) == 1
    assert vault.open_uploads() == []  # A aborted its own upload when the fence stopped it
    row = vault.row("fenced.bin")
    assert row["status"] == "replicated" and row["aws_version_id"] == vault.cold_versions("fenced.bin")[0]["VersionId"]
    assert audit_events(vault) == ["REPLICATION_SUCCESS"]


# -- §5: the lease lifecycle ------------------------------------------------------------------------------

@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_takeover_aborts_only_uploads_whose_owner_is_gone(vault: Vault) -> None:
    """The same cold key written from two hot buckets: a takeover of one row leaves the upload the other
    row's live owner recorded, and aborts the one nobody live owns."""
    vault.put("shared.bin", b"x", {"document-type": "invoice"})
    vault.run_sensor()
    live = vault.cold.create_multipart_upload(Bucket=vault.cold_bucket, Key="shared.bin")["UploadId"]
    vault.cold.create_multipart_upload(Bucket=vault.cold_bucket, Key="shared.bin")  # its creator died
    sql(vault.dsn, "INSERT INTO vault_secure.replication_status (s3_key, bucket_source, bucket_dest, ovh_etag,"
                   " ovh_size, source_last_modified, partition_day, status, lease_owner, lease_expires_at,"
                   " cold_upload_id, cold_upload_owner) VALUES ('shared.bin', 'other-hot', %s, 'e', 1, now(),"
                   " current_date, 'in_progress', 'live', now() + interval '1 hour', %s, 'live') RETURNING id",
        (vault.cold_bucket, live))
    # Our row was held by a worker that died.
    sql(vault.dsn, "UPDATE vault_secure.replication_status SET status = 'in_progress', lease_owner = 'dead',"
                   " lease_expires_at = now() - interval '1 second' WHERE bucket_source = %s RETURNING id",
        (vault.hot_bucket,))
    report = run(vault, copier_for(vault), "owner-B")
    assert [r.status for r in report.results] == ["replicated"] and report.aborted_uploads == 1
    assert {u["UploadId"] for u in vault.open_uploads()} == {live}
    vault.cold.abort_multipart_upload(Bucket=vault.cold_bucket, Key="shared.bin", UploadId=live)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_rows_stay_claimed_until_their_copy_has_finished(vault: Vault) -> None:
    """A run that stops early (here the database refuses its next claim) still holds the rows being copied
    until their copies are done and recorded; only then does it give back the rest."""
    vault.put("slow.pdf", b"slow", {"document-type": "invoice"})
    vault.run_sensor()
    gate = Gate()
    hot = Hooked(vault.hot, lambda _n, _k: gate.stop_here(), "get_object")
    store = vault.store
    claims: list[int] = []
    second_claim_failed = threading.Event()

    class FailingSecondClaim:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def claim(self, **kwargs: Any) -> Any:
            claims.append(1)
            if len(claims) > 1:
                second_claim_failed.set()
                raise RuntimeError("database gone for the next claim")
            return store.claim(**kwargs)

    thread, out = in_thread(lambda: _raises(lambda: run(vault, copier_for(vault, hot=hot), "owner-A",
                                                        store=FailingSecondClaim())))
    assert gate.arrived.wait(60) and second_claim_failed.wait(60)  # the run is stopping; the copy still runs
    row = vault.row("slow.pdf")
    assert row["status"] == "in_progress" and row["lease_owner"] == "owner-A"  # not released under the copy
    gate.go.set()
    thread.join(60)
    assert isinstance(out[0], RuntimeError)
    assert vault.row("slow.pdf")["status"] == "replicated"


def _raises(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:
        return exc


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_worker_that_lost_its_lease_writes_neither_status_nor_audit(vault: Vault) -> None:
    vault.put("lost.pdf", b"x", {"document-type": "invoice"})
    vault.run_sensor()
    since = vault.store.db_now() + dt.timedelta(seconds=1)
    claim = {"source_bucket": vault.hot_bucket, "first_day": TODAY(), "last_day": TODAY(), "limit": 1,
             "lease_seconds": 600, "not_attempted_since": since}
    (a_row,) = vault.store.claim(owner="A", **claim)
    expire_lease(vault, "lost.pdf")
    (b_row,) = vault.store.claim(owner="B", **claim)
    assert b_row.reclaimed
    assert not vault.store.mark_failed(a_row, "A", error="boom", failed_attempts=1, run_id=None,
                                       source_bucket=vault.hot_bucket)
    assert not vault.store.record_upload_id(a_row.id, "A", "some-upload")
    assert not vault.store.confirm_lease(a_row.id, "A", 600)
    row = vault.row("lost.pdf")
    assert (row["status"], row["lease_owner"], row["error_message"], row["cold_upload_id"]) == (
        "in_progress", "B", None, None)
    assert audit_events(vault) == []


def test_programming_errors_are_not_transient() -> None:
    assert describe_s3_error(TypeError("unsupported operand"))[1] is False
    assert describe_s3_error(KeyError("ETag"))[1] is False
    assert describe_s3_error(ConnectionResetError("reset by peer"))[1] is True
    assert describe_s3_error(TimeoutError("read timed out"))[1] is True


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_bug_fails_fast_and_stops_the_run_claiming(vault: Vault) -> None:
    for i in range(5):
        vault.put(f"bug/{i}.pdf", b"x", {"document-type": "invoice"})
    vault.run_sensor()

    def buggy(_name: str, _kwargs: dict[str, Any]) -> None:
        raise TypeError("'NoneType' object is not subscriptable")

    report = run(vault, copier_for(vault, hot=Hooked(vault.hot, buggy, "get_object")), "owner-A",
                 concurrency=1, claim_batch=1, max_attempts=3)
    (failed,) = report.failures
    assert failed.attempts == 1 and "internal error" in failed.error and "TypeError" in failed.error
    assert report.stopped and "internal error" in report.stopped
    statuses = [r["status"] for r in vault.store.rows(vault.hot_bucket)]
    assert statuses.count("failed") == 1 and statuses.count("pending") == 4  # given back, not claimed


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_when_lease_renewal_fails_the_worker_stops_claiming(vault: Vault) -> None:
    for i in range(4):
        vault.put(f"renew/{i}.pdf", b"x", {"document-type": "invoice"})
    vault.run_sensor()
    store = vault.store
    renewal_failed = threading.Event()

    class RenewalFails:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def renew_leases(self, owner: str, lease_seconds: float) -> int:
            renewal_failed.set()
            raise OSError("connection to the tracking database lost")

    # The first copy waits until a renewal has failed (the heartbeat runs every third of the 0.3 s lease).
    hot = Hooked(vault.hot, lambda _n, _k: renewal_failed.wait(60), "get_object")
    report = run(vault, copier_for(vault, hot=hot), "owner-A", store=RenewalFails(), lease_seconds=0.3,
                 concurrency=1, claim_batch=1)
    assert report.stopped and "lease renewal failed" in report.stopped
    assert len(report.results) <= 2  # what was claimed before the failure; nothing after
    statuses = [r["status"] for r in vault.store.rows(vault.hot_bucket)]
    assert statuses.count("pending") >= 2 and "in_progress" not in statuses


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_large_object_deleted_after_its_head_is_recorded_gone(vault: Vault) -> None:
    """§8a mid-copy: the hot object disappears between the HEAD that starts a large copy and its read."""
    vault.put("vanishing.bin", os.urandom(LARGE), {"document-type": "invoice"})
    vault.run_sensor()

    def delete_first(_name: str, kwargs: dict[str, Any]) -> None:
        vault.hot.delete_object(Bucket=vault.hot_bucket, Key=kwargs["Key"])

    report = run(vault, copier_for(vault, hot=Hooked(vault.hot, delete_first, "get_object")), "owner-A")
    (failed,) = report.failures
    assert failed.attempts == 1 and "is gone" in failed.error
    row = vault.row("vanishing.bin")
    assert row["status"] == "failed" and row["hot_missing_at"] is not None
    assert vault.open_uploads() == [] and vault.cold_versions("vanishing.bin") == []


def test_a_changed_small_source_is_written_once_by_two_racing_owners(vault: Vault) -> None:
    """A re-copy (the source changed) cannot be conditional, a version exists: the lease fence before the
    PUT is what keeps two owners that both found no copy of the new content from writing two versions."""
    vault.put("changed.pdf", b"first content", {"document-type": "invoice"})
    vault.run_sensor()
    assert [r.status for r in run(vault, copier_for(vault), "owner-X").results] == ["replicated"]
    vault.put("changed.pdf", b"second content", {"document-type": "invoice"})
    vault.run_sensor()
    gate = Gate()

    class PauseAfterFirstHead:
        """A's cold client: its check for an existing copy of the new content answers, then A stops."""

        def __getattr__(self, name: str) -> Any:
            return getattr(vault.cold, name)

        def head_object(self, **kwargs: Any) -> Any:
            response = vault.cold.head_object(**kwargs)
            if not gate.arrived.is_set():
                gate.stop_here()
            return response

    thread, out = in_thread(lambda: run(vault, copier_for(vault, cold=PauseAfterFirstHead()), "owner-A"))
    assert gate.arrived.wait(60)
    expire_lease(vault, "changed.pdf")
    assert [r.status for r in run(vault, copier_for(vault), "owner-B").results] == ["replicated"]
    gate.go.set()
    thread.join(60)
    assert [r.status for r in out[0].results] == ["lost"]
    assert len(vault.cold_versions("changed.pdf")) == 2  # first and second content, once each
    assert audit_events(vault) == ["REPLICATION_SUCCESS", "REPLICATION_SUCCESS"]
