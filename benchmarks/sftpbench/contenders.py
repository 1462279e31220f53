"""The two contenders of one run, each in a process of its own, each into a fresh hot bucket, each checked
afterwards (outside its timing):

    vault-pipeline  vault_worker.py: scan_inbox (two passes) + SftpTransfer.run, the product's settings
    rclone          `rclone copy src:INBOX/W dst:BUCKET/sftp` (sftp remote -> s3 remote), --transfers matched

Timed windows. vault-pipeline: the listing and the transfer, SSH handshakes included, as the worker reports
them (not the interpreter's start-up, imports and schema migration: the product runs in a long-lived process).
rclone: the process from spawn to exit (its start-up, handshakes and listing included). Client CPU is the
same window's (the worker's process_time; rclone's rusage); the servers' CPU (the SFTP server, SeaweedFS,
PostgreSQL, each with its children) is read just before the spawn and just after the exit.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copybench.contenders import find_py_spy
from copybench.measure import MeasuredProcess, run_measured, tree_cpu_seconds
from copybench.s3metrics import RequestCounts, site_request_counts
from copybench.stackctl import purge_bucket

from sftpbench.pyspy_profile import RATE_HZ, summarize_profile
from sftpbench.servers import BenchServers, new_hot_bucket
from sftpbench.workloads import MIB, Workload
from vault_pipeline.intake.sftp_transfer import META_INTAKE_SHA256
from vault_pipeline.settings import setting_default
from vault_pipeline_tests.sftpservers import SftpEndpoint

HERE = Path(__file__).resolve().parent
VAULT_WORKER = HERE / "vault_worker.py"
HOT_PREFIX = setting_default("sftp_hot_prefix")  # rclone copies under the same prefix: the same keys
HEAD_THREADS = 8


@dataclass
class RunSetup:
    servers: BenchServers
    flavour: str
    workload: Workload
    run: int
    workdir: Path
    max_workers: int
    timeout_s: float
    keep: bool
    rclone: str
    fast_path: bool = True
    spool_dir: Path | None = None  # None: a directory under workdir
    profile_dir: Path | None = None

    @property
    def endpoint(self) -> SftpEndpoint:
        return self.servers.sftp[self.flavour]

    @property
    def remote_dir(self) -> str:
        return f"{self.endpoint.remote_inbox.rstrip('/')}/{self.workload.name}"

    def name(self, contender: str, separator: str = "-") -> str:
        return separator.join([self.flavour, self.workload.name, f"r{self.run}", contender])


@dataclass
class ContenderRun:
    contender: str
    run: int
    wall_s: float
    files: int
    bytes: int
    cpu_s: float
    peak_rss_mib: float
    check: dict[str, Any]
    servers_cpu_s: dict[str, float]
    s3_requests: dict[str, int] | None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and bool(self.check.get("complete"))

    def as_dict(self) -> dict[str, Any]:
        wall = max(self.wall_s, 1e-9)
        return {"contender": self.contender, "run": self.run, "complete": self.complete, "error": self.error,
                "files": self.files, "bytes": self.bytes, "wall_s": round(self.wall_s, 4),
                "mib_per_s": round(self.bytes / MIB / wall, 2), "files_per_s": round(self.files / wall, 2),
                "cpu_s": round(self.cpu_s, 3), "peak_rss_mib": round(self.peak_rss_mib, 1),
                "servers_cpu_s": self.servers_cpu_s, "s3_requests": self.s3_requests, "check": self.check,
                "extra": self.extra}


@dataclass(frozen=True)
class ServerReading:
    """The servers' CPU seconds (each with its children) and the hot site's S3 request counters."""

    cpu: dict[str, float]
    requests: RequestCounts | None


def read_servers(setup: RunSetup) -> ServerReading:
    return ServerReading({name: tree_cpu_seconds(pid) for name, pid in setup.servers.pids(setup.flavour).items()},
                         site_request_counts(setup.servers.hot))


def usage_since(setup: RunSetup, before: ServerReading) -> tuple[dict[str, float], dict[str, int] | None]:
    """CPU seconds per server and S3 requests by type (SeaweedFS's: GET counts HEAD too) since `before`."""
    after = read_servers(setup)
    cpu = {name: round(after.cpu[name] - before.cpu[name], 3) for name in before.cpu}
    if before.requests is None or after.requests is None:
        return cpu, None
    kinds = sorted(set(before.requests) | set(after.requests))
    return cpu, {kind: after.requests.get(kind, 0) - before.requests.get(kind, 0) for kind in kinds
                 if after.requests.get(kind, 0) != before.requests.get(kind, 0)}


def check_bucket(client: Any, bucket: str, workload: Workload, *, with_sha256: bool) -> dict[str, Any]:
    """Every file of the workload is an object `sftp/<name>` of the right size (and, for vault-pipeline,
    with the intake's SHA-256 in its metadata); nothing else is in the bucket."""
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update({o["Key"]: int(o["Size"]) for o in page.get("Contents", [])})
    expected = {HOT_PREFIX + name: workload.size for name in workload.sha256}
    missing = sorted(set(expected) - set(found))
    wrong_size = sorted(k for k in expected.keys() & found.keys() if found[k] != expected[k])
    unexpected = sorted(set(found) - set(expected))
    check: dict[str, Any] = {"expected": len(expected), "found": len(found), "missing": len(missing),
                             "wrong_size": len(wrong_size), "unexpected": len(unexpected),
                             "examples": (missing + wrong_size + unexpected)[:5],
                             "files_found": len(expected.keys() & found.keys()),
                             "bytes_found": sum(found[k] for k in expected.keys() & found.keys())}
    sha_ok = True
    if with_sha256:
        def sha_matches(name: str) -> bool:
            head = client.head_object(Bucket=bucket, Key=HOT_PREFIX + name)
            return (head.get("Metadata") or {}).get(META_INTAKE_SHA256) == workload.sha256[name]
        present = [name for name in workload.sha256 if HOT_PREFIX + name in found]
        with ThreadPoolExecutor(HEAD_THREADS) as pool:
            wrong_sha = [name for name, ok in zip(present, pool.map(sha_matches, present), strict=True) if not ok]
        check.update({"sha256_checked": len(present), "sha256_wrong": len(wrong_sha)})
        sha_ok = not wrong_sha
    check["complete"] = not (missing or wrong_size or unexpected) and sha_ok
    return check


def _error(measured: MeasuredProcess, check: dict[str, Any], timeout_s: float) -> str | None:
    if measured.timed_out:
        return f"timed out after {timeout_s:.0f} s"
    if measured.returncode != 0:
        return f"exit status {measured.returncode}"
    if not check["complete"]:
        return (f"{check['found']} objects for {check['expected']} files: {check['missing']} missing, "
                f"{check['wrong_size']} of the wrong size, {check['unexpected']} unexpected, "
                f"{check.get('sha256_wrong', 0)} with a wrong intake-sha256")
    return None


def _finish(setup: RunSetup, bucket: str) -> None:
    if not setup.keep:
        purge_bucket(setup.servers.hot, bucket)


def vault_job(setup: RunSetup, bucket: str, dsn: str) -> dict[str, Any]:
    """What vault_worker.py reads: the SFTP settings, the hot site, the tracking database, the spool."""
    endpoint, hot = setup.endpoint, setup.servers.hot
    spool_dir = setup.spool_dir or setup.workdir / "spool"
    spool_dir.mkdir(parents=True, exist_ok=True)
    return {
        "sftp": {"host": endpoint.host, "port": endpoint.port, "username": endpoint.username,
                 "remote_dir": setup.remote_dir, "private_key_file": str(endpoint.private_key),
                 "known_hosts": str(endpoint.known_hosts)},
        "hot": {"endpoint": hot.endpoint_url, "access_key": hot.access_key, "secret_key": hot.secret_key,
                "bucket": bucket, "fast_path": setup.fast_path},
        "dsn": dsn, "spool_dir": str(spool_dir), "max_workers": setup.max_workers,
    }


def profile_paths(setup: RunSetup) -> tuple[Path, Path] | None:
    """--profile: the raw samples of the two py-spy recorders (running threads, every thread)."""
    if setup.profile_dir is None:
        return None
    running = setup.profile_dir / f"sftp_profile_{setup.name('vault', '_')}.txt"
    paths = (running, running.with_suffix(".wall.txt"))
    for path in paths:
        path.unlink(missing_ok=True)
    return paths


def vault_extra(result: dict[str, Any], measured: MeasuredProcess,
                profiles: tuple[Path, Path] | None) -> dict[str, Any]:
    extra = {key: result.get(key) for key in ("scan_s", "transfer_s", "total_s", "scan", "transfer", "cipher",
                                              "hot_client", "settings")}
    extra.update({"process_wall_s": round(measured.wall_s, 3), "process_cpu_s": round(measured.tree_cpu_s, 3)})
    if profiles is not None and all(path.exists() for path in profiles):
        extra["profile"] = {"raw": [str(path) for path in profiles], **summarize_profile(*profiles)}
    return extra


def run_vault(setup: RunSetup) -> ContenderRun:
    servers = setup.servers
    bucket = new_hot_bucket(servers, "hot-" + setup.name("vault"))
    database = "bench_" + setup.name("vault", "_")
    servers.postgres.drop_database(database)
    servers.postgres.create_database(database)
    job = vault_job(setup, bucket, servers.postgres.dsn(database))
    profiles = profile_paths(setup)
    if profiles is not None:
        job["profile"] = {"py_spy": str(find_py_spy()), "raw_path": str(profiles[0]),
                          "wall_raw_path": str(profiles[1]), "rate_hz": RATE_HZ}
    config_path = setup.workdir / f"{setup.name('vault')}.json"
    result_path = setup.workdir / f"{setup.name('vault')}.result.json"
    config_path.write_text(json.dumps(job, indent=2))
    result_path.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "OVH_S3_", "AWS_S3_", "SFTP_"))}
    before = read_servers(setup)
    measured = run_measured([sys.executable, str(VAULT_WORKER), str(config_path), str(result_path)],
                            env={**env, "PYTHONUNBUFFERED": "1"},
                            log_path=setup.workdir / f"{setup.name('vault')}.log", timeout_s=setup.timeout_s)
    servers_used, requests = usage_since(setup, before)
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    check = check_bucket(servers.hot.client(), bucket, setup.workload, with_sha256=True)
    window = tuple(result.get("window") or (measured.started, measured.ended))
    run = ContenderRun("vault-pipeline", setup.run, window[1] - window[0], files=check["files_found"],
                       bytes=check["bytes_found"], cpu_s=result.get("cpu_s", measured.tree_cpu_s),
                       peak_rss_mib=measured.peak_rss(*window) / MIB, check=check, servers_cpu_s=servers_used,
                       s3_requests=requests, extra=vault_extra(result, measured, profiles),
                       error=_error(measured, check, setup.timeout_s))
    if run.error and result.get("transfer", {}).get("errors"):
        run.error += f": {result['transfer']['errors'][0]}"
    _finish(setup, bucket)
    if not setup.keep:
        servers.postgres.drop_database(database)
    return run


