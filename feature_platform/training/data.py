"""Verified training data: a dataset is read for training only after it verifies, and a training set only
while the dataset and feature build it was joined from verify too (``verify_training_input``).

Features are read in the contract's ``FEATURE_ORDER`` (never the file's), splits come from the
manifest's own ``SplitSpec`` so training sees exactly the rows the dataset says are train/val/test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feature_platform.contracts.feature_contract import FEATURE_ORDER, FeatureContract, load_feature_contract
from feature_platform.contracts.manifest import DatasetManifest, Splits, load_manifest
from feature_platform.contracts.paths import resolve_inside
from feature_platform.datasets.splits import SplitSpec
from feature_platform.datasets.verify import verify_dataset
from feature_platform.features.training_set import verify_training_input

# Nullable features (the cross-asset betas, missing while an asset has under a day of history) are
# filled with 0.0 and nothing else is imputed: 0.0 is "no cross-asset information", the same value the
# serving side must send, and ONNX sees exactly the matrix the native model saw.
NULL_FILL = 0.0
RETURN_FEATURE = "ret_1d"


class TrainingRefused(RuntimeError):
    """The dataset did not verify (or cannot be trained on); nothing was trained."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("training refused: " + "; ".join(self.reasons))


@dataclass(frozen=True)
class SplitData:
    """One split, rows in file order.

    ``forward_return`` is the return a position taken on this row earns: the *next* row of the same
    entity in time order, its ``ret_1d`` (a log return) turned into a simple return with ``expm1``;
    NaN on the last row of each entity (nothing follows, so the row is left out of backtests).
    """

    X: np.ndarray  # float32, (rows, len(FEATURE_ORDER))
    y: np.ndarray  # int64 class labels
    entity: np.ndarray  # int64
    timestamp: np.ndarray  # int64 microseconds since the epoch, UTC
    forward_return: np.ndarray  # float64

    @property
    def rows(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class TrainingData:
    manifest: DatasetManifest
    manifest_digest: str
    manifest_path: Path
    feature_order: tuple[str, ...]
    label_column: str
    label_classes: dict[int, str]  # class id -> name, from the feature contract
    splits: dict[str, SplitData]

    def split(self, name: str) -> SplitData:
        try:
            return self.splits[name]
        except KeyError:
            raise KeyError(f"dataset has no split {name!r}; splits: {sorted(self.splits)}") from None


def load_splits(
    dataset_manifest_path: Path,
    base_dir: Path | None = None,
    *,
    expected_digest: str | None = None,
    contract: FeatureContract | None = None,
    upstream: bool = True,
) -> TrainingData:
    """Verify the dataset, then read it per split; raises ``TrainingRefused`` if anything fails.

    ``expected_digest`` locks the dataset identity (reruns): a manifest with another digest is refused.
    ``upstream=False`` verifies the training set's own bytes only, for a copy on a worker that cannot see
    the dataset and feature build it was joined from (the caller verified those just before).
    """
    contract = contract or load_feature_contract()
    if upstream:
        report = verify_training_input(dataset_manifest_path, base_dir, expected_digest=expected_digest,
                                       contract=contract)
    else:
        report = verify_dataset(dataset_manifest_path, base_dir, expected_digest=expected_digest, contract=contract)
    if not report.ok:
        reasons = [f"{c.name}{f'[{c.target}]' if c.target else ''}: expected {c.expected!r}, got {c.actual!r}"
                   for c in report.failures]
        raise TrainingRefused([f"dataset {dataset_manifest_path} failed verification", *reasons])
    manifest = load_manifest(dataset_manifest_path)
    order = tuple(contract.feature_order)
    if tuple(manifest.feature_order) != order or order != FEATURE_ORDER:
        raise TrainingRefused([f"manifest feature_order differs from the feature contract: {manifest.feature_order}"])
    if manifest.label_column is None:
        raise TrainingRefused(["dataset has no label column"])
    if contract.label is None or len(contract.label.classes) < 2:
        raise TrainingRefused(["the feature contract declares no label classes"])

    table = _read(manifest, Path(dataset_manifest_path).parent, order)
    nullable = {c.name for c in contract.features if c.nullable}
    X = np.empty((table.num_rows, len(order)), dtype=np.float32)
    for j, name in enumerate(order):
        col = table.column(name)
        if name in nullable:
            col = pc.fill_null(col, pa.scalar(NULL_FILL, col.type))
        X[:, j] = col.to_numpy()
    y = table.column(manifest.label_column).to_numpy().astype(np.int64)
    entity = table.column(manifest.entity_column).to_numpy().astype(np.int64)
    ts = table.column(manifest.timestamp_column).cast(pa.int64()).to_numpy()
    fwd = forward_returns(entity, ts, X[:, order.index(RETURN_FEATURE)])

    spec, codes = _assign_splits(manifest, table.column(_entity_hash(manifest).key).to_numpy())
    splits = {}
    for i, name in enumerate(spec.names):
        mask = codes == i
        splits[name] = SplitData(X[mask], y[mask], entity[mask], ts[mask], fwd[mask])
    return TrainingData(
        manifest=manifest, manifest_digest=manifest.digest(), manifest_path=Path(dataset_manifest_path),
        feature_order=order, label_column=manifest.label_column,
        label_classes=dict(contract.label.classes), splits=splits,
    )


def _assign_splits(manifest: DatasetManifest, keys: np.ndarray) -> tuple[SplitSpec, np.ndarray]:
    """Split code per row, exactly as the builder counted it; refuse if the counts disagree."""
    spec = SplitSpec(dict(_entity_hash(manifest).fractions), _entity_hash(manifest).salt)
    codes = spec.assign(keys)
    counts = np.bincount(codes, minlength=len(spec.names))
    got = {n: int(c) for n, c in zip(spec.names, counts, strict=True)}
    if got != dict(manifest.splits.rows):
        raise TrainingRefused([f"split assignment gives {got}, the manifest records {dict(manifest.splits.rows)}"])
    return spec, codes


def _entity_hash(manifest: DatasetManifest) -> Splits:
    """Training re-derives splits with SplitSpec, so it accepts entity_hash splits only."""
    if not isinstance(manifest.splits, Splits):
        raise TrainingRefused([f"split algorithm {manifest.splits.algorithm!r} is not supported for training "
                               "(entity_hash only)"])
    return manifest.splits


def _read(manifest: DatasetManifest, dataset_dir: Path, order: tuple[str, ...]) -> pa.Table:
    columns = [manifest.entity_column, manifest.timestamp_column, *order, manifest.label_column]
    if _entity_hash(manifest).key not in columns:
        columns.append(_entity_hash(manifest).key)
    tables = [pq.read_table(resolve_inside(dataset_dir, f.path), columns=columns) for f in manifest.files]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def forward_returns(entity: np.ndarray, timestamp: np.ndarray, log_return: np.ndarray) -> np.ndarray:
    """Per row: expm1 of the next row's log return for the same entity (time order); NaN if none.

    Ties on timestamp keep file order (stable sort), so the result is a function of the rows only.
    """
    n = entity.shape[0]
    out = np.full(n, np.nan, dtype=np.float64)
    if n < 2:
        return out
    order = np.lexsort((timestamp, entity))  # by entity, then time; stable
    same = entity[order][1:] == entity[order][:-1]
    nxt = np.expm1(log_return[order][1:].astype(np.float64))
    out[order[:-1][same]] = nxt[same]
    return out
