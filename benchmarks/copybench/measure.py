"""Resource measurement of one contender's process tree, from outside the process.

A sampler thread reads the resident memory of the process and all its descendants every ~20 ms (the
list of descendants is refreshed every 0.5 s: walking /proc at 50 Hz would itself cost CPU on a 2-core
machine). CPU time comes from the kernel: `os.wait4` returns the rusage of the reaped child and of the
descendants it waited for, exact to the tick, where psutil could only read a process still alive.

The whole process tree: a descendant that outlives its parent is re-parented outside the tree (to init),
so its CPU never reaches the child's rusage. The child starts in a session of its own, which its
descendants keep (unless they call setsid), so at every refresh (0.5 s) and once more after the child's
exit the sampler also looks for processes of that session outside the tree (`getsid` on every pid: one
syscall each), and for descendants it saw that left the tree alive; it keeps reading their CPU (psutil)
and the harness adds the last reading (`orphan_cpu_s`), up to the child's exit. An orphan that exits
between two readings escapes, with its CPU since the previous one. Well-behaved programs wait for their
children (Python's subprocess, Go's os/exec), and then the rusage alone is the whole tree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_INTERVAL_S = 0.02
CHILDREN_REFRESH_S = 0.5


@dataclass(frozen=True)
class RssSample:
    t: float  # time.monotonic()
    rss: int  # bytes, whole process tree


@dataclass
class MeasuredProcess:
    returncode: int
    started: float  # time.monotonic() just before the spawn
    ended: float  # time.monotonic() when the exit was seen
    cpu_s: float  # user + system of the process and its waited descendants, whole life
    samples: list[RssSample] = field(default_factory=list)
    timed_out: bool = False
    orphan_cpu_s: float = 0.0  # descendants that left the tree alive (not in the rusage), last reading
    descendants_seen: int = 0  # distinct descendants the sampler saw (0: a single process)

    @property
    def tree_cpu_s(self) -> float:
        """User + system CPU seconds of the whole process tree over its whole life."""
        return self.cpu_s + self.orphan_cpu_s

    @property
    def wall_s(self) -> float:
        return self.ended - self.started

    def peak_rss(self, start: float | None = None, end: float | None = None) -> int:
        """Highest sampled tree RSS between `start` and `end` (monotonic), whole life by default."""
        low, high = start if start is not None else -1e18, end if end is not None else 1e18
        inside = [s.rss for s in self.samples if low <= s.t <= high]
        return max(inside, default=max((s.rss for s in self.samples), default=0))


def _cpu_total(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


class TreeSampler:
    """Samples the RSS of a process tree on a thread until stopped, and follows descendants that leave
    the tree alive (orphans) for their CPU time."""

    def __init__(self, pid: int) -> None:
        self.samples: list[RssSample] = []
        self._root = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-sampler-{pid}", daemon=True)
        self._descendants: dict[tuple[int, float], psutil.Process] = {}  # (pid, create time) -> process
        self._orphans: dict[tuple[int, float], psutil.Process] = {}
        self._orphan_cpu: dict[tuple[int, float], float] = {}  # last CPU reading of each orphan

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._follow([], root_alive=False)  # the root has exited: whoever still runs is an orphan

    @property
    def orphan_cpu_s(self) -> float:
        return sum(self._orphan_cpu.values())

    @property
    def descendants_seen(self) -> int:
        return len(self._descendants)

    def _read_orphans(self) -> None:
        for key, process in self._orphans.items():
            try:
                self._orphan_cpu[key] = _cpu_total(process)
            except psutil.Error:
                continue  # exited: its last reading stands

    def _orphaned(self, process: psutil.Process) -> bool:
        """Alive with a parent outside the root's session (init, a subreaper): its CPU will not reach the
        root's rusage. A process just forked by a member of the tree is not (its parent will reap it)."""
        try:
            return process.is_running() and os.getsid(process.ppid()) != self._root.pid
        except (OSError, psutil.Error):
            return False

    def _session_outsiders(self, tree: set[int]) -> None:
        """Processes of the root's session that are not in its tree and orphaned."""
        for pid in psutil.pids():
            if pid in tree:
                continue
            try:
                if os.getsid(pid) != self._root.pid:
                    continue
                process = psutil.Process(pid)
                key = (pid, process.create_time())
            except (OSError, psutil.Error):
                continue
            if key not in self._orphans and self._orphaned(process):
                self._orphans[key] = process

    def _follow(self, children: list[psutil.Process], *, root_alive: bool = True) -> None:
        """Note new descendants; those gone from the tree but alive are orphans, followed from now on."""
        current: dict[tuple[int, float], psutil.Process] = {}
        for child in children:
            try:
                current[(child.pid, child.create_time())] = child
            except psutil.Error:
                continue
        for key, process in self._descendants.items():
            if key not in current and key not in self._orphans and self._orphaned(process):
                self._orphans[key] = process
        self._descendants.update(current)
        self._session_outsiders({self._root.pid, *(pid for pid, _ in current)} if root_alive else set())
        self._read_orphans()

    def _tree(self) -> list[psutil.Process]:
        try:
            children = self._root.children(recursive=True)
        except psutil.Error:
            children = []
        self._follow(children)
        return [self._root, *children, *self._orphans.values()]

    def _run(self) -> None:
        tree, refreshed = self._tree(), time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now - refreshed > CHILDREN_REFRESH_S:
                tree, refreshed = self._tree(), now
            total = 0
            for process in tree:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue  # exited or a zombie: holds no memory any more
            if total:
                self.samples.append(RssSample(now, total))
            self._stop.wait(SAMPLE_INTERVAL_S)


def _wait_with_rusage(process: subprocess.Popen[bytes], deadline: float) -> tuple[int, float, bool]:
    """Reap `process` with wait4 (its CPU time), killing its process group at `deadline`."""
    timed_out = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid == process.pid:
            returncode = os.waitstatus_to_exitcode(status)
            process.returncode = returncode  # Popen must not wait for it again
            return returncode, usage.ru_utime + usage.ru_stime, timed_out
        if time.monotonic() > deadline and not timed_out:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.01)


def run_measured(command: Sequence[str], *, env: Mapping[str, str], log_path: Path, timeout_s: float,
                 cwd: Path | None = None) -> MeasuredProcess:
    """Run `command` to completion (its output to `log_path`), sampling its tree's RSS all along."""
    with log_path.open("ab") as log:
        started = time.monotonic()
        process = subprocess.Popen(list(command), env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
    sampler = TreeSampler(process.pid).start()
    try:
        returncode, cpu_s, timed_out = _wait_with_rusage(process, started + timeout_s)
        ended = time.monotonic()
    finally:
        sampler.stop()
        if process.returncode is None:  # interrupted: never leave a contender behind
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return MeasuredProcess(returncode=returncode, started=started, ended=ended, cpu_s=cpu_s,
                           samples=sampler.samples, timed_out=timed_out, orphan_cpu_s=sampler.orphan_cpu_s,
                           descendants_seen=sampler.descendants_seen)


def tree_cpu_seconds(pid: int | None) -> float:
    """CPU seconds used so far by a live server and its descendants (their exited children included)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total
