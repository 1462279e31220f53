"""Medians over runs, ratios to rclone (and to the naive loop), the per-object cost on the servers, the
machine, and the JSON and markdown outputs."""

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
MEDIAN_METRICS = ("objects_per_s", "mib_per_s", "wall_s", "peak_rss_mib", "cpu_s", "cpu_s_per_gib", "tree_cpu_s",
                  "cpu_ms_per_object", "window_cpu_ms_per_object", "work_cpu_ms_per_object")
SERVERS = ("hot_s3", "cold_s3", "postgres")  # the `<server>_cpu_s` entries of a run's extra
S3_SITES = ("hot_s3", "cold_s3")  # the `s3_requests` entries of a run's extra


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
    return sum(run["extra"].get(f"{server}_cpu_s", 0.0) for server in SERVERS)


def per_object_costs(run: dict[str, Any]) -> dict[str, float | None]:
    """One run's cost per object copied, flat: `<server>_cpu_ms` (CPU milliseconds of each server per
    object), `<site>_requests` and `<site>_requests_<TYPE>` (S3 requests per object), `<site>_errors`
    (non-2xx answers per object) and `<site>_ms_per_request` (the site's CPU milliseconds per request).
    None where not measured (no metrics endpoint) or nothing was copied."""
    objects = run.get("objects") or 0
    extra = run.get("extra", {})
    costs: dict[str, float | None] = {}
    for server in SERVERS:
        cpu = extra.get(f"{server}_cpu_s")
        costs[f"{server}_cpu_ms"] = 1000 * cpu / objects if objects and cpu is not None else None
    requests = extra.get("s3_requests") or {}
    for site in S3_SITES:
        counts = requests.get(site)
        if not objects or counts is None:
            costs[f"{site}_requests"] = costs[f"{site}_ms_per_request"] = None
            continue
        total = sum(n for kind, n in counts.items() if kind != "errors")
        costs[f"{site}_requests"] = total / objects
        costs[f"{site}_errors"] = counts.get("errors", 0) / objects
        for kind, n in counts.items():
            if kind != "errors":
                costs[f"{site}_requests_{kind}"] = n / objects
        cpu = extra.get(f"{site}_cpu_s")
        costs[f"{site}_ms_per_request"] = 1000 * cpu / total if total and cpu is not None else None
    return costs


