"""Reading the journal back from the cold site, in order, checking every link on the way.

A reader follows seqs, not listings: it consumes a segment only if it starts exactly at the next seq it
expects, so a segment that is missing (deleted, or not yet written) stops it instead of being skipped.
A segment with more than one version was rewritten after its write (the first version is locked and
stays): the reader refuses it, naming the segment, before even looking at the content.
"""

from __future__ import annotations

from collections.abc import Iterator

from vault_pipeline.journal.chain import ChainError, ChainState, verify_chain
from vault_pipeline.journal.segments import JournalError, SegmentStore, StoredSegment

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
