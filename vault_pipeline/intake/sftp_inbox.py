"""Listing an SFTP inbox: recursive, resumable across sensor ticks, registering only stable files.

A listing pass walks the inbox depth first, a directory at a time, for as long as a tick's budget allows;
the directories still to list are the state the sensor keeps in its cursor, so the next tick goes on where
this one stopped and a huge inbox never makes a tick too long. When the pass is done, the next one starts at
the top again.

Of each directory's entries:
* regular files whose name is not a temporary upload name (SFTP_IGNORE_PATTERNS) are judged by the
  stability rule (intake/stability.py), their first looks kept in vault_secure.sftp_inbox_looks; a stable
  file is registered in the transfer log as PENDING. A file the log already holds with the same size and
  mtime (transferred and kept, or waiting) is left alone; another size or mtime is a new delivery;
* subdirectories are listed in turn, except the processed folder;
* symlinks, devices, sockets and FIFOs are never followed nor read, and a name that is not UTF-8 is never
  opened: they are recorded FAILED with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vault_pipeline.intake.sftp_client import SftpFileError, SftpPool, join
from vault_pipeline.intake.sftp_paths import ignored
from vault_pipeline.intake.stability import Look, judge
from vault_pipeline.replication.tracking.file_transfers import TransferLog


@dataclass
class ScanState:
    """The sensor's cursor: the directories (relative to the inbox, "" for the inbox itself) still to list in
    the current pass, and when that pass started."""

    pending_dirs: list[str] = field(default_factory=list)
    pass_started: str | None = None
    passes: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> ScanState:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(pending_dirs=[str(d) for d in data.get("pending_dirs", [])],
                       pass_started=data.get("pass_started"), passes=int(data.get("passes", 0)))
        except (ValueError, TypeError, AttributeError):
            return cls()  # an unreadable cursor costs one listing pass, nothing else

    def dump(self) -> str:
        return json.dumps({"pending_dirs": self.pending_dirs, "pass_started": self.pass_started,
                           "passes": self.passes})


@dataclass
class ScanReport:
    directories: int = 0
    files: int = 0
    registered: int = 0
    settling: int = 0
    already_known: int = 0
    ignored: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (name, why), newly recorded
    problems: list[str] = field(default_factory=list)  # directories that could not be listed
    pass_complete: bool = False
    seconds: float = 0.0


def _kind_reason(kind: str) -> str:
    if kind == "symlink":
        return "a symbolic link: never followed (the intake reads regular files only, inside the inbox)"
    if kind == "undecodable":
        return ("the name is not valid UTF-8 (shown here with \\x escapes): it cannot become a hot key; "
                "rename it on the server")
    return f"not a regular file ({kind}): not read"


def scan_inbox(pool: SftpPool, transfer_log: TransferLog, *, inbox_id: str, remote_dir: str, processed_dir: str,
               ignore_patterns: tuple[str, ...], settle_seconds: float, state: ScanState, budget_seconds: float,
               now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> tuple[ScanReport, ScanState]:
    """List for at most `budget_seconds` from `state`; return what was found and the state to resume from.
    `processed_dir` is relative to `remote_dir` (or absolute) and never listed."""
    started = time.monotonic()
    report = ScanReport()
    if not state.pending_dirs:  # a new pass
        state = ScanState(pending_dirs=[""], pass_started=now().isoformat(), passes=state.passes + 1)
    skip = processed_dir.strip("/") if not processed_dir.startswith("/") else None
    skip_absolute = processed_dir.rstrip("/") if processed_dir.startswith("/") else None
    with pool.session() as session:
        while state.pending_dirs and (report.directories == 0 or time.monotonic() - started < budget_seconds):
            relative = state.pending_dirs.pop()
            path = join(remote_dir, relative) if relative else remote_dir
            try:
                entries = session.scandir(path)
            except SftpFileError as exc:
                report.problems.append(str(exc))
                continue
            report.directories += 1
            listing: dict[str, tuple[int, dt.datetime]] = {}
            refused: list[tuple[str, int, dt.datetime, str]] = []
            subdirs = []
            for entry in entries:
                name = f"{relative}/{entry.name}" if relative else entry.name
                if entry.kind == "dir":
                    if name != skip and join(remote_dir, name) != skip_absolute:
                        subdirs.append(name)
                elif ignored(entry.name, ignore_patterns):
                    report.ignored += 1
                elif entry.kind == "file":
                    listing[name] = (entry.size, entry.mtime)
                else:
                    refused.append((name, entry.size, entry.mtime, _kind_reason(entry.kind)))
            state.pending_dirs.extend(sorted(subdirs, reverse=True))  # popped in name order
            report.files += len(listing)
            _judge_directory(transfer_log, inbox_id, listing, refused, settle_seconds, now(), report)
    if not state.pending_dirs:
        report.pass_complete = True
        if state.pass_started:
            transfer_log.forget_looks_before(inbox_id, dt.datetime.fromisoformat(state.pass_started))
    report.seconds = time.monotonic() - started
    return report, state


def _judge_directory(transfer_log: TransferLog, inbox_id: str, listing: dict[str, tuple[int, dt.datetime]],
                     refused: list[tuple[str, int, dt.datetime, str]], settle_seconds: float, now: dt.datetime,
                     report: ScanReport) -> None:
    if refused and transfer_log.refuse_files(inbox_id, refused):
        report.refused += [(name, why) for name, _, _, why in refused]
    known = transfer_log.known_looks(inbox_id, list(listing))
    fresh = {name: look for name, look in listing.items() if known.get(name) != look}
    report.already_known += len(listing) - len(fresh)
    previous = {name: Look(size, mtime, first)
                for name, (size, mtime, first) in transfer_log.previous_looks(inbox_id, list(fresh)).items()}
    verdict = judge(previous, fresh, now=now, settle_seconds=settle_seconds)
    report.registered += transfer_log.register_stable(inbox_id, verdict.stable)
    report.settling += verdict.settling
    settling = {name: (look.size, look.mtime, look.seen_at) for name, look in verdict.looks.items()}
    transfer_log.save_looks(inbox_id, settling, forget=[f.filename for f in verdict.stable], now=now)
