"""Shared test harness: real servers (session-scoped, from stackfixtures) and one isolated world per test.

Each test gets its own hot bucket, cold bucket (Object Lock) and tracking database, so tests never see
each other's objects. The cold flavour is parametrised: SeaweedFS (enforces locks and checksums, serves
GET on DEEP_ARCHIVE) and the moto server (models Deep Archive: GET refused, restore works).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import DagsterInstance, Definitions, SensorResult, build_sensor_context

from vault_pipeline.definitions import build_definitions, build_resources
from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.devstack.ports import PORT_RANGE_ENV, worker_port_range
from vault_pipeline.devstack.postgres import pg_bin_dir
from vault_pipeline.intake.sweep import SweepReport, run_sweep
from vault_pipeline.journal.reader import read_entries
from vault_pipeline.journal.segments import SegmentStore
from vault_pipeline.partitions import partition_key_for
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.resources.tracking_db import close_shared_store, shared_store
from vault_pipeline.settings import load_settings

pytest_plugins = ["vault_pipeline_tests.stackfixtures", "vault_pipeline_tests.sftpservers"]
REPO = Path(__file__).resolve().parent.parent

# Each pytest-xdist worker picks its servers' ports from its own slice, so two workers never race for the
# same port between one's free-port check and its server's bind (servers started by a test inherit it).
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw") and PORT_RANGE_ENV not in os.environ:
    os.environ[PORT_RANGE_ENV] = worker_port_range(int(os.environ["PYTEST_XDIST_WORKER"][2:]),
                                                   int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))

# Fast retries and short leases so failure and crash scenarios finish in seconds.
TEST_ENV = {
    "VAULT_RETRY_BASE_SECONDS": "0.05",
    "VAULT_LEASE_SECONDS": "5",
    "VAULT_MULTIPART_THRESHOLD_MB": "5",
    "VAULT_PART_SIZE_MB": "5",
    "REPLICATION_CONCURRENCY": "8",
    "VAULT_PG_BIN_DIR": pg_bin_dir(),  # as `make run` sets it: pgserver's pg_dump / pg_restore
}


@dataclass
class Vault:
    """One test's world: both sites, the tracking database and the Dagster definitions over them."""

    flavour: str
    hot: Any
    cold: Any
    hot_bucket: str
    cold_bucket: str
    dsn: str
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    instance: DagsterInstance
    defs: Definitions = field(init=False)
    resources: dict[str, Any] = field(init=False)
    cursor: str | None = None

    def __post_init__(self) -> None:
        self.configure()

    def configure(self, **overrides: str) -> None:
        """(Re)build the definitions from the environment, as `dagster dev` would at load time."""
        for name, value in {**self.env, **overrides}.items():
            self.monkeypatch.setenv(name, value)
        self.env.update(overrides)
        settings, _ = load_settings()
        self.resources = build_resources(settings)
        self.defs = build_definitions(settings)

    @property
    def store(self) -> TrackingStore:
        return shared_store(self.dsn)

    def put(self, key: str, body: bytes = b"%PDF-1.7 test", metadata: dict[str, str] | None = None) -> dict:
        return self.hot.put_object(Bucket=self.hot_bucket, Key=key, Body=body, Metadata=metadata or {})

    def sweep(self, listers: int = 2) -> SweepReport:
        """The reconciliation sweep, as its hourly schedule runs it: the hot bucket listed and registered."""
        # The pipeline's own hot client (as the asset uses it): through a fault-injecting proxy when one is set.
        hot = self.resources["hot_site"].process_config_and_initialize().client()
        return run_sweep(hot, self.hot_bucket, self.store, destination_bucket=self.cold_bucket, listers=listers)

    def run_sensor(self, *, sweep: bool = True) -> SensorResult:
        """One hot_bucket_sensor tick; first the reconciliation sweep (unless told not to), which in this harness
        stands for whatever registers objects (the schedule, or a change feed)."""
        if sweep:
            self.sweep()
        sensor = self.defs.resolve_sensor_def("hot_bucket_sensor")
        context = build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources)
        result = sensor(context)
        assert isinstance(result, SensorResult)
        self.cursor = result.cursor
        return result

    def run_partition(self, partition_key: str | None = None, run_config: dict | None = None,
                      tags: dict | None = None, *, sweep: bool = True) -> Any:
        """One replication run of a day, as a click on "Materialize" in the UI; first the sweep registers
        what is on the hot site now (unless told not to: a test that set up the manifest itself)."""
        if sweep:
            self.sweep()
        job = self.defs.resolve_job_def("replication_job")
        return job.execute_in_process(
            partition_key=partition_key or today_key(), run_config=run_config or {}, instance=self.instance,
            tags=tags, raise_on_error=False,
        )

    def sensor_and_runs(self) -> list[Any]:
        """One sensor evaluation and every run it requests, as the daemon would do."""
        result = self.run_sensor()
        return [self.run_partition(r.partition_key, r.run_config, r.tags, sweep=False)
                for r in result.run_requests or []]

    def start_worker(self, partition_key: str | None = None, **extra_env: str) -> subprocess.Popen:
        """A separate process running one partition, configured only from the environment."""
        return subprocess.Popen(
            [sys.executable, "-m", "vault_pipeline_tests.run_partition_worker", partition_key or today_key()],
            cwd=REPO, env={**os.environ, **self.env, **extra_env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )

    def row(self, key: str) -> dict[str, Any]:
        rows = self.store.rows(self.hot_bucket, [key])
        assert rows, f"no row for {key!r}"
        return rows[0]

    def cold_versions(self, key: str) -> list[dict[str, Any]]:
        response = self.cold.list_object_versions(Bucket=self.cold_bucket, Prefix=key)
        return [v for v in response.get("Versions", []) if v["Key"] == key]

    def cold_versions_under(self, prefix: str) -> dict[str, list[dict[str, Any]]]:
        """Every version under a prefix, by key, in one paginated listing. Checking many keys one
        ListObjectVersions each is O(keys x bucket) on the moto server: it deep-copies every version of the
        bucket per request, bodies included, into temporary files that outlive the request, and a few hundred
        such calls filled the CI machine's disk (moto then answers 500)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for page in self.cold.get_paginator("list_object_versions").paginate(Bucket=self.cold_bucket,
                                                                             Prefix=prefix):
            for version in page.get("Versions", []):
                found.setdefault(version["Key"], []).append(version)
        return found

    def open_uploads(self) -> list[dict[str, Any]]:
        return self.cold.list_multipart_uploads(Bucket=self.cold_bucket).get("Uploads", [])

    def segments(self) -> SegmentStore:
        """The cold site's journal, read directly from the storage."""
        return SegmentStore(self.cold, self.cold_bucket)

    def journal_entries(self) -> list[dict[str, Any]]:
        """Every journal entry on the cold site, chain checked (raises at the first fault)."""
        return list(read_entries(self.segments()))


def today_key() -> str:
    return partition_key_for(dt.datetime.now(dt.UTC).date())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["seaweedfs", "moto"])
