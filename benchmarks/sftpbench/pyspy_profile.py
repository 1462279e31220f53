"""--profile: vault-pipeline's worker under py-spy, and what its samples say.

py-spy samples the threads of the worker 100 times a second during its timed window (vault_worker.py
attaches two recorders: one without --idle, which leaves out the threads the kernel has asleep, one with
--idle, every thread), so a sample is ~10 ms of one thread's life. `py-spy top` is interactive, so the
samples are recorded raw (collapsed stacks) and aggregated here into two views:

* work (the first recorder): the samples whose leaf frame is not a wait either (a lock, a future,
  select/poll, psycopg's wait: py-spy reads a thread's state apart from its stack), by
  category of that frame (SSH crypto, SSH/SFTP protocol in Python, SHA-256, the S3 client, PostgreSQL, the
  event loop...), by thread (the asyncssh event loop thread, the transfer workers, the part uploaders, the
  listing) and by leaf frame. A C call (hashlib, OpenSSL through cryptography, os.write) is charged to the
  Python line that made it. This is where the client's CPU goes.
* the transfer workers' wall clock (the second recorder): every sample of the worker threads, by the
  innermost line of the intake (intake/sftp_transfer.py, sftp_client.py, tracking/file_transfers.py) they
  were in: the lstat, the SFTP reads, the PUT, the HEAD, the claim in PostgreSQL... Where each file's time
  goes, round trips included.
"""

from __future__ import annotations

import linecache
import re
from collections import Counter
from pathlib import Path
from typing import Any

RATE_HZ = 100
TOP = 25
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
WAIT_LINE = re.compile(r"\.acquire\(|\.wait\(|\bpoll\(|\bselect\(|\bsleep\(|\.result\(|\.join\(|recv_into\(|"
                       r"\bget\(block|waiter\.|with self\._lock\b|with self\._cond\b")
HASHING_LINE = re.compile(r"sha256|hashlib|\.update\(|digest\(")
COPY_LINE = re.compile(r"\bmemory\b.*\+=|bytes\(download\.memory\)|b\"\"\.join|data \+= chunk")
S3_FILES = ("/awscrt/", "/crt_s3.py", "/botocore/", "/boto3/", "/urllib3/", "/s3transfer/", "/http/client.py",
            "/ssl.py", "/s3client.py")
INTAKE_FILES = ("/intake/sftp_transfer.py", "/intake/sftp_client.py", "/tracking/file_transfers.py")
WORKERS = "transfer workers"


def parse_frame(frame: str) -> tuple[str, str, int]:
    found = FRAME.match(frame)
    if found is None:
        return frame, "", 0
    return found["func"], found["file"], int(found["line"] or 0)


def source_line(frame: str) -> str:
    _, file, line = parse_frame(frame)
    return linecache.getline(file, line).strip() if file and line else ""


def is_wait(frame: str) -> bool:
    return bool(WAIT_LINE.search(source_line(frame)))


def category(frame: str) -> str:
    """What a leaf frame that works is doing."""
    _, file, _ = parse_frame(frame)
    text = source_line(frame)
    if "/asyncssh/crypto/" in file or "/cryptography/" in file or file.endswith("/asyncssh/mac.py"):
        return "SSH crypto (cipher, MAC)"
    if HASHING_LINE.search(text):
        return "SHA-256 of the content (hashlib)"
    if COPY_LINE.search(text):
        return "buffer copies"
    if "/asyncssh/" in file:
        return "SSH/SFTP protocol (asyncssh, Python)"
    if any(part in file for part in S3_FILES):
        return "S3 client (awscrt/botocore)"
    if "/psycopg" in file or "/replication/tracking/" in file:
        return "PostgreSQL (psycopg)"
    if "/asyncio/" in file or file.endswith("/selectors.py"):
        return "event loop (asyncio)"
    if file.endswith("/replication/spool.py"):
        return "spool file I/O"
    if "<frozen importlib" in file or "/importlib/" in file:
        return "imports (start-up)"
    if "/vault_pipeline/" in file:
        return "vault-pipeline (other)"
    if file.endswith(("/threading.py", "/queue.py")) or "/concurrent/futures/" in file:
        return "threads, futures, queues"
    return "other"


