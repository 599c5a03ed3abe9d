"""Which model a dataset version's training run produced: ``<models>/by_dataset_version/<version>.json``.

The training asset writes it; evaluation, registration and promotion read it back, so they act on the
model that run trained and not on whatever is newest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from feature_platform.contracts.canonical import FieldsAsJson
from feature_platform.contracts.paths import require_safe_id
from feature_platform.contracts.safe_read import read_json
from feature_platform.storage.files import write_atomic

RECORDS_DIR = "by_dataset_version"


@dataclass(frozen=True)
class TrainingRecord(FieldsAsJson):
    training_id: str
    model_dir: str
    model_name: str
    model_version: str
    run_id: str
    model_key: str


def record_path(models_dir: Path, version: str) -> Path:
    return Path(models_dir) / RECORDS_DIR / f"{require_safe_id(version, 'dataset_version')}.json"


def write_training_record(models_dir: Path, version: str, record: TrainingRecord) -> Path:
    return write_atomic(record_path(models_dir, version), json.dumps(record.to_json_dict(), indent=2).encode())


def read_training_record(models_dir: Path, version: str) -> TrainingRecord | None:
    """The record, or None when no training run recorded one; a malformed record raises ValueError naming it."""
    path = record_path(models_dir, version)
    if not path.exists():
        return None
    raw = read_json(path)
    names = [f.name for f in fields(TrainingRecord)]
    if not isinstance(raw, dict) or any(not isinstance(raw.get(n), str) for n in names):
        raise ValueError(f"{path}: expected a JSON object with string fields {', '.join(names)}")
    return TrainingRecord(**{n: raw[n] for n in names})
