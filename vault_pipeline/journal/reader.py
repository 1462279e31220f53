"""Reading the journal back from the cold site: the one reader of segments and entries.

In order (read_segments; read_entries and iter_journal are views of it), which is how the rebuild, the
sealer, `journal prove` and the tests read the journal. The reader follows seqs, not listings: it consumes
a segment only if it starts exactly at the next seq it expects, so a segment that is missing (deleted,
hidden, or not yet written) stops it instead of being skipped. A segment with more than one version was
rewritten after its write (the first version is locked and stays): the reader refuses it, naming the
segment, before even looking at the content. Every link and entry hash of a segment is checked before the
segment is handed out; the first fault raises (ChainError, RewrittenSegment, JournalError).

One entry by seq (entry_at) is a locator, not a reader: it returns the entry as stored in the one segment
holding it, and its callers check it (the restore: the entry's hash and its segment's versions; a proof:
the whole day is read again through read_segments and must give the seal's root).

`journal verify` walks the segments itself (verify.py): it must report every fault and carry on after
each, where a reader stops at the first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vault_pipeline.journal.chain import ChainError, ChainState, verify_chain
from vault_pipeline.journal.segments import JournalError, ListedSegment, SegmentStore, StoredSegment

GENESIS = ChainState()


class RewrittenSegment(JournalError):
    def __init__(self, key: str, versions: int) -> None:
        super().__init__(f"journal segment {key} has {versions} versions (or delete markers), expected exactly 1: "
                         "it was overwritten after it was written")
        self.key = key


class EntryNotFound(JournalError):
    """No segment on the cold site holds the entry (read errors are plain JournalErrors)."""


def read_segments(store: SegmentStore, start: ChainState = GENESIS, *, anchored: bool = True,
                  limit: int | None = None) -> Iterator[tuple[StoredSegment, ChainState]]:
    """Yield each segment from seq `start.next_seq` on (a segment must start there) with the chain state
    after it; raise at the first fault. The first entry must link to `start.last_hash`; with
    anchored=False (the previous entry's hash is not known, e.g. a proof reading one sealed day) its own
    prev_hash is taken as is, and every later link is checked."""
    state = start
    for count, listed in enumerate(store.list_segments(after_seq=state.next_seq - 1)):
        if limit is not None and count >= limit:
            return
        if listed.first_seq != state.next_seq:
            raise ChainError(state.next_seq, f"no segment starts at seq {state.next_seq} (next one found: "
                             f"{listed.key}): entries {state.next_seq}..{listed.first_seq - 1} are missing")
        versions = store.versions_of(listed.key)
        if versions != 1:
            raise RewrittenSegment(listed.key, versions)
        segment = store.read_segment(listed.key)
        if not anchored:
            state, anchored = ChainState(state.next_seq, str(segment.entries[0].get("prev_hash"))), True
        try:
            state = verify_chain(segment.entries, state)
        except ChainError as exc:
            raise ChainError(exc.seq, f"{exc.reason} [segment {segment.key}]") from None
        yield segment, state


def iter_journal(store: SegmentStore, start: ChainState = GENESIS, *,
                 anchored: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """(segment key, entry) for every entry from seq `start.next_seq` on, read by read_segments."""
    for segment, _ in read_segments(store, start, anchored=anchored):
        for entry in segment.entries:
            yield segment.key, entry


def read_entries(store: SegmentStore, start: ChainState = GENESIS) -> Iterator[dict]:
    for segment, _ in read_segments(store, start):
        yield from segment.entries


def holding_segment(store: SegmentStore, seq: int) -> ListedSegment | None:
    """The segment whose range holds `seq`: the last one starting at or before it (None if none does).

    Listing is by key (first seq), so it lists from `seq - span` with StartAfter, widening the span until
    a segment starting at or before `seq` is found. When `seq` starts a segment (a seal's range, an index
    lookup of a segment's first entry) the first listing, with span 1, finds it whatever the journal's size."""
    span = 1
    while True:
        low = max(seq - span, 0)
        holding: ListedSegment | None = None
        for candidate in store.list_segments(after_seq=low):
            if candidate.first_seq > seq:
                break
            holding = candidate
        if holding is not None or low == 0:
            return holding
        span = 1024 if span == 1 else span * 16


def entry_at(store: SegmentStore, seq: int, *, segment: str | None = None) -> tuple[str, dict[str, Any]]:
    """(segment key, entry) of journal entry `seq` as stored on the cold site, unchecked (see the module
    docstring): in `segment` when given (the database's index names it, saving a listing), else, or if it
    is not there, in the segment the listing says holds it. JournalError naming the read errors when it was
    not found and a segment could not be read; EntryNotFound when no segment holds it."""
    def candidates() -> Iterator[str]:
        if segment:
            yield segment
        holding = holding_segment(store, seq)
        if holding is not None and holding.key != segment:
            yield holding.key

    unreadable: list[str] = []
    for key in candidates():
        try:
            stored = store.read_segment(key)
        except JournalError as exc:
            unreadable.append(str(exc))
            continue
        for entry in stored.entries:
            if entry.get("seq") == seq:
                return key, entry
    if unreadable:
        raise JournalError("; ".join(unreadable))
    raise EntryNotFound(f"journal entry seq={seq} is not on the cold site")
