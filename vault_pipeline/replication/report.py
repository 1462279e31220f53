"""The daily verification report: a pandas frame of the audit, kept as a locked CSV on the cold site,
summarised in numbers (lag percentiles, cost estimate, counts) and drawn as a PNG chart."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vault_pipeline.replication.audit import CLASSES, DayAudit
from vault_pipeline.replication.errors import wrap
from vault_pipeline.replication.policy import add_years

if TYPE_CHECKING:  # pandas is imported where a frame is made: a run's process that makes none (a sensor's
    import pandas as pd  # run, the code server) does not pay its ~0.4 s import

GB = 1_000_000_000
# Glacier Deep Archive bills ~40 KB more per object: 32 KB at the archive rate (index) and 8 KB at the
# Standard rate (name and metadata), and at least 180 days of storage.
OVERHEAD_ARCHIVE_BYTES = 32 * 1024
OVERHEAD_STANDARD_BYTES = 8 * 1024
# Columns named as in vault_secure.replication_status where they are the same fact.
COLUMNS = ["s3_key", "day", "classification", "problems", "status", "document_type", "ovh_size", "sha256",
           "aws_version_id", "current_version_id", "aws_object_lock_until", "lag_seconds", "hot_state",
           "retention_base"]


@dataclass(frozen=True)
class Prices:
    archive_per_gb_month: float = 0.00099  # DEEP_ARCHIVE, USD, us-east-1 list price
    standard_per_gb_month: float = 0.023


def md_escape(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def audit_frame(audit: DayAudit) -> pd.DataFrame:
    import pandas as pd

    records = [{
        "s3_key": o.key, "day": o.day.isoformat(), "classification": o.classification,
        "problems": "; ".join(f"{aspect}: {text}" for aspect, text in o.problems.items()),
        "status": o.status, "document_type": o.document_type, "ovh_size": o.size, "sha256": o.sha256,
        "aws_version_id": o.cold_version_id, "current_version_id": o.current_version_id,
        "aws_object_lock_until": o.retain_until.isoformat() if o.retain_until else None,
        "lag_seconds": o.lag_seconds,
        "hot_state": o.hot_state,
        "retention_base": o.retention_base,
    } for o in audit.objects]
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def lag_percentiles(frame: pd.DataFrame) -> dict[str, float | None]:
    lags = frame["lag_seconds"].dropna()
    if lags.empty:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": float(lags.quantile(0.5)), "p99": float(lags.quantile(0.99)), "max": float(lags.max())}


def monthly_cost(objects: int, total_bytes: int, prices: Prices) -> float:
    archive = (total_bytes + objects * OVERHEAD_ARCHIVE_BYTES) / GB * prices.archive_per_gb_month
    standard = objects * OVERHEAD_STANDARD_BYTES / GB * prices.standard_per_gb_month
    return archive + standard


def summary_table(frame: pd.DataFrame) -> str:
    """Markdown: classification counts by document type."""
    import pandas as pd

    if frame.empty:
        return "No objects for this day."
    pivot = pd.crosstab(frame["document_type"].fillna("(orphan)"), frame["classification"])
    pivot = pivot.reindex(columns=[c for c in CLASSES if c in pivot.columns])
    header = "| document type | " + " | ".join(pivot.columns) + " |"
    lines = [header, "|" + "---|" * (len(pivot.columns) + 1)]
    for doc_type, row in pivot.iterrows():
        lines.append(f"| {doc_type} | " + " | ".join(str(int(v)) for v in row) + " |")
    return "\n".join(lines)


def minimum_lock_count(frame: pd.DataFrame) -> int:
    """Documents locked on the minimum (VAULT_MINIMUM_LOCK_DAYS) because their policy date was past."""
    return int((frame["retention_base"] == "minimum").sum()) if not frame.empty else 0


def minimum_lock_table(frame: pd.DataFrame, limit: int = 25) -> str:
    """Markdown: the documents locked on the minimum, with the date they are locked until."""
    locked = frame[frame["retention_base"] == "minimum"] if not frame.empty else frame
    if locked.empty:
        return "No document is locked on the minimum: every lock is its policy's date."
    lines = [f"{len(locked)} document(s) locked on the minimum (their policy date was already past when copied):",
             "", "| key | document type | locked until |", "|---|---|---|"]
    for _, row in locked.head(limit).iterrows():
        lines.append(f"| `{md_escape(str(row['s3_key']))}` | {row['document_type']} | {row['aws_object_lock_until']} |")
    if len(locked) > limit:
        lines.append(f"| ... {len(locked) - limit} more | | |")
    return "\n".join(lines)


def problems_table(frame: pd.DataFrame, limit: int = 25) -> str:
    bad = frame[frame["classification"] != "ok"]
    if bad.empty:
        return "Every object is ok."
    lines = ["| key | classification | problems |", "|---|---|---|"]
    for _, row in bad.head(limit).iterrows():
        key, problems = md_escape(str(row["s3_key"])), md_escape(str(row["problems"]))
        lines.append(f"| `{key}` | {row['classification']} | {problems} |")
    if len(bad) > limit:
        lines.append(f"| ... {len(bad) - limit} more | | |")
    return "\n".join(lines)


def chart_png(frame: pd.DataFrame, title: str) -> bytes:
    """Objects by document type and classification (stacked bars), and the lag histogram."""
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=90)
    if not frame.empty:
        pivot = pd.crosstab(frame["document_type"].fillna("(orphan)"), frame["classification"])
        pivot.plot.bar(stacked=True, ax=left, rot=0)
        lags = frame["lag_seconds"].dropna()
        if not lags.empty:
            right.hist(lags, bins=min(30, max(5, len(lags) // 5)))
    left.set_title("objects by document type")
    right.set_title("replication lag (s)")
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes) -> str:
    return f"![verification chart](data:image/png;base64,{base64.b64encode(png).decode()})"


def write_report(cold: Any, bucket: str, key: str, frame: pd.DataFrame, *, retention_years: int,
                 now: dt.datetime) -> dict[str, str]:
    """The CSV on the cold site: STANDARD class so it can be read back, locked like a document."""
    body = frame.to_csv(index=False).encode("utf-8")
    digest = hashlib.sha256(body).digest()
    retain_until = dt.datetime.combine(add_years(now.date(), retention_years) + dt.timedelta(days=1),
                                       dt.time(0, 0), tzinfo=dt.UTC)
    try:
        response = cold.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="text/csv", StorageClass="STANDARD",
            ChecksumAlgorithm="SHA256", ChecksumSHA256=base64.b64encode(digest).decode(),
            ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=retain_until,
            Metadata={"vault-sha256": digest.hex(), "vault-kind": "verification-report"},
        )
    except Exception as exc:
        raise wrap(f"PUT verification report {key!r}", exc) from exc
    return {"key": key, "version_id": str(response.get("VersionId")), "sha256": digest.hex(),
            "retain_until": retain_until.isoformat(), "size": str(len(body))}
