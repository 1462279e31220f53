"""journal_tail_sensor: the secondary site's continuous reconstruction (STOPPED by default).

Each tick compares the target database's replay position with the segments on the cold site. New
segments start an incremental rebuild_tracking_db run (run_key per newest segment, so a tick repeated
before the run starts asks for nothing new). The lag, how long the oldest segment not yet replayed has
been waiting, is recorded every tick as an observation of rebuilt_tracking_db (so the UI plots it) and
raises one alert when it passes VAULT_REBUILD_LAG_ALERT_SECONDS, with a recovery notice once back under.
"""

import datetime as dt
import itertools
import json
from typing import Any

from dagster import (
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from vault_pipeline.alerting.payload import Alert
from vault_pipeline.resources import ColdSiteResource, TrackingDatabaseResource
from vault_pipeline.resources.alerts import AlertsResource
from vault_pipeline.resources.journal import JournalResource
from vault_pipeline.resources.rebuild_target import RebuildTargetNotConfigured, RebuildTargetResource

SUBJECT = "secondary-site replay lag"
MAX_LISTED = 1000  # one listing page per tick; a far-behind target is caught up run after run


def lag_alert(lag_s: float, threshold_s: float, pending: int, first_seq: int) -> Alert:
    return Alert(
        kind="lag", subject=SUBJECT, partition="all", job="rebuild_tracking_db",
        description=f"the secondary site's database is {lag_s:.0f}s behind the cold site's journal (threshold "
        f"{threshold_s:.0f}s): {pending} segment(s) from seq {first_seq} not replayed yet",
        details={"lag_seconds": round(lag_s, 1), "threshold_seconds": threshold_s, "pending_segments": pending,
                 "first_pending_seq": first_seq},
    )


def build_journal_tail_sensor(
    job: Any,  # the unresolved asset job from define_asset_job
    *, minimum_interval_seconds: int, lag_alert_seconds: float,
) -> SensorDefinition:
    @sensor(
        name="journal_tail_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description="Secondary site: replays new journal segments into VAULT_REBUILD_DATABASE_URL "
        "(incremental rebuild_tracking_db runs), records the replay lag and alerts when it grows too large.",
    )
    def journal_tail_sensor(
        context: SensorEvaluationContext,
        cold_site: ColdSiteResource,
        journal: JournalResource,
        rebuild_target: RebuildTargetResource,
        tracking_db: TrackingDatabaseResource,
        alerts: AlertsResource,
    ) -> SensorResult | SkipReason:
        try:
            position = rebuild_target.position(cold_site.bucket)
        except RebuildTargetNotConfigured as exc:
            return SkipReason(str(exc))
        store = journal.segment_store(cold_site)
        pending = list(itertools.islice(store.list_segments(after_seq=position.next_seq - 1), MAX_LISTED))
        now = dt.datetime.now(dt.UTC)
        oldest = pending[0].last_modified if pending else None
        lag_s = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        dispatcher = alerts.dispatcher(tracking_db.store())
        if pending and lag_s > lag_alert_seconds:
            dispatcher.raise_alert(lag_alert(lag_s, lag_alert_seconds, len(pending), pending[0].first_seq),
                                   observed_at=now)
        else:
            dispatcher.resolve(lag_alert(0, lag_alert_seconds, 0, 0).key, observed_at=now, run_id=None)
        delivery = dispatcher.deliver_pending(budget_seconds=alerts.delivery_budget_seconds)
        if delivery.delivered or delivery.failed:
            context.log.info(f"alerts: {delivery.summary()}")
        observation = AssetObservation(asset_key="rebuilt_tracking_db", metadata={
            "lag_seconds": MetadataValue.float(round(lag_s, 1)),
            "pending_segments": MetadataValue.int(len(pending)),
            "replayed_through_seq": MetadataValue.int(position.next_seq - 1),
        })
        cursor = json.dumps({"next_seq": position.next_seq, "pending_segments": len(pending),
                             "lag_seconds": round(lag_s, 1), "at": now.isoformat()})
        if not pending:
            context.log.info(f"secondary up to date through seq {position.next_seq - 1}")
            return SensorResult(skip_reason=f"up to date through seq {position.next_seq - 1}",
                                asset_events=[observation], cursor=cursor)
        newest = pending[-1]
        context.log.info(f"{len(pending)} new segment(s) from seq {pending[0].first_seq}; lag {lag_s:.0f}s")
        return SensorResult(
            run_requests=[RunRequest(
                run_key=f"rebuild|{cold_site.bucket}|{newest.first_seq}",
                run_config={"ops": {"rebuilt_tracking_db": {"config": {"mode": "incremental"}}}},
                tags={"vault/trigger": "journal_tail_sensor"},
            )],
            asset_events=[observation], cursor=cursor,
        )

    return journal_tail_sensor
