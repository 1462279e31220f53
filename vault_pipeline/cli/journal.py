"""`vault-pipeline journal ...`: verify the journal, prove a document, make a signing key.

    vault-pipeline journal verify                       exit 0 when every segment, entry and seal holds;
                                                        1 with one line per problem (the entry or seal at fault)
    vault-pipeline journal prove KEY [--version V] [--out FILE]   the inclusion proof of KEY's copy (JSON)
    vault-pipeline journal check-proof FILE              check a proof file (exit 0 / 1)
    vault-pipeline journal keygen [--out FILE]           a new Ed25519 seal signing key

They read the pipeline's environment: the cold site (AWS_S3_ENDPOINT, AWS_S3_REGION, AWS_S3_ACCESS_KEY_ID,
AWS_S3_SECRET_ACCESS_KEY, AWS_S3_BUCKET_DOCUMENTS_COLD and the other AWS_S3_* settings), VAULT_JOURNAL_PREFIX,
VAULT_JOURNAL_PUBLIC_KEYS and, for `prove` only, VAULT_DATABASE_URL (an index to find the key's entries;
without it the whole journal is read). Any error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from vault_pipeline.cli.common import cold_client_from_env
from vault_pipeline.cli.errors import EXIT_OK, EXIT_PROBLEMS, CommandError, run_reporting_errors


def add_journal_commands(commands: Any) -> None:
    journal = commands.add_parser("journal", help="verify the write journal, prove a document, make a seal key",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = journal.add_subparsers(dest="journal_command", required=True)
    sub.add_parser("verify", help="check every segment, entry and seal on the cold site (no database needed)")
    prove = sub.add_parser("prove", help="print the inclusion proof of a document's journaled copy")
    prove.add_argument("key", help="the document's key (cold key = hot key)")
    prove.add_argument("--version", dest="version_id", help="the cold version id (default: the latest copy)")
    prove.add_argument("--out", type=Path, help="write the proof to this file instead of stdout")
    prove.add_argument("--no-database", action="store_true",
                       help="find the key by reading the journal instead of using VAULT_DATABASE_URL")
    check = sub.add_parser("check-proof", help="check a proof file made by `journal prove`")
    check.add_argument("file", type=Path)
    keygen = sub.add_parser("keygen", help="make a new Ed25519 seal signing key")
    keygen.add_argument("--out", type=Path,
                        help="write the secret key to this new file (mode 0600) and print only the public key")


JOURNAL_NEEDS_COLD = "the journal commands read the cold site's settings from the same environment as the pipeline"


def cold_store_from_env() -> Any:
    """The journal's SegmentStore over the cold site, configured exactly as the pipeline is."""
    from vault_pipeline.journal.segments import SegmentStore

    client, bucket, settings = cold_client_from_env(JOURNAL_NEEDS_COLD)
    return SegmentStore(client, bucket, prefix=settings.journal_prefix)


def public_keys_from_env() -> list[str]:
    from vault_pipeline.settings import load_settings

    settings, _ = load_settings()
    return [k.strip() for k in settings.journal_public_keys.split(",") if k.strip()]


def _verify(args: argparse.Namespace) -> int:
    from vault_pipeline.cli.progress import Progress
    from vault_pipeline.journal.verify import verify_journal

    with Progress() as display:
        task = display.task("journal segments verified")
        report = verify_journal(cold_store_from_env(), public_keys_from_env(),
                                on_segment=lambda so_far: task.update(completed=so_far.segments,
                                                                      status=f"{so_far.entries:,} entries"))
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for problem in report.problems:
        print(problem)
    print(("journal OK: " if report.ok else "journal NOT OK: ") + report.summary(), file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _prove(args: argparse.Namespace) -> int:
    from vault_pipeline.journal.proof import build_proof

    dsn = None if args.no_database else (os.environ.get("VAULT_DATABASE_URL", "").strip() or None)
    if dsn is None:
        print("note: no VAULT_DATABASE_URL: reading the whole journal to find the key", file=sys.stderr)
    proof = build_proof(cold_store_from_env(), args.key, version_id=args.version_id, dsn=dsn)
    text = json.dumps(proof, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"proof of {args.key!r} (entry seq={proof['entry']['seq']}, {proof['seal_key']}) written to {args.out}",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _check_proof(args: argparse.Namespace) -> int:
    from vault_pipeline.journal.proof import check_proof
    from vault_pipeline.journal.verify import UNAUTHENTICATED_NOTE

    try:
        proof = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read proof {args.file}: {exc}") from None
    if not isinstance(proof, dict):
        raise CommandError(f"{args.file} is not a proof (not a JSON object)")
    keys = public_keys_from_env()
    if not keys:
        print(f"note: {UNAUTHENTICATED_NOTE}", file=sys.stderr)
    problems = check_proof(proof, keys)
    for problem in problems:
        print(f"{args.file}: {problem}")
    if not problems:
        print(f"proof OK: entry seq={proof['entry']['seq']} of {proof['key']!r} is leaf {proof['leaf_index']} of "
              f"{proof['seal_key']} (root {proof['root']}, key id {proof['seal']['key_id']})")
    return EXIT_OK if not problems else EXIT_PROBLEMS


def _keygen(args: argparse.Namespace) -> int:
    from vault_pipeline.journal.signing import PUBLIC_KEYS_VARIABLE, SIGNING_KEY_VARIABLE, SealSigner

    signer = SealSigner.generate()
    if args.out:
        try:
            fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise CommandError(f"cannot create {args.out}: {exc.strerror}") from None
        with os.fdopen(fd, "w") as out:
            out.write(signer.seed_b64() + "\n")
        print(f"secret signing key written to {args.out} (mode 0600): give its content to the pipeline as "
              f"{SIGNING_KEY_VARIABLE}", file=sys.stderr)
    else:
        print("# secret: keep it in the secret store, give it to the pipeline only through the environment",
              file=sys.stderr)
        print(f"{SIGNING_KEY_VARIABLE}={signer.seed_b64()}")
    print(f"{PUBLIC_KEYS_VARIABLE}={signer.public_key_b64}")
    print(f"# key id {signer.key_id}: publish the public key so third parties can check the seals", file=sys.stderr)
    return EXIT_OK


def run_journal_command(args: argparse.Namespace) -> int:
    handlers = {"verify": _verify, "prove": _prove, "check-proof": _check_proof, "keygen": _keygen}
    return run_reporting_errors(f"vault-pipeline journal {args.journal_command}", handlers[args.journal_command],
                                args, s3_site="cold site")