def rclone_env(setup: RunSetup) -> dict[str, str]:
    """The two remotes, from RCLONE_CONFIG_* only (never the user's rclone.conf)."""
    endpoint = setup.endpoint
    src = "RCLONE_CONFIG_SRC_"
    sftp = {src + "TYPE": "sftp", src + "HOST": endpoint.host, src + "PORT": str(endpoint.port),
            src + "USER": endpoint.username, src + "KEY_FILE": str(endpoint.private_key),
            src + "KNOWN_HOSTS_FILE": str(endpoint.known_hosts),
            # An SFTP-only account (internal-sftp) runs no commands: no shell probe, no remote md5sum.
            src + "SHELL_TYPE": "none"}
    dst = "RCLONE_CONFIG_DST_"
    hot = setup.servers.hot
    s3 = {dst + "TYPE": "s3", dst + "PROVIDER": "SeaweedFS", dst + "ENDPOINT": hot.endpoint_url,
          dst + "ACCESS_KEY_ID": hot.access_key, dst + "SECRET_ACCESS_KEY": hot.secret_key,
          dst + "REGION": "us-east-1", dst + "FORCE_PATH_STYLE": "true", dst + "ENV_AUTH": "false"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    return env | sftp | s3


def rclone_command(setup: RunSetup, bucket: str, config_path: Path) -> list[str]:
    return [setup.rclone, "copy", f"src:{setup.remote_dir}", f"dst:{bucket}/{HOT_PREFIX.rstrip('/')}",
            "--config", str(config_path),  # an empty file: the remotes come from RCLONE_CONFIG_* only
            "--transfers", str(setup.max_workers),
            "--s3-no-check-bucket",  # the bucket exists; rclone would try to create it
            "--stats", "30s", "--stats-one-line", "--log-level", "INFO"]


def run_rclone(setup: RunSetup) -> ContenderRun:
    bucket = new_hot_bucket(setup.servers, "hot-" + setup.name("rclone"))
    config_path = setup.workdir / "rclone.conf"
    config_path.touch()
    command = rclone_command(setup, bucket, config_path)
    before = read_servers(setup)
    measured = run_measured(command, env=rclone_env(setup), log_path=setup.workdir / f"{setup.name('rclone')}.log",
                            timeout_s=setup.timeout_s)
    servers_used, requests = usage_since(setup, before)
    check = check_bucket(setup.servers.hot.client(), bucket, setup.workload, with_sha256=False)
    extra = {"command": [Path(command[0]).name, *command[1:]]}
    run = ContenderRun("rclone", setup.run, measured.wall_s, files=check["files_found"],
                       bytes=check["bytes_found"], cpu_s=measured.tree_cpu_s, peak_rss_mib=measured.peak_rss() / MIB,
                       check=check, servers_cpu_s=servers_used, s3_requests=requests, extra=extra,
                       error=_error(measured, check, setup.timeout_s))
    _finish(setup, bucket)
    return run
