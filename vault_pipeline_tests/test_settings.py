import pytest

from vault_pipeline.settings import ConfigurationError, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REPLICATION_CONCURRENCY", "VAULT_COLD_STORAGE_CLASS", "DELETE_FROM_OVH_AFTER_REPLICATION",
                 "VAULT_RETENTION_POLICY_FILE", "VAULT_MAX_ATTEMPTS", "VAULT_RETRY_BASE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings, policy = load_settings()
    assert settings.concurrency == 8
    assert settings.cold_storage_class == "DEEP_ARCHIVE"
    assert settings.delete_after_replication is False
    assert (settings.max_attempts, settings.retry_base_seconds) == (3, 5.0)
    assert policy.years_by_type["payslip"] == 50


def test_specification_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATION_CONCURRENCY", "3")
    monkeypatch.setenv("DELETE_FROM_OVH_AFTER_REPLICATION", "true")
    monkeypatch.setenv("VAULT_COLD_storage_class", "glacier")
    settings, _ = load_settings()
    assert (settings.concurrency, settings.delete_after_replication, settings.cold_storage_class) == (
        3, True, "GLACIER")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REPLICATION_CONCURRENCY", "0"),
        ("REPLICATION_CONCURRENCY", "eight"),
        ("VAULT_COLD_STORAGE_CLASS", "COLDEST"),
        ("DELETE_FROM_OVH_AFTER_REPLICATION", "maybe"),
        ("VAULT_PART_SIZE_MB", "1"),
        ("VAULT_MAX_ATTEMPTS", "-2"),
        ("OVH_S3_REQUEST_CHECKSUM_CALCULATION", "always"),
        ("VAULT_JOURNAL_PREFIX", "/journal/"),
        ("VAULT_JOURNAL_PREFIX", "reports/"),  # would swallow the verification reports' prefix
        ("VAULT_JOURNAL_SEGMENT_ENTRIES", "0"),
        ("VAULT_JOURNAL_RETENTION_YEARS", "101"),
        ("VAULT_JOURNAL_SEAL_CRON", "every day"),
        ("VAULT_REBUILD_LAG_ALERT_SECONDS", "0"),
        ("VAULT_SPOOL_DIR", "/no/such/directory"),
        ("VAULT_SPOOL_MAX_MB", "-1"),
        ("AWS_S3_FAST_PATH", "perhaps"),
    ],
)
def test_invalid_values_are_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings()


def test_bad_policy_file_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("default: general\ntypes: {general: 150}\n")
    monkeypatch.setenv("VAULT_RETENTION_POLICY_FILE", str(path))
    with pytest.raises(ConfigurationError, match=r"VAULT_RETENTION_POLICY_FILE.*between 1 and 100"):
        load_settings()


def test_defaults_are_declared_once_in_settings() -> None:
    """The domain's option classes take their defaults from VaultSettings, and the resources declare none
    for what VaultSettings gives them: changing a default in settings.py changes it everywhere."""
    import dataclasses
    import datetime as dt

    from vault_pipeline.replication.copier import CopyOptions
    from vault_pipeline.replication.engine import EngineSettings
    from vault_pipeline.resources import ColdSiteResource, ReplicationSettingsResource, VerificationSettingsResource
    from vault_pipeline.resources.alerts import AlertsResource
    from vault_pipeline.resources.journal import JournalResource
    from vault_pipeline.resources.restore_drill import RestoreDrillResource
    from vault_pipeline.retrieval.drill_store import DrillSettings
    from vault_pipeline.settings import MiB, VaultSettings, setting_default

    defaults = {name: field.default for name, field in VaultSettings.model_fields.items()}
    assert setting_default("concurrency") == defaults["concurrency"]
    options, engine, drill = CopyOptions(), EngineSettings(), DrillSettings()
    assert (options.storage_class, options.multipart_threshold, options.part_size, options.part_concurrency,
            options.spool_max_bytes) == (defaults["cold_storage_class"], defaults["multipart_threshold_mb"] * MiB,
                                         defaults["part_size_mb"] * MiB, defaults["part_concurrency"],
                                         defaults["spool_max_mb"] * MiB)
    assert dataclasses.astuple(engine)[:4] == (defaults["concurrency"], defaults["max_attempts"],
                                               defaults["retry_base_seconds"], defaults["lease_seconds"])
    assert (drill.tier, drill.deadline) == (defaults["restore_drill_tier"],
                                            dt.timedelta(hours=defaults["restore_drill_deadline_hours"]))
    optional = {"webhook_url", "signing_key", "public_keys", "session_token"}  # secrets and lists from the environment
    for resource in (ColdSiteResource, ReplicationSettingsResource, VerificationSettingsResource, AlertsResource,
                     JournalResource, RestoreDrillResource):
        with_default = [name for name, field in resource.model_fields.items()
                        if not field.is_required() and name not in optional
                        and not name.startswith("_")]
        assert with_default == [], f"{resource.__name__} declares defaults of its own: {with_default}"