def median_costs(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """The median of each per-object cost over runs (of the runs where it was measured)."""
    each = [per_object_costs(run) for run in runs]
    names = sorted({name for costs in each for name in costs})
    return {name: _median_or_none([c[name] for c in each if c.get(name) is not None]) for name in names}


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
        "startup_cpu_s": _median_or_none([r["extra"]["startup_cpu_s"] for r in runs
                                          if r["extra"].get("startup_cpu_s") is not None]),
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
            entry["per_object"] = median_costs(good)
            if contender == "vault-pipeline":
                entry.update(vault_phases(good))
        summary[contender] = entry
    reference, naive = summary.get("rclone", {}), summary.get("naive", {})
    for entry in summary.values():
        if "objects_per_s" in entry and reference.get("objects_per_s"):
            entry["throughput_vs_rclone"] = entry["objects_per_s"] / reference["objects_per_s"]
            entry["rss_vs_rclone"] = entry["peak_rss_mib"] / reference["peak_rss_mib"]
        if "cpu_ms_per_object" in entry and reference.get("cpu_ms_per_object"):
            entry["cpu_per_object_vs_rclone"] = entry["cpu_ms_per_object"] / reference["cpu_ms_per_object"]
        if entry.get("work_cpu_ms_per_object") and reference.get("work_cpu_ms_per_object"):
            entry["work_cpu_per_object_vs_rclone"] = (entry["work_cpu_ms_per_object"]
                                                      / reference["work_cpu_ms_per_object"])
        if "objects_per_s" in entry and naive.get("objects_per_s"):
            entry["throughput_vs_naive"] = entry["objects_per_s"] / naive["objects_per_s"]
    return summary


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _requests(costs: dict[str, float | None], site: str) -> str:
    """`3.00 (GET 2.00, PUT 1.00)`: S3 requests per object on a site, with the types; `-` if not counted."""
    total = costs.get(f"{site}_requests")
    if total is None:
        return "-"
    prefix = f"{site}_requests_"
    kinds = sorted((name[len(prefix):], value) for name, value in costs.items()
                   if name.startswith(prefix) and value)
    detail = ", ".join(f"{kind} {value:.{2 if value >= 0.1 else 3}f}" for kind, value in kinds)  # LIST: 1/1000
    errors = costs.get(f"{site}_errors")
    if errors:
        detail += f"; {errors:.2f} non-2xx"
    return f"{total:.2f} ({detail})" if detail else f"{total:.2f}"


def cost_table(workload: dict[str, Any]) -> list[str]:
    """Per contender: CPU milliseconds per object copied, the contender's own (whole process tree) and each
    server's, and the S3 requests per object each site answered."""
    lines = ["Per object copied: CPU milliseconds (the contender's whole process tree, each server's process "
             "tree, over the contender's whole process life), S3 requests each site answered (SeaweedFS "
             "counts a HEAD as a GET) and the site's CPU milliseconds per request:", "",
             "| contender | contender CPU ms | hot site CPU ms | cold site CPU ms | PostgreSQL CPU ms | total CPU ms "
             "| hot requests | cold requests | hot ms/request | cold ms/request |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for contender, s in workload["summary"].items():
        if "skipped" in s:
            continue
        costs = s.get("per_object", {})
        parts = [s.get("cpu_ms_per_object"), *(costs.get(f"{server}_cpu_ms") for server in SERVERS)]
        known = [part for part in parts if part is not None]
        total = sum(known) if len(known) == len(parts) else None
        lines.append(
            f"| {contender} | {' | '.join(_number(part, 2) for part in parts)} | {_number(total, 2)} | "
            f"{_requests(costs, 'hot_s3')} | {_requests(costs, 'cold_s3')} | "
            f"{_number(costs.get('hot_s3_ms_per_request'), 2)} | {_number(costs.get('cold_s3_ms_per_request'), 2)} |")
    return lines


def workload_table(name: str, workload: dict[str, Any]) -> list[str]:
    lines = [f"### {name}: {workload['description']} ({workload['objects']:,} objects, "
             f"{workload['bytes'] / MIB:,.0f} MiB)", "",
             "| contender | objects/s | MiB/s | wall (s) | peak RSS (MiB) | CPU s/GiB | CPU ms/object "
             "| copy-window CPU ms/object | work CPU ms/object | servers CPU (s) | throughput vs rclone "
             "| throughput vs naive | CPU/object vs rclone | work CPU/object vs rclone | RSS vs rclone "
             "| complete runs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for contender, s in workload["summary"].items():
        if "skipped" in s:
            lines.append(f"| {contender} | {s['skipped']} |{' |' * 13} 0/{s['runs']} |")
            continue
        lines.append(
            f"| {contender} | {_number(s['objects_per_s'])} | {_number(s['mib_per_s'])} | {_number(s['wall_s'], 2)} | "
            f"{_number(s['peak_rss_mib'], 0)} | {_number(s['cpu_s_per_gib'], 1)} | "
            f"{_number(s.get('cpu_ms_per_object'), 2)} | {_number(s.get('window_cpu_ms_per_object'), 2)} | "
            f"{_number(s.get('work_cpu_ms_per_object'), 2)} | "
            f"{_number(s['servers_cpu_s'], 1)} | {_number(s.get('throughput_vs_rclone'), 2)} | "
            f"{_number(s.get('throughput_vs_naive'), 2)} | {_number(s.get('cpu_per_object_vs_rclone'), 2)} | "
            f"{_number(s.get('work_cpu_per_object_vs_rclone'), 2)} | "
            f"{_number(s.get('rss_vs_rclone'), 2)} | {s['complete_runs']}/{s['runs']} |")
    lines += ["", *cost_table(workload)]
    vault = workload["summary"].get("vault-pipeline", {})
    if vault.get("registration_s") is not None:
        lines += ["", f"vault-pipeline: registration (sensor sweep, not in the wall time) "
                      f"{vault['registration_s']:.2f} s; in the wall time, step cold_copies "
                      f"{_number(vault.get('cold_copies_step_s'), 2)} s and the cold_copies checks "
                      f"{_number(vault.get('checks_steps_s'), 2)} s. Start-up (interpreter, imports, Dagster "
                      f"instance), in the whole-life CPU but not in the work CPU: "
                      f"{_number(vault.get('startup_cpu_s'), 2)} CPU s."]
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
        f"{', smoke' if s['smoke'] else ''}, seed {s['seed']}, runs alternated {' '.join(s['order'])}.",
        "CPU ms/object: user + system CPU of the contender's whole process tree (process and descendants) over "
        "its whole life, start-up included, per object copied; copy-window CPU ms/object: the same tree "
        "within the timed window (rclone: its whole life); CPU s/GiB: the timed window. Ratios: medians over "
        "rclone's (or the naive loop's); for CPU/object lower is better.", "",
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
