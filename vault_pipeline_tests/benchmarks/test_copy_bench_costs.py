"""The copy benchmark's cost measurement without a stack: the whole-tree CPU of a contender (orphans
included), the S3 request counters of SeaweedFS's metrics text and the per-object cost table."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

from copybench import report  # noqa: E402
from copybench.measure import run_measured  # noqa: E402
from copybench.s3metrics import parse_request_counts, request_delta  # noqa: E402

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def test_the_cpu_of_a_descendant_that_outlives_its_parent_counts(tmp_path: Path) -> None:
    # The middle process starts a grandchild that burns 0.6 s of CPU and exits at once without waiting for
    # it: the grandchild is re-parented to init and its CPU never reaches the root's rusage.
    middle = (f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {BURN.format(seconds=0.6)!r}]); "
              "sys.exit(0)")
    root = f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {middle!r}]); time.sleep(2.0)"
    measured = run_measured([sys.executable, "-c", root], env={"PATH": "/usr/bin:/bin"},
                            log_path=tmp_path / "log", timeout_s=60)
    assert measured.returncode == 0, (tmp_path / "log").read_text()
    assert measured.orphan_cpu_s >= 0.5
    assert measured.tree_cpu_s >= measured.cpu_s + 0.5


def test_a_waited_child_is_counted_once(tmp_path: Path) -> None:
    root = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN.format(seconds=0.6)!r}])"
    measured = run_measured([sys.executable, "-c", root], env={"PATH": "/usr/bin:/bin"},
                            log_path=tmp_path / "log", timeout_s=60)
    assert measured.returncode == 0
    assert measured.cpu_s >= 0.6  # the child's CPU, from the root's rusage
    assert measured.orphan_cpu_s == 0.0
    assert measured.descendants_seen >= 1


METRICS = """# HELP SeaweedFS_s3_request_total Counter of s3 requests.
SeaweedFS_s3_request_total{bucket="",code="200",type="LIST"} 1
SeaweedFS_s3_request_total{bucket="cold",code="200",type="GET"} 6
SeaweedFS_s3_request_total{bucket="cold",code="404",type="GET"} 2
SeaweedFS_s3_request_total{bucket="cold",code="200",type="PUT"} 4
SeaweedFS_s3_request_seconds_count{bucket="cold",type="PUT"} 4
"""


def test_request_counters_by_type_and_their_difference() -> None:
    before = parse_request_counts(METRICS)
    assert before == {"LIST": 1, "GET": 8, "PUT": 4, "errors": 2}
    after = parse_request_counts(METRICS.replace("type=\"PUT\"} 4", "type=\"PUT\"} 24", 1))
    assert request_delta({"cold_s3": before, "hot_s3": None}, {"cold_s3": after, "hot_s3": {}}) == {
        "cold_s3": {"PUT": 20}, "hot_s3": None}


def test_per_object_costs_and_tables() -> None:
    def run(contender: str, cpu: float, objects: int = 10) -> dict[str, object]:
        return {"contender": contender, "run": 1, "complete": True, "objects": objects, "bytes": objects * 65536,
                "objects_per_s": objects / 2, "mib_per_s": 1.0, "wall_s": 2.0, "peak_rss_mib": 100.0, "cpu_s": cpu,
                "cpu_s_per_gib": 1.0, "tree_cpu_s": cpu, "cpu_ms_per_object": 1000 * cpu / objects,
                "window_cpu_ms_per_object": 1000 * cpu / objects, "work_cpu_ms_per_object": 1000 * cpu / objects,
                "check": {},
                "extra": {"hot_s3_cpu_s": 0.01, "cold_s3_cpu_s": 0.04, "postgres_cpu_s": 0.0, "process_cpu_s": 9.0,
                          "s3_requests": {"hot_s3": {"GET": 10, "LIST": 1},
                                          "cold_s3": {"PUT": 10, "GET": 10, "errors": 10}}}}

    runs = [run("vault-pipeline", 0.2), run("rclone", 0.1)]
    summary = report.summarize(runs)
    assert summary["rclone"]["servers_cpu_s"] == 0.05  # process_cpu_s is the contender's, not a server's
    assert summary["vault-pipeline"]["cpu_per_object_vs_rclone"] == 2.0
    costs = summary["vault-pipeline"]["per_object"]
    assert costs["cold_s3_cpu_ms"] == 4.0 and costs["cold_s3_requests"] == 2.0 and costs["cold_s3_errors"] == 1.0
    assert costs["hot_s3_requests_GET"] == 1.0 and costs["cold_s3_ms_per_request"] == 2.0
    table = "\n".join(report.workload_table("W1", {"description": "test", "objects": 10, "bytes": 655360,
                                                   "runs": runs, "summary": summary}))
    assert "| vault-pipeline | 20.00 | 1.00 | 4.00 | 0.00 | 25.00 | 1.10 (GET 1.00, LIST 0.10) " \
           "| 2.00 (GET 1.00, PUT 1.00; 1.00 non-2xx) | 0.91 | 2.00 |" in table
    assert "| CPU ms/object |" in table and "| CPU/object vs rclone |" in table
