import datetime as dt

import pytest

from vault_pipeline.replication.policy import (
    PolicyError,
    ResolvedRetention,
    RetentionPolicy,
    add_years,
    minimum_retain_until,
    recorded_base,
    retain_until,
)
from vault_pipeline.settings import ConfigurationError, load_settings, setting_default

UTC = dt.UTC
STORED = dt.datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
NOW = dt.datetime(2026, 11, 23, 14, 31, tzinfo=UTC)  # copied a minute after the upload
MINIMUM = 180


def resolve(policy: RetentionPolicy, metadata: dict[str, str], *, now: dt.datetime = NOW,
            stored: dt.datetime = STORED, minimum: int = MINIMUM) -> ResolvedRetention:
    return policy.resolve(metadata, stored, now=now, minimum_lock_days=minimum)


@pytest.fixture(scope="module")
def policy() -> RetentionPolicy:
    return RetentionPolicy.default()


def test_default_policy_matches_the_product(policy: RetentionPolicy) -> None:
    assert policy.years_by_type == {"payslip": 50, "invoice": 10, "contract": 10, "general": 50}
    assert policy.default_type == "general"


@pytest.mark.parametrize(
    ("raw", "expected_type", "years", "noted"),
    [
        ("payslip", "payslip", 50, False),
        ("PAYSLIP", "payslip", 50, False),
        ("  Invoice ", "invoice", 10, False),
        ("contract", "contract", 10, False),
        ("bank-statement", "general", 50, True),
        ("pay/slip#1<>", "general", 50, True),
        ("", "general", 50, True),
        (None, "general", 50, True),
    ],
)
def test_document_types_resolve_case_insensitively_with_fallback(
    policy: RetentionPolicy, raw: str | None, expected_type: str, years: int, noted: bool
) -> None:
    metadata = {} if raw is None else {"document-type": raw}
    resolved = resolve(policy, metadata)
    assert (resolved.document_type, resolved.retention_years) == (expected_type, years)
    assert bool(resolved.notes) is noted
    assert resolved.source_document_type == raw


def test_retain_until_is_next_midnight_after_the_anniversary_of_last_modified(policy: RetentionPolicy) -> None:
    resolved = resolve(policy, {"document-type": "payslip"})
    assert resolved.base == "last-modified"
    assert resolved.retain_until == dt.datetime(2076, 11, 24, tzinfo=UTC)
    assert resolved.retain_until - STORED >= dt.timedelta(days=365 * 50 + 12)  # never short of 50 years


def test_document_date_is_the_base_when_valid(policy: RetentionPolicy) -> None:
    resolved = resolve(policy, {"document-type": "invoice", "document-date": "2020-02-29"})
    assert resolved.base == "document-date"
    # 29 February + 10 years is not a date: 1 March, then the following midnight.
    assert resolved.retain_until == dt.datetime(2030, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["2020-13-01", "yesterday", "2020-1-1", "1850-01-01", "2099-01-01", "2020-01-01T10"])
def test_malformed_or_implausible_document_dates_fall_back_to_last_modified(policy: RetentionPolicy, bad: str) -> None:
    resolved = resolve(policy, {"document-type": "invoice", "document-date": bad})
    assert resolved.base == "last-modified"
    assert resolved.retain_until == dt.datetime(2036, 11, 24, tzinfo=UTC)
    assert any("document-date" in note for note in resolved.notes)


def test_a_1960_payslip_is_locked_on_the_minimum_from_now(policy: RetentionPolicy) -> None:
    """Issue 12: its 50 years ended in 2010; S3 refuses a past retain-until date, so it was never copied."""
    resolved = resolve(policy, {"document-type": "payslip", "document-date": "1960-01-15"})
    assert resolved.base == "minimum"
    assert resolved.policy_until == dt.datetime(2010, 1, 16, tzinfo=UTC)  # what the policy alone asks
    # The midnight after now + 180 days: never less than 180 full days of lock.
    assert resolved.retain_until == dt.datetime(2027, 5, 23, tzinfo=UTC)
    assert resolved.retain_until - NOW >= dt.timedelta(days=MINIMUM)
    assert (resolved.document_type, resolved.retention_years) == ("payslip", 50)
    assert resolved.note and "1960-01-15" in resolved.note and "minimum" in resolved.note
    assert resolved.note.count("2027-05-23") == 1


def test_the_minimum_counts_from_now_so_later_copies_get_later_dates(policy: RetentionPolicy) -> None:
    metadata = {"document-type": "payslip", "document-date": "1960-01-15"}
    first = resolve(policy, metadata)
    later = resolve(policy, metadata, now=NOW + dt.timedelta(days=3))
    assert later.retain_until == first.retain_until + dt.timedelta(days=3)
    # Within one UTC day the date is the same: a retry an hour later asks for what was written.
    assert resolve(policy, metadata, now=NOW + dt.timedelta(hours=9)).retain_until == first.retain_until


