"""Hash-chained journal entries: contiguous, linked, and any change pinpointed to its entry."""

from __future__ import annotations

import copy

import pytest

from vault_pipeline.journal.chain import (
    GENESIS_HASH,
    ChainError,
    ChainState,
    canonical_json,
    entry_hash,
    seal_entry,
    verify_chain,
)


def build(n: int) -> list[dict]:
    state, entries = ChainState(), []
    for i in range(n):
        entry, state = seal_entry({"action": "copy", "key": f"k{i}", "size": i, "sha256": "ab" * 32,
                                   "deleted": False, "version_id": None}, state)
        entries.append(entry)
    return entries


def test_canonical_json_is_stable_and_refuses_floats() -> None:
    assert canonical_json({"b": 1, "a": "é", "c": None}) == '{"a":"é","b":1,"c":null}'.encode()
    with pytest.raises(TypeError, match="float"):
        canonical_json({"size": 1.5})


def test_a_sealed_chain_verifies_and_resumes() -> None:
    entries = build(6)
    assert entries[0]["seq"] == 1 and entries[0]["prev_hash"] == GENESIS_HASH
    assert all(e["entry_hash"] == entry_hash(e) for e in entries)
    middle = verify_chain(entries[:3])
    assert verify_chain(entries[3:], middle) == verify_chain(entries)  # incremental == full


@pytest.mark.parametrize(
    ("tamper", "seq", "reason"),
    [
        (lambda es: es[2].__setitem__("size", 99), 3, "entry altered"),
        (lambda es: es.pop(3), 5, "gap or reordering"),
        (lambda es: es.insert(2, es.pop(4)), 5, "gap or reordering"),
        (lambda es: es[4].__setitem__("prev_hash", "f" * 64), 5, "prev_hash"),
        (lambda es: es[1].__setitem__("entry_hash", "0" * 64), 2, "entry altered"),
    ],
)
def test_the_first_broken_link_is_named(tamper, seq: int, reason: str) -> None:
    entries = copy.deepcopy(build(6))
    tamper(entries)
    with pytest.raises(ChainError, match=reason) as info:
        verify_chain(entries)
    assert info.value.seq == seq
