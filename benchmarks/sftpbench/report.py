"""Medians over runs, the ratio to rclone, vault-pipeline's phases, and the markdown tables."""

from __future__ import annotations

import statistics
from typing import Any

from sftpbench import pyspy_profile

CONTENDERS = ("vault-pipeline", "rclone")
SERVER_NAMES = ("sftp_server", "hot_s3", "postgres")


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for contender in CONTENDERS:
        done = [r for r in runs if r["contender"] == contender and r["complete"]]
        entry: dict[str, Any] = {"complete_runs": len(done),
                                 "runs": len([r for r in runs if r["contender"] == contender])}
        for metric in ("wall_s", "mib_per_s", "files_per_s", "cpu_s", "peak_rss_mib"):
            entry[metric] = _median([r[metric] for r in done])
        entry["servers_cpu_s"] = {name: _median([r["servers_cpu_s"].get(name) for r in done]) for name in SERVER_NAMES}
        entry["s3_requests_per_file"] = requests_per_file(done)
        summary[contender] = entry
    vault, rclone = summary["vault-pipeline"], summary["rclone"]
    for entry in summary.values():
        entry["throughput_vs_rclone"] = (round(entry["mib_per_s"] / rclone["mib_per_s"], 3)
                                         if entry["mib_per_s"] and rclone["mib_per_s"] else None)
    vault["phases"] = vault_phases([r for r in runs if r["contender"] == "vault-pipeline" and r["complete"]])
    return summary


def requests_per_file(runs: list[dict[str, Any]]) -> dict[str, float] | None:
    """The hot site's S3 requests per file, by SeaweedFS's type (GET counts HEAD too), medians over runs."""
    counted = [r for r in runs if r.get("s3_requests") is not None and r["files"]]
    if not counted:
        return None
    kinds = sorted({kind for r in counted for kind in r["s3_requests"]})
    return {kind: round(statistics.median(r["s3_requests"].get(kind, 0) / r["files"] for r in counted), 2)
            for kind in kinds}


def _requests(per_file: dict[str, float] | None) -> str:
    if not per_file:
        return "-"
    return ", ".join(f"{kind} {count:g}" for kind, count in per_file.items() if kind != "errors") + (
        f" ({per_file['errors']:g} errors)" if per_file.get("errors") else "")


