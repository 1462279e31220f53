"""Phase events a contender's worker process writes for the harness, one JSON object a line.

Each event carries the time on CLOCK_MONOTONIC (time.monotonic() is system-wide on Linux, so the harness
can place it among its own RSS samples) and the worker's own CPU seconds so far (user + system, its waited
children included), so the harness measures exactly the phase it times (the copy), not the imports.
`tree_cpu_s` adds the CPU of its descendants alive at that moment: the difference between two events is
then the CPU of the whole process tree in between (a child started before the copy and reaped after it is
counted once: its part before the start is in the first reading).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psutil


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def tree_cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds of `process` (its waited children included) and of its live descendants."""
    total = cpu_seconds(process)
    for child in process.children(recursive=True):
        try:
            total += cpu_seconds(child)
        except psutil.Error:
            continue  # exited meanwhile: its parent's children_* has it once reaped
    return total


class EventLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._process = psutil.Process()

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "t": time.monotonic(), "cpu_s": cpu_seconds(self._process),
                  "tree_cpu_s": tree_cpu_seconds(self._process), "rss": self._process.memory_info().rss, **fields}
        with self.path.open("a") as out:
            out.write(json.dumps(record, default=str) + "\n")


def read_events(path: Path) -> dict[str, dict[str, Any]]:
    """The events of a worker by name (the last one wins); empty when it wrote none."""
    if not path.exists():
        return {}
    events: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            events[record["event"]] = record
    return events
