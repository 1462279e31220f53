"""Reading the journal back from the cold site, in order, checking every link on the way.

A reader follows seqs, not listings: it consumes a segment only if it starts exactly at the next seq it
expects, so a segment that is missing (deleted, or not yet written) stops it instead of being skipped.
A segment with more than one version was rewritten after its write (the first version is locked and
stays): the reader refuses it, naming the segment, before even looking at the content.
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


def read_segments(store: SegmentStore, start: ChainState = GENESIS, *,
                  limit: int | None = None) -> Iterator[tuple[StoredSegment, ChainState]]:
    """Yield each segment after `start` with the chain state after it; raise at the first fault."""
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
        try:
            state = verify_chain(segment.entries, state)
        except ChainError as exc:
            raise ChainError(exc.seq, f"{exc.reason} [segment {segment.key}]") from None
        yield segment, state


def read_entries(store: SegmentStore, start: ChainState = GENESIS) -> Iterator[dict]:
    for segment, _ in read_segments(store, start):
        yield from segment.entries


def segments_from(store: SegmentStore, seq: int) -> Iterator[ListedSegment]:
    """Segments in journal order, from the one holding `seq` (or, if none does, from the next one).

    Listing is by key (first seq), so the segment holding `seq` is the last one starting at or before it.
    It is found by listing from `seq - span` with StartAfter, widening the span until one is found. A
    seal's range starts a segment (a flush writes one segment with a single time, so a segment never
    straddles days): then the first call, with span 1, finds it, whatever the size of the journal."""
    span = 1
    while True:
        low = max(seq - span, 0)
        listed = store.list_segments(after_seq=low)
        holding: ListedSegment | None = None
        following: ListedSegment | None = None
        for candidate in listed:
            if candidate.first_seq > seq:
                following = candidate
                break
            holding = candidate
        if holding is None and low > 0:
            span = 1024 if span == 1 else span * 16
            continue
        for segment in (holding, following):
            if segment is not None:
                yield segment
        if following is not None:
            yield from listed
        return


def iter_journal(store: SegmentStore, start: ChainState, *,
                 anchored: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """(segment key, entry) for every entry from seq `start.next_seq` on, checking that each segment has
    exactly one version, that seqs are contiguous and that every link holds, starting from
    `start.last_hash` (the previous entry's hash; with anchored=False the first entry's own prev_hash is
    taken as is). Raises RewrittenSegment / ChainError / JournalError at the first fault, naming the
    segment and seq."""
    state = start
    for listed in segments_from(store, start.next_seq):
        versions = store.versions_of(listed.key)
        if versions != 1:
            raise RewrittenSegment(listed.key, versions)
        segment = store.read_segment(listed.key)
        for entry in segment.entries:
            seq = entry.get("seq")
            if isinstance(seq, int) and seq < state.next_seq:
                continue
            if not anchored:
                state, anchored = ChainState(state.next_seq, str(entry.get("prev_hash"))), True
            try:
                state = verify_chain([entry], state)
            except ChainError as exc:
                raise ChainError(exc.seq, f"{exc.reason} [segment {segment.key}]") from None
            yield segment.key, entry
