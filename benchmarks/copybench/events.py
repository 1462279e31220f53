"""Phase events a contender's worker process writes for the harness, one JSON object a line.

Each event carries the time on CLOCK_MONOTONIC (time.monotonic() is system-wide on Linux, so the harness
can place it among its own RSS samples) and the worker's own CPU seconds so far (user + system, its waited
children included), so the harness measures exactly the phase it times (the copy), not the imports.
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


class EventLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._process = psutil.Process()

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "t": time.monotonic(), "cpu_s": cpu_seconds(self._process),
                  "rss": self._process.memory_info().rss, **fields}
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
