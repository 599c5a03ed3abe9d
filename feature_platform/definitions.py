"""The Dagster code location: `dagster dev -w workspace.yaml` (or `make ui`) loads ``defs``."""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg
from dagster_aws.s3 import S3Resource

from feature_platform.observability.notify import NotifyConfig
from feature_platform.orchestration.assets import ALL_ASSETS
from feature_platform.orchestration.checks import ALL_CHECKS
from feature_platform.orchestration.definition_assets import DEFINITION_ASSETS, DEFINITION_CHECKS, DEFINITION_JOBS
from feature_platform.orchestration.feature_assets import feature_build, feature_contract_drift, feature_job
from feature_platform.orchestration.jobs import archive_job, refresh_job
from feature_platform.orchestration.market_assets import (
    TimeSeriesResource,
    data_gap_alert,
    market_data,
    market_data_raw,
    market_job,
    no_data_gaps,
    no_unreviewed_anomalies,
)
from feature_platform.orchestration.openlineage import openlineage_events
from feature_platform.orchestration.resources import (
    DEPLOYMENTS,
    CatalogResource,
    MetricsResource,
    NotifierResource,
    ObjectStoreResource,
    PartialResource,
    PlatformPaths,
    R,
    RayResource,
    RetrySettings,
    at_launch,
    deployment,
)
from feature_platform.orchestration.schedules import nightly_refresh
from feature_platform.orchestration.sensors import inbox_sensor, refresh_failed, refresh_succeeded
from feature_platform.orchestration.story import STORE_TAG, TIMESERIES_TAG, with_configured_kinds
from feature_platform.orchestration.tensor_assets import TENSOR_ASSETS, TENSOR_CHECKS, tensor_dataset_job
from feature_platform.orchestration.training_assets import (
    TRAINING_ASSETS,
    TRAINING_CHECKS,
    rerun_job,
    rollback_job,
    training_job,
)


def secret_from_env(field: str) -> dg.EnvVar | None:
    """A notifier credential whose variable is set, as ``dg.EnvVar``: Dagster resolves it when a run starts and
    its UI and run config show the variable's name, never the secret. Unset: None, the field's default."""
    var = NotifyConfig.ENV[field]
    return dg.EnvVar(var) if os.environ.get(var, "").strip() else None


def resources(deployment_name: str | None = None, *,
              paths: PlatformPaths | PartialResource[PlatformPaths] | None = None,
              s3: S3Resource | PartialResource[S3Resource] | None = None) -> dict[str, object]:
    """The resources of a deployment (default: ``$FP_DEPLOYMENT``, see ``deployment``): the one place that
    chooses between the laptop and S3; other environment variables (FP_*, AWS_*) configure each resource.

    ``paths`` and ``s3`` are held configurable at launch (``at_launch``: defaults from the ones given, else from
    the environment), and the resources that need the data root or the S3 client are bound to those same objects:
    a run launched with ``resources: {paths: {config: {data_root: ...}}}`` writes, publishes and notifies under
    that one root."""
    name = deployment_name or deployment()
    if name not in DEPLOYMENTS:
        raise ValueError(f"deployment: expected one of {', '.join(DEPLOYMENTS)}; got {name!r}")
    launch_paths = at_launch(PlatformPaths, paths)
    launch_s3 = at_launch(S3Resource, s3)
    return {
        "paths": launch_paths,
        "s3": launch_s3,
        "object_store": ObjectStoreResource(kind="s3" if name == "s3" else "local", s3=launch_s3, paths=launch_paths),
        "catalog": CatalogResource(paths=launch_paths),
        "notifier": NotifierResource(slack_webhook_url=secret_from_env("slack_webhook_url"),
                                     pagerduty_routing_key=secret_from_env("pagerduty_routing_key"),
                                     paths=launch_paths),
        "metrics": MetricsResource(),
        "retry": RetrySettings(),
        "timeseries": TimeSeriesResource(paths=launch_paths),
        "ray": RayResource(),
    }


def unbound_dependencies(configured: Mapping[str, object]) -> list[str]:
    """Each resource whose declared dependency named like another resource key (``paths``, ``s3``) is not the very
    object under that key: Dagster would build it from its own copy, which a run's launch config does not reach,
    and the run would, say, publish under another data root than its assets write to."""
    wrong = []
    for key, resource in configured.items():
        if not isinstance(resource, dg.ConfigurableResource):
            continue
        for dependency in type(resource).model_fields.keys() & configured.keys():
            bound = getattr(resource, dependency)
            if (bound is None or dependency in resource.nested_resources) and bound is not configured[dependency]:
                wrong.append(f"resource {key!r}: its {dependency!r} is not this code location's {dependency!r} "
                             f"resource; build it with {dependency}=at_launch(...) and pass that same object as "
                             f"build_defs({dependency}=...)")
    return wrong


def _override(overrides: Mapping[str, object], key: str, kind: type[R]) -> R | PartialResource[R] | None:
    value = overrides.get(key)
    if value is None or isinstance(value, kind):
        return value
    if isinstance(value, PartialResource) and value.resource_cls is kind:
        return value
    raise TypeError(f"build_defs({key}=...): expected a {kind.__name__}; got {type(value).__name__}")


def configured_kinds(resources: Mapping[str, object]) -> dict[str, str]:
    """The kind badge of each configurable store, from the resources this code location runs with."""
    store = resources.get("object_store")
    timeseries = resources.get("timeseries")
    url = getattr(timeseries, "url", None) or ""
    return {
        STORE_TAG: "s3" if getattr(store, "kind", "local") == "s3" else "filesystem",
        TIMESERIES_TAG: "postgres" if url.startswith(("postgresql://", "postgres://")) else "duckdb",
    }


def build_defs(*extra_jobs: dg.UnresolvedAssetJobDefinition, **overrides: object) -> dg.Definitions:
    """The code location, with some resources replaced or jobs added (tests, other deployments). A replaced
    ``paths`` or ``s3`` (built, or ``at_launch``) reaches every resource that depends on it; a replaced dependent
    must be bound to the ``at_launch`` object passed as ``paths``/``s3``."""
    paths = _override(overrides, "paths", PlatformPaths)
    s3 = _override(overrides, "s3", S3Resource)
    given = resources(paths=paths, s3=s3)
    configured = {**given, **overrides, "paths": given["paths"], "s3": given["s3"]}
    if wrong := unbound_dependencies(configured):
        raise ValueError(wrong[0])
    kinds = configured_kinds(configured)
    assets = [*ALL_ASSETS, market_data_raw, market_data, feature_build, *TRAINING_ASSETS, *TENSOR_ASSETS,
              *DEFINITION_ASSETS]
    return dg.Definitions(
        assets=[with_configured_kinds(a, kinds) for a in assets],
        asset_checks=[*ALL_CHECKS, no_data_gaps, no_unreviewed_anomalies, feature_contract_drift, *TRAINING_CHECKS,
                      *TENSOR_CHECKS, *DEFINITION_CHECKS],
        jobs=[refresh_job, archive_job, market_job, feature_job, training_job, rollback_job, rerun_job,
              tensor_dataset_job, *DEFINITION_JOBS, *extra_jobs],
        schedules=[nightly_refresh],
        sensors=[inbox_sensor, refresh_succeeded, refresh_failed, data_gap_alert, openlineage_events],
        resources=configured,
    )


defs = build_defs()
