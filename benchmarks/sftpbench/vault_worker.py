"""vault-pipeline's contender, in a process of its own (so that its CPU is measured apart and py-spy can
sample it): the inbox sensor's listing, then one transfer run, as the product runs them.

    python vault_worker.py CONFIG.json RESULT.json

Before the timing: the tracking database's schema, the hot client (the product's: make_client, awscrt fast
path unless told otherwise). Timed: two listing passes (scan_inbox, settle_seconds=0: the second look
registers every file) on a pool of one session, then SftpTransfer.run on a pool of max_workers sessions,
each pool's connections included. RESULT.json gets the window (time.monotonic, comparable with the parent's
on Linux), the process's CPU in it, and the TransferReport's phases. With a "profile" entry in CONFIG.json,
py-spy samples this process during the window only (attached by pid, stopped by SIGINT, which makes it
write its samples): start-up, imports and the schema migration stay out of the profile.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vault_pipeline.intake.sftp_client import SftpConfig, SftpPool
from vault_pipeline.intake.sftp_inbox import ScanState, scan_inbox
from vault_pipeline.intake.sftp_paths import DocumentTypeRule, parse_patterns
from vault_pipeline.intake.sftp_transfer import SftpTransfer, TransferReport, TransferSettings
from vault_pipeline.replication.s3client import SiteConfig, make_client
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.settings import setting_default

MiB = 1024 * 1024
SCAN_PASSES = 2
SCAN_BUDGET_S = 3600.0  # one tick lists the whole inbox: the benchmark times the listing, not the cursor


PR_SET_PTRACER, PR_SET_PTRACER_ANY = 0x59616D61, -1


class Profiler:
    """py-spy attached to this process for the timed window, twice: without --idle (py-spy leaves out the
    threads the kernel has asleep: where the CPU goes) and with --idle (every thread: where the time goes)."""

    def __init__(self, py_spy: str, raw_path: str, wall_raw_path: str, rate_hz: int) -> None:
        common = [py_spy, "record", "--pid", str(os.getpid()), "--format", "raw", "--rate", str(rate_hz),
                  "--nonblocking", "--full-filenames"]
        self.commands = [[*common, "--output", raw_path], [*common, "--idle", "--output", wall_raw_path]]
        self.processes: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        # Yama's ptrace_scope=1 lets a process be read by its ancestors only; py-spy is our child.
        ctypes.CDLL(None).prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0)
        for command in self.commands:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.processes.append(process)
            assert process.stdout is not None
            for line in process.stdout:  # its banner: it samples from now on
                if "Sampling process" in line:
                    break
            else:
                raise RuntimeError(f"py-spy did not start: {' '.join(command)} exited {process.wait()}")

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
        for process in self.processes:
            process.communicate(timeout=120)


def transfer_settings(config: SftpConfig, spool_dir: str, max_workers: int) -> TransferSettings:
    """The product's defaults (VaultSettings, as resources/sftp_inbox.py turns them into settings), except
    SFTP_AFTER_TRANSFER=keep (both contenders leave the inbox as they found it) and the spool directory."""
    return TransferSettings(
        inbox_id=config.inbox_id, remote_dir=config.remote_dir, hot_prefix=setting_default("sftp_hot_prefix"),
        after_transfer="keep", processed_dir=setting_default("sftp_processed_dir"),
        document_types=DocumentTypeRule.parse(setting_default("sftp_document_types"),
                                              setting_default("sftp_default_document_type")),
        multipart_threshold=setting_default("multipart_threshold_mb") * MiB,
        part_size=setting_default("part_size_mb") * MiB, part_concurrency=setting_default("part_concurrency"),
        max_workers=max_workers, lease_seconds=setting_default("sftp_stale_lock_minutes") * 60,
        max_attempts=setting_default("sftp_max_attempts"),
        retry_after_seconds=setting_default("sftp_retry_after_seconds"), spool_dir=spool_dir,
        spool_max_bytes=setting_default("spool_max_mb") * MiB)


def hot_client(hot: dict[str, Any]) -> Any:
    return make_client(SiteConfig(name="hot", endpoint_url=hot["endpoint"], region="us-east-1",
                                  access_key_id=hot["access_key"], secret_access_key=hot["secret_key"],
                                  bucket=hot["bucket"], fast_path=hot["fast_path"]))


def scan(config: SftpConfig, store: TrackingStore, settings: TransferSettings) -> dict[str, Any]:
    state, registered, files, listed = ScanState(), 0, 0, 0
    with SftpPool(config, 1) as pool:
        for _ in range(SCAN_PASSES):
            while True:
                report, state = scan_inbox(
                    pool, store, inbox_id=config.inbox_id, remote_dir=config.remote_dir,
                    processed_dir=settings.processed_dir,
                    ignore_patterns=parse_patterns(setting_default("sftp_ignore_patterns")), settle_seconds=0.0,
                    state=state, budget_seconds=SCAN_BUDGET_S)
                registered += report.registered
                files += report.files
                listed += report.directories
                if report.pass_complete:
                    break
    return {"registered": registered, "files_seen": files, "directories_listed": listed}


def summarize(report: TransferReport) -> dict[str, Any]:
    done = report.of("COMPLETED")
    download, upload = report.phase_seconds("download"), report.phase_seconds("upload")
    total = sum(o.total_seconds for o in done)
    return {
        "completed": len(done), "failed": len(report.of("FAILED")), "released": len(report.of("RELEASED")),
        "completed_bytes": report.completed_bytes, "wall_s": report.wall_seconds, "stopped": report.stopped,
        # Sums over files (files overlap: max_workers at a time); "rest" is lstat, registration in
        # replication_status and the after-transfer step (keep: nothing), what the per-file clock sees
        # beyond the download and the upload (which includes the HEAD verification).
        "download_s_sum": download, "upload_s_sum": upload, "rest_s_sum": max(0.0, total - download - upload),
        "file_total_s_sum": total,
        "connections_opened": report.connections_opened, "connections_lost": report.connections_lost,
        "errors": sorted({o.error or "" for o in report.of("FAILED")})[:10],
    }


def main(config_path: str, result_path: str) -> int:
    job = json.loads(Path(config_path).read_text())
    config = SftpConfig(**job["sftp"])
    store = TrackingStore(job["dsn"])
    store.migrate()
    hot = hot_client(job["hot"])
    settings = transfer_settings(config, job["spool_dir"], job["max_workers"])
    result: dict[str, Any] = {"pid": os.getpid(), "hot_client": type(hot).__name__}
    profiler = Profiler(**job["profile"]) if job.get("profile") else None
    try:
        if profiler is not None:
            profiler.start()
        started, cpu_started = time.monotonic(), time.process_time()
        result["scan"] = scan(config, store, settings)
        scanned = time.monotonic()
        with SftpPool(config, settings.max_workers) as pool:
            transfer = SftpTransfer(
                pool=pool, transfer_log=store, hot=hot, hot_bucket=job["hot"]["bucket"], settings=settings,
                owner=f"sftp-bench/{os.getpid()}",
                register=lambda objects: store.register(objects, source_bucket=job["hot"]["bucket"],
                                                    destination_bucket="cold"))
            report = transfer.run()
            ended, cpu_ended = time.monotonic(), time.process_time()
            if profiler is not None:
                profiler.stop()
            with pool.session() as session:  # outside the window: the cipher the sessions negotiated
                result["cipher"] = session.cipher
    finally:
        store.close()
    result.update({"window": [started, ended], "scan_s": scanned - started, "transfer_s": ended - scanned,
                   "total_s": ended - started, "cpu_s": cpu_ended - cpu_started, "transfer": summarize(report),
                   "settings": {"max_workers": settings.max_workers,
                                "multipart_threshold": settings.multipart_threshold,
                                "part_size": settings.part_size, "part_concurrency": settings.part_concurrency,
                                "chunk_size": settings.chunk_size, "spool_dir": settings.spool_dir}})
    Path(result_path).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0 if result["transfer"]["failed"] == 0 and not report.stopped else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
