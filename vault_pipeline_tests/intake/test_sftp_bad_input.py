"""Bad input to the SFTP intake, against real servers: every case ends in a recorded result (a row of
vault_secure.file_transfer_log with its status and reason, or a clear error for a server-level problem),
never a crashed run, and never a document lost."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from vault_pipeline.intake.sftp_client import SftpUnavailable
from vault_pipeline.intake.sftp_transfer import META_INTAKE_SHA256
from vault_pipeline_tests.intake.sftp_harness import (
    Intake,
    MiB,
    intake_on,
    known_hosts_with_another_key,
    through_proxy,
    unprivileged_sftp_server,
)
from vault_pipeline_tests.intake.tcp_proxy import TcpProxy
from vault_pipeline_tests.sftpservers import SftpEndpoint

FLAVOURS = ["asyncssh", "openssh"]


@pytest.fixture(params=FLAVOURS)
def unprivileged_intake(request: pytest.FixtureRequest, hot_site: Any, tracking_dsn: str,
                        tmp_path: Path) -> Iterator[Intake]:
    """An intake on a server whose file access is an unprivileged user's (file modes apply)."""
    with (unprivileged_sftp_server(request.param, tmp_path / "server") as endpoint,
          intake_on(endpoint, hot_site, tracking_dsn) as intake):
        yield intake


def test_permission_denied_is_recorded_and_the_file_kept(unprivileged_intake: Intake) -> None:
    intake = unprivileged_intake
    intake.drop("open.pdf", b"readable")
    secret = intake.drop("secret.pdf", b"nobody may read this")
    hidden = intake.drop("locked/inner.pdf", b"behind a directory nobody may list")
    secret.chmod(0o000)
    hidden.parent.chmod(0o000)
    intake.inbox.chmod(0o555)  # no processed/ folder can be made, no file moved
    try:
        scans = intake.scan()
        problems = [p for r in scans for p in r.problems]
        assert problems and all("locked" in p and "permission denied" in p for p in problems), problems
        assert set(intake.rows()) == {"open.pdf", "secret.pdf"}

        report = intake.transfer()
        assert report.stopped is None
        rows = intake.rows()
        denied = rows["secret.pdf"]
        assert denied["status"] == "FAILED" and denied["retryable"]
        assert denied["attempts"] == intake.settings.max_attempts  # retried, then left for an operator
        assert f"'{intake.config.remote_dir}/secret.pdf' on {intake.config.address}: permission denied" \
            in denied["error_message"]
        readable = rows["open.pdf"]  # transferred; the refused move keeps it in the inbox, and says so
        assert readable["status"] == "COMPLETED" and readable["after_transfer"] == "kept"
        assert "permission denied" in readable["error_message"]
        assert "still in the inbox" in readable["error_message"]
        assert intake.hot_objects() == {"sftp/open.pdf": len(b"readable")}
        assert secret.exists() and (intake.inbox / "open.pdf").exists()
        assert intake.transfer().outcomes == []  # nothing left to claim

        secret.chmod(0o644)  # the operator fixes the mode and delivers it again
        os.utime(secret)
        intake.scan()
        again = intake.transfer()
        assert [(o.filename, o.status) for o in again.outcomes] == [("secret.pdf", "COMPLETED")], again.outcomes
        assert intake.hot_body("sftp/secret.pdf") == b"nobody may read this"
    finally:
        intake.inbox.chmod(0o755)
        hidden.parent.chmod(0o755)
        secret.chmod(0o644)


# -- through a TCP proxy: removing a file, or dropping the connection, at a chosen byte of a read -------------
@pytest.fixture
def proxied(sftp_server: SftpEndpoint, hot_site: Any, tracking_dsn: str,
            tmp_path: Path) -> Iterator[tuple[Intake, TcpProxy]]:
    """An intake whose every SFTP connection goes through a TcpProxy in front of the server."""
    with (TcpProxy(sftp_server.host, sftp_server.port) as proxy,
          intake_on(through_proxy(sftp_server, proxy.port, tmp_path), hot_site, tracking_dsn) as intake):
        yield intake, proxy


