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
# Public gap (the Celery cluster, cluster/worker.py): what a run worker executes for a launched run. The
# public API runs a job in process from its definition, not a run that the daemon created and queued;
# dagster-celery's own tasks call these same functions, and ExecuteRunArgs/ResumeRunArgs are the packed
# arguments its launcher sends, unpacked with Dagster's own serializer.
from dagster._cli.api import _execute_run_command_body as execute_run_command_body
from dagster._cli.api import _resume_run_command_body as resume_run_command_body
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned

# Public gap (cluster/launcher.py): a run launcher's contract. Subclassing dagster-celery's public
# CeleryRunLauncher still means overriding methods typed with these, which `dagster` does not export.
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus

# Public gap (tests only): where a queued run says it comes from. A run the daemon queued names its code
# location; the tests create one as the daemon's queue records it, which no public API does.
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

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
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import ConfigurableClassData, unpack_value

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "PARTITION_NAME_TAG",
    "AssetCheckEvaluationPlanned",
    "AssetCheckExecutionRecord",
    "AssetCheckExecutionRecordStatus",
    "CheckRunHealthResult",
    "ConfigurableClassData",
    "ExecuteRunArgs",
    "GrpcServerCodeLocationOrigin",
    "LaunchRunContext",
    "RemoteJobOrigin",
    "RemoteRepositoryOrigin",
    "ResumeRunArgs",
    "WorkerStatus",
    "execute_run_command_body",
    "resume_run_command_body",
    "unpack_value",
]
