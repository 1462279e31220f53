import pytest

from vault_pipeline.intake.sftp_paths import DocumentTypeRule
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
        ("SFTP_AFTER_TRANSFER", "archive"),
        ("SFTP_HOT_PREFIX", "sftp"),
        ("SFTP_MAX_WORKERS", "0"),
        ("SFTP_STALE_LOCK_MINUTES", "0"),
        ("SFTP_PORT", "70000"),
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
    from vault_pipeline.resources.sftp_inbox import SftpInboxResource

    for resource in (ColdSiteResource, ReplicationSettingsResource, VerificationSettingsResource, AlertsResource,
                     JournalResource, RestoreDrillResource, SftpInboxResource):
        with_default = [name for name, field in resource.model_fields.items()
                        if not field.is_required() and name not in optional
                        and not name.startswith("_")]
        assert with_default == [], f"{resource.__name__} declares defaults of its own: {with_default}"


def test_the_s3_timeouts_reach_both_clients_of_both_sites(monkeypatch: pytest.MonkeyPatch) -> None:
    """VAULT_S3_*_TIMEOUT_SECONDS configure boto3 (every call) and the fast path (its stall limit) of each
    site; unset, SiteConfig's defaults are VaultSettings' own."""
    from vault_pipeline.definitions import build_resources
    from vault_pipeline.replication.crt_s3 import CrtS3Client
    from vault_pipeline.replication.s3client import SiteConfig, make_client
    from vault_pipeline.settings import load_settings, setting_default

    assert (SiteConfig("x", None, "r", "", "", "b").connect_timeout,
            SiteConfig("x", None, "r", "", "", "b").read_timeout) == (
        setting_default("s3_connect_timeout_seconds"), setting_default("s3_read_timeout_seconds"))
    monkeypatch.setenv("VAULT_S3_CONNECT_TIMEOUT_SECONDS", "3.5")
    monkeypatch.setenv("VAULT_S3_READ_TIMEOUT_SECONDS", "7")
    for name in ("OVH_S3", "AWS_S3"):
        monkeypatch.setenv(f"{name}_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv(f"{name}_ACCESS_KEY_ID", "AKID")
        monkeypatch.setenv(f"{name}_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("OVH_S3_BUCKET_DOCUMENTS", "hot")
    monkeypatch.setenv("AWS_S3_BUCKET_DOCUMENTS_COLD", "cold")
    settings, _ = load_settings()
    resources = build_resources(settings)
    for site in ("hot_site", "cold_site"):
        resource = resources[site]
        assert (resource.connect_timeout, resource.read_timeout) == (3.5, 7.0)  # type: ignore[attr-defined]
    client = make_client(SiteConfig("cold", "http://127.0.0.1:9", "us-east-1", "AKID", "secret", "cold",
                                    connect_timeout=3.5, read_timeout=7.0))
    assert isinstance(client, CrtS3Client)
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (3.5, 7.0)
    assert client._read_timeout == 7.0
    with pytest.raises(ConfigurationError, match="VAULT_S3_READ_TIMEOUT_SECONDS"):
        monkeypatch.setenv("VAULT_S3_READ_TIMEOUT_SECONDS", "0")
        load_settings()


@pytest.mark.parametrize(("env", "message"), [
    ({"SFTP_USERNAME": ""}, "SFTP_USERNAME is not set"),
    ({"SFTP_PRIVATE_KEY_FILE": ""}, "neither SFTP_PRIVATE_KEY_FILE nor SFTP_PASSWORD"),
    ({"SFTP_PRIVATE_KEY_FILE": "/no/such/key"}, "SFTP_PRIVATE_KEY_FILE /no/such/key is not a readable file"),
    ({"SFTP_KNOWN_HOSTS": "/no/such/known_hosts"}, "SFTP_KNOWN_HOSTS /no/such/known_hosts is not a file"),
    ({"SFTP_DOCUMENT_TYPES": "payroll=payslips"}, "payslips, not a type of the retention policy"),
    ({"SFTP_DOCUMENT_TYPES": "payroll"}, "SFTP_DOCUMENT_TYPES: entry 'payroll' is not 'directory=type'"),
    ({"SFTP_DEFAULT_DOCUMENT_TYPE": "misc"}, "misc, not a type of the retention policy"),
])
def test_an_incomplete_sftp_configuration_is_refused_naming_what_is_missing(
        monkeypatch: pytest.MonkeyPatch, tmp_path, env: dict[str, str], message: str) -> None:
    key = tmp_path / "key"
    key.write_text("a key")
    for name, value in {"SFTP_HOST": "sftp.example.net", "SFTP_USERNAME": "vault", "SFTP_PRIVATE_KEY_FILE": str(key),
                        **env}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SFTP_PASSWORD", raising=False)
    with pytest.raises(ConfigurationError, match=message):
        load_settings()


def test_sftp_is_off_without_a_host_and_a_password_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFTP_HOST", raising=False)
    settings, _ = load_settings()
    assert not settings.sftp_configured
    assert (settings.sftp_hot_prefix, settings.sftp_max_workers, settings.sftp_stale_lock_minutes,
            settings.sftp_after_transfer) == ("sftp/", 4, 30.0, "move")
    for name, value in {"SFTP_HOST": "sftp.example.net", "SFTP_USERNAME": "vault", "SFTP_PASSWORD": "s3cret",
                        "SFTP_DOCUMENT_TYPES": "payroll=payslip, clients/contracts=contract"}.items():
        monkeypatch.setenv(name, value)
    settings, _ = load_settings()
    rule = DocumentTypeRule.parse(settings.sftp_document_types, settings.sftp_default_document_type)
    assert settings.sftp_configured
    assert rule.type_of("payroll/2026/a.pdf") == "payslip"
    assert rule.type_of("clients/contracts/b.pdf") == "contract"
    assert rule.type_of("clients/c.pdf") == "general"
    assert "s3cret" not in settings.model_dump_json()  # the password is read by the resource, as EnvVar
