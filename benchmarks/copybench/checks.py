"""What a contender left on the cold site: every object there, locked, in the right class, with its metadata.

Run after each contender, outside its timing. The cold bucket is listed whole (all versions: a copy made
twice would show); a seeded sample of objects is HEADed (all of them for small workloads) for the lock,
the storage class and the `document-type` metadata. For vault-pipeline the tracking database is asked too:
every object must have a `replicated` row with its verification time.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from typing import Any

import psycopg

from copybench.workloads import Workload

PIPELINE_PREFIXES = ("journal/", "reports/")  # vault-pipeline's own objects in the cold bucket
HEAD_SAMPLE = 50
MIN_RETENTION_YEARS = 9  # the shortest policy retention is 10 years


def cold_versions(cold: Any, bucket: str) -> dict[str, list[int]]:
    """Key -> sizes of its versions, the pipeline's journal and reports left out."""
    versions: dict[str, list[int]] = {}
    for page in cold.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            if not version["Key"].startswith(PIPELINE_PREFIXES):
                versions.setdefault(version["Key"], []).append(int(version["Size"]))
    return versions


def head_problems(cold: Any, bucket: str, key: str, document_type: str, storage_class: str) -> list[str]:
    head = cold.head_object(Bucket=bucket, Key=key)
    problems = []
    horizon = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * MIN_RETENTION_YEARS)
    retain = head.get("ObjectLockRetainUntilDate")
    if head.get("ObjectLockMode") != "COMPLIANCE" or retain is None or retain < horizon:
        problems.append(f"lock: mode={head.get('ObjectLockMode')} until={retain}")
    if head.get("StorageClass", "STANDARD") != storage_class:
        problems.append(f"storage class {head.get('StorageClass', 'STANDARD')}")
    if head.get("Metadata", {}).get("document-type") != document_type:
        problems.append(f"document-type metadata {head.get('Metadata', {}).get('document-type')!r}")
    return problems


def sample_keys(workload: Workload, seed: int) -> list[str]:
    keys = [o.key for o in workload.objects]
    return keys if len(keys) <= HEAD_SAMPLE else sorted(random.Random(seed).sample(keys, HEAD_SAMPLE))


def check_cold_copies(cold: Any, bucket: str, workload: Workload, *, storage_class: str, seed: int) -> dict[str, Any]:
    versions = cold_versions(cold, bucket)
    expected = {o.key: o for o in workload.objects}
    missing = sorted(set(expected) - set(versions))
    wrong_size = sorted(k for k, sizes in versions.items() if k in expected and expected[k].size not in sizes)
    problems: Counter[str] = Counter()
    examples: list[str] = []
    sampled = sample_keys(workload, seed)
    for key in sampled:
        if key in versions:
            found = head_problems(cold, bucket, key, expected[key].document_type, storage_class)
            problems.update(p.split(":")[0].split(" ")[0] for p in found)
            examples += [f"{key}: {p}" for p in found][: max(0, 5 - len(examples))]
    present = [k for k in sampled if k in versions]
    return {
        "objects_expected": len(expected),
        "objects_found": sum(1 for k in versions if k in expected),
        "versions_found": sum(len(v) for k, v in versions.items() if k in expected),
        "bytes_found": sum(max(v) for k, v in versions.items() if k in expected),
        "missing": len(missing),
        "missing_examples": missing[:5],
        "wrong_size": len(wrong_size),
        "sampled": len(present),
        "locked": len(present) - problems["lock"],
        "storage_class_ok": len(present) - problems["storage"],
        "metadata_ok": len(present) - problems["document-type"],
        "problem_examples": examples,
        "complete": not missing and not wrong_size,
    }


def replicated_rows(dsn: str, hot_bucket: str) -> dict[str, int]:
    """Rows of the run's tracking database by status, and how many replicated rows carry a verification."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT status, count(*), count(*) FILTER (WHERE verified_at IS NOT NULL"
            " AND aws_object_lock_until IS NOT NULL AND sha256 IS NOT NULL)"
            " FROM vault_secure.replication_status WHERE bucket_source = %s GROUP BY 1",
            (hot_bucket,)).fetchall()
    counts = {f"rows_{status}": int(n) for status, n, _ in rows}
    counts["rows_replicated_verified"] = sum(int(v) for status, _, v in rows if status == "replicated")
    return counts
