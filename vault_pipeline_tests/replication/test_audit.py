import datetime as dt

from vault_pipeline.replication.audit import required_retain_until
from vault_pipeline.replication.policy import RetentionPolicy

POLICY = RetentionPolicy.from_mapping({"default": "general", "types": {"invoice": 11, "general": 50}})


def row(until: dt.datetime, years: int) -> dict:
    return {"aws_object_lock_until": until, "document_type": "invoice", "retention_years": years}


def test_the_recorded_date_stands_unless_the_policy_grew() -> None:
    until = dt.datetime(2036, 11, 24, tzinfo=dt.UTC)
    assert required_retain_until(row(until, 11), POLICY) == until
    assert required_retain_until(row(until, 12), POLICY) == until  # never asks for less than recorded


def test_policy_growth_from_29_february_moves_to_1_march() -> None:
    until = dt.datetime(2036, 2, 29, tzinfo=dt.UTC)  # 10 years recorded, the policy now says 11
    assert required_retain_until(row(until, 10), POLICY) == dt.datetime(2037, 3, 1, tzinfo=dt.UTC)


def test_a_copy_locked_on_the_minimum_is_held_to_its_recorded_lock_not_its_past_policy_date() -> None:
    # An invoice dated 2010 (11 years: policy date 2021) copied on 2026-11-23 with a 180-day minimum.
    until = dt.datetime(2027, 5, 23, tzinfo=dt.UTC)
    minimum = {**row(until, 11), "retention_base": "minimum"}
    assert required_retain_until(minimum, POLICY) == until
    # Policy growth adds its years to the recorded date: never less than recorded, never a past date.
    assert required_retain_until({**minimum, "retention_years": 10}, POLICY) == dt.datetime(2028, 5, 23, tzinfo=dt.UTC)