def thread_role(frames: list[str]) -> str:
    parsed = [parse_frame(f)[:2] for f in frames]
    if any(file.endswith("asyncio/base_events.py") and func.endswith(("run_forever", "_run_once"))
           for func, file in parsed):
        return "asyncssh event loop thread"
    in_transfer = [func for func, file in parsed if file.endswith("intake/sftp_transfer.py")]
    if any(re.search(r"(^|\.)send$", func) for func in in_transfer):
        return "part uploaders (sftp-part threads)"
    if any(func.endswith("_renew_leases") for func in in_transfer):
        return "lease renewer"
    if any(re.search(r"(^|\.)worker$", func) for func in in_transfer):
        return WORKERS
    if any(func.endswith("scan_inbox") for func, _ in parsed):
        return "listing (scan_inbox)"
    return "main thread, start-up and other"


def operation(frames: list[str]) -> str:
    """The innermost line of the intake a worker thread was in: what it was doing or waiting for."""
    for frame in reversed(frames):
        func, file, line = parse_frame(frame)
        if file.endswith(INTAKE_FILES):
            return f"{file.rsplit('/', 1)[-1]}:{line} {func.rsplit('.', 1)[-1]}: {source_line(frame)[:70]}"
    return "outside the intake's code"


def _share(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


def _rows(counter: Counter[Any], total: int, key: str, limit: int | None = None) -> list[dict[str, Any]]:
    return [{key: k, "samples": n, "share": _share(n, total)} for k, n in counter.most_common(limit)]


def read_stacks(raw_path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            stacks.append((stack.split(";"), int(count_text)))
    return stacks


def summarize_profile(raw_path: Path, wall_raw_path: Path) -> dict[str, Any]:
    """`raw_path`: samples of the threads py-spy saw running; `wall_raw_path`: of every thread (--idle)."""
    by_leaf: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    by_role: Counter[str] = Counter()
    waiting = 0
    for frames, count in read_stacks(raw_path):
        if is_wait(frames[-1]):  # py-spy reads the thread's state apart from its stack: a wait slips through
            waiting += count
            continue
        by_leaf[frames[-1]] += count
        by_category[category(frames[-1])] += count
        by_role[thread_role(frames)] += count
    by_operation: Counter[str] = Counter()
    for frames, count in read_stacks(wall_raw_path):
        if thread_role(frames) == WORKERS:
            by_operation[operation(frames)] += count
    work, worker_samples = sum(by_leaf.values()), sum(by_operation.values())
    return {
        "rate_hz": RATE_HZ, "work_samples": work, "work_thread_s": round(work / RATE_HZ, 2),
        "waiting_samples_left_out": waiting,
        "work_by_category": _rows(by_category, work, "category"),
        "work_by_thread": _rows(by_role, work, "thread"),
        "work_top_leaf_frames": [{"frame": _short(k), "category": category(k), "samples": n, "share": _share(n, work)}
                                 for k, n in by_leaf.most_common(TOP)],
        "worker_samples": worker_samples, "worker_thread_s": round(worker_samples / RATE_HZ, 2),
        "worker_wall_by_operation": _rows(by_operation, worker_samples, "operation", TOP),
    }


def _short(frame: str) -> str:
    """A frame with its file relative to site-packages, the standard library or the repository."""
    return re.sub(r"\(.*?/(site-packages|lib/python3\.\d+|work/main)/", "(", frame)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(name: str, summary: dict[str, Any]) -> list[str]:
    lines = [f"### Profile: {name}", "",
             f"Work: {summary['work_samples']:,} samples of threads not waiting at {summary['rate_hz']} Hz "
             f"(~{summary['work_thread_s']:.1f} thread-seconds: the client's CPU, as Python sees it).", "",
             "| work by category (leaf frame) | share |", "|---|---|"]
    lines += [f"| {c['category']} | {100 * c['share']:.1f} % |" for c in summary["work_by_category"]]
    lines += ["", "| work by thread | share |", "|---|---|"]
    lines += [f"| {t['thread']} | {100 * t['share']:.1f} % |" for t in summary["work_by_thread"]]
    lines += ["", "| leaf frame | category | share of work |", "|---|---|---|"]
    lines += [f"| `{_md(f['frame'])}` | {f['category']} | {100 * f['share']:.1f} % |"
              for f in summary["work_top_leaf_frames"][:15]]
    lines += ["", f"Transfer workers' wall clock: {summary['worker_samples']:,} samples "
              f"(~{summary['worker_thread_s']:.1f} thread-seconds), by the intake's line they were in:", "",
              "| operation (innermost line of the intake) | share |", "|---|---|"]
    lines += [f"| `{_md(o['operation'])}` | {100 * o['share']:.1f} % |"
              for o in summary["worker_wall_by_operation"][:15]]
    return [*lines, ""]
