"""Soak under faults (issue 12, item 7): `dagster dev` with the sensor, ~5,000 objects, 5 % of requests faulted.

    .venv/bin/python benchmarks/soak_bench.py [--minutes 10] [--objects 5000] [--fault-rate 0.05]
                                              [--large-every 50] [--drain-minutes 30] [--seed 12] [--keep]
                                              [--out benchmarks/results]

Starts the embedded stack (PostgreSQL, two SeaweedFS sites: vault_pipeline/devstack) on free loopback ports,
a fault-injecting proxy (vault_pipeline_tests/faults/proxy.py) in front of each S3 site, and `dagster dev`
with the repository's dagster.yaml and workspace.yaml whose pipeline talks to the sites only through the
proxies; the sensor runs at its default interval. For --minutes it uploads --objects documents to the hot
site at an even pace (1 KiB-256 KiB, one in --large-every of 6-9 MiB: multipart with the 5 MiB threshold set
here), while the proxies fault about --fault-rate of the pipeline's requests on both sites: 500
InternalError, 503 SlowDown, connection reset while a PUT body is sent, reset mid-response, response body
truncated, response stalled 3 s (under the product's fixed 120 s read timeout, which the settings do not
expose: a stall past it would hold a worker 2 minutes per fault). Then the faults go off and the backlog
drains: the sensor's runs, plus `vault-pipeline retry-failed` whenever failed rows are left and nothing
moves. Finally the invariants of the fault suite (vault_pipeline_tests/faults/invariants.py): every object
replicated once (one cold version, the row's), no open multipart upload, no row in progress, `journal
verify` clean with the stack's seal key. Writes soak.json and soak.md to --out and prints the table.
Exit status 0 when every invariant holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # copybench
sys.path.insert(0, str(REPO))  # vault_pipeline_tests (the proxy and the invariants are shared with the suite)

from copybench import report  # noqa: E402
from copybench.report import code_version, cpu_model  # noqa: E402

from vault_pipeline.dagster_api import DagsterApi, DagsterApiError  # noqa: E402
from vault_pipeline.devstack.devserver import free_ports  # noqa: E402
from vault_pipeline.devstack.ports import LOOPBACK  # noqa: E402
from vault_pipeline.devstack.process import DevStackError, start_process, stop_process, tail  # noqa: E402
from vault_pipeline.devstack.runner import prepare_dagster_home  # noqa: E402
from vault_pipeline.devstack.stack import DevStack  # noqa: E402
from vault_pipeline_tests.faults import invariants  # noqa: E402
from vault_pipeline_tests.faults.proxy import FaultProxy, Rule  # noqa: E402

DEFAULT_OUT = HERE / "results"
SENSOR, JOB = "hot_bucket_sensor", "replication_job"
MiB = 1024 * 1024
PIPELINE_VARIABLES = ("VAULT_", "OVH_S3_", "AWS_S3_", "REPLICATION_CONCURRENCY", "DELETE_FROM_OVH_AFTER_REPLICATION",
                      "DAGSTER_HOME")
# Share of the faulted requests per kind (sums to 1); reset_request only on requests with a body.
FAULT_MIX = {"error500": 0.2, "slowdown": 0.3, "reset_request": 0.1, "reset_response": 0.2, "truncate": 0.1,
             "stall": 0.1}
STALL_S = 3.0
# Multipart above 5 MiB (the tests' threshold), so a soak of small machines still sends parts.
SOAK_ENV = {"VAULT_MULTIPART_THRESHOLD_MB": "5", "VAULT_PART_SIZE_MB": "5"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="faulted upload phase (default 10)")
    parser.add_argument("--objects", type=int, default=5000, help="documents uploaded over it (default 5000)")
    parser.add_argument("--fault-rate", type=float, default=0.05, help="share of requests faulted (default 0.05)")
    parser.add_argument("--large-every", type=int, default=50, help="one multipart object in N (default 50)")
    parser.add_argument("--drain-minutes", type=float, default=30.0, help="limit of the fault-free drain")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (stack data, dagster.log)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.objects < 1 or not 0 <= args.fault_rate < 1 or args.large_every < 1:
        parser.error("--minutes > 0, --objects >= 1, 0 <= --fault-rate < 1, --large-every >= 1")
    return args


def log(message: str) -> None:
    print(f"[soak_bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def fault_rules(rate: float) -> list[Rule]:
    """One rule per kind; each sees only what the earlier ones left, so its probability is raised to keep
    every kind at its share of `rate` overall."""
    rules, left = [], 1.0
    for kind, share in FAULT_MIX.items():
        probability = min(1.0, rate * share / left)
        methods = {"PUT", "POST"} if kind == "reset_request" else None
        rules.append(Rule(kind, methods=methods, probability=probability, stall_seconds=STALL_S))
        left *= 1 - probability
    return rules


def sql(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return conn.execute(query, params).fetchall()


def statuses(dsn: str) -> dict[str, int]:
    try:
        return dict(sql(dsn, "SELECT status, count(*) FROM vault_secure.replication_status GROUP BY 1"))
    except psycopg.Error:
        return {}


class Uploader:
    """Puts the documents at an even pace over the faulted phase, straight to the hot site (no proxy)."""

    def __init__(self, hot: Any, bucket: str, objects: int, seconds: float, large_every: int, seed: int) -> None:
        self.hot, self.bucket, self.objects, self.seconds = hot, bucket, objects, seconds
        self.large_every, self.rng = large_every, random.Random(seed)
        self.keys: list[str] = []
        self.bytes = 0
        self.large = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def _put(self, index: int, size: int) -> None:
        key = f"soak/{index // 1000:02d}/doc-{index:05d}.{'bin' if size > 5 * MiB else 'pdf'}"
        doc_type = "contract" if size > 5 * MiB else ("payslip", "invoice", "contract")[index % 3]
        for attempt in range(5):
            try:
                self.hot.put_object(Bucket=self.bucket, Key=key, Body=os.urandom(size),
                                    Metadata={"document-type": doc_type})
                break
            except Exception as exc:  # the hot site itself is never faulted; a busy machine may time out
                if attempt == 4:
                    self.errors.append(f"{key}: {exc}")
                    return
                time.sleep(1)
        with self._lock:
            self.keys.append(key)
            self.bytes += size
            self.large += size > 5 * MiB

    def run(self) -> None:
        start = time.monotonic()
        gap = self.seconds / self.objects
        with ThreadPoolExecutor(max_workers=4) as pool:
            for index in range(self.objects):
                size = (self.rng.randint(6 * MiB, 9 * MiB) if index % self.large_every == self.large_every - 1
                        else self.rng.randint(1024, 256 * 1024))
                delay = start + index * gap - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self._put, index, size)
                if (index + 1) % 500 == 0:
                    log(f"{index + 1}/{self.objects} uploads submitted")


def start_dagster(stack: DevStack, env: dict[str, str], ui_port: int, log_path: Path) -> subprocess.Popen[bytes]:
    full = {**env, "DAGSTER_HOME": str(prepare_dagster_home(stack.root, REPO / "dagster.yaml"))}
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-h", LOOPBACK,
               "-p", str(ui_port)]
    return start_process(command, log_path=log_path, env=full, cwd=REPO)


def wait_for_sensor(api: DagsterApi, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DevStackError(f"dagster dev exited ({process.returncode}):\n{tail(log_path)}")
        try:
            state = api.sensor(SENSOR, tick_limit=5)
            if state["status"] == "RUNNING" and any(t["endTimestamp"] for t in state["ticks"]):
                return float(state["minIntervalSeconds"])
            last = f"sensor {state['status']}"
        except DagsterApiError as exc:
            last = str(exc)
        time.sleep(1)
    raise DevStackError(f"dagster dev not ready within {timeout:.0f} s ({last}):\n{tail(log_path)}")


def retry_failed(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "vault_pipeline.cli", "retry-failed"], env={**os.environ, **env},
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    return f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[-300:]}"


def drain(dsn: str, keys: list[str], bucket: str, env: dict[str, str], limit_s: float) -> dict[str, Any]:
    """Until every uploaded key is replicated (or the limit). Failed rows left while nothing moves for two
    sensor intervals are handed to `vault-pipeline retry-failed`."""
    started = time.monotonic()
    deadline = started + limit_s
    last_progress, last_count, retries = time.monotonic(), -1, []
    while time.monotonic() < deadline:
        rows = {r["s3_key"]: r["status"] for r in invariants.rows(dsn, bucket)}
        done = sum(rows.get(k) == "replicated" for k in keys)
        if done == len(keys):
            break
        if done != last_count:
            last_count, last_progress = done, time.monotonic()
            log(f"drain: {done}/{len(keys)} replicated, {statuses(dsn)}")
        failed = sum(rows.get(k) == "failed" for k in keys)
        if failed and time.monotonic() - last_progress > 90:
            log(f"drain: {failed} failed row(s) and no progress for 90 s: vault-pipeline retry-failed")
            retries.append(retry_failed(env))
            log(f"retry-failed {retries[-1]}")
            last_progress = time.monotonic()
        time.sleep(5)
    rows = {r["s3_key"]: r["status"] for r in invariants.rows(dsn, bucket)}
    return {"seconds": round(time.monotonic() - started, 1), "retry_failed_calls": retries,
            "complete": all(rows.get(k) == "replicated" for k in keys)}


def run_summary(api: DagsterApi) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        for run in api.runs(JOB, limit=100000):
            counts[run["status"]] = counts.get(run["status"], 0) + 1
    except DagsterApiError as exc:
        counts["error"] = str(exc)  # type: ignore[assignment]
    return counts


def markdown(result: dict[str, Any]) -> str:
    faults = result.get("faults", {})
    lines = [f"## Soak under faults ({result['date']})", "",
             f"{result['settings']['objects']} objects over {result['settings']['minutes']} min, fault rate "
             f"{result['settings']['fault_rate']:.0%}, sensor every {result.get('sensor_interval_s', '?')} s; "
             f"{result['machine']['cores']} cores, load {result['machine'].get('load_average_at_start')} at start "
             f"(shared with other work).", "",
             "| fault kind | hot site | cold site |", "|---|---:|---:|"]
    kinds = sorted(set(faults.get("hot", {})) | set(faults.get("cold", {})))
    for kind in kinds:
        lines.append(f"| {kind} | {faults['hot'].get(kind, 0)} | {faults['cold'].get(kind, 0)} |")
    lines.append(f"| **total / requests** | {sum(faults.get('hot', {}).values())} / {faults.get('hot_requests', 0)}"
                 f" | {sum(faults.get('cold', {}).values())} / {faults.get('cold_requests', 0)} |")
    final = result.get("final", {})
    lines += ["", "| measure | value |", "|---|---:|",
              f"| objects uploaded (multipart) | {result.get('uploaded', 0)} ({result.get('large', 0)}) |",
              f"| objects replicated | {final.get('statuses', {}).get('replicated', 0)} |",
              f"| request-level retries (the S3 clients retry each fault but a stall under the timeout) | "
              f"{sum(n for site in ('hot', 'cold') for k, n in faults.get(site, {}).items() if k != 'stall')} |",
              f"| object-level retries (sum of retry_count on the rows) | {final.get('retries', 0)} |",
              f"| REPLICATION_FAILURE audit entries | {result.get('failure_audits', 0)} |",
              f"| rows failed at the end of the faulted phase | {result.get('after_faults', {}).get('failed', 0)} |",
              f"| replication_job runs | {result.get('runs', {})} |",
              f"| drain after faults off (s) | {result.get('drain', {}).get('seconds', '?')} |",
              f"| `vault-pipeline retry-failed` calls | {len(result.get('drain', {}).get('retry_failed_calls', []))} |",
              f"| journal | {final.get('journal', '?')} |",
              f"| **invariants** | {'hold' if final.get('ok') else 'BROKEN'} ({final.get('problem_count', '?')} "
              f"problem(s)) |"]
    for problem in final.get("problems", [])[:10]:
        lines.append(f"\n- {problem}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in [n for n in os.environ if n.startswith(PIPELINE_VARIABLES)]:
        del os.environ[name]
    import platform

    root = Path(tempfile.mkdtemp(prefix="vault-soak-bench-"))
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "code": code_version(REPO),
        "machine": {"cores": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"minutes": args.minutes, "objects": args.objects, "fault_rate": args.fault_rate,
                     "large_every": args.large_every, "seed": args.seed, "fault_mix": FAULT_MIX,
                     "stall_seconds": STALL_S, "env": SOAK_ENV},
    }

    def terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGINT, signal.SIGTERM)}
    ports = free_ports()
    stack = DevStack(root / "stack", pg_port=ports["pg"], hot_port=ports["hot"], cold_port=ports["cold"],
                     dagster_url=f"http://{LOOPBACK}:{ports['ui']}")
    hot_proxy = cold_proxy = None
    dagster: subprocess.Popen[bytes] | None = None
    dagster_log = root / "dagster.log"
    ok = False
    log(f"stack data and dagster.log under {root}")
    try:
        stack.start()
        direct = stack.env()
        hot_proxy = FaultProxy(direct["OVH_S3_ENDPOINT"], "hot", seed=args.seed).start()
        cold_proxy = FaultProxy(direct["AWS_S3_ENDPOINT"], "cold", seed=args.seed + 1).start()
        env = {**direct, **SOAK_ENV, "OVH_S3_ENDPOINT": hot_proxy.url, "AWS_S3_ENDPOINT": cold_proxy.url}
        dagster = start_dagster(stack, env, ports["ui"], dagster_log)
        api = DagsterApi(f"http://{LOOPBACK}:{ports['ui']}")
        result["sensor_interval_s"] = wait_for_sensor(api, dagster, dagster_log)
        log(f"dagster dev up, sensor every {result['sensor_interval_s']:g} s; faults on "
            f"({args.fault_rate:.0%} of requests, both sites)")
        hot_proxy.add(*fault_rules(args.fault_rate))
        cold_proxy.add(*fault_rules(args.fault_rate))
        hot = stack.hot.client()
        uploader = Uploader(hot, direct["OVH_S3_BUCKET_DOCUMENTS"], args.objects, args.minutes * 60,
                            args.large_every, args.seed)
        phase_start = time.monotonic()
        uploader.run()
        while time.monotonic() - phase_start < args.minutes * 60:
            time.sleep(1)
        hot_proxy.clear()
        cold_proxy.clear()
        dsn, bucket = direct["VAULT_DATABASE_URL"], direct["OVH_S3_BUCKET_DOCUMENTS"]
        result.update(uploaded=len(uploader.keys), large=uploader.large, upload_errors=uploader.errors[:20],
                      bytes_uploaded=uploader.bytes,
                      faulted_phase_s=round(time.monotonic() - phase_start, 1))
        after = invariants.check_after_faulted_run(dsn, bucket)
        result["after_faults"] = {"statuses": after.statuses, "failed": len(after.failed),
                                  "failed_examples": dict(list(after.failed.items())[:5]),
                                  "problems": after.problems[:20]}
        result["faults"] = {"hot": dict(hot_proxy.counts()), "cold": dict(cold_proxy.counts()),
                            "hot_requests": hot_proxy.requests, "cold_requests": cold_proxy.requests}
        log(f"faults off after {result['faulted_phase_s']} s: injected hot {result['faults']['hot']} of "
            f"{hot_proxy.requests} requests, cold {result['faults']['cold']} of {cold_proxy.requests}; "
            f"rows {after.statuses}; draining")
        result["drain"] = drain(dsn, sorted(uploader.keys), bucket, env, args.drain_minutes * 60)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and statuses(dsn).get("in_progress", 0):
            time.sleep(5)
        time.sleep(2 * result["sensor_interval_s"])  # the last runs' journal flushes
        final = invariants.check_final(dsn, bucket, stack.cold.client(), direct["AWS_S3_BUCKET_DOCUMENTS_COLD"],
                                       uploader.keys, [direct["VAULT_JOURNAL_PUBLIC_KEYS"]])
        result["final"] = final.as_dict()
        result["failure_audits"] = invariants.failure_audits(dsn, bucket)
        result["runs"] = run_summary(api)
        ok = final.ok
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (DevStackError, DagsterApiError) as exc:
        log(f"failed: {exc}")
        result["error"] = str(exc)
    finally:
        log("stopping")
        stop_process(dagster, stop_signal=signal.SIGINT, timeout=30)
        for proxy in (hot_proxy, cold_proxy):
            if proxy is not None:
                proxy.stop()
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.keep or not ok:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    table = report.write_outputs(result, args.out, "soak", markdown)
    print("\n" + table, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
