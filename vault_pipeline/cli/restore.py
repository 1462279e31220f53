"""`vault-pipeline restore KEY --to PATH`: bring one document back from the cold site, verified.

    vault-pipeline restore KEY --to PATH [--version V] [--tier Standard|Bulk|Expedited] [--days N]
                           [--poll-seconds S] [--timeout DURATION] [--force] [--json]

1. Which version: by default the verified copy the tracking database records for KEY in the hot bucket
   OVH_S3_BUCKET_DOCUMENTS (its row must be `replicated`); --version names that one or an earlier copy
   (listed in the row's previous versions or in the journal).
2. What its bytes must hash to: the SHA-256 and size in the tracking database AND in the version's copy
   entry of the write journal, read from the cold site (found through vault_secure.journal_entries, else
   by reading the journal). They must agree, and so must the object's own `vault-sha256` metadata and size
   (HEAD): otherwise nothing is restored (exit 1, one line naming the values).
3. Restore: a Deep Archive / Glacier version is restored (RestoreObject of that exact version, tier
   --tier, default VAULT_RESTORE_TIER = Standard, kept --days, default VAULT_RESTORE_DAYS = 7) unless a
   restored copy exists or a restore is already in progress (then it only waits: a rerun never requests
   again). A cold site without restore (SeaweedFS) or a non-archive class is read directly.
4. Wait: HEAD every --poll-seconds (default 60) with a status line (tier, expected wait, time waited)
   until the restore completes, for at most --timeout (default 72h; e.g. 90s, 30m, 12h, 2d; 0 = do not
   wait; "none" = no limit). At the timeout it exits 3 saying the restore is still in progress: rerun the
   same command later to resume waiting.
5. Read: stream the version in 1 MiB chunks (memory does not grow with the object) to a temporary file
   beside PATH, hashing as it goes, with a progress bar (stderr); a broken stream resumes where it stopped.
   fsync, then move it to PATH only if SHA-256 and size match. A file that does not verify is deleted
   (exit 1): nothing unverified is ever left at PATH. An existing PATH is never replaced without --force.
   PATH may be an existing directory: the file is then named after the key's last segment. The file is
   created with mode 0600 (documents are personal data); chmod it if it must be shared.

Output: one line on stdout (key, version, path, size, SHA-256 and what it was checked against), or with
--json one JSON object (also for a refusal and for a restore still in progress). Progress and notes go to
stderr. Errors are one line on stderr.

Exit status: 0 restored and verified; 1 refused: the records disagree, or the bytes did not verify (no
file left); 2 could not run (configuration, unknown key or version, not replicated yet, destination
exists, server or database error); 3 the restore is still in progress at --timeout (rerun to resume);
130 interrupted (the restore goes on at the cold site: rerun to resume).

Environment: the pipeline's (README.md, "Configuration"): VAULT_DATABASE_URL, OVH_S3_BUCKET_DOCUMENTS,
AWS_S3_ENDPOINT, AWS_S3_REGION, AWS_S3_ACCESS_KEY_ID, AWS_S3_SECRET_ACCESS_KEY,
AWS_S3_BUCKET_DOCUMENTS_COLD (and the other AWS_S3_* settings), VAULT_JOURNAL_PREFIX, VAULT_RESTORE_TIER,
VAULT_RESTORE_DAYS. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from vault_pipeline.cli.errors import EXIT_ERROR, EXIT_OK, EXIT_PROBLEMS, CommandError, one_line, require_env

NAME = "vault-pipeline restore"
S3_SITE = "cold site"  # how run_reporting_errors names the S3 site in an S3 error
EXIT_STILL_RESTORING = 3
EXIT_INTERRUPTED = 130
TIER_CHOICES = ("Standard", "Bulk", "Expedited")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float | None:
    """Seconds from `90`, `90s`, `30m`, `12h`, `2d`; None for `none` (no limit)."""
    if text.strip().lower() in ("none", "never", "inf"):
        return None
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 90s, 30m, 12h, 2d, 0 or none)")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def _tier(text: str) -> str:
    tier = text.strip().capitalize()
    if tier not in TIER_CHOICES:
        raise argparse.ArgumentTypeError(f"{text!r}: must be Standard, Bulk or Expedited")
    return tier


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "restore", help="bring a document back from the cold site (restoring it first if archived), verified",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("key", help="the document's key (cold key = hot key), exactly, quoted, e.g. "
                        "'invoices/2024/a b.pdf'; a key starting with '-' goes after '--'")
    parser.add_argument("--to", dest="to", type=Path, required=True, metavar="PATH",
                        help="file to write (or an existing directory: the file is named after the key)")
    parser.add_argument("--version", dest="version_id", metavar="V",
                        help="the cold version id (default: the verified copy the tracking database records)")
    parser.add_argument("--tier", type=_tier, metavar="TIER",
                        help="restore tier: Standard or Bulk for Deep Archive, Expedited too for Glacier "
                        "(default: VAULT_RESTORE_TIER, Standard)")
    parser.add_argument("--days", type=int, metavar="N",
                        help="days the restored copy stays readable, 1-30 (default: VAULT_RESTORE_DAYS, 7)")
    parser.add_argument("--poll-seconds", type=_positive_seconds, default=60.0, metavar="S",
                        help="how often to look whether the restore is complete (default: 60)")
    parser.add_argument("--timeout", type=parse_duration, default=72 * 3600.0, metavar="DURATION",
                        help="longest wait for the restore: 90s, 30m, 12h, 2d, 0 (do not wait) or none "
                        "(default: 72h); at the timeout the exit status is 3 and a rerun resumes waiting")
    parser.add_argument("--force", action="store_true", help="replace PATH if it exists")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")


def destination_for(to: Path, key: str, *, force: bool) -> Path:
    """The file to write; CommandError when it cannot be written (checked before any restore is requested)."""
    to = to.expanduser()
    if to.is_dir():
        name = key.rsplit("/", 1)[-1]
        if name in ("", ".", ".."):
            raise CommandError(f"{to} is a directory and the key {key!r} has no usable file name: give a file path")
        to = to / name
        if to.is_dir():
            raise CommandError(f"{to} is a directory: give a file path")
    parent = to.parent if str(to.parent) else Path(".")
    if not parent.is_dir():
        raise CommandError(f"{parent} is not a directory (the destination's directory must exist)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(f"{parent} is not writable")
    if (to.exists() or to.is_symlink()) and not force:
        raise CommandError(f"{to} exists: not replaced without --force")
    return to


def run(args: argparse.Namespace) -> int:
    from vault_pipeline.retrieval.errors import RetrievalError, RetrievalRefused, StillRestoring

    state: dict[str, Any] = {}
    try:
        return _restore(args, state)
    except RetrievalRefused as exc:
        outcome = state.get("outcome")
        record_custody(args, "RESTORE_REFUSED", {"message": str(exc),
                                                 **(outcome.as_dict() if outcome is not None else {})})
        return _finish(args, state, "refused", str(exc), EXIT_PROBLEMS)
    except StillRestoring as exc:
        return _finish(args, state, "still_restoring", str(exc), EXIT_STILL_RESTORING)
    except RetrievalError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        line = "interrupted"
        if state.get("outcome") is not None and state["outcome"].restore in ("requested", "resumed"):
            line += ": the restore goes on at the cold site; rerun the same command to resume waiting"
        print(f"{NAME}: {line}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _finish(args: argparse.Namespace, state: dict[str, Any], verdict: str, message: str, code: int) -> int:
    if args.json:
        outcome = state.get("outcome")
        result = outcome.as_dict() if outcome is not None else {"key": args.key, "version_id": args.version_id}
        result.update(state=verdict, message=message)
        print(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False))
    label = "refused" if verdict == "refused" else "still restoring"
    print(f"{NAME}: {label}: {one_line(message)}", file=sys.stderr)
    return code


def _restore(args: argparse.Namespace, state: dict[str, Any]) -> int:
    from vault_pipeline.cli.common import cold_client_from_env, tracking_connection
    from vault_pipeline.cli.progress import Progress
    from vault_pipeline.journal.segments import SegmentStore
    from vault_pipeline.retrieval.resolve import resolve
    from vault_pipeline.retrieval.restore import Outcome, RetrievalOptions, Retriever

    env = require_env("VAULT_DATABASE_URL", "OVH_S3_BUCKET_DOCUMENTS",
                      why="restore reads the tracking database and the hot bucket's name from the pipeline's "
                      "environment")
    client, cold_bucket, settings = cold_client_from_env(
        "restore reads the cold site's settings from the same environment as the pipeline")
    try:
        options = RetrievalOptions(
            tier=args.tier or settings.restore_tier,
            days=args.days if args.days is not None else settings.restore_days,
            poll_seconds=args.poll_seconds, timeout_seconds=args.timeout)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    destination = destination_for(args.to, args.key, force=args.force)

    segments = SegmentStore(client, cold_bucket, prefix=settings.journal_prefix)
    # The database is only needed to decide what to expect: it is not held open during a 12-48 h wait.
    with tracking_connection() as conn:
        target = resolve(conn, segments, source_bucket=env["OVH_S3_BUCKET_DOCUMENTS"], key=args.key,
                         version_id=args.version_id)
    for note in target.notes:
        print(f"note: {note}", file=sys.stderr)
    free = shutil.disk_usage(destination.parent).free
    if free < target.size:
        raise CommandError(f"{destination.parent} has {free} bytes free, {args.key!r} needs {target.size}")

    outcome = Outcome(target=target)
    state["outcome"] = outcome
    retriever = Retriever(client, cold_bucket, options)

    def event(text: str) -> None:
        print(f"restore: {text}", file=sys.stderr, flush=True)

    head = retriever.check(target, outcome)
    with Progress() as display:
        waiting: list[Any] = []  # the wait's line, made on the first check: no empty bar when none is needed

        def status(text: str) -> None:
            if not waiting:
                waiting.append(display.task(f"restore {_short(args.key)}", unit="items"))
            waiting[0].update(completed=outcome.checks, status=text)

        retriever.wait_until_readable(target, head, outcome, status=status, event=event)
        reading = display.task(f"reading {_short(args.key)}", total=target.size, unit="bytes")
        retriever.download(target, destination, outcome, force=args.force, progress=reading.advance)

    record_custody(args, "DOCUMENT_RESTORED", outcome.as_dict())
    if args.json:
        print(json.dumps({**outcome.as_dict(), "state": "restored"}, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        checked = f"tracking DB, journal seq={target.journal.seq}, object metadata"
        if target.db_sha256 is None:
            checked = f"journal seq={target.journal.seq}, object metadata (the DB keeps no SHA-256 of this version)"
        print(f"restored {args.key!r} version {target.version_id} to {destination}: {outcome.bytes_read} bytes, "
              f"SHA-256 {outcome.sha256} (matches {checked})")
    return EXIT_OK


def record_custody(args: argparse.Namespace, event: str, details: dict[str, Any]) -> None:
    """The chain of custody: who brought which version back where (or was refused), as an audit log entry.
    A document already verified on disk is not withdrawn when this fails: the line on stderr says so."""
    import getpass
    import socket

    import psycopg

    from vault_pipeline.replication.tracking import TrackingDatabaseError, TrackingStore

    dsn, bucket = os.environ.get("VAULT_DATABASE_URL", ""), os.environ.get("OVH_S3_BUCKET_DOCUMENTS", "")
    if not dsn or not bucket:
        return
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    details = {**details, "os_user": who, "host": socket.gethostname(), "command": "vault-pipeline restore"}
    try:
        with TrackingStore(dsn, min_size=1, max_size=1) as store:
            store.migrate()  # a database the pipeline has not migrated yet does not know the event types
            store.record_event(event, args.key, source_bucket=bucket, details=details)
    except (psycopg.Error, TrackingDatabaseError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        print(f"{NAME}: warning: the audit log entry {event} was not written: {first.replace(dsn, '***')}",
              file=sys.stderr)


def _short(key: str, width: int = 40) -> str:
    return key if len(key) <= width else "…" + key[-(width - 1):]


__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_STILL_RESTORING", "add_parser", "run"]
