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
