"""`vault-pipeline worker [--name NAME] [--concurrency N] [--queue Q]`: a Celery worker that executes runs.

Each run the daemon launches through VaultCeleryRunLauncher is one task; this worker takes it from Redis and
executes the whole run (in-process executor) in one of its pool processes. The worker needs what a run needs:
the pipeline's environment (README.md, "Configuration"), DAGSTER_HOME with the cluster's dagster.yaml
(deploy/dagster-celery.yaml: the same run storage as the daemon), VAULT_CELERY_BROKER_URL and
VAULT_CELERY_RESULT_BACKEND, and a VAULT_SPOOL_DIR of its own. It replaces itself with `celery worker`
(exec), so a service manager signals Celery directly: SIGTERM is a warm shutdown (running runs finish).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from vault_pipeline.cli.errors import CommandError


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("worker", help="a Celery worker that executes Dagster runs (the cluster)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="vault@%h", help="worker name, unique in the cluster (default vault@%%h:"
                        " %%h is the host name)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="runs executed at once (pool processes; default 1: a run has its own copy threads)")
    parser.add_argument("--queue", help="queue to take runs from (default: VAULT_CELERY_QUEUE, else dagster)")
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])


def celery_command(args: argparse.Namespace, queue: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "vault_pipeline.cluster.worker", "worker",
            "--hostname", args.name, "--concurrency", str(args.concurrency), "--queues", queue,
            "--pool", "prefork", "--loglevel", args.loglevel,
            # Workers never talk to each other; only the broker and the database matter.
            "--without-gossip", "--without-mingle"]


def run(args: argparse.Namespace) -> int:
    from vault_pipeline.cluster.settings import ClusterConfigurationError, ClusterSettings, check_queue

    if args.concurrency < 1:
        raise CommandError("--concurrency must be at least 1")
    try:
        settings = ClusterSettings.from_env()
        queue = check_queue("--queue", args.queue) if args.queue else settings.queue
    except ClusterConfigurationError as exc:
        raise CommandError(str(exc)) from None
    home = os.environ.get("DAGSTER_HOME", "").strip()
    if not home or not (Path(home) / "dagster.yaml").is_file():
        raise CommandError("DAGSTER_HOME must name a directory with the cluster's dagster.yaml (the daemon's run "
                           "storage; deploy/dagster-celery.yaml)")
    command = celery_command(args, queue)
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached
