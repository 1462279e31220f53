"""Detection latency of each change feed, with the hot bucket's objects already present and registered.

For each feed, the real hot_bucket_sensor (definitions.py's, the feed enabled through VAULT_CHANGE_FEEDS)
ticks every VAULT_SENSOR_INTERVAL_SECONDS, as Dagster's daemon would, while new documents arrive every
--feed-gap seconds. A document's detection latency runs from the end of its PutObject (the object
exists) to its row in vault_secure.replication_status (`created_at`, the registration's transaction; one
clock: everything runs on this machine). Every tick is timed.

* seaweedfs-filer: the filled SeaweedFS bucket (--objects present).
* app-table: the application's documents table holds a row for every object of the filled bucket (COPY,
  not timed); the feed first catches up over all of them (timed and reported), then each new document is
  a PutObject followed by its INSERT, as an application does.
* sqs: a moto server as the hot site (AWS-like: S3 events to an SQS queue), with --sqs-objects objects
  present. The feed reads the queue and never the bucket, so the bucket's size does not enter its path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

PIPELINE_PREFIXES = ("VAULT_", "OVH_S3_", "AWS_S3_")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class SensorTicker:
    """The real hot_bucket_sensor, built from the current environment, ticking on a fixed interval."""

    def __init__(self) -> None:
        import dagster
        from dagster import DagsterInstance

        for category in (dagster.BetaWarning, dagster.PreviewWarning, dagster.SupersessionWarning):
            warnings.filterwarnings("ignore", category=category)
        from vault_pipeline.definitions import build_definitions, build_resources
        from vault_pipeline.settings import load_settings

        self.settings, _ = load_settings()
        self.resources = build_resources(self.settings)
        self.sensor = build_definitions(self.settings).resolve_sensor_def("hot_bucket_sensor")
        self.instance = DagsterInstance.ephemeral()
        self.cursor: str | None = None
        self.durations: list[float] = []

    def tick(self) -> float:
        from dagster import build_sensor_context

        started = time.monotonic()
        with build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources) as context:
            result = self.sensor(context)
        self.cursor = result.cursor
        took = time.monotonic() - started
        self.durations.append(took)
        return took

    def run_until(self, done: Callable[[], bool], timeout: float) -> None:
        interval = self.settings.sensor_interval_seconds
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            began = time.monotonic()
            self.tick()
            if done():
                return
            time.sleep(max(0.0, interval - (time.monotonic() - began)))
        raise TimeoutError(f"not every document was registered after {timeout:.0f} s")


def registered_at(dsn: str, bucket: str, keys: list[str]) -> dict[str, float]:
    with psycopg.connect(dsn) as conn:
        return {k: t.timestamp() for k, t in conn.execute(
            "SELECT s3_key, created_at FROM vault_secure.replication_status WHERE bucket_source = %s"
            " AND s3_key = ANY(%s)", (bucket, keys)).fetchall()}


def measure(name: str, *, put: Callable[[str], None], bucket: str, dsn: str, uploads: int, gap: float,
            objects_present: int, log: Callable[[str], None], before: Callable[[SensorTicker], dict] | None = None,
            ) -> dict[str, Any]:
    ticker = SensorTicker()
    extra = before(ticker) if before else {}
    ticker.tick()  # the feed's first read (its cursor starts here), as the first tick after a deployment
    ticker.durations.clear()
    run = uuid.uuid4().hex[:6]
    keys = [f"scale-bench/{name}/{run}/{i:04d}.pdf" for i in range(uploads)]
    put_done: dict[str, float] = {}

    def uploader() -> None:
        for key in keys:
            put(key)
            put_done[key] = time.time()
            time.sleep(gap)

    thread = threading.Thread(target=uploader, daemon=True)
    thread.start()
    try:
        ticker.run_until(lambda: not thread.is_alive() and len(registered_at(dsn, bucket, keys)) == len(keys),
                         timeout=uploads * gap + 120)
    finally:
        thread.join(timeout=uploads * gap + 60)
    found = registered_at(dsn, bucket, keys)
    latencies = [max(0.0, found[k] - put_done[k]) for k in keys if k in found and k in put_done]
    log(f"  {name}: {len(latencies)}/{uploads} registered, p50 {percentile(latencies, 0.5):.2f}s, "
        f"p99 {percentile(latencies, 0.99):.2f}s, longest tick {max(ticker.durations, default=0):.2f}s")
    return {
        "objects_present": objects_present, "uploads": uploads, "registered": len(found),
        "p50_s": round(percentile(latencies, 0.5), 2), "p99_s": round(percentile(latencies, 0.99), 2),
        "max_s": round(max(latencies, default=0), 2),
        "mean_s": round(statistics.fmean(latencies), 2) if latencies else 0,
        "ticks": len(ticker.durations), "longest_tick_s": round(max(ticker.durations, default=0), 2),
        "median_tick_s": round(statistics.median(ticker.durations), 3) if ticker.durations else 0,
        "sensor_interval_s": ticker.settings.sensor_interval_seconds, **extra,
    }


def set_environment(base: dict[str, str], **overrides: str) -> None:
    for name in list(os.environ):
        if name.startswith(PIPELINE_PREFIXES):
            del os.environ[name]
    os.environ.update(base)
    os.environ.update(overrides)


def filer(stack: Any, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    env = stack.env()
    set_environment(env, VAULT_CHANGE_FEEDS="seaweedfs-filer")
    client = stack.hot.client()
    bucket = stack.config.hot_bucket
    return measure("seaweedfs-filer", bucket=bucket, dsn=env["VAULT_DATABASE_URL"], uploads=args.feed_uploads,
                   gap=args.feed_gap, objects_present=args.objects, log=log,
                   put=lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"%PDF-1.7 filer feed"))


def app_table(stack: Any, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    from sensorbench import keys as keyspace

    env = stack.env()
    name = "scale_bench_app"
    stack.postgres.drop_database(name)
    stack.postgres.create_database(name)
    app_dsn = stack.postgres.dsn(name)
    with psycopg.connect(app_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS documents")
        conn.execute("CREATE TABLE documents (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL,"
                     " created_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        last_day = dt.datetime.fromisoformat(args.fill_state["filled_at"]).date() - dt.timedelta(days=1)
        space = keyspace.KeySpace(args.objects, args.days, last_day, seed=args.seed)
        started = time.monotonic()
        with conn.cursor().copy("COPY documents (key) FROM STDIN") as copy:
            for key, _, _ in space:
                copy.write_row((key,))
        log(f"  app-table: {args.objects:,} rows copied in {time.monotonic() - started:.0f}s (not timed)")
    set_environment(env, VAULT_CHANGE_FEEDS="app-table", VAULT_APP_DATABASE_URL=app_dsn)
    client = stack.hot.client()
    bucket = stack.config.hot_bucket

    def catch_up(ticker: SensorTicker) -> dict[str, Any]:
        """The first ticks read the whole table (every key already registered by the sweeps)."""
        with psycopg.connect(app_dsn) as conn:
            top = conn.execute("SELECT max(id) FROM documents").fetchone()[0]
        started, ticks = time.monotonic(), 0
        while ticks < 10_000:  # back to back: how fast the feed catches up, not the interval
            ticks += 1
            ticker.tick()
            feed_cursor = json.loads(json.loads(ticker.cursor or "{}").get("feeds", {}).get("app-table") or "{}")
            if (feed_cursor.get("after") or [0])[-1] >= top:
                break
        seconds = time.monotonic() - started
        log(f"  app-table: caught up over {args.objects:,} rows in {ticks} ticks, {seconds:.0f}s")
        return {"catch_up_rows": args.objects, "catch_up_s": round(seconds, 1), "catch_up_ticks": ticks,
                "catch_up_longest_tick_s": round(max(ticker.durations), 2),
                "catch_up_rows_per_s": round(args.objects / seconds)}

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=b"%PDF-1.7 app table feed")
        with psycopg.connect(app_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO documents (key) VALUES (%s)", (key,))

    return measure("app-table", bucket=bucket, dsn=env["VAULT_DATABASE_URL"], uploads=args.feed_uploads,
                   gap=args.feed_gap, objects_present=args.objects, log=log, put=put, before=catch_up)


def sqs(stack: Any, args: argparse.Namespace, root: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from vault_pipeline.devstack.buckets import ensure_bucket
    from vault_pipeline.devstack.motosite import MotoSite
    from vault_pipeline.devstack.ports import find_free_port_block

    moto = MotoSite("hot-moto", find_free_port_block(1), "scale-moto", "scale-moto-secret",
                    log_path=root / "moto.log")
    moto.start()
    try:
        client = moto.client()
        bucket = "documents-hot-sqs"
        ensure_bucket(client, bucket, object_lock=False)
        sqs_client = _sqs_client(moto)
        queue_url = sqs_client.create_queue(QueueName="vault-hot-events")["QueueUrl"]
        arn = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:  # present before the notifications are configured: no events
            list(pool.map(lambda i: client.put_object(Bucket=bucket, Key=f"present/{i:07d}.pdf", Body=b"x"),
                          range(args.sqs_objects)))
        log(f"  sqs: {args.sqs_objects:,} objects on the moto hot site in {time.monotonic() - started:.0f}s")
        client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
        env = stack.env()
        set_environment(env, OVH_S3_ENDPOINT=moto.endpoint_url, OVH_S3_ACCESS_KEY_ID=moto.access_key,
                        OVH_S3_SECRET_ACCESS_KEY=moto.secret_key, OVH_S3_BUCKET_DOCUMENTS=bucket,
                        VAULT_CHANGE_FEEDS="sqs", VAULT_SQS_QUEUE_URL=queue_url, VAULT_SQS_ENDPOINT=moto.endpoint_url,
                        VAULT_SQS_ACCESS_KEY_ID=moto.access_key, VAULT_SQS_SECRET_ACCESS_KEY=moto.secret_key)
        return measure("sqs", bucket=bucket, dsn=env["VAULT_DATABASE_URL"], uploads=args.feed_uploads,
                       gap=args.feed_gap, objects_present=args.sqs_objects, log=log,
                       put=lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"%PDF-1.7 sqs feed"))
    finally:
        moto.stop()


def _sqs_client(site: Any) -> Any:
    import boto3

    return boto3.session.Session().client("sqs", endpoint_url=site.endpoint_url, region_name="us-east-1",
                                          aws_access_key_id=site.access_key, aws_secret_access_key=site.secret_key)


def bench_feeds(stack: Any, args: argparse.Namespace, store: Any, *, root: Path,
                log: Callable[[str], None]) -> dict[str, Any]:
    by_feed: dict[str, Any] = {}
    for name in args.feed_names:
        log(f"feeds: {name}")
        try:
            if name == "seaweedfs-filer":
                by_feed[name] = filer(stack, args, log)
            elif name == "app-table":
                by_feed[name] = app_table(stack, args, log)
            elif name == "sqs":
                by_feed[name] = sqs(stack, args, root, log)
        except Exception as exc:  # one feed's failure is reported, the others still measured
            log(f"  {name} failed: {type(exc).__name__}: {exc}")
            by_feed[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    checks = {f"{name}_registered_every_upload": f.get("registered") == f.get("uploads")
              for name, f in by_feed.items()}
    interval = next((f["sensor_interval_s"] for f in by_feed.values() if "sensor_interval_s" in f), None)
    return {"by_feed": by_feed, "checks": checks, "sensor_interval_s": interval}
