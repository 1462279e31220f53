"""Copy throughput on 1, 2 and 4 Celery workers (issue 15): the cluster of `make run-cluster`, measured.

    .venv/bin/python benchmarks/cluster_bench.py [--objects 5000] [--size 2048] [--workers 1 2 4]
                                                 [--out benchmarks/results] [--keep]

For each worker count N: starts `vault-pipeline dev --workers N` (PostgreSQL, two SeaweedFS sites, Redis,
`dagster dev` with VaultCeleryRunLauncher, N Celery workers) on free loopback ports, with no change feed and
VAULT_MAX_SHARDS=N, VAULT_SHARD_MIN_OBJECTS=ceil(objects/N); uploads the objects (one day, 16 threads);
launches the reconciliation sweep, which registers them; then the sensor requests the day as N shard runs,
which the N workers copy in parallel. Measured from Dagster's and the database's own timestamps: the copy
window (first shard run's start -> last row verified), objects per second, each run's worker, and the CPU
seconds of every process tree (workers, Dagster, PostgreSQL, both S3 servers, Redis) over the window, per
object. Writes cluster_bench.json and cluster_bench.md to --out. Exit status 0, or 1 when a run failed or an
object was not replicated. docs/scaling.md ("Runs on several workers") gives and explains the results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))  # copybench

from copybench.report import cpu_model, today

from vault_pipeline.cluster.code_version import code_version
from vault_pipeline.dagster_api import DagsterApi
from vault_pipeline.devstack.devserver import DevServer
from vault_pipeline.devstack.site import s3_client

HERE = Path(__file__).resolve().parent
PIPELINE_VARIABLES = ("VAULT_", "OVH_S3_", "AWS_S3_", "REPLICATION_CONCURRENCY", "DELETE_FROM_OVH_AFTER_REPLICATION",
                      "DAGSTER_HOME")
JOB = "replication_job"
SWEEP_JOB = "reconciliation_sweep_job"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--size", type=int, default=2048, help="bytes per object (default 2048)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--keep", action="store_true", help="keep each stack's data directory")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the copies")
    return parser.parse_args(argv)


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (a dead child's time is in its
    parent's `children_*` once reaped, which psutil's cpu_times reports too)."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                t = process.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return total


def cpu_snapshot(root: Path, server: DevServer) -> dict[str, float]:
    stack = json.loads((root / "stack.json").read_text())
    cluster = json.loads((root / "cluster.json").read_text())
    snapshot = {f"worker:{w['name']}": tree_cpu(int(w["pid"])) for w in cluster["workers"]}
    snapshot |= {name: tree_cpu(int(pid)) for name, pid in stack["servers"].items() if pid}
    snapshot["redis"] = tree_cpu(int(cluster["redis"]["pid"]))
    # The runner's tree holds everything; Dagster's share is what is left once the others are taken out.
    snapshot["all"] = tree_cpu(server.process.pid) if server.process else 0.0
    machine = psutil.cpu_times()
    snapshot["machine_busy"] = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
    snapshot["machine_wall"] = time.monotonic()
    return snapshot


def upload(hot: Any, bucket: str, count: int, size: int) -> list[str]:
    keys = [f"bench/{n // 1000:03d}/doc-{n:06d}.pdf" for n in range(count)]
    body = b"%PDF-1.7 " + os.urandom(max(0, size - 9))

    def put(key: str) -> None:
        hot.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"document-type": "invoice"})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, keys))
    return keys


def wait_for(what: str, condition: Any, timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:.0f} s: {what}")
        time.sleep(every)


def measure(workers: int, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    root = base / f"workers-{workers}"
    env = {"VAULT_CHANGE_FEEDS": "", "VAULT_MAX_SHARDS": str(workers),
           "VAULT_SHARD_MIN_OBJECTS": str(math.ceil(args.objects / workers))}
    server = DevServer(root / "stack", root / "dev.log", env, workers=workers)
    try:
        server.start()
        server.wait_for_cluster()
        api = DagsterApi(server.ui_url)
        server.wait_for_sensor(api, "hot_bucket_sensor")
        e = server.env
        hot = s3_client(e["OVH_S3_ENDPOINT"], e["OVH_S3_ACCESS_KEY_ID"], e["OVH_S3_SECRET_ACCESS_KEY"])
        t = time.monotonic()
        upload(hot, e["OVH_S3_BUCKET_DOCUMENTS"], args.objects, args.size)
        upload_s = time.monotonic() - t
        sweep_id = api.launch_run(SWEEP_JOB)
        sweep = wait_for("the sweep", lambda: (r := api.run(sweep_id))["status"] in ("SUCCESS", "FAILURE") and r,
                         600)
        cpu_before = cpu_snapshot(root / "stack", server)

        def replicated() -> int:
            with psycopg.connect(e["VAULT_DATABASE_URL"], autocommit=True) as conn:
                return int(conn.execute("SELECT count(*) FROM vault_secure.replication_status"
                                        " WHERE status = 'replicated'").fetchone()[0])

        def done() -> bool:
            return replicated() >= args.objects and all(
                r["status"] not in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED") for r in api.runs(JOB))

        wait_for(f"{args.objects} objects replicated", done, args.timeout, every=2.0)
        cpu_after = cpu_snapshot(root / "stack", server)
        with psycopg.connect(e["VAULT_DATABASE_URL"], autocommit=True) as conn:
            last_verified = conn.execute("SELECT max(verified_at) FROM vault_secure.replication_status").fetchone()[0]
            statuses = dict(conn.execute("SELECT status, count(*) FROM vault_secure.replication_status"
                                         " GROUP BY status").fetchall())
        runs = [r for r in api.runs(JOB) if r["startTime"]]
        first_start = min(r["startTime"] for r in runs)
        window_s = last_verified.timestamp() - first_start
        cpu = {name: round(cpu_after.get(name, 0.0) - cpu_before.get(name, 0.0), 2) for name in cpu_after}
        named = sum(v for k, v in cpu.items() if k != "all" and not k.startswith("machine_"))
        cpu["dagster_and_rest"] = round(max(0.0, cpu["all"] - named), 2)
        return {
            "workers": workers, "objects": args.objects, "size": args.size, "upload_s": round(upload_s, 1),
            "sweep_s": round((sweep["endTime"] or 0) - (sweep["startTime"] or 0), 1), "sweep_status": sweep["status"],
            "runs": [{"run_id": r["runId"], "status": r["status"], "shard": r["tags"].get("vault/shard"),
                      "worker_task": r["tags"].get("dagster-celery/task_id"),
                      "start": r["startTime"], "end": r["endTime"],
                      "duration_s": round((r["endTime"] or 0) - r["startTime"], 1)} for r in runs],
            "copy_window_s": round(window_s, 1), "objects_per_s": round(args.objects / window_s, 1),
            "statuses": statuses, "cpu_s": cpu,
            "cpu_ms_per_object": round(1000 * cpu["all"] / args.objects, 2),
            # How much of the machine's two cores the window used: 1.0 is both saturated.
            "machine_load": round(cpu["machine_busy"] / cpu["machine_wall"] / (psutil.cpu_count() or 1), 2),
            "worker_cpu_ms_per_object": round(1000 * sum(v for k, v in cpu.items() if k.startswith("worker:"))
                                              / args.objects, 2),
        }
    finally:
        server.stop()


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Cluster benchmark, {result['date']}", "",
             f"{result['objects']} objects of {result['size']} bytes, one day; machine: {result['machine']}; "
             f"code {result['code_version']}.", "",
             "| workers | shard runs | copy window (s) | objects/s | speed-up | machine load | CPU ms/object (all) | "
             "CPU ms/object (workers) |", "|---|---|---|---|---|---|---|---|"]
    base = result["results"][0]["objects_per_s"] if result["results"] else 1
    for r in result["results"]:
        lines.append(f"| {r['workers']} | {len(r['runs'])} | {r['copy_window_s']} | {r['objects_per_s']} | "
                     f"{r['objects_per_s'] / base:.2f}x | {r['machine_load']:.0%} | {r['cpu_ms_per_object']} | "
                     f"{r['worker_cpu_ms_per_object']} |")
    lines += ["", "CPU seconds from the sweep's end to the last run's end, by process tree (machine_busy: all of "
              "the machine's, machine_wall: that window's length in seconds):", ""]
    names = sorted({k for r in result["results"] for k in r["cpu_s"]})
    lines += ["| workers | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in result["results"]:
        lines.append(f"| {r['workers']} | " + " | ".join(str(r["cpu_s"].get(n, "")) for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in [n for n in os.environ if n.startswith(PIPELINE_VARIABLES)]:
        del os.environ[name]
    base = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    results = []
    ok = True
    try:
        for workers in args.workers:
            print(f"--- {workers} worker(s)", flush=True)
            result = measure(workers, args, base)
            print(json.dumps({k: v for k, v in result.items() if k != "runs"}), flush=True)
            ok &= result["statuses"].get("replicated", 0) == args.objects and all(
                r["status"] == "SUCCESS" for r in result["runs"])
            results.append(result)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
    result = {"date": today(), "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": f"{psutil.cpu_count()} CPU ({cpu_model()}), {psutil.virtual_memory().total / 2**30:.0f} GiB",
              "code_version": code_version(), "objects": args.objects, "size": args.size, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "cluster_bench.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
