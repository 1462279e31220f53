"""Harness of the cluster tests: one `vault-pipeline dev --workers 2` (the stack, Redis, `dagster dev` with
VaultCeleryRunLauncher, two Celery workers, all on free ports) for the module.

Redis is Debian's redis-server, installed by .ci/ensure-redis when missing. Without it the tests skip and say
why; under CI=true they fail instead (CI must run them; .ci/ensure-redis fails too).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from vault_pipeline.dagster_api import DagsterApi
from vault_pipeline.devstack.devserver import DevServer
from vault_pipeline.devstack.process import DevStackError
from vault_pipeline.devstack.redis import RedisServer, redis_server_binary
from vault_pipeline.devstack.site import s3_client
from vault_pipeline.partitions import partition_key_for

SENSOR = "hot_bucket_sensor"
JOB = "replication_job"
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
PIPELINE_VARIABLES = ("VAULT_", "OVH_S3_", "AWS_S3_", "REPLICATION_CONCURRENCY", "DELETE_FROM_OVH_AFTER_REPLICATION",
                      "DAGSTER_HOME")
# Short leases and a quick re-request after a failed run: a killed worker's rows come back within seconds.
CLUSTER_ENV = {"VAULT_LEASE_SECONDS": "10", "VAULT_SENSOR_INTERVAL_SECONDS": "4",
               "VAULT_RUN_RETRY_BASE_SECONDS": "5", "VAULT_RUN_RETRY_MAX_SECONDS": "20"}


def require_redis() -> None:
    try:
        redis_server_binary()
    except DevStackError as exc:
        if IN_CI:
            pytest.fail(f"CI=true and the cluster tests cannot run: {exc}", pytrace=False)
        pytest.skip(str(exc))


@dataclass
class Cluster:
    server: DevServer
    api: DagsterApi
    hot: Any
    cold: Any
    info: dict[str, Any]
    extra_redis: list[RedisServer] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    @property
    def hot_bucket(self) -> str:
        return self.env["OVH_S3_BUCKET_DOCUMENTS"]

    @property
    def cold_bucket(self) -> str:
        return self.env["AWS_S3_BUCKET_DOCUMENTS_COLD"]

    def upload(self, keys: dict[str, int], document_type: str = "invoice") -> str:
        """Upload each key with that many bytes; the day's partition key."""
        days = set()
        for key, size in keys.items():
            body = (key.encode() * (size // max(1, len(key)) + 1))[:size]
            self.hot.put_object(Bucket=self.hot_bucket, Key=key, Body=body, Metadata={"document-type": document_type})
            modified = self.hot.head_object(Bucket=self.hot_bucket, Key=key)["LastModified"]
            days.add(partition_key_for(modified.astimezone(dt.UTC).date()))
        assert len(days) == 1, f"uploads straddle UTC midnight ({sorted(days)}): run the test again"
        return days.pop()

    def rows(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        with psycopg.connect(self.env["VAULT_DATABASE_URL"], autocommit=True) as conn:
            cur = conn.execute("SELECT s3_key, status, cold_upload_id, lease_owner, error_message, aws_version_id"
                               " FROM vault_secure.replication_status WHERE s3_key = ANY(%s)", (keys,))
            names = [c.name for c in cur.description]
            return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}

    def wait_until(self, what: str, condition: Callable[[], Any], timeout_s: float = 180.0,
                   every: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
            time.sleep(every)

    def wait_replicated(self, keys: list[str], timeout_s: float = 240.0) -> None:
        def done() -> bool:
            rows = self.rows(keys)
            return len(rows) == len(keys) and all(r["status"] == "replicated" for r in rows.values())

        try:
            self.wait_until(f"{len(keys)} object(s) replicated", done, timeout_s)
        except AssertionError:
            states = {k: (r["status"], r["error_message"]) for k, r in self.rows(keys).items()
                      if r["status"] != "replicated"}
            raise AssertionError(f"not replicated within {timeout_s:.0f} s: {states}") from None

    def cold_versions(self, key: str) -> list[str]:
        found = self.cold.list_object_versions(Bucket=self.cold_bucket, Prefix=key)
        return [v["VersionId"] for v in found.get("Versions", []) if v["Key"] == key]

    def open_uploads(self) -> list[str]:
        return [u["Key"] for u in self.cold.list_multipart_uploads(Bucket=self.cold_bucket).get("Uploads", [])]

    def runs(self) -> list[dict[str, Any]]:
        return self.api.runs(JOB, limit=200)

    def worker_pid(self, name: str) -> int:
        return next(int(w["pid"]) for w in self.info["workers"] if w["name"] == name)

    def kill_worker_tree(self, name: str) -> None:
        """SIGKILL the worker's whole process group: Celery's main process, its pool and the run inside."""
        os.killpg(self.worker_pid(name), signal.SIGKILL)

    def stop_redis(self) -> None:
        process = psutil.Process(int(self.info["redis"]["pid"]))
        process.terminate()
        process.wait(15)

    def start_redis_again(self) -> RedisServer:
        """Redis back on the same port with the same data (its append-only file), as an operator would."""
        redis = RedisServer(Path(self.info["redis"]["dir"]), int(self.info["redis"]["port"])).start()
        self.extra_redis.append(redis)
        self.info["redis"]["pid"] = redis.pid
        return redis


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_redis()
    root = tmp_path_factory.mktemp("cluster")
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith(PIPELINE_VARIABLES)]:
            env.delenv(name)
        server = DevServer(root / "stack", root / "dev.log", CLUSTER_ENV, workers=2)
        state = None
        try:
            server.start()
            info = server.wait_for_cluster()
            api = DagsterApi(server.ui_url)
            server.wait_for_sensor(api, SENSOR)
            e = server.env
            state = Cluster(
                server=server, api=api, info=info,
                hot=s3_client(e["OVH_S3_ENDPOINT"], e["OVH_S3_ACCESS_KEY_ID"], e["OVH_S3_SECRET_ACCESS_KEY"]),
                cold=s3_client(e["AWS_S3_ENDPOINT"], e["AWS_S3_ACCESS_KEY_ID"], e["AWS_S3_SECRET_ACCESS_KEY"]))
            yield state
        finally:
            worker_pids = [int(w["pid"]) for w in (state.info["workers"] if state else [])]
            graceful = server.stop()
            for redis in state.extra_redis if state else []:
                redis.stop()
            print(f"cluster log: {root / 'dev.log'}; worker logs under {root / 'stack' / 'workers'}")
            alive = [pid for pid in worker_pids if psutil.pid_exists(pid)
                     and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
            assert graceful, "the dev cluster did not stop within its timeout"
            assert not alive, f"Celery workers still running after the stop: {alive}"
