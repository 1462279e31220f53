"""The one operator command line, `vault-pipeline` (entry point `vault_pipeline.cli:main`).

    main.py           the parser and the dispatch: `dev` and `stack` (into vault_pipeline.devstack), the
                      operator commands below and `journal`
    status.py         `status`: the report as text or JSON      status_report.py  what it reads (DB, Dagster)
    retry_failed.py   `retry-failed`                            retry_runs.py     failed rows, runs, outcomes
    restore.py        `restore KEY --to PATH` over vault_pipeline.retrieval
    journal.py        `journal verify | prove | check-proof | keygen` over vault_pipeline.journal
    common.py errors.py progress.py   what the commands share: connections and the cold site from the
                      environment, one-line errors and exit statuses, the progress display

Each operator command module has `add_parser(commands)` and `run(args) -> exit status`; the domain work
lives in the domain packages (replication, retrieval, journal).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """The installed `vault-pipeline` script. Imported lazily, so that importing a module of this package
    (the journal commands, for instance) does not build the whole command line."""
    from vault_pipeline.cli.main import main as run

    return run(argv)