def vault_phases(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the worker's scan / transfer / total, and of the TransferReport's per-file phases."""
    def transfer(key: str) -> list[float]:
        return [r["extra"]["transfer"][key] for r in runs if r["extra"].get("transfer")]

    files = max((r["files"] for r in runs), default=0)
    phases: dict[str, Any] = {key: _median([r["extra"][key] for r in runs]) for key in ("scan_s", "transfer_s",
                                                                                        "total_s")}
    for key in ("download_s_sum", "upload_s_sum", "rest_s_sum"):
        phases[key] = _median(transfer(key))
        phases[key.replace("_s_sum", "_ms_per_file")] = (round(1000 * phases[key] / files, 2)
                                                         if phases[key] is not None and files else None)
    phases["connections_opened"] = _median(transfer("connections_opened"))
    phases["cipher"] = next((r["extra"].get("cipher") for r in runs), None)
    phases["hot_client"] = next((r["extra"].get("hot_client") for r in runs), None)
    return phases


def _n(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def throughput_rows(flavour: str, name: str, workload: dict[str, Any]) -> list[str]:
    rows = []
    for contender in CONTENDERS:
        s = workload["summary"][contender]
        servers = s["servers_cpu_s"]
        rows.append(
            f"| {flavour} | {name} ({workload['description']}) | {contender} | {s['complete_runs']}/{s['runs']} "
            f"| {_n(s['wall_s'], 2)} | {_n(s['mib_per_s'])} | {_n(s['files_per_s'])} "
            f"| {_n(s['throughput_vs_rclone'], 2)}x | {_n(s['cpu_s'])} | {_n(servers['sftp_server'])} "
            f"| {_n(servers['hot_s3'])} | {_n(servers['postgres'])} | {_requests(s['s3_requests_per_file'])} "
            f"| {_n(s['peak_rss_mib'], 0)} |")
    return rows


def phase_row(flavour: str, name: str, workload: dict[str, Any]) -> str:
    p = workload["summary"]["vault-pipeline"]["phases"]
    return (f"| {flavour} | {name} | {_n(p['scan_s'], 2)} | {_n(p['transfer_s'], 2)} | {_n(p['total_s'], 2)} "
            f"| {_n(p['download_s_sum'], 1)} | {_n(p['upload_s_sum'], 1)} | {_n(p['rest_s_sum'], 1)} "
            f"| {_n(p['download_ms_per_file'], 1)} | {_n(p['upload_ms_per_file'], 1)} "
            f"| {_n(p['rest_ms_per_file'], 1)} | {p['cipher'] or '-'} | {p['hot_client'] or '-'} |")


def markdown(result: dict[str, Any]) -> str:
    s, m = result["settings"], result["machine"]
    lines = [
        f"# SFTP intake benchmark, {result['date']}", "",
        f"{m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, {m['rclone']}, "
        f"SeaweedFS {m['seaweedfs']}, asyncssh {m['asyncssh']}, {m['sshd']}; commit {result['code']['commit']}; "
        f"{s['max_workers']} workers / --transfers {s['max_workers']}; vault-pipeline's spool: {s['spool_dir']}, "
        f"hot client fast path: {s['fast_path']}; runs {s['runs']} "
        f"(order {' '.join(s['order'])}); load average at start {m['load_average_at_start']}"
        + (" ; profiled (py-spy): vault-pipeline's numbers include the profiler's cost" if s["profile"] else ""), "",
        "| server | workload | contender | runs ok | wall s | MiB/s | files/s | vs rclone | client CPU s "
        "| SFTP server CPU s | SeaweedFS CPU s | PostgreSQL CPU s | S3 requests/file | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for flavour, workloads in result["results"].items():
        for name, workload in workloads.items():
            lines += throughput_rows(flavour, name, workload)
    lines += [
        "", "vault-pipeline's phases (medians; download / upload / rest are sums over files, which overlap: "
        f"{s['max_workers']} at a time; upload includes the HEAD verification; rest is the lstat, the "
        "registration in replication_status and the after-transfer step):", "",
        "| server | workload | scan s | transfer s | total s | download s | upload s | rest s "
        "| download ms/file | upload ms/file | rest ms/file | cipher | hot client |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for flavour, workloads in result["results"].items():
        for name, workload in workloads.items():
            lines.append(phase_row(flavour, name, workload))
    lines.append("")
    for flavour, workloads in result["results"].items():
        for name, workload in workloads.items():
            for run in workload["runs"]:
                if run["contender"] == "vault-pipeline" and run["extra"].get("profile"):
                    lines += pyspy_profile.markdown(f"{flavour} {name} run {run['run']}", run["extra"]["profile"])
    return "\n".join(lines)


def clients_markdown(result: dict[str, Any]) -> str:
    s, m = result["settings"], result["machine"]
    lines = [
        f"# SFTP client libraries, {result['date']}", "",
        f"{m['cores']} cores ({m['cpu_model']}), Python {m['python']}, asyncssh {m['asyncssh']}, "
        f"paramiko {m['paramiko']}, {m['sshd']}; one session, one file at a time; large: 1 x "
        f"{s['large_mib']:g} MiB read in {s['chunk_mib']:g} MiB reads; small: {s['small_files']} x 64 KiB "
        f"(open, read, close); medians of {s['runs']} run(s); CPU is the client's (this process)", "",
        "| server | client | cipher | large MiB/s | large CPU s/GiB | small files/s | small CPU ms/file |",
        "|---|---|---|---|---|---|---|",
    ]
    for flavour, clients in result["results"].items():
        for name, c in clients.items():
            lines.append(f"| {flavour} | {name} | {c.get('cipher') or '-'} | {_n(c.get('large_mib_per_s'))} "
                         f"| {_n(c.get('large_cpu_s_per_gib'), 2)} | {_n(c.get('small_files_per_s'))} "
                         f"| {_n(c.get('small_cpu_ms_per_file'), 2)} |")
    return "\n".join(lines)
