"""Materialization metadata: numbers the UI can plot and markdown tables that tell the story."""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue

from vault_pipeline.replication.engine import ObjectResult, RunReport
from vault_pipeline.replication.report import md_escape


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def failures_table(failures: list[ObjectResult], limit: int = 50) -> str:
    if not failures:
        return "No failures."
    lines = ["| object key | attempts | error |", "|---|---|---|"]
    for failure in failures[:limit]:
        lines.append(f"| `{md_escape(failure.key)}` | {failure.attempts} | {md_escape(failure.error or '')} |")
    if len(failures) > limit:
        lines.append(f"| ... {len(failures) - limit} more | | |")
    return "\n".join(lines)


def status_table(counts: dict[str, dict[str, int]]) -> str:
    lines = ["| status | objects | bytes |", "|---|---|---|"]
    for status in ("pending", "in_progress", "replicated", "failed"):
        entry = counts.get(status, {"objects": 0, "bytes": 0})
        lines.append(f"| {status} | {entry['objects']} | {human_bytes(entry['bytes'])} |")
    return "\n".join(lines)


def copy_report_metadata(report: RunReport) -> dict[str, Any]:
    copied = report.count("replicated")
    copied_bytes = report.bytes("replicated")
    seconds = max(report.duration_s, 1e-9)
    by_type: dict[str, int] = {}
    for result in report.results:
        if result.status in ("replicated", "adopted") and result.document_type:
            by_type[result.document_type] = by_type.get(result.document_type, 0) + 1
    type_lines = ["| document type | objects |", "|---|---|"] + [f"| {t} | {n} |" for t, n in sorted(by_type.items())]
    return {
        "objects_copied": MetadataValue.int(copied),
        "bytes_copied": MetadataValue.int(copied_bytes),
        "objects_adopted": MetadataValue.int(report.count("adopted")),
        "objects_superseded": MetadataValue.int(report.count("superseded")),
        "objects_failed": MetadataValue.int(report.count("failed")),
        "bytes_failed": MetadataValue.int(report.bytes("failed")),
        "stale_uploads_aborted": MetadataValue.int(report.aborted_uploads),
        "duration_s": MetadataValue.float(round(report.duration_s, 3)),
        "throughput_objects_per_s": MetadataValue.float(round(copied / seconds, 2)),
        "throughput_mib_per_s": MetadataValue.float(round(copied_bytes / 1048576 / seconds, 2)),
        "by_document_type": MetadataValue.md("\n".join(type_lines)),
        "failures": MetadataValue.md(failures_table(report.failures)),
    }
