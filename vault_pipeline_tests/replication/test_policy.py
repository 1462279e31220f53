import datetime as dt

import pytest

from vault_pipeline.replication.policy import PolicyError, RetentionPolicy, add_years, retain_until

UTC = dt.UTC
STORED = dt.datetime(2026, 11, 23, 14, 30, tzinfo=UTC)


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
    resolved = policy.resolve(metadata, STORED)
    assert (resolved.document_type, resolved.retention_years) == (expected_type, years)
    assert bool(resolved.notes) is noted
    assert resolved.source_document_type == raw


def test_retain_until_is_next_midnight_after_the_anniversary_of_last_modified(policy: RetentionPolicy) -> None:
    resolved = policy.resolve({"document-type": "payslip"}, STORED)
    assert resolved.base == "last-modified"
    assert resolved.retain_until == dt.datetime(2076, 11, 24, tzinfo=UTC)
    assert resolved.retain_until - STORED >= dt.timedelta(days=365 * 50 + 12)  # never short of 50 years


def test_document_date_is_the_base_when_valid(policy: RetentionPolicy) -> None:
    resolved = policy.resolve({"document-type": "invoice", "document-date": "2020-02-29"}, STORED)
    assert resolved.base == "document-date"
    # 29 February + 10 years is not a date: 1 March, then the following midnight.
    assert resolved.retain_until == dt.datetime(2030, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["2020-13-01", "yesterday", "2020-1-1", "1850-01-01", "2099-01-01", "2020-01-01T10"])
def test_malformed_or_implausible_document_dates_fall_back_to_last_modified(policy: RetentionPolicy, bad: str) -> None:
    resolved = policy.resolve({"document-type": "invoice", "document-date": bad}, STORED)
    assert resolved.base == "last-modified"
    assert resolved.retain_until == dt.datetime(2036, 11, 24, tzinfo=UTC)
    assert any("document-date" in note for note in resolved.notes)


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
