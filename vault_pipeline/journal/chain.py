"""Journal entries chained by hash over canonical JSON.

Each entry carries `prev_hash` (the previous entry's `entry_hash`, 64 zeros for the first) and
`entry_hash` = SHA-256 of the canonical JSON of every other field. Canonical JSON: keys sorted, no
insignificant white space, UTF-8 (non-ASCII characters written as themselves), and only strings,
integers, booleans, null and lists of strings as values, so the bytes are the same in any language
(floats, whose text forms differ between serialisers, are refused).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64
HASHED_OUT = "entry_hash"


class ChainError(ValueError):
    """The first broken link: `seq` says exactly which entry is at fault."""

    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(f"journal entry seq={seq}: {reason}" if seq is not None else reason)
        self.seq = seq
        self.reason = reason


_SCALARS = frozenset({type(None), bool, int, str})


def _check_value(key: str, value: Any) -> None:
    if type(value) in _SCALARS:  # the common case first: this runs for every field of every entry
        return
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return
    raise TypeError(f"journal field {key!r} has a {type(value).__name__}: only str, int, bool, null and lists of "
                    "str are allowed (canonical JSON must be byte-identical in every implementation)")


def canonical_json(entry: Mapping[str, Any]) -> bytes:
    for key, value in entry.items():
        _check_value(key, value)
    return json.dumps(dict(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json({k: v for k, v in entry.items() if k != HASHED_OUT})).hexdigest()


@dataclass(frozen=True)
class ChainState:
    """Where a chain stands: the next entry must have seq = next_seq and prev_hash = last_hash."""

    next_seq: int = 1
    last_hash: str = GENESIS_HASH


def seal_entry(fields: Mapping[str, Any], state: ChainState) -> tuple[dict[str, Any], ChainState]:
    """Give `fields` the next seq and the chain links; return the entry and the new state."""
    entry = {k: v for k, v in fields.items() if k not in ("seq", "prev_hash", HASHED_OUT)}
    entry["seq"] = state.next_seq
    entry["prev_hash"] = state.last_hash
    entry[HASHED_OUT] = entry_hash(entry)
    return entry, ChainState(state.next_seq + 1, entry[HASHED_OUT])


def verify_chain(entries: Iterable[Mapping[str, Any]], state: ChainState = ChainState()) -> ChainState:
    """Check contiguity and every link in order; raise ChainError at the first broken one."""
    for entry in entries:
        seq = entry.get("seq")
        if seq != state.next_seq:
            raise ChainError(seq if isinstance(seq, int) else None,
                             f"expected seq {state.next_seq} (gap or reordering)")
        if entry.get("prev_hash") != state.last_hash:
            raise ChainError(seq, f"prev_hash {entry.get('prev_hash')} != previous entry_hash {state.last_hash}")
        try:
            computed = entry_hash(entry)
        except TypeError as exc:
            raise ChainError(seq, str(exc)) from None
        if entry.get(HASHED_OUT) != computed:
            raise ChainError(seq, f"entry_hash {entry.get(HASHED_OUT)} != computed {computed} (entry altered)")
        state = ChainState(seq + 1, computed)
    return state
