"""The stable-file rule of the SFTP inbox: same size and mtime on two looks at least the settling time apart."""

from __future__ import annotations

import datetime as dt

from vault_pipeline.intake.stability import Look, judge

T0 = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)
M = dt.datetime(2026, 12, 2, 7, 59, tzinfo=dt.UTC)


def test_a_file_is_stable_only_after_two_equal_looks_far_enough_apart() -> None:
    first = judge({}, {"a.pdf": (10, M)}, now=T0, settle_seconds=30)
    assert (first.stable, first.settling) == ([], 1)
    too_soon = judge(first.looks, {"a.pdf": (10, M)}, now=T0 + dt.timedelta(seconds=10), settle_seconds=30)
    assert too_soon.stable == [] and too_soon.looks["a.pdf"].seen_at == T0  # the first look is kept
    later = judge(too_soon.looks, {"a.pdf": (10, M)}, now=T0 + dt.timedelta(seconds=31), settle_seconds=30)
    assert [(f.filename, f.size, f.mtime) for f in later.stable] == [("a.pdf", 10, M)]
    assert later.looks == {}  # handed to the transfer log, forgotten here


def test_a_growing_file_waits_and_a_vanished_one_is_forgotten() -> None:
    looks = {"growing.pdf": Look(10, M, T0), "gone.pdf": Look(5, M, T0), "empty.pdf": Look(0, M, T0)}
    now = T0 + dt.timedelta(minutes=5)
    verdict = judge(looks, {"growing.pdf": (20, M + dt.timedelta(seconds=1)), "empty.pdf": (0, M)}, now=now,
                    settle_seconds=30)
    assert [f.filename for f in verdict.stable] == ["empty.pdf"]  # a zero-byte file is a file like any other
    assert verdict.looks == {"growing.pdf": Look(20, M + dt.timedelta(seconds=1), now)}  # settling again


def test_same_size_but_a_new_mtime_is_a_change() -> None:
    verdict = judge({"a.pdf": Look(10, M, T0)}, {"a.pdf": (10, M + dt.timedelta(seconds=2))},
                    now=T0 + dt.timedelta(minutes=1), settle_seconds=30)
    assert verdict.stable == [] and verdict.settling == 1