@pytest.mark.parametrize("spool", [True, False], ids=["spooled", "no-spool"])
def test_a_file_removed_while_it_is_read(proxied: tuple[Intake, TcpProxy], spool: bool) -> None:
    intake, proxy = proxied
    body = os.urandom(12 * MiB + 7)  # multipart: three parts, twelve read chunks
    path = intake.drop("vanishing.pdf", body)
    intake.scan()
    removed = proxy.at_byte(3 * MiB, path.unlink)
    report = intake.transfer(spool_max_bytes=intake.settings.spool_max_bytes if spool else 0)
    assert removed.is_set() and not path.exists()
    row = intake.rows()["vanishing.pdf"]
    if spool:
        # POSIX: the server's open handle reads the unlinked file to its end, so every byte was read once,
        # spooled, uploaded and verified; only the move finds nothing left to move.
        assert [o.status for o in report.outcomes] == ["COMPLETED"], report.outcomes
        assert row["status"] == "COMPLETED" and row["sha256"] == hashlib.sha256(body).hexdigest()
        assert intake.hot_body("sftp/vanishing.pdf") == body
        assert row["after_transfer"] == "kept" and "no longer in the inbox" in row["error_message"], row
        assert intake.replication_keys() == ["sftp/vanishing.pdf"]
    else:
        # Without a spool the parts are read again by path after the first pass: the file is gone by then.
        assert row["status"] == "FAILED" and not row["retryable"], report.outcomes
        assert "vanished during its transfer" in row["error_message"]
        assert intake.hot_objects() == {} and intake.open_uploads() == []
        assert intake.replication_keys() == []
    assert intake.transfer().outcomes == []


def test_a_dropped_connection_is_resumed_on_a_new_one(proxied: tuple[Intake, TcpProxy]) -> None:
    intake, proxy = proxied
    body = os.urandom(12 * MiB + 5)
    intake.drop("resumed.pdf", body)
    intake.scan()
    cut = proxy.at_byte(4 * MiB, cut=True)
    report = intake.transfer()
    assert cut.is_set() and proxy.cuts == 1
    assert report.connections_lost >= 1
    assert [o.status for o in report.outcomes] == ["COMPLETED"], report.outcomes
    row = intake.rows()["resumed.pdf"]
    assert row["attempts"] == 1  # resumed within the attempt, not retried
    assert row["sha256"] == hashlib.sha256(body).hexdigest()
    assert intake.head("sftp/resumed.pdf")["Metadata"][META_INTAKE_SHA256] == row["sha256"]
    assert intake.hot_body("sftp/resumed.pdf") == body


