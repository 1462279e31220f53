"""The sensor benchmark (benchmarks/sensor_bench.py) runs end to end on small numbers.

It starts its own stack; 2,000 objects and 20,000 synthesized keys take ~25 s here. The timings mean
nothing at this size: what is checked is that every phase ran, measured something, and passed its own
checks (rows registered, run requests, the diff touching exactly the rows it must).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "benchmarks" / "sensor_bench.py"
OBJECTS = 2000
DIFF_KEYS = 20_000


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_small_run_measures_the_sensor_and_the_diff(tmp_path: Path) -> None:
    command = [sys.executable, str(HARNESS), "--objects", str(OBJECTS), "--diff-keys", str(DIFF_KEYS),
               "--out", str(tmp_path)]
    finished = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=170, check=False)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    result = json.loads((tmp_path / "sensor_bench.json").read_text())

    sensor = result["sensor"]
    assert all(sensor["checks"].values()), sensor["checks"]
    assert sensor["settings"] == {"tick_budget_s": 20.0, "page_size": 1000, "interval_s": 30}  # the defaults
    first, second = sensor["first_sweep"], sensor["second_sweep"]
    assert first["new"] == first["objects_listed"] == OBJECTS and first["pages"] >= OBJECTS // 1000
    assert second["new"] == second["changed"] == 0 and second["objects_listed"] == OBJECTS
    assert sensor["max_tick_s"] > 0 and sum(sensor["rows_by_day"].values()) == OBJECTS
    assert sum(first["run_requests_last_tick"].values()) == OBJECTS
    assert len(sensor["ticks"]["first_sweep"]) == first["ticks"] >= 1

    diff = result["diff"]
    assert all(diff["checks"].values()), diff["checks"]
    assert diff["a_first_registration"]["new"] == DIFF_KEYS
    assert diff["b_steady_state"]["new"] == diff["b_steady_state"]["changed"] == 0
    assert diff["c_changed_etags"]["changed"] == diff["changed_keys"] > 0
    assert all(diff[phase]["keys_per_s"] > 0 for phase in ("a_first_registration", "b_steady_state", "c_changed_etags"))

    table = (tmp_path / "sensor_bench.md").read_text()
    assert "Sensor scale" in table and "b: steady state" in table and "Checks: all passed" in table
