"""Retention policy: which COMPLIANCE retain-until date a document gets.

The policy's date is deterministic (a rerun, a retry or a rebuild from storage computes the same value)
and never shorter than the policy asks, so it is derived only from the document itself:
base date + N years, where the base is the document's own date when its metadata carries a valid one,
else the hot object's LastModified (the upload day).

A policy date that is already past, or too close (a 1960 payslip with 50 years), cannot be a lock: S3
refuses a retain-until date in the past. Such a document is locked until `now + minimum_lock_days`
instead (base 'minimum'), so no document stays uncopied because of its date. That date depends on when the
copy is written, which is why the caller passes `now` explicitly: the write time for a new copy, the cold
version's own LastModified when an existing copy is adopted (so a rerun asks for what was written).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

MAX_RETENTION_YEARS = 100  # S3 Object Lock ceiling
TYPE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
DOCUMENT_TYPE_KEYS = ("document-type", "document_type", "documenttype")
DOCUMENT_DATE_KEYS = ("document-date", "document_date", "documentdate")
EARLIEST_DOCUMENT_DATE = dt.date(1900, 1, 1)

RetentionBase = Literal["document-date", "last-modified", "minimum"]


class PolicyError(ValueError):
    """The retention policy file is unusable; the message names the problem."""


@dataclass(frozen=True)
class ResolvedRetention:
    document_type: str  # policy class applied, always a key of the policy
    source_document_type: str | None  # raw metadata value as found on the hot site
    retention_years: int
    retain_until: dt.datetime  # UTC: the later of the policy's date and the minimum lock
    base: RetentionBase
    notes: tuple[str, ...]  # why a fallback happened, for the audit log and the row's retention_note
    policy_until: dt.datetime | None = None  # the policy's own date, when the minimum replaced it

    @property
    def note(self) -> str | None:
        """The notes as the row's retention_note (None when the policy applied as written)."""
        return "; ".join(self.notes) if self.notes else None


@dataclass(frozen=True)
class RetentionPolicy:
    years_by_type: Mapping[str, int]
    default_type: str

    @classmethod
    def default(cls) -> RetentionPolicy:
        text = resources.files("vault_pipeline").joinpath("retention_policy.yaml").read_text("utf-8")
        return cls.from_yaml_text(text, source="built-in retention_policy.yaml")

    @classmethod
    def from_file(cls, path: str | Path) -> RetentionPolicy:
        path = Path(path)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise PolicyError(f"retention policy file {path}: cannot be read ({exc.strerror})") from exc
        return cls.from_yaml_text(text, source=str(path))

    @classmethod
    def from_yaml_text(cls, text: str, *, source: str = "<text>") -> RetentionPolicy:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"retention policy {source}: not valid YAML ({exc})") from exc
        return cls.from_mapping(data, source=source)

    @classmethod
    def from_mapping(cls, data: object, *, source: str = "<mapping>") -> RetentionPolicy:
        where = f"retention policy {source}"
        if not isinstance(data, Mapping):
            raise PolicyError(f"{where}: expected a mapping with 'default' and 'types'")
        unknown = set(data) - {"default", "types"}
        if unknown:
            raise PolicyError(f"{where}: unknown top-level keys {sorted(map(str, unknown))}")
        types = data.get("types")
        if not isinstance(types, Mapping) or not types:
            raise PolicyError(f"{where}: 'types' must map at least one document type to a number of years")
        years_by_type: dict[str, int] = {}
        for raw_name, years in types.items():
            name = str(raw_name).strip().lower()
            if not TYPE_NAME.match(name):
                raise PolicyError(f"{where}: document type {raw_name!r} is not a valid name "
                                  "(letters, digits, '.', '_', '-'; it is also used as an S3 tag value)")
            if name in years_by_type:
                raise PolicyError(f"{where}: document type {raw_name!r} is listed twice (types match "
                                  "case-insensitively)")
            if isinstance(years, bool) or not isinstance(years, int):
                raise PolicyError(f"{where}: years for {raw_name!r} must be a whole number, got {years!r}")
            if not 1 <= years <= MAX_RETENTION_YEARS:
                raise PolicyError(f"{where}: years for {raw_name!r} must be between 1 and "
                                  f"{MAX_RETENTION_YEARS}, got {years}")
            years_by_type[name] = years
        default = data.get("default")
        if default is None:
            raise PolicyError(f"{where}: no 'default' type: unknown document types need a fallback")
        default_name = str(default).strip().lower()
        if default_name not in years_by_type:
            raise PolicyError(f"{where}: default type {default!r} is not one of the listed types "
                              f"{sorted(years_by_type)}")
        return cls(years_by_type=dict(years_by_type), default_type=default_name)

    def resolve_type(self, raw: str | None) -> tuple[str, tuple[str, ...]]:
        """Policy class for a raw document-type value, with a note when it falls back."""
        if raw is None or not raw.strip():
            return self.default_type, ("no document-type metadata: default policy applied",)
        name = raw.strip().lower()
        if name in self.years_by_type:
            return name, ()
        return self.default_type, (f"unknown document-type {raw!r}: default policy {self.default_type!r} "
                                   "applied",)

    def resolve(self, metadata: Mapping[str, str], last_modified: dt.datetime, *, now: dt.datetime,
                minimum_lock_days: int) -> ResolvedRetention:
        """The lock a document gets: the policy's date, or `now + minimum_lock_days` when that is later."""
        raw_type = first_value(metadata, DOCUMENT_TYPE_KEYS)
        document_type, type_notes = self.resolve_type(raw_type)
        years = self.years_by_type[document_type]
        base_date, base, date_notes = retention_base(metadata, last_modified)
        policy_until = retain_until(base_date, years)
        floor = minimum_retain_until(now, minimum_lock_days)
        if policy_until >= floor:
            return ResolvedRetention(
                document_type=document_type, source_document_type=raw_type, retention_years=years,
                retain_until=policy_until, base=base, notes=type_notes + date_notes,
            )
        minimum_note = (f"policy date {policy_until:%Y-%m-%d} ({base} {base_date} + {years} years) is before "
                        f"now + {minimum_lock_days} days: locked on the minimum until {floor:%Y-%m-%d}")
        return ResolvedRetention(
            document_type=document_type, source_document_type=raw_type, retention_years=years,
            retain_until=floor, base="minimum", notes=type_notes + date_notes + (minimum_note,),
            policy_until=policy_until,
        )


