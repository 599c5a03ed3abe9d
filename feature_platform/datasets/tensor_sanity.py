"""Sanity report of a stored tensor dataset: one bounded, evenly spaced read, then the plots.

The CLI (`fp dataset report`) and the Dagster `tensor_sanity_report` asset both call
``sanity_report_of``, so they read the same samples and draw the same pictures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DEFAULT_REPORT_SAMPLES = 2_000


def report_indices(n_samples: int, max_samples: int) -> np.ndarray:
    """At most ``max_samples`` indices spread evenly over ``[0, n_samples)``: the same every time, and
    every region of parameter space (and every chunk) is represented."""
    if n_samples <= 0 or max_samples <= 0:
        raise ValueError(f"n_samples and max_samples must be positive, got {n_samples} and {max_samples}")
    return np.unique(np.linspace(0, n_samples - 1, min(n_samples, max_samples)).round().astype(np.int64))


def sanity_report_of(manifest_path: Path | str, out_dir: Path, *,
                     max_samples: int = DEFAULT_REPORT_SAMPLES) -> tuple[int, list[Path]]:
    """Render the sanity report of the dataset at ``manifest_path`` into ``out_dir``.

    Reads trust the store: verify first (the CLI does; in Dagster the blocking checks do).
    Returns the number of samples read and the files written.
    """
    from feature_platform.contracts.tensor_manifest import parse_tensor_manifest
    from feature_platform.datasets.tensor_report import write_sanity_report
    from feature_platform.datasets.zarr_store import load_tensor_dataset
    from feature_platform.simulators import SimulatorSpec

    path = Path(manifest_path)
    manifest = parse_tensor_manifest(json.loads(path.read_text(encoding="utf-8")), str(path))
    indices = report_indices(manifest.n_samples, max_samples)
    arrays = load_tensor_dataset(path, arrays=["theta", "irfs"], samples=indices)
    info = next(iter(manifest.simulators.values()))
    spec = SimulatorSpec.from_json(info.model_dump(mode="json"))
    out_dir.mkdir(parents=True, exist_ok=True)
    return len(indices), write_sanity_report(arrays["theta"], arrays["irfs"], spec, out_dir)
