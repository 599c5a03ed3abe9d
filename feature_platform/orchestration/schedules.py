"""The nightly refresh: 02:00 UTC adds the day's `dataset_version` partition and runs it."""


import dagster as dg

from feature_platform.orchestration.jobs import refresh_job
from feature_platform.orchestration.partitions import ensure_partition
from feature_platform.orchestration.story import launched_by


@dg.schedule(cron_schedule="0 2 * * *", execution_timezone="UTC", job=refresh_job,
             default_status=dg.DefaultScheduleStatus.STOPPED)
def nightly_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    version = context.scheduled_execution_time.strftime("%Y-%m-%d")
    ensure_partition(context.instance, version)
    return dg.RunRequest(run_key=f"nightly-{version}", partition_key=version,
                         tags={"fp/trigger": "schedule", **launched_by("schedule", "nightly_refresh")})
