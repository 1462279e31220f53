"""The isolated embedded stack of one benchmark invocation, and the per-run buckets and databases.

One DevStack (two SeaweedFS sites and pgserver PostgreSQL, vault_pipeline/devstack) on free loopback
ports under a temporary directory. Each contender's run gets a fresh Object Lock cold bucket, and
vault-pipeline a fresh tracking database. A finished run's cold bucket can be purged through the
SeaweedFS filer (a locked object cannot be deleted through S3, by design) so that a long benchmark does
not fill the disk with copies nobody reads again.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.devstack.ports import SITE_PORT_BLOCK, find_free_port_block
from vault_pipeline.devstack.process import DevStackError
from vault_pipeline.devstack.seaweed import SeaweedSite
from vault_pipeline.devstack.stack import DevStack

START_ATTEMPTS = 3
WARM_UP_CLASSES = ("STANDARD", "DEEP_ARCHIVE")  # the journal's class and the copies' class


def _free_ports() -> tuple[int, int, int]:
    """A PostgreSQL port and two SeaweedFS port blocks, none overlapping another."""
    pg_port = find_free_port_block(1)
    hot_port = find_free_port_block(SITE_PORT_BLOCK)
    while True:
        cold_port = find_free_port_block(SITE_PORT_BLOCK)
        overlaps_hot = abs(cold_port - hot_port) < SITE_PORT_BLOCK
        if not overlaps_hot and not cold_port <= pg_port < cold_port + SITE_PORT_BLOCK and not (
                hot_port <= pg_port < hot_port + SITE_PORT_BLOCK):
            return pg_port, hot_port, cold_port


def start_stack(root: Path) -> DevStack:
    """Start a DevStack on free ports, with new ports if another process took one meanwhile."""
    for attempt in range(1, START_ATTEMPTS + 1):
        pg_port, hot_port, cold_port = _free_ports()
        stack = DevStack(root, pg_port=pg_port, hot_port=hot_port, cold_port=cold_port)
        try:
            return stack.start()
        except DevStackError:
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def new_cold_bucket(stack: DevStack, name: str) -> str:
    """A fresh Object Lock bucket, warmed up: SeaweedFS grows the first volumes of a new bucket on its
    first write (~0.2 s), a one-off cost no contender should pay inside its timing."""
    client = stack.cold.client()
    ensure_bucket(client, name, object_lock=True)
    for storage_class in WARM_UP_CLASSES:
        key = f"warm-up-{storage_class.lower()}"
        version = client.put_object(Bucket=name, Key=key, Body=b"warm-up", StorageClass=storage_class)["VersionId"]
        client.delete_object(Bucket=name, Key=key, VersionId=version)  # unlocked: really deleted
    return name


def new_database(stack: DevStack, name: str) -> str:
    stack.postgres.drop_database(name)
    stack.postgres.create_database(name)
    return stack.postgres.dsn(name)


def purge_bucket(site: SeaweedSite, bucket: str) -> bool:
    """Delete a bucket and its data behind S3's back (filer API: locks do not apply). Best effort."""
    url = f"http://127.0.0.1:{site.ports.filer}/buckets/{bucket}?recursive=true&ignoreRecursiveError=true"
    request = urllib.request.Request(url, method="DELETE")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, TimeoutError):
        return False


def server_pids(stack: DevStack) -> dict[str, int | None]:
    return {"hot_s3": stack.hot.pid, "cold_s3": stack.cold.pid, "postgres": stack.postgres.pid}
