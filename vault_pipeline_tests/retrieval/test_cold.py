"""The cold-site calls of retrieval/cold.py that need no server: reading the x-amz-restore header. The calls
themselves are exercised against both cold flavours by the restore command's and the drill's tests."""

from __future__ import annotations

import datetime as dt

from vault_pipeline.retrieval.cold import RestoreHeader


def test_restore_header_parsing() -> None:
    done = RestoreHeader.parse('ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"')
    assert done is not None and not done.ongoing
    assert done.expiry == dt.datetime(2012, 12, 21, tzinfo=dt.UTC)
    assert RestoreHeader.parse('ongoing-request="true"').ongoing  # type: ignore[union-attr]
    assert RestoreHeader.parse(None) is None and RestoreHeader.parse("garbage") is None