def recorded_base(metadata: Mapping[str, str], last_modified: dt.datetime, years: int,
                  asked_until: dt.datetime) -> tuple[RetentionBase, str | None]:
    """The retention base and note of a copy already written, from what it describes of itself (its source
    metadata, LastModified, years and the retain-until date it was written with): 'minimum' when that date
    is later than the policy's own. For a rebuild from a HEAD, where no journal entry says it."""
    base_date, base, notes = retention_base(metadata, last_modified)
    policy_until = retain_until(base_date, years)
    if asked_until > policy_until:
        notes += (f"policy date {policy_until:%Y-%m-%d} ({base} {base_date} + {years} years) was before the "
                  f"minimum lock: locked on the minimum until {asked_until:%Y-%m-%d}",)
        return "minimum", "; ".join(notes)
    return base, "; ".join(notes) or None


def first_value(metadata: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    lowered = {k.lower(): v for k, v in metadata.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def retention_base(
    metadata: Mapping[str, str], last_modified: dt.datetime
) -> tuple[dt.date, RetentionBase, tuple[str, ...]]:
    """The document's own date when valid (ISO YYYY-MM-DD, not before 1900, not after it was stored)."""
    stored_on = last_modified.astimezone(dt.UTC).date()
    raw = first_value(metadata, DOCUMENT_DATE_KEYS)
    if raw is None:
        return stored_on, "last-modified", ()
    try:
        document_date = dt.date.fromisoformat(raw.strip()[:10]) if len(raw.strip()) >= 10 else None
    except ValueError:
        document_date = None
    if document_date is None or len(raw.strip()) != 10:
        return stored_on, "last-modified", (f"document-date {raw!r} is not YYYY-MM-DD: LastModified used",)
    if document_date > stored_on:  # a document cannot be dated after it was uploaded
        return stored_on, "last-modified", (
            f"warning: document-date {raw!r} is later than the upload day {stored_on}: invalid, the upload day "
            "is the retention base",)
    if document_date < EARLIEST_DOCUMENT_DATE:
        return stored_on, "last-modified", (
            f"document-date {raw!r} is before {EARLIEST_DOCUMENT_DATE}: LastModified used",)
    return document_date, "document-date", ()


def add_years(day: dt.date, years: int) -> dt.date:
    """Same day N years later; 29 February moves to 1 March so the period is never short."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


def minimum_retain_until(now: dt.datetime, days: int) -> dt.datetime:
    """Midnight UTC after `now + days`: at least `days` full days of lock whatever the time of day."""
    if days < 1:
        raise ValueError(f"the minimum lock must be at least 1 day, got {days}")
    day = now.astimezone(dt.UTC).date() + dt.timedelta(days=days + 1)
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC)


def retain_until(base_date: dt.date, years: int) -> dt.datetime:
    """Midnight UTC after the N-th anniversary: at least N full years whatever the base time of day."""
    anniversary = add_years(base_date, years)
    return dt.datetime.combine(anniversary + dt.timedelta(days=1), dt.time(0, 0), tzinfo=dt.UTC)