def test_a_large_file_without_spool_is_read_again_over_sftp(proxied: tuple[Intake, TcpProxy]) -> None:
    intake, proxy = proxied
    body = os.urandom(12 * MiB + 1)
    intake.drop("re-read.pdf", body)
    intake.scan()
    before = proxy.bytes_down
    report = intake.transfer(spool_max_bytes=0)
    assert [o.status for o in report.outcomes] == ["COMPLETED"], report.outcomes
    assert proxy.bytes_down - before >= 2 * len(body)  # pass 1 hashed it, the parts were read again
    head = intake.head("sftp/re-read.pdf")
    assert head["ETag"].strip('"').endswith("-3")
    assert intake.hot_body("sftp/re-read.pdf") == body
    assert intake.rows()["re-read.pdf"]["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_connection_dropped_while_parts_are_read_again_is_resumed(proxied: tuple[Intake, TcpProxy]) -> None:
    intake, proxy = proxied
    body = os.urandom(12 * MiB + 1)
    intake.drop("re-read.pdf", body)
    intake.scan()
    # Pass 1 reads the whole file on one connection, which the part readers reuse: cut it 1 MiB into them.
    cut = proxy.at_byte(len(body) + MiB, cut=True)
    report = intake.transfer(spool_max_bytes=0)
    assert cut.is_set()
    assert [o.status for o in report.outcomes] == ["COMPLETED"], report.outcomes
    assert report.connections_lost >= 1  # the part was read again on a new connection, in the same attempt
    row = intake.rows()["re-read.pdf"]
    assert row["status"] == "COMPLETED" and row["attempts"] == 1
    assert intake.hot_body("sftp/re-read.pdf") == body and intake.open_uploads() == []


# -- on the ordinary servers ---------------------------------------------------------------------------------
def test_a_file_still_growing_fails_then_is_delivered_again_once_stable(intake: Intake) -> None:
    path = intake.drop("growing.pdf", b"first half, ")
    intake.scan()
    assert intake.rows()["growing.pdf"]["status"] == "PENDING"
    with path.open("ab") as out:  # the producer was not done
        out.write(b"second half")
    report = intake.transfer()
    [failed] = report.outcomes
    row = intake.rows()["growing.pdf"]
    assert failed.status == row["status"] == "FAILED" and not row["retryable"]
    assert "changed before its transfer" in row["error_message"] and "size 12 -> 23" in row["error_message"]
    assert intake.hot_objects() == {} and path.exists()
    assert intake.transfer().outcomes == []  # not retried: this delivery is over

    scans = intake.scan()  # the new look settles, then registers as a new delivery of the name
    assert sum(s.registered for s in scans) == 1
    again = intake.transfer()
    assert [(o.filename, o.status) for o in again.outcomes] == [("growing.pdf", "COMPLETED")]
    assert intake.hot_body("sftp/growing.pdf") == b"first half, second half"
    assert intake.rows()["growing.pdf"]["error_message"] is None


AWKWARD_NAMES = ["with space.pdf", "ünïcødé/文件 名.pdf", "100%.pdf", "%41%2F%20.pdf", "a+b=c.pdf",
                 "deep dir/x y+z%.pdf", "empty.pdf"]


def test_awkward_names_keep_their_exact_name_and_impossible_keys_are_refused(intake: Intake) -> None:
    bodies = {name: b"" if name == "empty.pdf" else f"document {name}".encode() for name in AWKWARD_NAMES}
    for name, body in bodies.items():
        intake.drop(name, body)
    too_long = "/".join(["d" * 200] * 5) + "/" + "f" * 30 + ".pdf"  # legal on disk, > 1024 bytes as a key
    control = "line\nbreak.pdf"
    intake.drop(too_long, b"long")
    intake.drop(control, b"control")
    intake.scan()
    report = intake.transfer()
    assert report.stopped is None
    rows = intake.rows()
    for name, body in bodies.items():
        row = rows[name]
        assert row["status"] == "COMPLETED" and row["hot_key"] == f"sftp/{name}", row
        assert row["sha256"] == hashlib.sha256(body).hexdigest()
        assert intake.hot_body(f"sftp/{name}") == body
        assert (intake.inbox / "processed" / name).read_bytes() == body
    assert intake.head("sftp/empty.pdf")["ContentLength"] == 0
    long_row = rows[too_long]
    assert long_row["status"] == "FAILED" and not long_row["retryable"] and long_row["attempts"] == 1
    assert f"hot key would be {len(('sftp/' + too_long).encode())} bytes, S3 allows 1024" in long_row["error_message"]
    assert rows[control]["status"] == "FAILED" and "control characters" in rows[control]["error_message"]
    assert (intake.inbox / too_long).exists() and (intake.inbox / control).exists()
    expected = {f"sftp/{name}": len(body) for name, body in bodies.items()}
    assert intake.hot_objects() == expected
    assert intake.replication_keys() == sorted(expected)
    assert intake.transfer().outcomes == []


def test_a_name_that_is_not_utf8_is_refused_without_blocking_its_directory(intake: Intake) -> None:
    latin1 = os.fsdecode("legacy/caf\xe9.pdf".encode("latin-1"))  # a byte 0xE9 alone: not UTF-8
    intake.drop(latin1, b"latin-1 name")
    intake.drop("legacy/fine.pdf", b"its neighbour")
    scans = intake.scan()
    assert not [p for s in scans for p in s.problems]
    report = intake.transfer()
    rows = intake.rows()
    assert rows["legacy/fine.pdf"]["status"] == "COMPLETED", (rows, report.outcomes)
    [refused] = [name for name in rows if name != "legacy/fine.pdf"]
    assert rows[refused]["status"] == "FAILED" and not rows[refused]["retryable"]
    assert "UTF-8" in rows[refused]["error_message"]
    assert intake.hot_objects() == {"sftp/legacy/fine.pdf": len(b"its neighbour")}
    assert (intake.inbox / latin1).exists()


def test_symlinks_are_never_followed(intake: Intake) -> None:
    passwd = Path("/etc/passwd").read_bytes()
    intake.drop("real.pdf", b"a real document")
    (intake.inbox / "passwd.pdf").symlink_to("/etc/passwd")
    (intake.inbox / "etc").symlink_to("/etc", target_is_directory=True)
    (intake.inbox / "alias.pdf").symlink_to(intake.inbox / "real.pdf")  # not even one inside the inbox
    swapped = intake.drop("swapped.pdf", b"registered as a regular file")
    scans = intake.scan()
    refused = {name: why for s in scans for name, why in s.refused}
    assert set(refused) == {"passwd.pdf", "etc", "alias.pdf"}
    assert all("symbolic link: never followed" in why for why in refused.values())
    swapped.unlink()  # replaced by a link between its registration and its transfer
    swapped.symlink_to("/etc/passwd")
    report = intake.transfer()
    rows = intake.rows()
    assert rows["real.pdf"]["status"] == "COMPLETED"
    for name in ("passwd.pdf", "etc", "alias.pdf", "swapped.pdf"):
        assert rows[name]["status"] == "FAILED" and not rows[name]["retryable"], rows[name]
        assert "never followed" in rows[name]["error_message"]
    assert [o.filename for o in report.of("FAILED")] == ["swapped.pdf"]
    assert "is a symlink, not a regular file" in rows["swapped.pdf"]["error_message"]
    assert intake.hot_objects() == {"sftp/real.pdf": len(b"a real document")}
    assert all(passwd not in intake.hot_body(key) for key in intake.hot_objects())
    assert all((intake.inbox / name).is_symlink() for name in ("passwd.pdf", "etc", "alias.pdf", "swapped.pdf"))
    assert sorted(p.name for p in (intake.inbox / "processed").iterdir()) == ["real.pdf"]
    assert intake.transfer().outcomes == []


def test_a_wrong_host_key_stops_the_run_and_gives_every_file_back(intake: Intake, tmp_path: Path) -> None:
    bodies = {f"doc-{i}.pdf": f"document {i}".encode() for i in range(6)}
    for name, body in bodies.items():
        intake.drop(name, body)
    intake.scan()
    trusted = intake.config
    intake.config = replace(trusted, known_hosts=str(known_hosts_with_another_key(intake.endpoint,
                                                                                    tmp_path / "known_hosts")))
    with pytest.raises(SftpUnavailable, match=f"{trusted.address}: host key refused"):
        intake.scan()
    report = intake.transfer()
    assert report.stopped is not None
    assert f"SFTP server {trusted.address}: host key refused" in report.stopped
    assert report.outcomes and {o.status for o in report.outcomes} == {"RELEASED"}, report.outcomes
    assert {(r["status"], r["attempts"]) for r in intake.rows().values()} == {("PENDING", 0)}
    assert intake.hot_objects() == {}
    assert all((intake.inbox / name).exists() for name in bodies)

    intake.config = trusted
    again = intake.transfer()
    assert sorted(o.filename for o in again.of("COMPLETED")) == sorted(bodies)
    assert {k: intake.hot_body(k) for k in intake.hot_objects()} == {f"sftp/{n}": b for n, b in bodies.items()}


def test_an_encrypted_private_key_needs_its_passphrase(intake: Intake, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted_key"
    key = asyncssh.read_private_key(str(intake.endpoint.private_key))
    encrypted.write_bytes(key.export_private_key("openssh", passphrase="correct horse"))
    encrypted.chmod(0o600)
    intake.drop("doc.pdf", b"%PDF-1.7 by an encrypted key")
    trusted = intake.config
    intake.config = replace(trusted, private_key_file=str(encrypted))
    with pytest.raises(SftpUnavailable, match="encrypted key needs SFTP_PRIVATE_KEY_PASSPHRASE"):
        intake.scan()
    intake.config = replace(trusted, private_key_file=str(encrypted), passphrase="correct horse")
    intake.scan()
    assert [o.status for o in intake.transfer().outcomes] == ["COMPLETED"]
    assert "correct horse" not in repr(intake.config)  # never in a log line or a run's metadata


# -- crash safety --------------------------------------------------------------------------------------------
def test_a_dead_workers_claim_is_taken_over_and_completed_once(intake: Intake) -> None:
    body = os.urandom(9 * MiB)  # multipart
    intake.drop("orphan.pdf", body)
    intake.scan()
    # A worker claimed it, began the upload and died: its lease has run out (already, so as not to wait for it).
    [dead] = intake.store.claim_files(intake.config.inbox_id, owner="dead-worker", limit=1, lease_seconds=-1)
    left_open = intake.hot.create_multipart_upload(Bucket=intake.hot_bucket, Key="sftp/orphan.pdf",
                                                   ChecksumAlgorithm="SHA256")
    intake.hot.upload_part(Bucket=intake.hot_bucket, Key="sftp/orphan.pdf", UploadId=left_open["UploadId"],
                           PartNumber=1, Body=body[:5 * MiB], ChecksumAlgorithm="SHA256")
    report = intake.transfer()
    assert [(o.filename, o.status) for o in report.outcomes] == [("orphan.pdf", "COMPLETED")]
    row = intake.rows()["orphan.pdf"]
    assert row["attempts"] == 2 and row["worker_id"] != "dead-worker"
    assert row["sha256"] == hashlib.sha256(body).hexdigest() and intake.hot_body("sftp/orphan.pdf") == body
    assert intake.open_uploads() == []  # the dead worker's upload was aborted
    # The dead worker waking up cannot overwrite the result, nor give the file back.
    assert not intake.store.fail_file(dead.id, "dead-worker", "woke up late")
    assert intake.store.release_files("dead-worker") == 0
    assert intake.rows()["orphan.pdf"]["status"] == "COMPLETED"
    assert intake.transfer().outcomes == []


def test_a_crash_after_the_move_is_recovered_without_a_second_upload(intake: Intake) -> None:
    intake.hot.put_bucket_versioning(Bucket=intake.hot_bucket, VersioningConfiguration={"Status": "Enabled"})
    body = b"%PDF-1.7 transferred, moved, never recorded"
    path = intake.drop("crashed.pdf", body)
    intake.scan()
    [claimed] = intake.store.claim_files(intake.config.inbox_id, owner="crashed-worker", limit=1, lease_seconds=-1)
    with intake.transferrer() as transfer:
        result = transfer.transfer(claimed).result  # upload, verify, move: then the worker dies unrecorded
    assert result.after_transfer == "moved" and not path.exists()
    assert intake.rows()["crashed.pdf"]["status"] == "IN_PROGRESS"
    report = intake.transfer()
    assert [(o.filename, o.status) for o in report.outcomes] == [("crashed.pdf", "COMPLETED")]
    row = intake.rows()["crashed.pdf"]
    assert row["error_message"].startswith("recovered: an earlier attempt transferred and verified this file")
    assert row["after_transfer"] == "moved" and row["download_duration"] == 0
    assert row["sha256"] == result.sha256 == hashlib.sha256(body).hexdigest()
    assert row["hot_version_id"] == result.hot_version_id
    versions = intake.hot.list_object_versions(Bucket=intake.hot_bucket, Prefix="sftp/crashed.pdf")
    assert len(versions.get("Versions", [])) == 1  # uploaded once
    assert (intake.inbox / "processed" / "crashed.pdf").read_bytes() == body
    assert intake.replication_keys() == ["sftp/crashed.pdf"]


# On OpenSSH only, the server producers use: the asyncssh server's own runs of the same code are the other
# tests' (and 10,000 files on both would cost the suite a minute more).
@pytest.mark.slow
@pytest.mark.parametrize("sftp_server_and_process", ["openssh"], indirect=True)
def test_ten_thousand_small_files_in_one_drop(intake: Intake) -> None:
    count = 10_000
    for i in range(count):
        intake.drop(f"drop/{i // 1000:02d}/doc-{i:05d}.pdf", f"document {i}".encode())
    started = time.monotonic()
    intake.scan()
    scanned = time.monotonic() - started
    report = intake.transfer()
    rate = count / report.wall_seconds
    per_file_ms = {phase: 1000 * report.phase_seconds(phase) / count for phase in ("download", "upload", "total")}
    print(f"\n[{intake.endpoint.flavour}] 10,000 files: scan (2 passes) {scanned:.1f} s, transfer "
          f"{report.wall_seconds:.1f} s = {rate:.0f} files/s with {intake.settings.max_workers} workers, "
          f"{report.connections_opened} connections; per file (ms): "
          + ", ".join(f"{phase} {ms:.1f}" for phase, ms in per_file_ms.items()))
    assert report.stopped is None
    assert len(report.outcomes) == count and {o.status for o in report.outcomes} == {"COMPLETED"}
    assert len({o.filename for o in report.outcomes}) == count  # each once
    rows = intake.rows()
    assert len(rows) == count and {(r["status"], r["attempts"]) for r in rows.values()} == {("COMPLETED", 1)}
    hot = intake.hot_objects()
    assert len(hot) == count and set(hot) == {f"sftp/{name}" for name in rows}
    assert len(intake.replication_keys()) == count
    assert intake.transfer().outcomes == []
