"""SFTP inbox -> hot site against real servers (asyncssh's and OpenSSH's sshd, SeaweedFS, PostgreSQL)."""

from __future__ import annotations

import hashlib
import os

from vault_pipeline.intake.sftp_transfer import META_INTAKE_SHA256
from vault_pipeline_tests.intake.sftp_harness import Intake, MiB


def test_stable_files_reach_the_hot_site_verified_then_move_to_processed(intake: Intake) -> None:
    small = b"%PDF-1.7 payslip" * 100
    large = os.urandom(12 * MiB + 123)
    intake.drop("payroll/2026/jdoe.pdf", small)
    intake.drop("big scan é+%.pdf", large)
    intake.drop("empty.pdf", b"")
    intake.drop(".upload.pdf.part", b"in progress")
    first = intake.scan(passes=1)
    assert sum(r.registered for r in first) == 0  # one look is not enough
    intake.scan(passes=1)
    report = intake.transfer()
    assert sorted(o.filename for o in report.of("COMPLETED")) == ["big scan é+%.pdf", "empty.pdf",
                                                                   "payroll/2026/jdoe.pdf"], report.outcomes
    rows = intake.rows()
    for name, body in (("payroll/2026/jdoe.pdf", small), ("big scan é+%.pdf", large), ("empty.pdf", b"")):
        row = rows[name]
        assert row["status"] == "COMPLETED" and row["after_transfer"] == "moved"
        assert row["sha256"] == hashlib.sha256(body).hexdigest()
        head = intake.head(f"sftp/{name}")
        assert head["ContentLength"] == len(body)
        assert head["Metadata"][META_INTAKE_SHA256] == row["sha256"]
        assert (intake.inbox / "processed" / name).read_bytes() == body
        assert not (intake.inbox / name).exists()
    assert intake.head("sftp/payroll/2026/jdoe.pdf")["Metadata"]["document-type"] == "payslip"
    assert rows["big scan é+%.pdf"]["download_duration"] > 0
    assert (intake.inbox / ".upload.pdf.part").exists()
    assert ".upload.pdf.part" not in rows


def test_the_uploads_own_answer_verifies_it_except_without_a_checksum_or_near_midnight() -> None:
    import datetime as dt
    import hashlib as h

    from vault_pipeline.intake.sftp_transfer import SftpTransfer
    from vault_pipeline.replication.checksums import ExpectedChecksum

    expected = ExpectedChecksum.full(h.sha256(b"document").digest())

    def answer(checksum: str | None, date: str) -> dict:
        return {"ETag": '"e"', "VersionId": "v1", "ChecksumSHA256": checksum,
                "ResponseMetadata": {"HTTPHeaders": {"date": date}}}

    noon = "Wed, 02 Dec 2026 12:00:00 GMT"
    receipt = SftpTransfer._receipt(answer(expected.value, noon), expected)
    assert receipt == {"ETag": '"e"', "VersionId": "v1",
                       "LastModified": dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)}
    assert SftpTransfer._receipt(answer(None, noon), expected) is None  # the site does not keep checksums
    other = ExpectedChecksum.full(h.sha256(b"other").digest())
    assert SftpTransfer._receipt(answer(other.value, noon), expected) is None  # then HEAD says what is wrong
    assert SftpTransfer._receipt(answer(expected.value, "Wed, 02 Dec 2026 23:58:00 GMT"), expected) is None
    assert SftpTransfer._receipt(answer(expected.value, "Thu, 03 Dec 2026 00:01:00 GMT"), expected) is None
    assert SftpTransfer._receipt(answer(expected.value, "not a date"), expected) is None
