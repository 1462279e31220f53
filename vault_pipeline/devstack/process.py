"""Child server processes that never outlive the process that started them.

Every server of the embedded stack (PostgreSQL, `weed mini`, the moto server, `dagster dev`) is started by
`start_process`:

* in its own process group, so a Ctrl-C typed in the terminal reaches only the foreground runner, which
  then stops the servers in order (Dagster first, PostgreSQL last) instead of all of them dying at once;
* with the Linux parent-death signal (`prctl(PR_SET_PDEATHSIG)`), so the kernel signals the server when
  the process that started it dies, even by SIGKILL: a crashed test session or runner leaves no orphan
  holding ports and data directories. The kernel sends it when the *thread* that forked the child ends,
  so start servers from a thread that lives as long as they should (the main thread in practice).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1
# Loaded once in the parent: loading a library in the forked child, before exec, could deadlock.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class ChildServer:
    """A server run as our child process (see start_process); `process` is None when stopped."""

    process: subprocess.Popen[bytes] | None = None

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.is_running and self.process is not None else None


class DevStackError(RuntimeError):
    """A server of the embedded stack could not start or answer; the message says which and why."""


def _die_with_parent(death_signal: int, parent_pid: int) -> Callable[[], None]:
    """Runs in the child just before exec, after any switch of user (which would clear the setting)."""

    def setup() -> None:
        if _LIBC is None:
            return
        _LIBC.prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl: nobody would signal us
            os._exit(1)

    return setup


def start_process(args: list[str], *, log_path: Path | None, env: dict[str, str] | None = None,
                  cwd: Path | None = None, user: str | None = None,
                  death_signal: int = signal.SIGTERM) -> subprocess.Popen[bytes]:
    """Start `args` in its own process group, dying with us; output goes to `log_path` (appended), or to
    our own stdout/stderr when it is None. `env` is merged over os.environ."""
    log = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - the child keeps writing to it after we return
    try:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT if log else None,
            env={**os.environ, **(env or {})}, cwd=cwd, user=user, process_group=0,
            preexec_fn=_die_with_parent(death_signal, os.getpid()),
        )
    finally:
        if log is not None:
            log.close()


def _signal(process: subprocess.Popen[bytes], sig: int, whole_group: bool) -> None:
    try:
        if whole_group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
    except ProcessLookupError:
        pass


def stop_process(process: subprocess.Popen[bytes] | None, *, stop_signal: int = signal.SIGTERM,
                 timeout: float = 15.0, whole_group: bool = True) -> bool:
    """Send `stop_signal` (to the process group, or to the process only), wait up to `timeout`, then
    SIGKILL the whole group. With `whole_group`, the stop also waits (within the same `timeout`) for the
    group's other members, which can outlive the leader, and SIGKILLs those left. Idempotent; always reaps
    the child so no zombie is left. Returns False when anything had to be killed."""
    if process is None or process.poll() is not None:
        return True
    deadline = time.monotonic() + timeout
    _signal(process, stop_signal, whole_group)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        # Only while the leader is alive (not yet reaped) is its group id certainly still ours.
        _signal(process, signal.SIGKILL, whole_group=True)
        process.wait(10)
        return False
    # The leader is gone, but its children may not be (dagster dev's run processes finish their own
    # shutdown after dagster dev exits).
    return end_group(process.pid, deadline - time.monotonic()) if whole_group else True


def _group_exists(pgid: int) -> bool:
    """True while group `pgid` has a member we may signal (PermissionError: not ours)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _group_gone(pgid: int, deadline: float) -> bool:
    """Wait until no process is left in group `pgid` (True) or until `deadline` (False)."""
    while _group_exists(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def end_group(pgid: int, timeout: float) -> bool:
    """Wait up to `timeout` for the members of process group `pgid` to exit, then SIGKILL those left.

    Only for a group whose leader was ours and is gone: the kernel does not reuse a group's id while it has
    members, so the group is still ours to signal. Returns False when members had to be killed."""
    if _group_gone(pgid, time.monotonic() + timeout):
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    _group_gone(pgid, time.monotonic() + 10)
    return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(ready: Callable[[], object], *, timeout: float, process: subprocess.Popen[bytes], what: str,
               log_path: Path) -> None:
    """Poll `ready()` until it returns without raising. Fail fast with the log's tail when the server
    exits, and stop it when it does not answer within `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if process.poll() is not None:
            raise DevStackError(f"{what} exited with code {process.returncode}; last lines of {log_path}:\n"
                                f"{tail(log_path)}")
        try:
            ready()
            return
        except Exception as exc:  # not answering yet
            last_error = exc
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    stop_process(process)
    raise DevStackError(f"{what} did not become ready within {timeout:.0f}s (last probe error: {last_error}); "
                        f"last lines of {log_path}:\n{tail(log_path)}")
