"""`vault-pipeline` command line: the embedded development stack.

    vault-pipeline dev          start PostgreSQL, both S3 sites and `dagster dev` (what `make run` does)
    vault-pipeline stack up     start only the embedded stack, in the foreground
    vault-pipeline stack env    print the running stack's settings as shell export lines
    vault-pipeline journal ...  verify the write journal, prove a document, make a seal signing key
                                (verify | prove KEY | check-proof FILE | keygen; see docs/journal.md)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vault_pipeline.journal.commands import add_journal_commands, run_journal_command

REPO_ROOT = Path(__file__).resolve().parent.parent


def stack_root() -> Path:
    return Path(os.environ.get("VAULT_DEVSTACK_DIR", ".vault")).resolve()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vault-pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="embedded stack + dagster dev (UI on http://127.0.0.1:3000)")
    stack = commands.add_parser("stack", help="the embedded PostgreSQL + SeaweedFS stack")
    stack_commands = stack.add_subparsers(dest="stack_command", required=True)
    stack_commands.add_parser("up", help="start the stack in the foreground; Ctrl-C stops it")
    stack_commands.add_parser("env", help="print export lines for the running stack")
    add_journal_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "journal":
        return run_journal_command(args)
    from vault_pipeline.devstack.runner import print_env, run_stack_forever

    root = stack_root()
    if args.command == "dev":
        return run_stack_forever(root, dagster=True, dagster_yaml=REPO_ROOT / "dagster.yaml",
                                 workspace=REPO_ROOT / "workspace.yaml")
    if args.stack_command == "up":
        return run_stack_forever(root, dagster=False)
    return print_env(root)


if __name__ == "__main__":
    sys.exit(main())
