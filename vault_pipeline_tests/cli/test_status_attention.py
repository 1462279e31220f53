"""`vault-pipeline status`'s attention lines read from a real tracking database: an object waiting for
hours, and a tracking-database backup that is too old."""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg.types.json import Jsonb

from vault_pipeline.cli.status_report import collect_status
from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline.replication.tracking import TrackingStore


def attention(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return collect_status(conn, None, source_bucket="hot", period_days=30, sensor_interval_seconds=5).attention


def test_an_object_waiting_for_hours_and_an_old_backup_need_attention(tracking_dsn: str) -> None:
    with TrackingStore(tracking_dsn) as store:
        store.migrate()
        assert not any("waited" in line or "backup" in line for line in attention(tracking_dsn))
        uploaded = dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)
        store.register([ListedObject("late/doc.pdf", "e", 10, uploaded)], source_bucket="hot",
                       destination_bucket="cold")
    assert "oldest waiting object 'late/doc.pdf' has waited 5.0 h" in attention(tracking_dsn)
    with psycopg.connect(tracking_dsn, autocommit=True) as conn:  # a backup's manifest entry, 3 days old
        conn.execute("INSERT INTO vault_secure.journal_entries (site, action, object_key, fields, created_at)"
                     " VALUES ('cold', 'backup', 'backups/x/manifest.json', %s, now() - interval '3 days')",
                     (Jsonb({"backup_id": "20261129T014500Z-abc", "database": "manifest", "journal_next_seq": 1}),))
    assert any("20261129T014500Z-abc) is more than 2 days old" in line for line in attention(tracking_dsn))
