"""Medians over runs, ratios to rclone, the machine, and the JSON and markdown outputs."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from copybench.workloads import MIB

CONTENDERS = ("vault-pipeline", "rclone", "naive")
MEDIAN_METRICS = ("objects_per_s", "mib_per_s", "wall_s", "peak_rss_mib", "cpu_s", "cpu_s_per_gib")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def weed_version(weed: str) -> str:
    try:
        result = subprocess.run([weed, "version"], capture_output=True, text=True, check=False, timeout=30)
    except OSError:
        return "unknown"
    found = re.search(r"\b(\d+\.\d+(?:\.\d+)?)\b", result.stdout)
    return found.group(1) if found else "unknown"


def machine(rclone: str, weed: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(), "cpu_model": cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "platform": platform.platform(), "rclone": rclone,
        "seaweedfs": weed_version(weed), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def code_version(repo: Path) -> dict[str, Any]:
    """The commit measured, and the files of vault_pipeline/ that differ from it (a work tree in progress)."""
    def git(*args: str) -> str:
        try:
            result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30,
                                    check=False)
        except OSError:
            return ""
        return result.stdout if result.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "vault_pipeline")  # "XY path" lines: X may be a space
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or "unknown",
            "uncommitted_vault_pipeline_changes": [line[3:] for line in changed.splitlines() if line.strip()]}


def servers_cpu(run: dict[str, Any]) -> float:
    """CPU seconds the three servers (hot and cold S3, PostgreSQL) spent during a contender's run."""
    return sum(v for k, v in run["extra"].items() if k.endswith("_cpu_s") and k != "process_cpu_s")


def _median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def vault_phases(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """Medians of the registration (sensor sweep) and of the job's copy and check steps."""
    def step_total(run: dict[str, Any], checks: bool) -> float:
        return sum(seconds for job_run in run["extra"].get("runs", []) for step, seconds in job_run["steps_s"].items()
                   if step.startswith("cold_copies_") == checks and (checks or step == "cold_copies"))

    return {
        "registration_s": _median_or_none([r["extra"]["registration_s"] for r in runs
                                           if r["extra"].get("registration_s") is not None]),
        "cold_copies_step_s": _median_or_none([step_total(r, checks=False) for r in runs if r["extra"].get("runs")]),
        "checks_steps_s": _median_or_none([step_total(r, checks=True) for r in runs if r["extra"].get("runs")]),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per contender: the median of each metric over its complete runs, then ratios to rclone's medians."""
    summary: dict[str, dict[str, Any]] = {}
    for contender in CONTENDERS:
        mine = [r for r in runs if r["contender"] == contender]
        if not mine:
            continue
        measured = [r for r in mine if "skipped" not in r]
        good = [r for r in measured if r["complete"]] or measured
        entry: dict[str, Any] = {"runs": len(mine), "complete_runs": sum(1 for r in measured if r["complete"])}
        if not measured:
            entry["skipped"] = mine[0]["skipped"]
        else:
            entry.update({m: statistics.median(r[m] for r in good) for m in MEDIAN_METRICS})
            entry["servers_cpu_s"] = statistics.median(servers_cpu(r) for r in good)
            if contender == "vault-pipeline":
                entry.update(vault_phases(good))
        summary[contender] = entry
    reference = summary.get("rclone", {})
    for entry in summary.values():
        if "objects_per_s" in entry and reference.get("objects_per_s"):
            entry["throughput_vs_rclone"] = entry["objects_per_s"] / reference["objects_per_s"]
            entry["rss_vs_rclone"] = entry["peak_rss_mib"] / reference["peak_rss_mib"]
    return summary


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def workload_table(name: str, workload: dict[str, Any]) -> list[str]:
    lines = [f"### {name}: {workload['description']} ({workload['objects']:,} objects, "
             f"{workload['bytes'] / MIB:,.0f} MiB)", "",
             "| contender | objects/s | MiB/s | wall (s) | peak RSS (MiB) | CPU s/GiB | servers CPU (s) "
             "| throughput vs rclone | RSS vs rclone | complete runs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for contender, s in workload["summary"].items():
        if "skipped" in s:
            lines.append(f"| {contender} | {s['skipped']} | | | | | | | | 0/{s['runs']} |")
            continue
        lines.append(
            f"| {contender} | {_number(s['objects_per_s'])} | {_number(s['mib_per_s'])} | {_number(s['wall_s'], 2)} | "
            f"{_number(s['peak_rss_mib'], 0)} | {_number(s['cpu_s_per_gib'], 1)} | {_number(s['servers_cpu_s'], 1)} | "
            f"{_number(s.get('throughput_vs_rclone'), 2)} | {_number(s.get('rss_vs_rclone'), 2)} | "
            f"{s['complete_runs']}/{s['runs']} |")
    vault = workload["summary"].get("vault-pipeline", {})
    if vault.get("registration_s") is not None:
        lines += ["", f"vault-pipeline: registration (sensor sweep, not in the wall time) "
                      f"{vault['registration_s']:.2f} s; in the wall time, step cold_copies "
                      f"{_number(vault.get('cold_copies_step_s'), 2)} s and the cold_copies checks "
                      f"{_number(vault.get('checks_steps_s'), 2)} s."]
    problems = [f"- {r['contender']} run {r['run']}: {r['error']}" for r in workload["runs"] if r.get("error")]
    if problems:
        lines += ["", "Incomplete or failed runs:", *problems]
    return lines


def markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        f"## Copy benchmark, {result['date']}", "",
        f"Machine: {m['cores']} cores, {m['cpu_model']}, {m['memory_gib']} GiB, Python {m['python']}, "
        f"{m['rclone']}, SeaweedFS {m['seaweedfs']}; load average at start {m['load_average_at_start']}.",
        f"Code: commit {result['code']['commit']}"
        + (f" with uncommitted changes in {', '.join(result['code']['uncommitted_vault_pipeline_changes'])}."
           if result["code"]["uncommitted_vault_pipeline_changes"] else "."),
        f"Settings: parallelism {s['parallelism']}, {s['runs']} run(s) per contender (medians), scale {s['scale']}"
        f"{', smoke' if s['smoke'] else ''}, seed {s['seed']}, runs alternated {' '.join(s['order'])}.", "",
    ]
    for name, workload in result["workloads"].items():
        lines += [*workload_table(name, workload), ""]
    return "\n".join(lines)


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def write_outputs(result: dict[str, Any], out: Path, stem: str, markdown: Callable[[dict[str, Any]], str]) -> str:
    """`<stem>.json` (everything) and `<stem>.md` (the table) in `out`; returns the table. Shared by the
    benchmark scripts."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = markdown(result)
    (out / f"{stem}.md").write_text(table + "\n")
    return table
