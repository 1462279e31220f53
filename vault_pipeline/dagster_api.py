"""What the operator commands (cli/), the dev stack (devstack/), tests and benchmarks ask Dagster, through
the webserver's GraphQL API (what the UI itself reads).

Sensor ticks (when each started and ended, which runs it requested), the runs of a job (created, started,
ended, per-step timings), one run's status and lifecycle events (enqueued, starting, started, finished),
the evaluations of an asset check per partition, and launching a partition's run. Times are Unix seconds
(floats) as Dagster records them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

LOCATION = "vault_pipeline"  # workspace.yaml
REPOSITORY = "__repository__"  # a code location defined by one Definitions object
LIFECYCLE_EVENTS = {
    "RunEnqueuedEvent": "enqueued", "RunStartingEvent": "starting",
    "RunStartEvent": "started", "RunSuccessEvent": "succeeded", "RunFailureEvent": "failed",
}

_SENSOR = """
query Sensor($selector: SensorSelector!, $limit: Int) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      minIntervalSeconds
      sensorState { status ticks(limit: $limit) { tickId status timestamp endTimestamp runIds skipReason
                                                   error { message } } }
    }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
  }
}"""

_RUNS = """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs {
      results { runId status creationTime startTime endTime tags { key value }
                stepStats { stepKey status startTime endTime } }
    }
    ... on PythonError { message }
  }
}"""

_EVENTS = """
query Events($runId: ID!, $after: String) {
  logsForRun(runId: $runId, afterCursor: $after, limit: 1000) {
    __typename
    ... on EventConnection { cursor hasMore events { __typename ... on MessageEvent { timestamp stepKey message } } }
    ... on PythonError { message }
  }
}"""

_RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime tags { key value } }
    ... on Error { message }
  }
}"""

_CHECK_NAMES = """
query Checks($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode { assetChecksOrError { __typename ... on AssetChecks { checks { name } } } }
    ... on Error { message }
  }
}"""

_CHECK_EXECUTIONS = """
query CheckExecutions($assetKey: AssetKeyInput!, $checkName: String!, $limit: Int!) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, limit: $limit) {
    runId status timestamp partition
    evaluation { success description metadataEntries { label ... on JsonMetadataEntry { jsonString } } }
  }
}"""

_LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}"""

FINISHED_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


class DagsterApiError(RuntimeError):
    pass


class DagsterApi:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.base_url = url.rstrip("/")
        self.url = self.base_url + "/graphql"
        self.timeout = timeout

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.URLError as exc:
            raise DagsterApiError(f"{self.url}: {getattr(exc, 'reason', exc)}") from exc
        except (TimeoutError, ConnectionError, ValueError) as exc:
            raise DagsterApiError(f"{self.url}: {exc}") from exc
        if answer.get("errors"):
            raise DagsterApiError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def answers(self) -> bool:
        try:
            self.query("{ version }")
            return True
        except DagsterApiError:
            return False

    def sensor(self, name: str, tick_limit: int = 1000) -> dict[str, Any]:
        """{'minIntervalSeconds', 'status', 'ticks': newest first}; DagsterApiError while it is not loaded."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}
        found = self.query(_SENSOR, {"selector": selector, "limit": tick_limit})["sensorOrError"]
        if found["__typename"] != "Sensor":
            raise DagsterApiError(f"sensor {name}: {found['__typename']}: {found.get('message')}")
        state = found["sensorState"]
        return {"minIntervalSeconds": found["minIntervalSeconds"], "status": state["status"],
                "ticks": state["ticks"]}

    def runs(self, job: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Runs of `job`, newest first, tags as a dict."""
        found = self.query(_RUNS, {"filter": {"pipelineName": job}, "limit": limit})["runsOrError"]
        if found["__typename"] != "Runs":
            raise DagsterApiError(f"runs of {job}: {found['__typename']}: {found.get('message')}")
        return [{**run, "tags": {t["key"]: t["value"] for t in run["tags"]}} for run in found["results"]]

    def lifecycle(self, run_id: str) -> dict[str, float]:
        """When the run was enqueued, dequeued and handed to the launcher (RUN_STARTING), started in its
        worker process and finished (first occurrence of each), in Unix seconds."""
        times: dict[str, float] = {}
        for event in self.messages(run_id):
            name = LIFECYCLE_EVENTS.get(event["__typename"])
            if name and name not in times:
                times[name] = int(event["timestamp"]) / 1000.0  # milliseconds, as a string
        return times

    def messages(self, run_id: str) -> list[dict[str, Any]]:
        """Every event of the run, oldest first: {'__typename', 'timestamp', 'message', 'stepKey'}."""
        events: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            found = self.query(_EVENTS, {"runId": run_id, "after": after})["logsForRun"]
            if found["__typename"] != "EventConnection":
                raise DagsterApiError(f"events of {run_id}: {found['__typename']}: {found.get('message')}")
            events += found["events"]
            if not found["hasMore"]:
                return events
            after = found["cursor"]

    def run(self, run_id: str) -> dict[str, Any]:
        """{'runId', 'status', 'startTime', 'endTime', 'tags': dict}."""
        found = self.query(_RUN, {"runId": run_id})["runOrError"]
        if found["__typename"] != "Run":
            raise DagsterApiError(f"run {run_id}: {found['__typename']}: {found.get('message')}")
        return {**found, "tags": {t["key"]: t["value"] for t in found["tags"]}}

    def asset_check_names(self, asset: str) -> list[str]:
        found = self.query(_CHECK_NAMES, {"assetKey": {"path": asset.split("/")}})["assetNodeOrError"]
        if found["__typename"] != "AssetNode":
            raise DagsterApiError(f"asset {asset}: {found['__typename']}: {found.get('message')}")
        checks = found["assetChecksOrError"]
        if checks["__typename"] != "AssetChecks":
            raise DagsterApiError(f"checks of {asset}: {checks['__typename']}")
        return [c["name"] for c in checks["checks"]]

    def asset_check_executions(self, asset: str, check: str, limit: int = 100) -> list[dict[str, Any]]:
        """Evaluations of one check, newest first: runId, status, timestamp, partition, evaluation."""
        return self.query(_CHECK_EXECUTIONS, {"assetKey": {"path": asset.split("/")}, "checkName": check,
                                              "limit": limit})["assetCheckExecutions"]

    def launch_run(self, job: str, *, partition: str | None = None, run_config: dict[str, Any] | None = None,
                   tags: dict[str, str] | None = None) -> str:
        """Launch (enqueue) a run of `job`, of one partition when given; its run id."""
        all_tags = {**(tags or {}), **({"dagster/partition": partition} if partition else {})}
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
            "runConfigData": run_config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in all_tags.items()]},
        }
        found = self.query(_LAUNCH, {"params": params})["launchRun"]
        if found["__typename"] == "LaunchRunSuccess":
            return str(found["run"]["runId"])
        detail = found.get("message") or "; ".join(e["message"] for e in found.get("errors") or [])
        raise DagsterApiError(f"launching {job}{f' for {partition}' if partition else ''}: "
                              f"{found['__typename']}: {detail}")
