"""Tensor dataset build: determinism across executors, seeds, splits, atomic publish and --force."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from feature_platform.contracts.paths import UnsafePathError
from feature_platform.datasets.build import BuildError, DatasetExistsError
from feature_platform.datasets.tensor_build import TensorBuildResult, build_tensor_dataset
from feature_platform.datasets.tensor_splits import TensorSplitSpec, assign_tensor_splits
from feature_platform.datasets.zarr_store import load_tensor_dataset
from feature_platform.simulators import get_simulator, simulate_range

SMALL: dict[str, Any] = {"samples": 60, "seed": 21, "simulator": "regime_switching", "T": 24, "H": 8,
                         "chunk_samples": 20, "dataset_version": "v1", "created_at": "2026-01-01T00:00:00Z"}


def _build(out: Path, **overrides: Any) -> TensorBuildResult:
    args = {**SMALL, "executor": "inline", **overrides}
    return build_tensor_dataset(out, "tds", **args)


def _chunk_hashes(r: TensorBuildResult) -> dict[str, str]:
    return {c.path: c.sha256 for a in r.manifest.arrays.values() for c in a.chunks}


@pytest.fixture(scope="module")
def inline(tmp_path_factory: pytest.TempPathFactory) -> TensorBuildResult:
    return _build(tmp_path_factory.mktemp("inline"))


@pytest.mark.parametrize(("executor", "workers"), [("process", 1), ("process", 2)])
def test_process_builds_are_bit_identical_to_inline(inline: TensorBuildResult, tmp_path: Path, executor: str,
                                                    workers: int) -> None:
    r = _build(tmp_path, executor=executor, workers=workers)
    assert _chunk_hashes(r) == _chunk_hashes(inline)
    assert (r.manifest.merkle_root, r.manifest.config_hash) == (inline.manifest.merkle_root,
                                                               inline.manifest.config_hash)
    assert r.digest == inline.digest
    assert r.manifest_path.read_bytes() == inline.manifest_path.read_bytes()


def test_ray_build_is_bit_identical_to_inline(inline: TensorBuildResult, tmp_path: Path,
                                              ray_local: str | None) -> None:
    r = _build(tmp_path, executor="ray", workers=2, ray_address=ray_local)
    assert _chunk_hashes(r) == _chunk_hashes(inline)
    assert r.digest == inline.digest


def test_same_seed_same_data_other_seed_other_data(inline: TensorBuildResult, tmp_path: Path) -> None:
    again = load_tensor_dataset(_build(tmp_path / "a", created_at=None, dataset_version=None).path)
    first = load_tensor_dataset(inline.path)
    assert all(again[k].tobytes() == first[k].tobytes() for k in first)
    other = load_tensor_dataset(_build(tmp_path / "b", seed=22).path, arrays=["trajectories", "theta"])
    assert not np.array_equal(other["theta"], first["theta"])
    assert not np.array_equal(other["trajectories"], first["trajectories"])


def test_per_sample_seed_derivation(inline: TensorBuildResult, tmp_path: Path) -> None:
    """Sample i depends on (seed, i) only: alone, in other chunkings, it has the same bytes."""
    stored = load_tensor_dataset(inline.path)
    for i in (0, 19, 20, 59):
        alone = simulate_range("regime_switching", 21, i, i + 1, 24, 8)
        assert stored["trajectories"][i].tobytes() == alone.trajectories[0].astype(np.float32).tobytes()
        assert stored["metadata/regime"][i].tobytes() == alone.metadata["regime"][0].tobytes()
    rechunked = load_tensor_dataset(_build(tmp_path, chunk_samples=7).path)
    assert all(np.array_equal(rechunked[k], stored[k]) for k in stored)
    assert inline.manifest.rng_seeds.derivation.startswith("sample i uses")


def test_manifest_describes_simulator_splits_and_compression(inline: TensorBuildResult) -> None:
    m = inline.manifest
    spec = get_simulator("regime_switching").spec
    assert m.simulators["regime_switching"].model_dump(mode="json") == spec.to_json()
    assert m.source.kind == "simulator" and m.n_samples == 60 and m.chunk_samples == 20
    assert sum(m.splits.counts.values()) == 60 and m.splits.algorithm == "random_interpolation"
    stored = load_tensor_dataset(inline.path, arrays=["theta", "split"])
    codes = assign_tensor_splits(TensorSplitSpec.default(), simulate_range("regime_switching", 21, 0, 60, 24, 8).theta,
                                 np.arange(60), spec, 21)
    assert np.array_equal(stored["split"], codes)
    assert {n: int((codes == i).sum()) for i, n in enumerate(m.splits.names)} == m.splits.counts
    assert set(inline.compression) == set(m.arrays) and all(v > 0 for v in inline.compression.values())
    assert [c.start for c in m.arrays["irfs"].chunks] == [0, 20, 40]


def test_extrapolation_split_is_recorded(tmp_path: Path) -> None:
    r = _build(tmp_path, splits=TensorSplitSpec.extrapolation_slice("rho", quantile=0.5))
    assert r.manifest.splits.algorithm == "extrapolation_slice"
    assert r.manifest.splits.parameters["parameter"] == "rho"
    theta = load_tensor_dataset(r.path, arrays=["theta", "split"])
    rho = theta["theta"][:, get_simulator("regime_switching").spec.parameter_index("rho")]
    test_code = r.manifest.splits.names.index("test")
    assert np.all((theta["split"] == test_code) == (rho >= rho.dtype.type(0.1 + 0.5 * (0.95 - 0.1))))


def test_existing_dataset_needs_force_and_failed_rebuild_keeps_it(inline: TensorBuildResult,
                                                                  tmp_path: Path) -> None:
    first = _build(tmp_path)
    before = first.manifest_path.read_bytes()
    with pytest.raises(DatasetExistsError, match="already exists; pass --force"):
        _build(tmp_path, seed=5)
    with pytest.raises(BuildError, match="size_limit"):
        _build(tmp_path, seed=5, force=True, max_bytes=1000)
    assert first.manifest_path.read_bytes() == before
    replaced = _build(tmp_path, seed=5, force=True)
    assert replaced.digest != first.digest and replaced.report.ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tds"]  # no staging directories left


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(BuildError):
        _build(tmp_path / "out", max_bytes=1000)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(("overrides", "error", "message"), [
    ({"samples": 0}, ValueError, "samples must be a positive integer"),
    ({"chunk_samples": -1}, ValueError, "chunk_samples must be a positive integer"),
    ({"bitround_keepbits": 30}, ValueError, r"bitround_keepbits must lie in \[1, 22\]"),
    ({"simulator": "nope"}, ValueError, "unknown simulator 'nope'"),
    ({"splits": TensorSplitSpec.extrapolation_slice("nope")}, ValueError, "nope"),
])
def test_bad_arguments_fail_before_any_write(tmp_path: Path, overrides: dict[str, Any], error: type[Exception],
                                             message: str) -> None:
    with pytest.raises(error, match=message):
        _build(tmp_path / "out", **overrides)
    assert not (tmp_path / "out").exists()


def test_unsafe_dataset_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        build_tensor_dataset(tmp_path, "../escape", samples=10, seed=1, T=8, H=2, executor="inline")
    assert list(tmp_path.iterdir()) == []


def test_progress_reaches_the_sample_count(tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    _build(tmp_path, samples=50, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (50, 50) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert json.loads((tmp_path / "tds" / "manifest.json").read_text())["n_samples"] == 50


def test_a_worker_reporting_wrong_bytes_fails_the_build(tmp_path: Path) -> None:
    from feature_platform.datasets.tensor_build import ChunkResult, _land_payload
    from feature_platform.datasets.zarr_store import WrittenFile

    good = WrittenFile("theta", "data.zarr/theta/c/0/0", 0, 10, 3, hashlib.sha256(b"abc").hexdigest())
    landed = _land_payload(tmp_path, ChunkResult([good], {}, [10, 0, 0], {good.path: b"abc"}))
    assert landed.payload is None and (tmp_path / good.path).read_bytes() == b"abc"
    bad = WrittenFile("shocks", "data.zarr/shocks/c/0/0/0", 0, 10, 3, good.sha256)
    with pytest.raises(BuildError, match=r"data\.zarr/shocks/c/0/0/0: chunk bytes from the worker"):
        _land_payload(tmp_path, ChunkResult([bad], {}, [10, 0, 0], {bad.path: b"abd"}))
