"""The full-versus-incremental benchmark (benchmarks/db_backup_bench.py) runs end to end on small numbers.

It starts its own PostgreSQL and SeaweedFS; 2,000 documents take ~10 s here. The timings mean nothing at this
size: what is checked is that every phase ran on real pg_dump / pg_restore and a real cold site, measured
something, and passed its own checks (the synthetic rows are the production code's, row counts restored equal
the dump's, the catch-up applied every entry and left the journal consistent).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "benchmarks" / "db_backup_bench.py"
ROWS = 2_000
CATCH_UP = 700


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_small_run_measures_backup_restore_and_catch_up(tmp_path: Path) -> None:
    command = [sys.executable, str(HARNESS), "--rows", str(ROWS), "--catch-up-entries", str(CATCH_UP),
               "--segment", "300", "--jobs", "1,2", "--out", str(tmp_path)]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=170, check=False)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    result = json.loads((tmp_path / "db_backup.json").read_text())

    build = result["build"]
    assert all(build["checks"].values()), build["checks"]
    full = result["full"]
    # one row per document in each of the three tables, plus journal_state and the migrations' own tables
    assert full["row_counts"]["vault_secure.replication_status"] == ROWS
    assert full["row_counts"]["vault_secure.audit_logs"] == full["row_counts"]["vault_secure.journal_entries"] == ROWS
    assert [h["next_seq"] for h in full["journal_head"]] == [ROWS + 1]
    assert full["dump_bytes"] > 0 and full["upload_s"] > 0 and full["fetch_s"] > 0

    assert [r["jobs"] for r in result["restores"]] == [1, 2]
    for restore in result["restores"]:
        assert restore["checks"] == {"row_counts_equal_the_dumps": True}
        assert list(restore["sections"]) == ["pre-data", "data", "post-data"]
        data, post = restore["sections"]["data"], restore["sections"]["post-data"]
        assert data["by_kind"]["TABLE DATA"]["items"] >= 3  # at least the three filled tables
        assert post["by_kind"]["INDEX"]["items"] > 0 and post["by_kind"]["CONSTRAINT"]["items"] > 0
    assert result["restores"][1]["sections"]["data"]["jobs"] == 2

    catch_up = result["catch_up"]
    assert all(catch_up["checks"].values()), catch_up["checks"]
    assert catch_up["entries"] == CATCH_UP and catch_up["segments"] == 3 and catch_up["entries_per_s"] > 0

    table = (tmp_path / "db_backup.md").read_text()
    assert "restore -j 2 total" in table and "catch-up: 700 entries" in table and "Checks: all passed" in table
