"""The tracking-database part of the scale benchmark (benchmarks/scalebench/database.py) on 20k documents:
it loads, measures, and the hot paths are index-only scans of the indexes migration 015 made for them."""

from __future__ import annotations

from typing import Any

from benchmarks.scalebench.database import run_database_bench


def test_database_bench_on_20k_documents(tracking_dsn: str) -> None:
    out: dict[str, Any] = {}
    result = run_database_bench(tracking_dsn, 20_000, out=out, side_rows=5_000, registration_pages=3,
                                claim_rounds=8)
    assert result is out

    assert result["documents"]["replicated"] + result["documents"]["pending"] == 20_000
    assert 0.03 < result["documents"]["pending"] / 20_000 < 0.07
    assert result["documents"]["with_audit_and_journal"] == 5_000
    for table in ("replication_status", "audit_logs", "journal_entries"):
        sizes = result["sizes"][table]
        assert sizes["heap_bytes"] > 0 and sizes["indexes_bytes"] > 0, table
        assert sizes["bytes_per_document"] > 100, table
        assert result["copy"][table]["rows_per_s"] > 0, table
    assert result["sizes"]["bytes_per_document_all_tables"] > result["sizes"]["replication_status"][
        "bytes_per_document"]

    plans = result["plans"]
    for name in ("registration_diff_known_page", "days_needing_runs", "pending_count", "status_counts_one_day"):
        assert plans[name]["index_only"], (name, plans[name])
        assert not plans[name]["table_scan"], (name, plans[name])
    assert plans["days_needing_runs"]["scans"] == ["Index Only Scan replication_status_work"]
    assert plans["status_counts_one_day"]["scans"] == ["Index Only Scan replication_status_day"]
    # a claim locks and updates rows, so it reads the table, but it finds them through the work index
    assert "Index Scan replication_status_work" in plans["claim"]["scans"]
    assert not any(scan.startswith("Seq Scan") for plan in plans.values() for scan in plan["scans"])

    registration = result["registration"]
    assert registration["new_keys"]["became_pending"] == registration["new_keys"]["keys"] == 3_000
    assert registration["known_keys"]["keys"] > 0 and registration["known_keys"]["became_pending"] == 0
    assert result["claims"]["rows_claimed"] > 0
    assert result["claims"]["rows_recorded"] + result["claims"]["rows_released"] == result["claims"]["rows_claimed"]
    assert result["audit_reads"]["run_evidence"]["rows"] > 0