@pytest.mark.parametrize(
    ("document_date", "base"),
    [
        # invoice, 10 years: policy date = the day after the 10th anniversary.
        ("2016-11-23", "minimum"),  # policy date 2026-11-24: tomorrow, but nearer than 180 days
        ("2017-05-21", "minimum"),  # 2027-05-22 < the minimum, 2027-05-23 (the midnight after NOW + 180 days)
        ("2017-05-22", "document-date"),  # 2027-05-23 == the minimum: the policy's own date stands
        ("2017-05-23", "document-date"),  # later than the minimum
    ],
)
def test_the_later_of_the_policy_date_and_the_minimum_wins(
        policy: RetentionPolicy, document_date: str, base: str) -> None:
    resolved = resolve(policy, {"document-type": "invoice", "document-date": document_date})
    floor = minimum_retain_until(NOW, MINIMUM)
    assert floor == dt.datetime(2027, 5, 23, tzinfo=UTC)
    assert resolved.base == base
    assert resolved.retain_until == max(floor, retain_until(dt.date.fromisoformat(document_date), 10))
    assert resolved.retain_until >= floor
    assert (resolved.note is not None) is (base == "minimum")


def test_a_document_dated_after_its_upload_day_falls_back_to_the_upload_day_with_a_warning(
        policy: RetentionPolicy) -> None:
    resolved = resolve(policy, {"document-type": "invoice", "document-date": "2026-11-24"})  # uploaded 2026-11-23
    assert resolved.base == "last-modified"
    assert resolved.retain_until == retain_until(STORED.date(), 10) == dt.datetime(2036, 11, 24, tzinfo=UTC)
    assert resolved.note is not None and resolved.note.startswith("warning: document-date '2026-11-24' is later "
                                                                  "than the upload day 2026-11-23")
    # The upload day itself is a valid document date (boundary), the day before too.
    same_day = resolve(policy, {"document-type": "invoice", "document-date": "2026-11-23"})
    assert (same_day.base, same_day.note) == ("document-date", None)
    assert same_day.retain_until == resolved.retain_until


def test_a_future_date_on_a_document_whose_upload_day_is_past_can_still_need_the_minimum(
        policy: RetentionPolicy) -> None:
    """Uploaded in 2010, dated 2099, copied now with a 10-year policy: the upload day is the base (2020),
    which is past, so the minimum applies and the row carries both reasons."""
    resolved = resolve(policy, {"document-type": "invoice", "document-date": "2099-01-01"},
                       stored=dt.datetime(2010, 3, 4, 8, 0, tzinfo=UTC))
    assert resolved.base == "minimum"
    assert resolved.policy_until == dt.datetime(2020, 3, 5, tzinfo=UTC)
    assert resolved.note is not None and "later than the upload day 2010-03-04" in resolved.note
    assert "locked on the minimum" in resolved.note


def test_a_written_copy_tells_its_base_from_its_own_metadata(policy: RetentionPolicy) -> None:
    """A rebuild from a HEAD (no journal entry) finds 'minimum' again from the date the copy was written with."""
    for metadata in ({"document-type": "payslip", "document-date": "1960-01-15"},
                     {"document-type": "invoice", "document-date": "2099-01-01"},
                     {"document-type": "invoice", "document-date": "2020-02-29"}, {"document-type": "payslip"}):
        resolved = resolve(policy, metadata)
        assert recorded_base(metadata, STORED, resolved.retention_years, resolved.retain_until) == (
            resolved.base, resolved.note.replace("is before now + 180 days", "was before the minimum lock")
            if resolved.note else None)


def test_the_minimum_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert setting_default("minimum_lock_days") == 180
    monkeypatch.setenv("VAULT_MINIMUM_LOCK_DAYS", "30")
    assert load_settings()[0].minimum_lock_days == 30
    for bad in ("0", "-1", "36501", "half a year"):
        monkeypatch.setenv("VAULT_MINIMUM_LOCK_DAYS", bad)
        with pytest.raises(ConfigurationError, match="VAULT_MINIMUM_LOCK_DAYS="):
            load_settings()
    with pytest.raises(ValueError, match="at least 1 day"):
        minimum_retain_until(NOW, 0)


def test_same_input_gives_same_date() -> None:
    assert retain_until(dt.date(2026, 1, 31), 10) == retain_until(dt.date(2026, 1, 31), 10)
    assert add_years(dt.date(2024, 2, 29), 1) == dt.date(2025, 3, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default: general\ntypes: {general: -1}", "between 1 and 100"),
        ("default: general\ntypes: {general: 101}", "between 1 and 100"),
        ("default: general\ntypes: {general: 0}", "between 1 and 100"),
        ("default: general\ntypes: {general: ten}", "whole number"),
        ("types: {general: 10}", "no 'default'"),
        ("default: other\ntypes: {general: 10}", "not one of the listed types"),
        ("default: general\ntypes: {general: 10, General: 20}", "listed twice"),
        ("default: general\ntypes: {'bad tag<>': 10, general: 5}", "not a valid name"),
        ("default: general\ntypes: {}", "at least one"),
        ("[1, 2]", "expected a mapping"),
        ("default: general\ntypes: {general: 5}\nextra: 1", "unknown top-level keys"),
        ("default: [unclosed", "not valid YAML"),
    ],
)
def test_bad_policy_files_are_refused_with_the_problem_named(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        RetentionPolicy.from_file(path)


def test_missing_policy_file_is_named(tmp_path) -> None:
    with pytest.raises(PolicyError, match="cannot be read"):
        RetentionPolicy.from_file(tmp_path / "nope.yaml")
