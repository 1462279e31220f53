"""Resource measurement of one contender's process tree, from outside the process.

A sampler thread reads the resident memory of the process and all its descendants every ~20 ms (the
list of descendants is refreshed every 0.5 s: walking /proc at 50 Hz would itself cost CPU on a 2-core
machine). CPU time comes from the kernel: `os.wait4` returns the rusage of the reaped child and of the
descendants it waited for, exact to the tick, where psutil could only read a process still alive.
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

    @property
    def wall_s(self) -> float:
        return self.ended - self.started

    def peak_rss(self, start: float | None = None, end: float | None = None) -> int:
        """Highest sampled tree RSS between `start` and `end` (monotonic), whole life by default."""
        low, high = start if start is not None else -1e18, end if end is not None else 1e18
        inside = [s.rss for s in self.samples if low <= s.t <= high]
        return max(inside, default=max((s.rss for s in self.samples), default=0))


class TreeSampler:
    """Samples the RSS of a process tree on a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.samples: list[RssSample] = []
        self._root = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-sampler-{pid}", daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return [self._root]

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
                           samples=sampler.samples, timed_out=timed_out)


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
