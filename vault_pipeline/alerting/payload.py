"""What an alert says: the distinct failure it is about, and the JSON posted for it.

The payload carries a `text` line, which is all that Slack and Teams-style incoming webhooks read, plus
structured fields for anything that routes or files alerts. Nothing here may carry a secret: the
payload also goes to the log and is stored in PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

AlertKind = Literal["check", "run", "lag"]
EventKind = Literal["alert", "recovery"]
SOURCE = "vault-pipeline"
MAX_KEYS = 20  # failing keys carried by a payload; the check's own metadata has the full picture
TEXT_KEYS = 5  # failing keys named in the human line
MAX_TEXT = 1500
HASH_CHARS = 16  # a failing object's hash: 64 bits of SHA-256, so two keys of one day never share one
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BACKTICKED = re.compile(r"`([^`]+)`")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_EXTENSION_ONLY = ("new_objects_failing", "new_keys_unnamed")  # what a recovery does not repeat


@dataclass(frozen=True)
class Alert:
    """One distinct failure. Its `key` identifies it across ticks, runs and processes.

    `subject` is "asset:check" for a check and the job name for a run; `partition` is a day, a
    "first..last" range (a ranged run) or "all" (an unpartitioned evaluation or run).
    """

    kind: AlertKind
    subject: str
    partition: str
    severity: str = "ERROR"
    asset: str | None = None
    check: str | None = None
    job: str | None = None
    run_id: str | None = None
    failing_keys: tuple[str, ...] = ()
    days: tuple[str, ...] = ()
    description: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    # key_hash of failing objects, beyond the shown `failing_keys` too (a check's `failing_key_hashes`)
    key_hashes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return alert_key(self.kind, self.subject, self.partition)

    @property
    def objects_failing(self) -> int | None:
        """The count of failing objects the check reported, shown or not; None when it gave none."""
        total = self.details.get("objects_failing")
        return total if isinstance(total, int) and not isinstance(total, bool) else None

    def all_key_hashes(self) -> frozenset[str]:
        """The hashes of every failing object this evaluation identifies: the shown keys and the others."""
        return frozenset(self.key_hashes) | {key_hash(k) for k in self.failing_keys}

    @property
    def what(self) -> str:
        return {"check": f"check {self.subject}", "lag": self.subject}.get(self.kind, f"run of {self.subject}")


def alert_key(kind: str, subject: str, partition: str) -> str:
    return f"{kind}:{subject}:{partition}"


def key_hash(key: str) -> str:
    """A failing object's short, stable identity, for checks whose failing list is longer than it shows.

    Checks publish it as `failing_key_hashes` (checks/cold_copies.py) and migration 012 computes the same
    value in SQL: the first 16 hex digits of the SHA-256 of the key's UTF-8 bytes.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:HASH_CHARS]


def partition_label(partition: str | None, range_start: str | None = None, range_end: str | None = None) -> str:
    """The partition part of a key: the day, "first..last" for a ranged run, else "all"."""
    if partition:
        return partition
    if range_start and range_end:
        return range_start if range_start == range_end else f"{range_start}..{range_end}"
    return "all"


def partition_bounds(label: str) -> tuple[str, str] | None:
    """(first, last) day of a label, or None for "all" or anything that is not a day or a day range."""
    first, _, last = label.partition("..")
    last = last or first
    if DAY.match(first) and DAY.match(last):
        return first, last
    return None


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _short_run(run_id: str | None) -> str:
    return f" (run {run_id[:8]})" if run_id else ""


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(text.split())  # one line, whatever the description holds
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _keys_phrase(keys: tuple[str, ...], total: int | None = None) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:TEXT_KEYS])
    more = max((total or len(keys)) - min(len(keys), TEXT_KEYS), 0)
    return f" Failing: {shown}" + (f" and {more} more" if more else "") + "."


def alert_payload(alert: Alert, *, at: dt.datetime) -> dict[str, Any]:
    """The JSON of an alert: a human `text` line and the structured fields."""
    total = alert.details.get("objects_failing") if isinstance(alert.details.get("objects_failing"), int) else None
    if alert.kind == "lag":  # a metric over its threshold, not a failure of one partition
        text = f"[{SOURCE}] ALERT {alert.severity}: {alert.what} over its threshold"
    else:
        text = f"[{SOURCE}] ALERT {alert.severity}: {alert.what} failed for {alert.partition}"
    text += f": {alert.description.rstrip('.')}." if alert.description else "."
    text += _keys_phrase(alert.failing_keys, total) + _short_run(alert.run_id)
    payload = _payload(alert, "alert", text, at)
    payload["new_keys"] = list(payload["failing_keys"])  # an opening alert names each of its keys first
    return payload


