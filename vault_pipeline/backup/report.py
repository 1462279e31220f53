"""The step-duration report of a database restore: per step, and per pg_restore item.

Steps are plain dicts (JSON in the run's metadata, read back by `vault-pipeline db-report RUN_ID`):
{"step", "seconds", "run_id", "detail", "items": [{"kind", "name", "seconds"}]}.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from vault_pipeline.backup.restore_steps import OTHER, REPORT_KINDS, report_kind
from vault_pipeline.replication.report import md_escape


def totals_by_kind(steps: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = defaultdict(lambda: {"items": 0, "seconds": 0.0})
    for step in steps:
        for item in step.get("items") or []:
            kind = report_kind(item["kind"])
            totals[kind]["items"] += 1
            totals[kind]["seconds"] += float(item["seconds"])
    return {kind: totals[kind] for kind in (*REPORT_KINDS, OTHER) if kind in totals}


def steps_markdown(steps: list[dict[str, Any]]) -> str:
    total = sum(float(s["seconds"]) for s in steps)
    lines = ["| step | seconds | share | run | detail |", "|---|---|---|---|---|"]
    for step in steps:
        share = float(step["seconds"]) / total * 100 if total else 0.0
        lines.append(f"| {step['step']} | {float(step['seconds']):.2f} | {share:.0f} % | "
                     f"{str(step.get('run_id', ''))[:8]} | {md_escape(step.get('detail', ''))} |")
    lines.append(f"| **total** | **{total:.2f}** | | | |")
    return "\n".join(lines)


def kinds_markdown(steps: list[dict[str, Any]]) -> str:
    totals = totals_by_kind(steps)
    if not totals:
        return "No pg_restore item recorded."
    lines = ["| item kind | items | seconds |", "|---|---|---|"]
    lines += [f"| {kind} | {int(t['items'])} | {t['seconds']:.2f} |" for kind, t in totals.items()]
    return "\n".join(lines)


def items_markdown(steps: list[dict[str, Any]], limit: int = 25) -> str:
    items = [(step["step"], item) for step in steps for item in step.get("items") or []]
    if not items:
        return "No pg_restore item recorded."
    items.sort(key=lambda pair: float(pair[1]["seconds"]), reverse=True)
    lines = ["| step | kind | item | seconds |", "|---|---|---|---|"]
    for step, item in items[:limit]:
        lines.append(f"| {step} | {item['kind']} | {md_escape(item['name'])} | {float(item['seconds']):.3f} |")
    if len(items) > limit:
        lines.append(f"| … {len(items) - limit} more | | | |")
    return "\n".join(lines)


def report_text(steps: list[dict[str, Any]], *, limit: int = 25) -> str:
    """The whole report as markdown (the CLI prints it; the UI shows its parts as metadata)."""
    return "\n\n".join(["## Steps", steps_markdown(steps), "## pg_restore items by kind", kinds_markdown(steps),
                        f"## Slowest items (top {limit})", items_markdown(steps, limit)])
