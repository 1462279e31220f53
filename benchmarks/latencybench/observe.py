"""Watching the tracking database for verified copies, and reading their timestamps afterwards.

A poller thread asks PostgreSQL every 0.2 s which of the awaited keys have a row `replicated` with
`verified_at` set, and notes when it first saw each (Unix time). The latencies themselves come from the
row's own timestamps (set by PostgreSQL's `now()` in the transaction that recorded the verified copy,
on the same machine's clock as the uploader's `time.time()`); the poll is the cross-check and tells
the harness when everything is done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row

POLL_INTERVAL_S = 0.2

_VERIFIED = """
SELECT s3_key FROM vault_secure.replication_status
WHERE s3_key = ANY(%s) AND status = 'replicated' AND verified_at IS NOT NULL
"""

_ROWS = """
SELECT r.s3_key, r.status, r.ovh_size, r.document_type, r.retry_count, r.replication_count,
       extract(epoch FROM r.created_at)::float8 AS registered_at,
       extract(epoch FROM r.last_attempt_at)::float8 AS claimed_at,
       extract(epoch FROM r.replicated_at)::float8 AS replicated_at,
       extract(epoch FROM r.verified_at)::float8 AS verified_at,
       (SELECT a.run_id FROM vault_secure.audit_logs a
        WHERE a.event_type = 'REPLICATION_SUCCESS' AND a.object_key = r.s3_key
          AND a.source_bucket = r.bucket_source
        ORDER BY a.created_at LIMIT 1) AS run_id
FROM vault_secure.replication_status r
WHERE r.s3_key = ANY(%s)
"""


class VerifiedPoller:
    """Polls for verified rows of the keys it was told to await."""

    def __init__(self, dsn: str, interval_s: float = POLL_INTERVAL_S) -> None:
        self.dsn, self.interval_s = dsn, interval_s
        self.seen: dict[str, float] = {}  # key -> Unix time of the poll that first saw it verified
        self.errors = 0
        self._awaited: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="verified-poller", daemon=True)

    def start(self) -> VerifiedPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def expect(self, key: str) -> None:
        with self._lock:
            if key not in self.seen:
                self._awaited.add(key)

    def verified(self, keys: Iterable[str]) -> bool:
        with self._lock:
            return all(key in self.seen for key in keys)

    def wait(self, keys: Iterable[str], timeout_s: float) -> bool:
        wanted = list(keys)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.verified(wanted):
                return True
            time.sleep(0.1)
        return self.verified(wanted)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.wait(self.interval_s):
            with self._lock:
                awaited = sorted(self._awaited)
            if not awaited:
                continue
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True)
                found = [row[0] for row in conn.execute(_VERIFIED, (awaited,)).fetchall()]
            except psycopg.Error:
                self.errors += 1  # the next poll reconnects; a few missed polls only blur the cross-check
                conn = None
                continue
            now = time.time()
            with self._lock:
                for key in found:
                    self.seen.setdefault(key, now)
                    self._awaited.discard(key)
        if conn is not None:
            conn.close()


def read_rows(dsn: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Each key's row: status, timestamps (Unix seconds) and the id of the run that copied it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(_ROWS, (keys,)).fetchall()
    return {row["s3_key"]: dict(row) for row in rows}
