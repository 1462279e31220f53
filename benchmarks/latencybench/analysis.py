"""From raw observations to per-upload timelines, percentiles, the verdict and the markdown table.

Each upload's latency is cut into consecutive phases that add up to it exactly:

    put done -> registered (the sensor tick that listed it, row created_at)
             -> run requested (the run's creation time: queued)
             -> starting (RUN_STARTING: dequeued by the QueuedRunCoordinator, handed to the run launcher)
             -> run started (RUN_START, in the run's own worker process) -> claimed (last_attempt_at)
             -> verified (verified_at)

A timestamp earlier than the previous one (a run created or started before the object was registered,
which then claimed it too) is clipped to the previous one, so its phase counts zero. The "copy time" of
the target is the last part, from the start of the run that copied the object (or its registration if
later) to the verified copy: hot_inventory, the claim, the copy, its verification and the commit.

Percentiles are nearest-rank (the smallest value with at least p % of the values at or below it): with
60 uploads, p99 is the largest value and p90 the 54th.
"""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any

PHASES = (  # (name, timestamp at its end, label)
    ("detection_s", "registered_at", "PutObject → registered by a sensor tick"),
    ("request_s", "run_created", "registered → run requested (created, queued)"),
    ("queue_s", "run_starting", "run queued (created → dequeued, handed to the launcher)"),
    ("launch_s", "run_started", "run launch (launcher → started in its own process)"),
    ("before_claim_s", "claimed_at", "run start → object claimed (hot_inventory, resources)"),
    ("object_copy_s", "verified_at", "claimed → verified (copy, verification, commit)"),
)
SUMMARY_METRICS = ("latency_s", "copy_s", "overhead_s", *(name for name, _, _ in PHASES), "poll_lag_s")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def describe(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    return {"n": len(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values), "mean": statistics.fmean(values)}


def timeline(upload: dict[str, Any], row: dict[str, Any] | None, run: dict[str, Any] | None,
             observed_at: float | None, interval_s: float) -> dict[str, Any]:
    """One upload's timestamps and phases (None where it never got that far)."""
    out: dict[str, Any] = {**upload, "status": row["status"] if row else None, "run_id": row and row["run_id"],
                           "observed_at": observed_at}
    stamps = {
        "registered_at": row and row["registered_at"], "claimed_at": row and row["claimed_at"],
        "verified_at": row and row["verified_at"] if row and row["status"] == "replicated" else None,
        "run_created": run and run["creationTime"], "run_starting": run and run["lifecycle"].get("starting"),
        "run_started": run and run["startTime"],
    }
    out.update(stamps)
    previous = upload["put_done"]
    for name, stamp, _ in PHASES:
        value = stamps[stamp]
        if value is None:
            out[name] = None
            continue
        value = max(value, previous)
        out[name] = round(value - previous, 3)
        previous = value
    verified = stamps["verified_at"]
    if verified is None:
        out.update(latency_s=None, copy_s=None, overhead_s=None, meets_target=False, poll_lag_s=None)
        return out
    copy_start = max(upload["put_done"], *(stamps[s] for s in ("registered_at", "run_created", "run_starting",
                                                                "run_started") if stamps[s] is not None))
    out["latency_s"] = round(verified - upload["put_done"], 3)
    out["copy_s"] = round(verified - copy_start, 3)
    out["overhead_s"] = round(out["latency_s"] - out["copy_s"], 3)
    out["meets_target"] = out["latency_s"] <= 2 * interval_s + out["copy_s"]
    out["poll_lag_s"] = round(observed_at - verified, 3) if observed_at is not None else None
    return out


def run_summary(run: dict[str, Any], objects: int) -> dict[str, Any]:
    life = run["lifecycle"]
    steps = {s["stepKey"]: round(s["endTime"] - s["startTime"], 3) for s in run["stepStats"]
             if s.get("startTime") and s.get("endTime")}

    def gap(a: float | None, b: float | None) -> float | None:
        return round(b - a, 3) if a is not None and b is not None else None

    return {
        "run_id": run["runId"], "status": run["status"], "objects": objects,
        "pending_when_requested": run["tags"].get("vault/pending_objects"),
        "created": run["creationTime"], "starting": life.get("starting"), "started": run["startTime"],
        "ended": run["endTime"], "queue_s": gap(run["creationTime"], life.get("starting")),
        "launch_s": gap(life.get("starting"), run["startTime"]),
        "duration_s": gap(run["startTime"], run["endTime"]), "cold_copies_step_s": steps.get("cold_copies"),
        "steps_s": steps,
    }


def tick_summary(ticks: list[dict[str, Any]], since: float, until: float) -> dict[str, Any]:
    inside = sorted((t for t in ticks if since <= t["timestamp"] <= until), key=lambda t: t["timestamp"])
    starts = [t["timestamp"] for t in inside]
    spacing = [b - a for a, b in itertools.pairwise(starts)]
    durations = [t["endTimestamp"] - t["timestamp"] for t in inside if t["endTimestamp"]]
    return {"ticks": len(inside), "with_runs": sum(1 for t in inside if t["runIds"]),
            "failed": sum(1 for t in inside if t["status"] == "FAILURE"),
            "spacing_s": describe(spacing), "duration_s": describe(durations)}


def summarize(uploads: list[dict[str, Any]], runs: list[dict[str, Any]], interval_s: float) -> dict[str, Any]:
    verified = [u for u in uploads if u["latency_s"] is not None]
    stats = {name: describe([u[name] for u in verified if u.get(name) is not None]) for name in SUMMARY_METRICS}
    p99_latency, p99_copy = stats["latency_s"]["p99"], stats["copy_s"]["p99"]
    target = None if p99_copy is None else 2 * interval_s + p99_copy
    passed = (len(verified) == len(uploads) and target is not None and p99_latency is not None
              and p99_latency <= target)
    return {
        "uploads": len(uploads), "verified": len(verified), "stats": stats,
        "target": {"interval_s": interval_s, "p99_latency_s": p99_latency, "p99_copy_s": p99_copy,
                   "target_s": target, "pass": passed,
                   "uploads_within_own_target": sum(1 for u in verified if u["meets_target"]),
                   "p99_overhead_s": stats["overhead_s"]["p99"], "overhead_limit_s": 2 * interval_s},
        "runs": {"count": len(runs), "statuses": _count(r["status"] for r in runs),
                 "queue_s": describe([r["queue_s"] for r in runs if r["queue_s"] is not None]),
                 "launch_s": describe([r["launch_s"] for r in runs if r["launch_s"] is not None]),
                 "duration_s": describe([r["duration_s"] for r in runs if r["duration_s"] is not None]),
                 "cold_copies_step_s": describe([r["cold_copies_step_s"] for r in runs
                                                 if r["cold_copies_step_s"] is not None]),
                 "objects_per_run": describe([float(r["objects"]) for r in runs])},
    }


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def markdown(result: dict[str, Any]) -> str:
    s, m, cfg = result["summary"], result["machine"], result["settings"]
    t, stats, ticks, runs = s["target"], s["stats"], result["ticks"], s["runs"]
    load_end = m.get("load_average_at_end", ["?"])[0]
    lines = [
        f"Detection latency, {result['date']}: {s['verified']}/{s['uploads']} uploads verified "
        f"(Poisson arrivals, mean gap {cfg['mean_gap_s']:g} s, seed {cfg['seed']}); sensor interval "
        f"{t['interval_s']:g} s ({cfg['interval_source']}), ticks every {_s(ticks['spacing_s']['p50'])} s "
        f"(p50, max {_s(ticks['spacing_s']['max'])} s). {m['cores']} cores ({m['cpu_model']}), load average "
        f"{m['load_average_at_start'][0]} at start, {load_end} at end; commit {result['code']['commit']}.",
        "",
        "| seconds | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|",
    ]

    def row(label: str, name: str) -> str:
        d = stats[name]
        return f"| {label} | {_s(d['p50'])} | {_s(d['p90'])} | {_s(d['p99'])} | {_s(d['max'])} |"

    lines.append(row("**PutObject → verified cold copy**", "latency_s"))
    lines += [row(label, name) for name, _, label in PHASES]
    lines.append(row("copy time (run start → verified)", "copy_s"))
    lines.append(row("latency minus copy time", "overhead_s"))
    verdict = "PASS" if t["pass"] else "FAIL"
    statuses = ", ".join(f"{n} {k}" for k, n in runs["statuses"].items())
    lines += [
        "",
        f"Target p99 <= 2 x {t['interval_s']:g} s + p99 copy time {_s(t['p99_copy_s'])} s = {_s(t['target_s'])} s: "
        f"p99 {_s(t['p99_latency_s'])} s → **{verdict}**. Per upload: {t['uploads_within_own_target']}/"
        f"{s['verified']} within 2 intervals + their own copy time; p99 of latency minus copy time "
        f"{_s(t['p99_overhead_s'])} s (2 intervals: {t['overhead_limit_s']:g} s).",
        "",
        f"{runs['count']} replication_job runs ({statuses}), {_s(runs['objects_per_run']['p50'])} uploads per run "
        f"(p50); queued p50 {_s(runs['queue_s']['p50'])} s (max {_s(runs['queue_s']['max'])}), launch p50 "
        f"{_s(runs['launch_s']['p50'])} s (max {_s(runs['launch_s']['max'])}), run p50 "
        f"{_s(runs['duration_s']['p50'])} s (max {_s(runs['duration_s']['max'])}), cold_copies step p50 "
        f"{_s(runs['cold_copies_step_s']['p50'])} s. {ticks['ticks']} sensor ticks, {ticks['with_runs']} "
        f"requesting runs, tick duration p50 {_s(ticks['duration_s']['p50'])} s "
        f"(max {_s(ticks['duration_s']['max'])}).",
    ]
    return "\n".join(lines)
