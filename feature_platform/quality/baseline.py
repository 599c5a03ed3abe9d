"""Baselines: the stored dataset profile a candidate version is compared with.

``baseline_eval_v1`` is committed at ``baselines/baseline_eval_v1.json``: the profile of the
synthetic source with the defaults of ``fp dataset build`` (200,000 rows, seed 1, 131,072 rows per
batch, 2,000 entities). It was generated, and is regenerated after a contract or generator
change, with::

    .venv/bin/python -m feature_platform.quality.baseline --rows 200000 --seed 1 \\
        --batch-rows 131072 --entities 2000 --name baseline_eval_v1 \\
        --out feature_platform/quality/baselines/baseline_eval_v1.json

which is ``build_synthetic_baseline`` → ``build_dataset`` → ``profile_dataset`` →
``write_baseline``. The data bytes are reproducible (``created_from.file_sha256`` is the same on
every run); ``created_from.manifest_digest`` also covers build time and git commit.

Alternatively the last published version's ``quality_report.json`` serves as baseline
(``baseline_from_report``): every report embeds the candidate's full profile.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from feature_platform.contracts.manifest import data_file_paths, validation_message
from feature_platform.contracts.paths import id_problem
from feature_platform.contracts.safe_read import InputError, read_json
from feature_platform.quality import DEFAULT_BASELINE, LAST_PUBLISHED
from feature_platform.quality.files import json_text, write_atomic
from feature_platform.quality.profile import DatasetIdentity, DatasetProfile, profile_dataset

BASELINE_DIR = Path(__file__).with_name("baselines")
MAX_BASELINE_BYTES = 64 * 1024 * 1024


class BaselineError(ValueError):
    """A baseline cannot be read, or a report cannot serve as one."""


class Baseline(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline_version: Literal[1] = 1
    name: str = Field(min_length=1)
    created_from: DatasetIdentity
    profile: DatasetProfile

    def dumps(self) -> str:
        return json_text(self.model_dump(mode="json"))


def baseline_path(name_or_path: str | Path) -> Path:
    """A path as given, or a bare name resolved to ``baselines/<name>.json``."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".json"):
        return Path(name_or_path)
    problem = id_problem(text, "baseline name")
    if problem is not None:
        raise BaselineError(problem)
    return BASELINE_DIR / f"{text}.json"


def load_baseline(name_or_path: str | Path = DEFAULT_BASELINE) -> Baseline:
    """A committed baseline by name (``baseline_eval_v1``) or any baseline file by path."""
    path = baseline_path(name_or_path)
    raw = _read_json(path)
    try:
        return Baseline.model_validate(raw)
    except ValidationError as exc:
        raise BaselineError(validation_message(exc, str(path))) from None


def write_baseline(profile: DatasetProfile, name: str, path: Path) -> Baseline:
    """Store ``profile`` as baseline ``name`` at ``path`` (atomically)."""
    baseline = Baseline(name=name, created_from=profile.dataset, profile=profile)
    write_atomic(path, baseline.dumps().encode("utf-8"))
    return baseline


def baseline_from_report(report_json_path: Path, *, require_passed: bool = True) -> Baseline:
    """The profile embedded in a version's ``quality_report.json``, as a baseline.

    A version that failed its gate was never published, so by default it cannot become one.
    """
    raw = _read_json(report_json_path)
    if not isinstance(raw, dict) or not isinstance(raw.get("profile"), dict):
        raise BaselineError(f"{report_json_path}: not a quality report with an embedded profile")
    if require_passed and raw.get("passed") is not True:
        raise BaselineError(f"{report_json_path}: that version failed its quality gate and cannot be a baseline")
    try:
        profile = DatasetProfile.model_validate(raw["profile"])
    except ValidationError as exc:
        raise BaselineError(validation_message(exc, f"{report_json_path} (profile)")) from None
    identity = profile.dataset
    return Baseline(name=f"{identity.dataset_id}@{identity.dataset_version}", created_from=identity, profile=profile)


def choose_baseline(name: str, previous_report: Path | None) -> Baseline:
    """``name`` (a committed baseline or a path), or for ``last_published`` the profile in the quality report of
    the version published last; with none published yet, the committed default baseline."""
    if name != LAST_PUBLISHED:
        return load_baseline(name)
    if previous_report is not None and previous_report.exists():
        return baseline_from_report(previous_report)
    return load_baseline(DEFAULT_BASELINE)


def _read_json(path: Path) -> Any:
    try:
        return read_json(path, max_bytes=MAX_BASELINE_BYTES)
    except InputError as exc:
        raise BaselineError(str(exc)) from None


def build_synthetic_baseline(
    rows: int, seed: int, out: Path, *, name: str = DEFAULT_BASELINE, batch_rows: int = 131_072,
    entities: int = 2_000,
) -> Baseline:
    """Build the synthetic dataset in a temporary directory, profile it and store the baseline."""
    from feature_platform.datasets.build import build_dataset
    from feature_platform.datasets.synthetic import SyntheticMarketSource

    with tempfile.TemporaryDirectory(prefix="fp-baseline-") as tmp:
        built = build_dataset(SyntheticMarketSource(rows, seed, batch_rows=batch_rows, entities=entities),
                              Path(tmp), name, dataset_version=f"seed{seed}")
        profile = profile_dataset(data_file_paths(built.manifest_path, built.manifest), built.manifest)
    return write_baseline(profile, name, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feature_platform.quality.baseline",
                                     description="Regenerate a quality baseline from the synthetic source.")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-rows", type=int, default=131_072)
    parser.add_argument("--entities", type=int, default=2_000)
    parser.add_argument("--name", default=DEFAULT_BASELINE)
    parser.add_argument("--out", type=Path, default=None, help="default: baselines/<name>.json in this package")
    args = parser.parse_args(argv)
    out = args.out or BASELINE_DIR / f"{args.name}.json"
    baseline = build_synthetic_baseline(args.rows, args.seed, out, name=args.name, batch_rows=args.batch_rows,
                                        entities=args.entities)
    print(f"wrote {out}: baseline {baseline.name} from {baseline.profile.rows} rows, "
          f"data sha256 {baseline.created_from.file_sha256[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
