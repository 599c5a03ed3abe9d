"""What the Dagster UI tells about each asset and run: owners, code versions, tags, who launched a run, links.

Every asset of the code location is declared through ``platform_asset`` so none lacks an owner or a
``code_version``; the code version is a digest of the asset function and the domain modules it calls,
so a change to either marks the asset's materializations stale in the UI, and nothing else does.
"""

from __future__ import annotations

import getpass
import hashlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import dagster as dg

from feature_platform.observability.links import dagster_asset_url, dagster_run_url, file_url

# Owners per asset group: the team that answers for the asset, and the one that consumes it first.
OWNERS: dict[str, list[str]] = {
    "dataset_refresh": ["team:ml-platform", "team:evaluation"],
    "market_data": ["team:ml-platform", "team:market-data"],
    "features": ["team:ml-platform", "team:feature-store"],
    "training": ["team:ml-platform", "team:modeling"],
    "tensor_datasets": ["team:ml-platform", "team:simulation"],
    "dataset_definitions": ["team:ml-platform", "team:analytics"],
}

PIPELINE_TAG = "fp/pipeline"
STAGE_TAG = "fp/stage"
STORE_TAG = "fp/object_store"  # the asset writes to the configured object store; build_defs sets its kind
TIMESERIES_TAG = "fp/timeseries_store"  # the asset writes to the time-series store: duckdb or postgres
STORE_KINDS: dict[str, tuple[str, ...]] = {STORE_TAG: ("s3", "filesystem"), TIMESERIES_TAG: ("duckdb", "postgres")}
LAUNCHED_BY = "fp/launched_by"
Launcher = Literal["cli", "api", "schedule", "sensor"]
USER_TAG = "user"  # Dagster's own run tag: the UI shows it in "Launched by" instead of "Manually launched"


def _source(module: str) -> bytes:
    """A domain module's source bytes, found without importing it (loading the code location stays fast)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ValueError(f"code_version: module {module!r} not found; expected an importable module with a file")
    return Path(spec.origin).read_bytes()


def code_version(fn: Callable[..., Any], modules: Sequence[str] = (), extra: Sequence[bytes] = ()) -> str:
    """16 hex characters of sha256 over the function's source, the named modules' sources and ``extra``."""
    digest = hashlib.sha256(inspect.getsource(fn).encode("utf-8"))
    for module in sorted(set(modules)):
        digest.update(b"\x00" + module.encode() + b"\x00" + _source(module))
    for blob in extra:
        digest.update(b"\x00" + blob)
    return digest.hexdigest()[:16]


def platform_asset(*, group: str, stage: str, modules: Sequence[str] = (), extra: Sequence[bytes] = (),
                   tags: Mapping[str, str] | None = None,
                   **asset_kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``dg.asset`` with the group's owners, a code version and the pipeline/stage tags."""
    if group not in OWNERS:
        raise ValueError(f"asset group {group!r}: expected one of {', '.join(sorted(OWNERS))}")

    def wrap(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        return dg.asset(  # type: ignore[no-any-return]
            group_name=group, owners=OWNERS[group], code_version=code_version(fn, modules, extra),
            tags={PIPELINE_TAG: group, STAGE_TAG: stage, **(tags or {})}, **asset_kwargs,
        )(fn)

    return wrap


def with_configured_kinds(asset: dg.AssetsDefinition, configured: Mapping[str, str]) -> dg.AssetsDefinition:
    """Badge an asset that writes to a configurable store (tagged ``STORE_TAG`` or ``TIMESERIES_TAG``) with
    the kind of the store actually configured, ``configured[tag]``, instead of every possible one."""
    tags = [t for t in configured if any(spec.tags.get(t) for spec in asset.specs)]
    if not tags:
        return asset
    alternatives = {k for t in tags for k in STORE_KINDS[t]}

    def badge(spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec.replace_attributes(kinds={*(k for k in spec.kinds if k not in alternatives),
                                              *(configured[t] for t in tags)})

    return asset.map_asset_specs(badge)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER in a container
        return "unknown"


def launched_by(launcher: Launcher, what: str) -> dict[str, str]:
    """Run tags saying who or what started a run: ``fp/launched_by`` and, for people, Dagster's ``user``.

    Schedules and sensors are named by Dagster itself (``dagster/schedule_name``, ``dagster/sensor_name``).
    """
    tags = {LAUNCHED_BY: launcher, "fp/launched_via": what}
    if launcher in ("cli", "api"):
        tags[USER_TAG] = f"{_os_user()} ({what})"
    return tags


def run_links(dagster_url: str | None, run_id: str | None, *, asset: Sequence[str] | None = None,
              partition: str | None = None, files: Mapping[str, Path] | None = None) -> dict[str, str]:
    """Links for a notification: the Dagster run and asset pages when the webserver URL is known, then files."""
    links: dict[str, str] = {}
    if dagster_url and run_id:
        links["Dagster run"] = dagster_run_url(dagster_url, run_id)
    if dagster_url and asset:
        links[f"{'/'.join(asset)} in Dagster"] = dagster_asset_url(dagster_url, asset, partition)
    for label, path in (files or {}).items():
        if path.exists():
            links[label] = file_url(path)
    return links


def link_metadata(kind: Literal["url", "path"], target: str) -> dg.MetadataValue:
    return dg.MetadataValue.url(target) if kind == "url" else dg.MetadataValue.path(target)
