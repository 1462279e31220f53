"""The cluster benchmark (benchmarks/cluster_bench.py) runs end to end on a tiny scale: a cluster of two
workers, 40 objects, the sweep registering them, the sensor's shard runs copying them. The numbers mean
nothing here; what is checked is that every object was replicated by shard runs on the workers, that the
CPU of every process tree was taken, and that the outputs were written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vault_pipeline_tests.cluster.conftest import require_redis

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_smoke_two_workers_copy_a_day_in_shards(tmp_path: Path) -> None:
    require_redis()
    out = tmp_path / "out"
    finished = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "cluster_bench.py"), "--objects", "40", "--workers", "2",
         "--out", str(out), "--timeout", "240"],
        cwd=REPO, capture_output=True, text=True, timeout=400, check=False)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    result = json.loads((out / "cluster_bench.json").read_text())
    [measured] = result["results"]
    assert measured["workers"] == 2 and measured["statuses"] == {"replicated": 40}
    shards = sorted(r["shard"] for r in measured["runs"] if r["shard"])
    assert shards == ["0/2", "1/2"], measured["runs"]
    assert all(r["worker_task"] for r in measured["runs"]), "a run did not go through Celery"
    assert measured["cpu_s"]["all"] > 0 and set(measured["cpu_s"]) >= {"worker:worker1", "worker:worker2", "redis"}
    assert "| 2 |" in (out / "cluster_bench.md").read_text()