def extension_payload(
    alert: Alert, *, at: dt.datetime, new_keys: tuple[str, ...], unnamed: int, first_seen: dt.datetime,
    extension: int,
) -> dict[str, Any]:
    """The JSON of new damage on an alert that is already open: it names only the keys not seen before.

    `unnamed` counts new failing objects the evaluation did not name (beyond the check's shown list,
    known from its hashes or its count). `extension` is this episode's n-th such notice.
    """
    new_total = len(new_keys) + unnamed
    text = (f"[{SOURCE}] ALERT {alert.severity}: {alert.what} finds NEW failing object(s) for {alert.partition} "
            f"({new_total} new")
    total = alert.objects_failing
    text += f", {total} failing in all" if total is not None else ""
    text += f"; failing since {_iso(first_seen)})."
    if new_keys:
        shown = ", ".join(new_keys[:TEXT_KEYS])
        more = len(new_keys) - min(len(new_keys), TEXT_KEYS)
        text += f" New: {shown}" + (f" and {more} more" if more else "") + "."
    if unnamed:
        beyond = f"beyond the {len(alert.failing_keys)} the check names" if alert.failing_keys else "unnamed"
        text += f" {unnamed} new failing object(s) not named here ({beyond}): see the check's metadata."
    text += _short_run(alert.run_id)
    payload = _payload(alert, "alert", text, at)
    payload["new_keys"] = list(new_keys[:MAX_KEYS])
    payload["details"].update(extension=extension, new_objects_failing=new_total, new_keys_unnamed=unnamed,
                              failing_since=_iso(first_seen))
    return payload


def recovery_payload(
    alert_fields: Mapping[str, Any], *, at: dt.datetime, first_seen: dt.datetime, occurrences: int,
    run_id: str | None, alert_delivered: bool,
) -> dict[str, Any]:
    """The JSON of a recovery notice, built from the stored alert so it names the same failure.

    When the alert itself never reached the webhook (it was down for the whole episode), the notice
    says what failed, so the failure is not lost even though it is over.
    """
    kind = alert_fields.get("kind", "check")
    subject = alert_fields.get("subject") or ""
    what = {"check": f"check {subject}", "lag": subject}.get(kind, f"run of {subject}")
    passed = {"check": "passes again", "lag": "is back under its threshold"}.get(kind, "succeeded")
    count = {"check": f"{occurrences} failing evaluation(s)", "lag": f"{occurrences} observation(s) over it"}.get(
        kind, f"{occurrences} failed run(s)")
    text = (f"[{SOURCE}] RESOLVED: {what} {passed} for {alert_fields.get('partition')} "
            f"(failing since {_iso(first_seen)}, {count}).")
    if not alert_delivered:
        earlier = alert_fields.get("text") or ""
        text += f" The alert could not be delivered at the time: {earlier.removeprefix(f'[{SOURCE}] ')}"
    text += _short_run(run_id)
    payload = dict(alert_fields)
    payload.update(
        text=_clip(text), event="recovery", run_id=run_id, time=_iso(at), new_keys=[],
        details={**{k: v for k, v in (alert_fields.get("details") or {}).items() if k not in _EXTENSION_ONLY},
                 "failing_since": _iso(first_seen),
                 "occurrences": occurrences, "alert_delivered": alert_delivered,
                 "alert_run_id": alert_fields.get("run_id")},
    )
    return payload


def _payload(alert: Alert, event: EventKind, text: str, at: dt.datetime) -> dict[str, Any]:
    return {
        "text": _clip(text),
        "event": event,
        "severity": alert.severity,
        "key": alert.key,
        "kind": alert.kind,
        "subject": alert.subject,
        "asset": alert.asset,
        "check": alert.check,
        "job": alert.job,
        "partition": alert.partition,
        "days": list(alert.days),
        "run_id": alert.run_id,
        "failing_keys": list(alert.failing_keys[:MAX_KEYS]),
        "details": json.loads(json.dumps(dict(alert.details), default=str)),  # JSON-safe copy
        "description": alert.description,
        "time": _iso(at),
        "source": SOURCE,
    }


# -- reading the metadata a check or a run left behind ---------------------------------------------
def key_list(value: Any, limit: int = MAX_KEYS) -> tuple[str, ...]:
    """Object keys from whatever shape a check's metadata holds them in.

    Accepted: a list (JSON metadata), a JSON text of a list, a dict with a "keys" list, or markdown /
    plain text with one key per line or per backticked span (a bullet list or a table). Anything else
    gives no keys rather than an error: an alert must go out even if the metadata changed shape.
    """
    if value is None:
        return ()
    if isinstance(value, Mapping):
        inner = value.get("keys", value.get("failing_keys"))
        return key_list(inner, limit) if inner is not None else ()
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(str(v) for v in value if v is not None and str(v).strip())[:limit]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return ()
    stripped = value.strip()
    if not stripped or stripped.lower() in ("none", "none.", "[]"):
        return ()
    if stripped[:1] in "[{":
        try:
            return key_list(json.loads(stripped), limit)
        except ValueError:
            pass
    backticked = _BACKTICKED.findall(stripped)
    if backticked:
        return tuple(backticked)[:limit]
    keys = []
    for line in stripped.splitlines():
        line = _BULLET.sub("", line).strip()
        if line and not line.startswith(("|", "#")):
            keys.append(line)
    return tuple(keys)[:limit]


def day_list(*values: Any) -> tuple[str, ...]:
    """Days (YYYY-MM-DD) named by metadata values such as "day" and "days", sorted, without repeats."""
    days: set[str] = set()
    for value in values:
        for item in key_list(value, limit=10_000) if not isinstance(value, str) else _split_days(value):
            if DAY.match(item):
                days.add(item)
    return tuple(sorted(days))


def _split_days(text: str) -> list[str]:
    stripped = text.strip()
    if stripped[:1] == "[":
        return list(key_list(stripped, limit=10_000))
    return [part.strip() for part in re.split(r"[,\s]+", stripped) if part.strip()]
