"""The diff benchmark (benchmarks/diff_bench.py) runs end to end on small numbers.

It starts its own stack; 20,000 synthesized keys take ~15 s here. The timings mean nothing at this size:
what is checked is that every phase ran, measured something, and passed its own checks (the diff touching
exactly the rows it must).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "benchmarks" / "diff_bench.py"
DIFF_KEYS = 20_000


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_small_run_measures_the_diff(tmp_path: Path) -> None:
    command = [sys.executable, str(HARNESS), "--diff-keys", str(DIFF_KEYS), "--out", str(tmp_path)]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=170, check=False)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    diff = json.loads((tmp_path / "diff_bench.json").read_text())["diff"]
    assert all(diff["checks"].values()), diff["checks"]
    assert diff["a_first_registration"]["new"] == DIFF_KEYS
    assert diff["b_steady_state"]["new"] == diff["b_steady_state"]["changed"] == 0
    assert diff["c_changed_etags"]["changed"] == diff["changed_keys"] > 0
    assert all(diff[phase]["keys_per_s"] > 0 for phase in ("a_first_registration", "b_steady_state", "c_changed_etags"))
    table = (tmp_path / "diff_bench.md").read_text()
    assert "b: steady state" in table and "Checks: all passed" in table
