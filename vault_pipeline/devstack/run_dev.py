"""`vault-pipeline dev` (what `make run` runs) on the ports and data directory a test or benchmark chose.

    python -m vault_pipeline.devstack.run_dev ROOT --pg-port P --hot-port H --cold-port C --ui-port U
        [--workers N --redis-port R]   (the cluster of `make run-cluster`)

The same function as the CLI's `dev` command (vault_pipeline/cli/main.py), with the same dagster.yaml and
workspace.yaml: the embedded stack under ROOT, `dagster dev` with DAGSTER_HOME = ROOT/dagster_home and
the sensors running by default. Only the root and the ports differ from `make run` (fixed ports there).
SIGINT stops everything in order (Dagster, the S3 sites, PostgreSQL), exactly like Ctrl-C in `make run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vault_pipeline.devstack.devserver import REPO_ROOT
from vault_pipeline.devstack.runner import run_stack_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    for name in ("pg", "hot", "cold", "ui", "sftp", "redis"):
        parser.add_argument(f"--{name}-port", type=int, required=name not in ("redis", "sftp"))
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    cluster = {"workers": args.workers, "redis_port": args.redis_port} if args.workers else {}
    return run_stack_forever(args.root.resolve(), dagster=True, dagster_yaml=REPO_ROOT / "dagster.yaml",
                             workspace=REPO_ROOT / "workspace.yaml", pg_port=args.pg_port, hot_port=args.hot_port,
                             cold_port=args.cold_port, ui_port=args.ui_port, sftp_port=args.sftp_port, **cluster)


if __name__ == "__main__":
    sys.exit(main())
