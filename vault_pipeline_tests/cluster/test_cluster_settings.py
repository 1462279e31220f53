"""The cluster's configuration, code version and instance file, without servers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import vault_pipeline
from vault_pipeline.cluster.code_version import code_version, source_digest
from vault_pipeline.cluster.settings import ClusterConfigurationError, ClusterSettings, redacted

REPO = Path(__file__).resolve().parents[2]
GOOD = {"VAULT_CELERY_BROKER_URL": "redis://:s3cret@redis.internal:6379/0",
        "VAULT_CELERY_RESULT_BACKEND": "rediss://:s3cret@redis.internal:6380/1"}


def test_settings_read_redis_urls_and_default_queue() -> None:
    settings = ClusterSettings.from_env(GOOD)
    assert settings.queue == "dagster"
    assert ClusterSettings.from_env({**GOOD, "VAULT_CELERY_QUEUE": "backfill"}).queue == "backfill"


@pytest.mark.parametrize(("env", "named"), [
    ({"VAULT_CELERY_RESULT_BACKEND": GOOD["VAULT_CELERY_RESULT_BACKEND"]}, "VAULT_CELERY_BROKER_URL is not set"),
    ({**GOOD, "VAULT_CELERY_RESULT_BACKEND": "rpc://"}, "rpc:// loses every run's state"),
    ({**GOOD, "VAULT_CELERY_BROKER_URL": "amqp://guest@rabbit//"}, "only redis:// or rediss://"),
    ({**GOOD, "VAULT_CELERY_BROKER_URL": "redis:///0"}, "names no host"),
    ({**GOOD, "VAULT_CELERY_QUEUE": "two words"}, "is not a queue name"),
])
def test_invalid_settings_are_refused_with_the_variable_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ClusterConfigurationError, match=named):
        ClusterSettings.from_env(env)


def test_passwords_never_appear_in_messages() -> None:
    assert redacted(GOOD["VAULT_CELERY_BROKER_URL"]) == "redis://:***@redis.internal:6379/0"
    with pytest.raises(ClusterConfigurationError) as raised:
        ClusterSettings.from_env({**GOOD, "VAULT_CELERY_BROKER_URL": "amqp://user:s3cret@rabbit//"})
    assert "s3cret" not in str(raised.value)


def test_launcher_refuses_rpc_backend_and_hides_its_password() -> None:
    from vault_pipeline.cluster.launcher import VaultCeleryRunLauncher

    with pytest.raises(ClusterConfigurationError, match="rpc://"):
        VaultCeleryRunLauncher(broker=GOOD["VAULT_CELERY_BROKER_URL"], backend="rpc://")
    launcher = VaultCeleryRunLauncher(broker=GOOD["VAULT_CELERY_BROKER_URL"],
                                      backend=GOOD["VAULT_CELERY_RESULT_BACKEND"], default_queue="dagster")
    assert "s3cret" not in repr(launcher)
    # Never celery_executor's combination: the workers' app registers only whole-run tasks.
    assert launcher.default_queue == "dagster"


def test_code_version_changes_with_any_source_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = Path(vault_pipeline.__file__).parent
    copy = tmp_path / "vault_pipeline"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert source_digest.__wrapped__(copy) == source_digest.__wrapped__(package)
    target = copy / "replication" / "policy.py"
    target.write_text(target.read_text() + "\n# a later release\n")
    assert source_digest.__wrapped__(copy) != source_digest.__wrapped__(package)
    (copy / "sql" / "999_new.sql").write_text("SELECT 1;\n")  # a migration is code too
    monkeypatch.delenv("VAULT_CODE_VERSION", raising=False)
    assert code_version().endswith("+" + source_digest())
    monkeypatch.setenv("VAULT_CODE_VERSION", "2026.12.1")
    assert code_version() == "2026.12.1"


def test_the_cluster_instance_differs_from_dagster_yaml_only_by_launcher_and_monitoring() -> None:
    single = yaml.safe_load((REPO / "dagster.yaml").read_text())
    cluster = yaml.safe_load((REPO / "deploy" / "dagster-celery.yaml").read_text())
    assert cluster["run_launcher"]["class"] == "VaultCeleryRunLauncher"
    assert cluster["run_launcher"]["config"]["broker"] == {"env": "VAULT_CELERY_BROKER_URL"}
    assert cluster["run_launcher"]["config"]["backend"] == {"env": "VAULT_CELERY_RESULT_BACKEND"}
    assert cluster["run_monitoring"]["enabled"] is True
    assert cluster["run_monitoring"]["max_resume_run_attempts"] == 0
    for name in ("run_launcher", "run_monitoring"):
        single.pop(name, None)
        cluster.pop(name)
    assert cluster == single, "deploy/dagster-celery.yaml must follow dagster.yaml (storage, queue, sensors)"


def test_launcher_with_urls_in_its_config_needs_no_cluster_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from vault_pipeline.cluster.launcher import VaultCeleryRunLauncher

    for name in ("VAULT_CELERY_BROKER_URL", "VAULT_CELERY_RESULT_BACKEND", "VAULT_CELERY_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    launcher = VaultCeleryRunLauncher(broker=GOOD["VAULT_CELERY_BROKER_URL"],
                                      backend=GOOD["VAULT_CELERY_RESULT_BACKEND"])
    assert launcher.default_queue == "dagster"
    monkeypatch.setenv("VAULT_CELERY_QUEUE", "backfill")
    assert VaultCeleryRunLauncher(broker=GOOD["VAULT_CELERY_BROKER_URL"],
                                  backend=GOOD["VAULT_CELERY_RESULT_BACKEND"]).default_queue == "backfill"
