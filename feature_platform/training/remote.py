"""Training on a Ray cluster: the fit runs as a Ray task on the training queue (the custom resource
``training``); everything around it (verification, ONNX export, evaluation, manifests) stays with the caller.

With an object store the task reads its inputs from it: the training set's manifest and data files are
uploaded once under ``training_sets/…`` (unless already there, byte for byte), the worker downloads them,
verifies them against the manifest digest the caller verified, and fits on the train split. Without one,
the train split's arrays travel with the task. Either way the worker runs ``fit_estimator`` on the same
rows with the same seed, so the fitted model, and the ONNX bytes exported from it, are a local fit's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feature_platform.contracts.manifest import MANIFEST_NAME, load_manifest
from feature_platform.contracts.paths import resolve_inside
from feature_platform.features.shards import StoreSpec, open_store
from feature_platform.storage.object_keys import ObjectNotFoundError, join_key

TRAINING_RESOURCE = "training"


class RemoteTrainingError(RuntimeError):
    """The cluster cannot run the fit (no address, no training queue); nothing was trained."""


@dataclass(frozen=True)
class RemoteFit:
    """Where to fit: the Ray cluster (``address``; None reuses a Ray this process already joined) and the
    object store its workers read inputs from (None: the arrays travel with the task)."""

    address: str | None
    store: StoreSpec | None = None
    resource: str = TRAINING_RESOURCE


@dataclass(frozen=True)
class FitTask:
    params: dict[str, Any]
    seed: int
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    store: StoreSpec | None = None
    prefix: str | None = None
    manifest_digest: str | None = None


@dataclass(frozen=True)
class FitResult:
    model: Any
    node_id: str


def training_set_prefix(manifest_path: Path) -> str:
    """Where a training set lives in the object store (the key the distributed build writes to)."""
    from feature_platform.features.training_set import store_prefix

    return store_prefix(manifest_path)


def upload_training_set(manifest_path: Path, store: StoreSpec) -> str:
    """Put the training set's data files and manifest under its prefix, skipping objects already there with the
    same sha256; returns the prefix."""
    from feature_platform.datasets.verify import sha256_file

    prefix = training_set_prefix(manifest_path)
    opened = open_store(store)
    manifest = load_manifest(manifest_path)
    wanted = [(resolve_inside(manifest_path.parent, f.path), f.path, f.sha256) for f in manifest.files]
    wanted.append((manifest_path, MANIFEST_NAME, sha256_file(manifest_path)))
    for local, rel, sha in wanted:
        key = join_key(prefix, rel)
        try:
            present = opened.sha256(key) == sha
        except ObjectNotFoundError:
            present = False
        if not present:
            opened.put_file(local, key)
    return prefix


def fetch_training_set(store: StoreSpec, prefix: str, into: Path) -> Path:
    """Download a training set from the store into ``into/<set id>/``; returns the local manifest path."""
    opened = open_store(store)
    directory = into / prefix.rsplit("/", 1)[-1]
    directory.mkdir(parents=True)
    manifest_path = directory / MANIFEST_NAME
    opened.download_file(join_key(prefix, MANIFEST_NAME), manifest_path)
    for f in load_manifest(manifest_path).files:
        opened.download_file(join_key(prefix, f.path), resolve_inside(directory, f.path))
    return manifest_path


def fit_task(task: FitTask) -> FitResult:
    """On the worker: the train split (from the store, verified against the digest, or as sent), then the fit."""
    from feature_platform.training.data import load_splits
    from feature_platform.training.profiles import fit_estimator

    X, y = task.X, task.y
    if task.store is not None:
        assert task.prefix is not None
        with tempfile.TemporaryDirectory(prefix="fp-train-") as tmp:
            manifest_path = fetch_training_set(task.store, task.prefix, Path(tmp))
            train = load_splits(manifest_path, expected_digest=task.manifest_digest, upstream=False).split("train")
            X, y = train.X, train.y
    assert X is not None and y is not None
    return FitResult(fit_estimator(X, y, task.params, task.seed), _node_id())


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else "local"
    except Exception:  # noqa: BLE001 - only a label for metadata
        return "unknown"


def fit_on_ray(manifest_path: Path, manifest_digest: str, X: np.ndarray, y: np.ndarray, params: dict[str, Any],
               seed: int, remote: RemoteFit) -> FitResult:
    """Run ``fit_task`` as one Ray task requesting ``{remote.resource: 1}``; refuses at once (instead of waiting
    forever) when the cluster offers no such resource."""
    import ray

    from feature_platform.datasets.executors import run_tasks

    started = False
    if not ray.is_initialized():
        if not remote.address:
            raise RemoteTrainingError("training on Ray needs a cluster address (RAY_ADDRESS or the ray resource)")
        ray.init(address=remote.address, log_to_driver=False)
        started = True
    try:
        offered = ray.cluster_resources().get(remote.resource, 0)  # type: ignore[no-untyped-call]
        if offered < 1:
            raise RemoteTrainingError(f"the Ray cluster at {remote.address or 'this connection'} offers no "
                                      f"{remote.resource!r} resource (the training queue); nothing was trained")
        if remote.store is not None:
            task = FitTask(params, seed, store=remote.store, prefix=upload_training_set(manifest_path, remote.store),
                           manifest_digest=manifest_digest)
        else:
            task = FitTask(params, seed, X=X, y=y)
        [result] = run_tasks(fit_task, [task], executor="ray", workers=1, resources={remote.resource: 1})
        return result
    finally:
        if started:
            ray.shutdown()
