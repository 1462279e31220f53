"""deploy/helm/values.yaml for Dagster's official Helm chart (dagster/dagster) and its example Secrets.

No copy of the chart is carried here. CHART_PATHS lists the value paths this deployment relies on, as the
chart's values.schema.json (dagster-io/dagster, helm/dagster/values.schema.json, chart 1.x: DagsterHelmValues)
declares them; OPEN_PATHS are the chart's free-form objects (Kubernetes objects, env maps, run monitoring). A
key set in values.yaml that is in neither is refused: check it in the chart's schema of the release you deploy
(`helm show values dagster/dagster --version X`), then add it. The rest checks what the deployment means: the
K8sRunLauncher, external PostgreSQL with its password from a Secret, our image serving `dagster api grpc`,
the run queue and run monitoring of dagster.yaml, a webserver not exposed, and only documented variables.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "deploy" / "helm" / "values.yaml"
SECRETS = REPO / "deploy" / "helm" / "secrets.example.yaml"
CLUSTER_VARIABLES = {"VAULT_CELERY_BROKER_URL", "VAULT_CELERY_RESULT_BACKEND", "VAULT_CELERY_QUEUE",
                     "VAULT_CODE_VERSION", "VAULT_SHARD_MIN_OBJECTS", "VAULT_MAX_SHARDS"}
D = "dagster-user-deployments.deployments[]"
K = "runLauncher.config.k8sRunLauncher"
Q = "dagsterDaemon.runCoordinator.config.queuedRunCoordinator"
CHART_PATHS = {
    "postgresql.enabled", "postgresql.postgresqlHost", "postgresql.postgresqlUsername",
    "postgresql.postgresqlPassword", "postgresql.postgresqlDatabase", "postgresql.service.port",
    "generatePostgresqlPasswordSecret", "global.postgresqlSecretName",
    "dagster-user-deployments.enabled", "dagster-user-deployments.enableSubchart",
    f"{D}.name", f"{D}.image.repository", f"{D}.image.tag", f"{D}.image.pullPolicy", f"{D}.dagsterApiGrpcArgs",
    f"{D}.port", f"{D}.includeConfigInLaunchedRuns.enabled", f"{D}.envSecrets[].name", f"{D}.envConfigMaps[].name",
    "runLauncher.type", f"{K}.imagePullPolicy", f"{K}.loadInclusterConfig", f"{K}.envConfigMaps", f"{K}.envSecrets",
    f"{K}.envVars",
    "dagsterDaemon.enabled", "dagsterDaemon.runCoordinator.enabled", "dagsterDaemon.runCoordinator.type",
    f"{Q}.maxConcurrentRuns", f"{Q}.dequeueIntervalSeconds", f"{Q}.tagConcurrencyLimits[].key",
    f"{Q}.tagConcurrencyLimits[].value.applyLimitPerUniqueValue", f"{Q}.tagConcurrencyLimits[].limit",
    "dagsterDaemon.sensors.useThreads", "dagsterDaemon.sensors.numWorkers",
    "dagsterWebserver.service.type", "dagsterWebserver.service.port", "ingress.enabled",
    "rabbitmq.enabled", "redis.enabled", "flower.enabled", "telemetry.enabled",
}
# Free-form in the chart's schema (Kubernetes objects, maps): anything below them is the chart's to pass on.
OPEN_PATHS = {"postgresql.postgresqlParams", f"{D}.env", f"{D}.podSecurityContext", f"{D}.securityContext",
              f"{D}.resources", f"{K}.volumes", f"{K}.volumeMounts", f"{K}.securityContext", f"{K}.resources",
              "dagsterDaemon.runMonitoring"}
# What the chart renders from runMonitoring (its instance ConfigMap's run_monitoring), by the names it reads.
RUN_MONITORING_KEYS = {"enabled", "startTimeoutSeconds", "pollIntervalSeconds", "maxResumeRunAttempts"}


def value_paths(value: object, prefix: str = "") -> set[str]:
    """Leaf paths of a YAML value: mappings by key, lists as `[]`; free-form subtrees stop at their root."""
    if prefix in OPEN_PATHS:
        return {prefix}
    if isinstance(value, dict):
        paths: set[str] = set()
        for key, item in value.items():
            paths |= value_paths(item, f"{prefix}.{key}" if prefix else str(key))
        return paths
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return set().union(*(value_paths(item, f"{prefix}[]") for item in value))
    return {prefix}


def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def deployment() -> dict:
    (only,) = values()["dagster-user-deployments"]["deployments"]
    return only


def test_every_key_set_is_one_the_chart_declares():
    unknown = value_paths(values()) - CHART_PATHS - OPEN_PATHS
    assert not unknown, f"not in the chart's values schema as carried here: {sorted(unknown)} (see the docstring)"
    assert set(values()["dagsterDaemon"]["runMonitoring"]) <= RUN_MONITORING_KEYS


def test_k8s_run_launcher_and_external_postgres_with_a_secret_password():
    v = values()
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    assert v["postgresql"]["enabled"] is False and v["postgresql"]["postgresqlHost"]
    assert v["postgresql"]["postgresqlPassword"] == "", "the password comes from the Secret, never the values"
    assert v["generatePostgresqlPasswordSecret"] is False
    secrets = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(SECRETS.read_text())}
    assert "postgresql-password" in secrets[v["global"]["postgresqlSecretName"]]["stringData"]
    for name in (ref["name"] for ref in deployment()["envSecrets"]):
        assert secrets[name]["kind"] == "Secret"
    for name in (ref["name"] for ref in deployment()["envConfigMaps"]):
        assert secrets[name]["kind"] == "ConfigMap"


def test_user_code_is_our_image_serving_the_code_location():
    d = deployment()
    module = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    assert d["dagsterApiGrpcArgs"] == ["-m", module]
    cmd = next(line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    assert json.loads(cmd[4:])[-1] == str(d["port"]), "the chart's port is the one the image's code server uses"
    assert d["image"]["tag"] not in ("", "latest")
    assert d["includeConfigInLaunchedRuns"]["enabled"] is True  # run pods get the same env and Secrets
    assert d["podSecurityContext"]["runAsNonRoot"] is True and d["podSecurityContext"]["runAsUser"] == 10001
    spool = d["env"]["VAULT_SPOOL_DIR"]
    k8s = values()["runLauncher"]["config"]["k8sRunLauncher"]
    assert spool in {mount["mountPath"] for mount in k8s["volumeMounts"]}, "the run pods' spool is a volume"


def test_run_queue_and_monitoring_match_dagster_yaml():
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    ours = instance["run_coordinator"]["config"]
    daemon = values()["dagsterDaemon"]
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert queue["maxConcurrentRuns"] == ours["max_concurrent_runs"]
    assert queue["dequeueIntervalSeconds"] == ours["dequeue_interval_seconds"]
    assert queue["tagConcurrencyLimits"] == ours["tag_concurrency_limits"]
    assert daemon["runMonitoring"]["enabled"] is True
    assert daemon["runMonitoring"]["maxResumeRunAttempts"] == instance["run_monitoring"]["max_resume_run_attempts"]


def test_webserver_is_not_exposed():
    v = values()
    assert v["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert v["ingress"]["enabled"] is False


def test_every_variable_named_is_documented():
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", section)) | CLUSTER_VARIABLES
    named = set(deployment()["env"])
    for doc in yaml.safe_load_all(SECRETS.read_text()):
        if doc["metadata"]["name"] != values()["global"]["postgresqlSecretName"]:  # the chart's own key
            named |= set(doc.get("stringData") or doc.get("data") or {})
    assert named, "no variable found: the test reads nothing"
    assert not named - documented, sorted(named - documented)


def test_the_key_check_can_fail():
    broken = values()
    broken["dagsterWebserver"]["servce"] = {"type": "LoadBalancer"}  # a typo the chart would ignore
    assert "dagsterWebserver.servce.type" in value_paths(broken) - CHART_PATHS - OPEN_PATHS
