"""The PostgreSQL tracking database as a Dagster resource (schema migrated on first use)."""

from __future__ import annotations

import threading

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from vault_pipeline.replication.tracking import TrackingStore

_stores: dict[str, TrackingStore] = {}
_stores_lock = threading.Lock()


def shared_store(dsn: str) -> TrackingStore:
    """One pool per DSN per process: sensors tick every few seconds and must not reconnect each time."""
    with _stores_lock:
        store = _stores.get(dsn)
        if store is None:
            store = TrackingStore(dsn)
            store.migrate()
            _stores[dsn] = store
        return store


def close_shared_store(dsn: str) -> None:
    """Close and forget the pool of `dsn` (tests dropping their database; CLI commands at exit)."""
    with _stores_lock:
        store = _stores.pop(dsn, None)
    if store is not None:
        store.close()


class TrackingDatabaseResource(ConfigurableResource):
    """DSN of the tracking database (vault_secure schema). Pass it as EnvVar: it may hold a password."""

    dsn: str

    _store: TrackingStore | None = PrivateAttr(default=None)

    def store(self) -> TrackingStore:
        if self._store is None:
            self._store = shared_store(self.dsn)
        return self._store
