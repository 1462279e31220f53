"""The settings of shared days and of the sensor's re-requests after a failed run (VAULT_SHARD_MIN_OBJECTS,
VAULT_MAX_SHARDS, VAULT_RUN_RETRY_BASE_SECONDS, VAULT_RUN_RETRY_MAX_SECONDS)."""

import pytest

from vault_pipeline.replication.shards import MAX_SHARDS, Shard, ShardError
from vault_pipeline.settings import ConfigurationError, load_settings

NAMES = ("VAULT_SHARD_MIN_OBJECTS", "VAULT_MAX_SHARDS", "VAULT_RUN_RETRY_BASE_SECONDS", "VAULT_RUN_RETRY_MAX_SECONDS")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_names() -> None:
    settings, _ = load_settings()
    assert (settings.shard_min_objects, settings.max_shards) == (2000, 4)
    assert (settings.run_retry_base_seconds, settings.run_retry_max_seconds) == (30.0, 3600.0)


def test_the_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in zip(NAMES, ("1", "64", "0.5", "7200"), strict=True):
        monkeypatch.setenv(name, value)
    settings, _ = load_settings()
    assert (settings.shard_min_objects, settings.max_shards) == (1, 64)
    assert (settings.run_retry_base_seconds, settings.run_retry_max_seconds) == (0.5, 7200.0)
    assert settings.max_shards == MAX_SHARDS and Shard(63, settings.max_shards)  # the most a tag can name
    with pytest.raises(ShardError):
        Shard(0, settings.max_shards + 1)


@pytest.mark.parametrize(("name", "value"), [
    ("VAULT_SHARD_MIN_OBJECTS", "0"), ("VAULT_SHARD_MIN_OBJECTS", "many"), ("VAULT_MAX_SHARDS", "0"),
    ("VAULT_MAX_SHARDS", "65"), ("VAULT_RUN_RETRY_BASE_SECONDS", "0"), ("VAULT_RUN_RETRY_MAX_SECONDS", "-1"),
])
def test_invalid_values_are_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                                        value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings()


def test_a_maximum_below_the_base_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_RUN_RETRY_BASE_SECONDS", "120")
    monkeypatch.setenv("VAULT_RUN_RETRY_MAX_SECONDS", "60")
    with pytest.raises(ConfigurationError, match=r"VAULT_RUN_RETRY_MAX_SECONDS \(60\) is below "
                                                 r"VAULT_RUN_RETRY_BASE_SECONDS \(120\)"):
        load_settings()
