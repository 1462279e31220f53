"""Progress display of long operator commands, on stderr so stdout stays machine-readable.

On a terminal it is a live bar (rich); elsewhere (CI logs, cron mail) there is no live bar and a line is
printed at most every `quiet_interval` seconds (and a last one at the end if any was), so a long job's
log shows that work moves, without thousands of lines, and a short one's shows nothing extra.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Literal

Unit = Literal["items", "bytes"]


def format_amount(value: float, unit: Unit) -> str:
    if unit == "items":
        return f"{value:,.0f}"
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or suffix == "TiB":
            return f"{value:,.0f} {suffix}" if suffix == "B" else f"{value:,.1f} {suffix}"
        value /= 1024
    raise AssertionError("unreachable")


class ProgressTask:
    """One bar: `advance(n)` for counted work, `update(completed=..., total=..., status=...)` for the rest."""

    def __init__(self, display: Progress, task_id: Any, description: str, total: float | None, unit: Unit) -> None:
        self._display, self._task_id = display, task_id
        self.description, self.total, self.unit = description, total, unit
        self.completed = 0.0
        self.status = ""
        self._last_line = time.monotonic()
        self.printed = False

    def advance(self, amount: float = 1.0) -> None:
        self.update(completed=self.completed + amount)

    def update(self, *, completed: float | None = None, total: float | None = None, status: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if status is not None:
            self.status = status
        rich = self._display.rich
        if rich is not None:
            rich.update(self._task_id, completed=self.completed, total=self.total, amount=self.amount(),
                        status=self.status)
            return
        now = time.monotonic()
        if now - self._last_line >= self._display.quiet_interval:
            self._last_line = now
            self.print_line()

    def amount(self) -> str:
        done = format_amount(self.completed, self.unit)
        return f"{done} / {format_amount(self.total, self.unit)}" if self.total else done

    def print_line(self) -> None:
        self.printed = True
        print(f"{self.description}: {self.amount()} {self.status}".rstrip(), file=sys.stderr, flush=True)


class Progress:
    """`with Progress() as display: task = display.task("reading", total=size, unit="bytes")`."""

    def __init__(self, *, live: bool | None = None, quiet_interval: float = 30.0) -> None:
        self.live = sys.stderr.isatty() if live is None else live
        self.quiet_interval = quiet_interval
        self.rich: Any = None
        self._tasks: list[ProgressTask] = []

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.rich = RichProgress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                console=Console(stderr=True),
            )
            self.rich.__enter__()
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if self.rich is not None:
            self.rich.__exit__(exc_type, exc, traceback)
            self.rich = None
            return
        if exc_type is None:  # quiet mode: the final state of every bar that showed progress lines
            for task in self._tasks:
                if task.printed:
                    task.print_line()

    def task(self, description: str, *, total: float | None = None, unit: Unit = "items") -> ProgressTask:
        task_id = None
        if self.rich is not None:
            task_id = self.rich.add_task(description, total=total, amount="", status="")
        task = ProgressTask(self, task_id, description, total, unit)
        self._tasks.append(task)
        return task
