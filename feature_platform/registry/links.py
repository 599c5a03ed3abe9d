"""Where a reader finds an MLflow run and a registered model version: the tracking server's UI pages when
``MLFLOW_TRACKING_URI`` is an http(s) server, else the local directories that hold their files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from feature_platform.registry.tracking import client, tracking_uri


@dataclass(frozen=True)
class Link:
    kind: Literal["url", "path"]
    target: str


def _local_path(uri: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return unquote(parts.path)
    return uri if parts.scheme == "" and uri.startswith("/") else None


def server_links(base_uri: str, experiment_id: str, run_id: str, model_name: str | None = None,
                 version: str | None = None) -> dict[str, Link]:
    """The tracking server UI's pages for a run and a registered model version."""
    base = base_uri.rstrip("/")
    links = {"mlflow_run": Link("url", f"{base}/#/experiments/{quote(experiment_id, safe='')}/runs/"
                                       f"{quote(run_id, safe='')}")}
    if model_name and version:
        links["mlflow_model_version"] = Link("url", f"{base}/#/models/{quote(model_name, safe='')}/versions/"
                                                    f"{quote(str(version), safe='')}")
    return links


def mlflow_links(data_root: Path, run_id: str, model_name: str | None = None,
                 version: str | None = None) -> dict[str, Link]:
    """``mlflow_run`` and (with a name and version) ``mlflow_model_version``: UI pages on a tracking server,
    local directories for a file or SQLite store; a link that cannot be resolved is left out."""
    uri = tracking_uri(data_root)
    mc = client(data_root)
    run = mc.get_run(run_id)
    links: dict[str, Link] = {}
    if urlsplit(uri).scheme in ("http", "https"):
        return server_links(uri, run.info.experiment_id, run_id, model_name, version)
    run_dir = _local_path(run.info.artifact_uri or "")
    if run_dir:
        links["mlflow_run"] = Link("path", run_dir)
    if model_name and version:
        version_dir = _local_path(mc.get_model_version_download_uri(model_name, str(version)))
        if version_dir:
            links["mlflow_model_version"] = Link("path", version_dir)
    return links


def experiment_link(data_root: Path, experiment_name: str) -> Link | None:
    """The experiment ``experiment_name`` (a model key's runs): its UI page on a tracking server, its artifact
    directory for a file or SQLite store; None while it does not exist (its first run creates it)."""
    uri = tracking_uri(data_root)
    experiment = client(data_root).get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    if urlsplit(uri).scheme in ("http", "https"):
        return Link("url", f"{uri.rstrip('/')}/#/experiments/{quote(str(experiment.experiment_id), safe='')}")
    local = _local_path(experiment.artifact_location or "")
    return Link("path", local) if local else None