def cold_flavour(request: pytest.FixtureRequest) -> str:
    return request.param


def fresh_database(pg_server: Any, prefix: str) -> Iterator[str]:
    """A new empty database for one test, dropped after it."""
    name = unique(prefix).replace("-", "_")
    pg_server.create_database(name)
    dsn = pg_server.dsn(name)
    yield dsn
    close_shared_store(dsn)
    pg_server.drop_database(name)


@pytest.fixture
def tracking_dsn(pg_server: Any) -> Iterator[str]:
    yield from fresh_database(pg_server, "vault")


@pytest.fixture
def secondary_dsn(pg_server: Any) -> Iterator[str]:
    """An empty database, as on a secondary site: the target of rebuild_tracking_db."""
    yield from fresh_database(pg_server, "secondary")


@pytest.fixture
def vault(
    request: pytest.FixtureRequest, cold_flavour: str, hot_site: Any, tracking_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Vault]:
    cold_site = request.getfixturevalue("cold_seaweed" if cold_flavour == "seaweedfs" else "cold_moto")
    hot_bucket, cold_bucket = unique("hot"), unique("cold")
    hot, cold = hot_site.client(), cold_site.client()
    ensure_bucket(hot, hot_bucket, object_lock=False)
    ensure_bucket(cold, cold_bucket, object_lock=True)
    env = {
        "OVH_S3_ENDPOINT": hot_site.endpoint_url,
        "OVH_S3_REGION": "us-east-1",
        "OVH_S3_ACCESS_KEY_ID": hot_site.access_key,
        "OVH_S3_SECRET_ACCESS_KEY": hot_site.secret_key,
        "OVH_S3_BUCKET_DOCUMENTS": hot_bucket,
        "AWS_S3_ENDPOINT": cold_site.endpoint_url,
        "AWS_S3_REGION": "us-east-1",
        "AWS_S3_ACCESS_KEY_ID": cold_site.access_key,
        "AWS_S3_SECRET_ACCESS_KEY": cold_site.secret_key,
        "AWS_S3_BUCKET_DOCUMENTS_COLD": cold_bucket,
        "VAULT_DATABASE_URL": tracking_dsn,
        **TEST_ENV,
    }
    for name in list(os.environ):  # nothing from the developer's shell leaks into a test
        if name.startswith(("VAULT_", "OVH_S3_", "AWS_S3_", "SFTP_")) or name in ("REPLICATION_CONCURRENCY",
                                                                         "DELETE_FROM_OVH_AFTER_REPLICATION"):
            monkeypatch.delenv(name)
    try:
        with DagsterInstance.ephemeral() as instance:
            yield Vault(flavour=cold_flavour, hot=hot, cold=cold, hot_bucket=hot_bucket, cold_bucket=cold_bucket,
                        dsn=tracking_dsn, env=env, monkeypatch=monkeypatch, instance=instance)
    finally:
        if cold_flavour == "moto":
            reset_moto(cold_site.endpoint_url)


def reset_moto(endpoint_url: str) -> None:
    """Forget every bucket of the moto server. It keeps objects in memory (its RSS reached 11 GB over the
    suite); each test has its own buckets and a worker runs one test at a time, so nothing else needs them."""
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def sql(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture
def slow_moto_restore(vault: Vault) -> Iterator[None]:
    """Make the moto server report each restore as ongoing once (moto's state manager, progression
    "manual": its initial state is rendered as restored, so one transition is one "still restoring")."""
    def call(action: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"{vault.env['AWS_S3_ENDPOINT']}/moto-api/state-manager/{action}", data=json.dumps(body).encode(),
            method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 201)

    call("set-transition", {"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": 1}})
    try:
        yield
    finally:  # the moto server is shared by the whole session
        call("unset-transition", {"model_name": "s3::keyrestore"})
