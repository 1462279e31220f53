"""The only module that imports Dagster's private API (`dagster._...`): each name below has no public
equivalent in Dagster 1.13, and the comment above it says what is missing. Everything else (the package
and its tests) imports these names from here, and `vault_pipeline_tests/test_dagster_compat.py` fails if
any other module imports `dagster._`, so a Dagster upgrade that moves one of them breaks in one place.

Replaced by public API and therefore not here: cron validation (settings.py builds a `ScheduleDefinition`,
which runs the same check), a run id (`uuid.uuid4()`, what Dagster generates), and a Dagster instance
read from a directory's dagster.yaml (`DagsterInstance.get()` with `DAGSTER_HOME`).
"""

# Public gap (tests only): the event data of a check that is planned but not evaluated yet. Tests report it
# with the public `DagsterInstance.report_dagster_event` to reproduce a check still running when newer
# ones finish, which no public API can produce on demand.
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned

# Public gap: `DagsterInstance.event_log_storage.get_asset_check_execution_history`, the only way to read
# the executions of a check in order (check_alert_sensor), returns these records, and neither the record
# type nor its status enum (PLANNED / SUCCEEDED / FAILED) is exported by `dagster`; the public
# `AssetCheckEvaluation` only exists once a check has finished, so it cannot say "planned, still running".
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

# Public gap: Dagster writes a run's partition (`dagster/partition`) and a ranged run's bounds
# (`dagster/asset_partition_range_start` / `_end`) as run tags, and `DagsterRun` has no public accessor for
# them; the tag names are not exported either. Taken from Dagster so that they cannot drift.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "PARTITION_NAME_TAG",
    "AssetCheckEvaluationPlanned",
    "AssetCheckExecutionRecord",
    "AssetCheckExecutionRecordStatus",
]
