"""One clear line and a non-zero exit status for every error a command can meet.

Exit statuses shared by every command: 0 done, 1 done but something is wrong (a check failed, a file did
not verify, rows are still failed), 2 the command could not do its work (configuration, a server, arguments).
Secrets never reach the message: a database URL is shown with its password redacted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


class CommandError(RuntimeError):
    """A command cannot run (configuration, arguments, state); the message is the whole explanation."""


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def run_reporting_errors(name: str, handler: Callable[[argparse.Namespace], int], args: argparse.Namespace, *,
                         s3_site: str = "S3") -> int:
    """Run a command; any expected failure becomes `NAME: error: MESSAGE` on stderr and exit status 2.
    `s3_site` names the S3 site in messages of S3 errors. Ctrl-C exits with 130 and a short line, never a
    traceback."""
    import psycopg
    from botocore.exceptions import BotoCoreError, ClientError

    from vault_pipeline.dagster_api import DagsterApiError
    from vault_pipeline.journal.chain import ChainError
    from vault_pipeline.journal.segments import JournalError
    from vault_pipeline.journal.signing import SigningKeyError
    from vault_pipeline.replication.errors import describe_s3_error
    from vault_pipeline.replication.tracking import redact_dsn
    from vault_pipeline.settings import ConfigurationError

    try:
        return handler(args)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ConfigurationError, JournalError, ChainError, SigningKeyError) as exc:
        message = str(exc)
    except DagsterApiError as exc:
        message = f"Dagster: {exc}"
    except (ClientError, BotoCoreError) as exc:
        message = f"{s3_site}: {describe_s3_error(exc)[0]}"
    except psycopg.Error as exc:
        dsn = os.environ.get("VAULT_DATABASE_URL", "")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        message = f"tracking database {redact_dsn(dsn)}: {first}"
        if dsn and dsn in message:
            message = message.replace(dsn, redact_dsn(dsn))
    except OSError as exc:
        message = f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
    print(f"{name}: error: {one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def require_env(*names: str, why: str) -> dict[str, str]:
    """The named variables, stripped; CommandError naming every missing one."""
    missing = [n for n in names if not os.environ.get(n, "").strip()]
    if missing:
        raise CommandError(f"{', '.join(missing)} not set: {why}")
    return {n: os.environ[n].strip() for n in names}
