"""Zarr store of tensor datasets: layout, round trips, conversion, validation, compression, bit rounding."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from feature_platform.datasets.tensor_build import TensorBuildResult, bitround_bound, build_tensor_dataset
from feature_platform.datasets.tensor_verify import verify_tensor_dataset
from feature_platform.datasets.zarr_store import (
    STORE_NAME,
    ArraySpec,
    array_layout,
    convert,
    create_store,
    iter_tensor_batches,
    load_tensor_dataset,
    write_range,
)
from feature_platform.simulators import get_simulator, simulate_range

N, T, H, CHUNK, SEED = 60, 24, 8, 20, 11
SIM = "regime_switching"


def _as_stored(batch_arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) for k, v in batch_arrays.items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> TensorBuildResult:
    out = tmp_path_factory.mktemp("tensor_store")
    return build_tensor_dataset(out, "store_ds", samples=N, seed=SEED, simulator=SIM, T=T, H=H,
                                chunk_samples=CHUNK, executor="inline")


def _layout_and_data(start: int, stop: int) -> tuple[list[ArraySpec], dict[str, np.ndarray]]:
    spec = get_simulator(SIM).spec
    batch = simulate_range(SIM, SEED, start, stop, T, H)
    layout = array_layout(spec, T, H, {k: v.shape[1:] for k, v in batch.metadata.items()})
    data = {**batch.arrays(), "split": np.zeros(stop - start, np.int8),
            **{f"metadata/{k}": v for k, v in batch.metadata.items()}}
    return layout, data


def test_store_directories_and_metadata(built: TensorBuildResult) -> None:
    store = built.path / STORE_NAME
    assert json.loads((store / "zarr.json").read_text())["node_type"] == "group"
    assert json.loads((store / "metadata" / "zarr.json").read_text())["node_type"] == "group"
    for name in ("trajectories", "irfs", "shocks", "theta", "split", "metadata/regime"):
        meta = json.loads((store / name / "zarr.json").read_text())
        assert meta["node_type"] == "array" and meta["zarr_format"] == 3
        assert (store / name / "c").is_dir()


def test_array_shapes_axes_and_units(built: TensorBuildResult) -> None:
    spec = get_simulator(SIM).spec
    data = load_tensor_dataset(built.path)
    assert data["trajectories"].shape == (N, T, 3)
    assert data["irfs"].shape == (N, spec.n_shocks, H + 1, 3)
    assert data["shocks"].shape == (N, T, spec.n_shocks)
    assert data["theta"].shape == (N, spec.n_params)
    assert data["metadata/regime"].shape == (N, T) and data["metadata/regime"].dtype == np.int8
    meta = json.loads((built.path / STORE_NAME / "trajectories" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["sample", "time", "observable"]
    assert meta["attributes"]["units"] == [v.units for v in spec.observables]
    theta_meta = json.loads((built.path / STORE_NAME / "theta" / "zarr.json").read_text())
    assert theta_meta["attributes"]["units"] == [v.units for v in spec.parameters]


def test_single_sample_round_trip(built: TensorBuildResult) -> None:
    i = 37
    fresh = _as_stored(simulate_range(SIM, SEED, i, i + 1, T, H).arrays())
    one = load_tensor_dataset(built.path, samples=[i])
    for name, values in fresh.items():
        assert one[name].dtype == np.float32
        assert one[name].tobytes() == values.tobytes(), name


def test_batch_round_trip_and_iterator(built: TensorBuildResult) -> None:
    fresh = _as_stored(simulate_range(SIM, SEED, 0, N, T, H).arrays())
    whole = load_tensor_dataset(built.path, arrays=list(fresh))
    part = load_tensor_dataset(built.path / "manifest.json", arrays=["trajectories"], samples=(15, 45))
    assert part["trajectories"].tobytes() == fresh["trajectories"][15:45].tobytes()
    for name in fresh:
        assert np.array_equal(whole[name], fresh[name])
    batches = list(iter_tensor_batches(built.path, 16, arrays=["theta", "irfs"]))
    assert [len(b["index"]) for b in batches] == [16, 16, 16, 12]
    assert np.array_equal(np.concatenate([b["theta"] for b in batches]), fresh["theta"])
    assert np.array_equal(np.concatenate([b["index"] for b in batches]), np.arange(N))
    wide = list(iter_tensor_batches(built.path, 25, arrays=["shocks"]))  # spans chunks of 20, not aligned
    assert [len(b["index"]) for b in wide] == [25, 25, 10]
    assert np.array_equal(np.concatenate([b["shocks"] for b in wide]), fresh["shocks"])


def test_split_batches_are_disjoint_and_cover_every_sample(built: TensorBuildResult) -> None:
    codes = load_tensor_dataset(built.path, arrays=["split"])["split"]
    seen = []
    for code, name in enumerate(built.manifest.splits.names):
        batches = list(iter_tensor_batches(built.path, 7, split=name, arrays=["theta"]))
        assert all(len(b["index"]) <= 7 for b in batches)
        idx = np.concatenate([b["index"] for b in batches]) if batches else np.array([], dtype=np.int64)
        assert np.all(codes[idx] == code)
        assert len(idx) == built.manifest.splits.counts[name]
        if batches:
            assert np.array_equal(np.concatenate([b["theta"] for b in batches]),
                                  load_tensor_dataset(built.path, arrays=["theta"], samples=idx)["theta"])
        seen.append(idx)
    everything = np.sort(np.concatenate(seen))
    assert np.array_equal(everything, np.arange(N))
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        next(iter_tensor_batches(built.path, 4, split="holdout"))


def test_float64_in_float32_on_disk(tmp_path: Path) -> None:
    layout, data = _layout_and_data(0, CHUNK)
    assert data["trajectories"].dtype == np.float64
    create_store(tmp_path, CHUNK, layout, chunk_samples=CHUNK)
    write_range(tmp_path, layout, 0, CHUNK, data, chunk_samples=CHUNK, n_samples=CHUNK)
    import zarr

    arr = zarr.open_array(tmp_path / STORE_NAME / "trajectories", mode="r")
    assert arr.dtype == np.float32
    assert np.array_equal(arr[:], data["trajectories"].astype(np.float32))
    assert not np.array_equal(arr[:].astype(np.float64), data["trajectories"])  # conversion really happened


def test_shape_mismatch_rejected_before_anything_is_written(tmp_path: Path) -> None:
    layout, data = _layout_and_data(0, CHUNK)
    create_store(tmp_path, CHUNK, layout, chunk_samples=CHUNK)
    data["irfs"] = data["irfs"][:, :, :-1]
    with pytest.raises(ValueError, match=r"array 'irfs': expected shape \(20, 3, 9, 3\), got \(20, 3, 8, 3\)"):
        write_range(tmp_path, layout, 0, CHUNK, data, chunk_samples=CHUNK, n_samples=CHUNK)
    assert not list((tmp_path / STORE_NAME).rglob("c"))  # trajectories (validated fine) was not written either


def test_wrong_dtype_and_unaligned_range_rejected(tmp_path: Path) -> None:
    layout, data = _layout_and_data(0, CHUNK)
    create_store(tmp_path, 2 * CHUNK, layout, chunk_samples=CHUNK)
    bad = {**data, "theta": data["theta"].astype("U8")}
    with pytest.raises(ValueError, match="array 'theta': expected a float or integer dtype"):
        write_range(tmp_path, layout, 0, CHUNK, bad, chunk_samples=CHUNK, n_samples=2 * CHUNK)
    with pytest.raises(ValueError, match="not made of whole 20-sample chunks"):
        write_range(tmp_path, layout, 5, 25, data, chunk_samples=CHUNK, n_samples=2 * CHUNK)
    assert not list((tmp_path / STORE_NAME).rglob("c"))


def test_chunk_hashes_are_the_bytes_on_disk_and_fill_chunks_are_written(tmp_path: Path) -> None:
    layout, data = _layout_and_data(0, CHUNK)
    create_store(tmp_path, CHUNK, layout, chunk_samples=CHUNK)
    written, counts = write_range(tmp_path, layout, 0, CHUNK, data, chunk_samples=CHUNK, n_samples=CHUNK)
    assert {w.array for w in written} == {s.name for s in layout}
    for w in written:
        raw = (tmp_path / w.path).read_bytes()
        assert (len(raw), hashlib.sha256(raw).hexdigest()) == (w.bytes, w.sha256)
    # The split array is all zeros (= the fill value): zarr would skip it unless told to write empty chunks.
    assert any(w.array == "split" for w in written)
    assert counts["trajectories"] == (0, 0)


def test_compression_codec_and_lossless_exact_round_trip(built: TensorBuildResult) -> None:
    for name in ("trajectories", "irfs", "shocks", "theta"):
        arr = built.manifest.arrays[name]
        blosc = arr.codecs[-1]
        assert blosc == {"name": "blosc", "configuration": {"typesize": 4, "cname": "zstd", "clevel": 3,
                                                            "shuffle": "bitshuffle", "blocksize": 0}}
        assert arr.raw_bytes == N * int(np.prod(arr.shape[1:])) * 4
        assert built.compression[name] == pytest.approx(arr.raw_bytes / arr.stored_bytes)
    assert built.compression["irfs"] > 1.0  # smooth impulse responses do compress
    assert built.manifest.compression.model_dump() == {"lossless": True}
    fresh = _as_stored(simulate_range(SIM, SEED, 0, N, T, H).arrays())
    stored = load_tensor_dataset(built.path)
    assert all(stored[k].tobytes() == v.tobytes() for k, v in fresh.items())


@pytest.mark.parametrize("keepbits", [3, 7, 12, 18])
def test_bitround_error_stays_within_the_promised_bound(keepbits: int) -> None:
    rng = np.random.default_rng(keepbits)
    mags = 10.0 ** rng.uniform(-30, 30, 20_000)
    values = np.concatenate([mags * rng.choice([-1.0, 1.0], mags.size), [0.0, 1.0, -2.5, 3.4e38 / 2]])
    layout, _ = _layout_and_data(0, 1)
    traj = next(s for s in layout if s.name == "trajectories")
    stored = convert(traj, values, keepbits).astype(np.float64)
    rel = np.abs(stored - values) / np.where(values == 0, 1.0, np.abs(values))
    assert rel.max() <= bitround_bound(keepbits)
    assert stored[values == 0].tolist() == [0.0]
    # Really lossy: the error reaches the rounding scale, so the bound is not vacuous.
    assert rel.max() > 2.0 ** -(keepbits + 2)
    mantissa = convert(traj, values, keepbits).view(np.uint32) & np.uint32((1 << 23) - 1)
    assert np.all(mantissa & np.uint32((1 << (23 - keepbits)) - 1) == 0)


def test_bitround_build_records_and_honours_the_bound(tmp_path: Path) -> None:
    keepbits = 9
    r = build_tensor_dataset(tmp_path, "lossy", samples=40, seed=SEED, simulator=SIM, T=T, H=H, chunk_samples=CHUNK,
                             executor="inline", bitround_keepbits=keepbits)
    assert r.manifest.compression.model_dump() == {"lossy": "bitround", "keepbits": keepbits,
                                                   "max_relative_error": 2.0**-keepbits}
    assert r.report.ok
    reproduced = verify_tensor_dataset(r.manifest_path, tmp_path, reproduce=40)  # same rounding on regeneration
    assert reproduced.ok and sum(c.name == "reproduce_sample" for c in reproduced.checks) == 40
    fresh = simulate_range(SIM, SEED, 0, 40, T, H).arrays()
    stored = load_tensor_dataset(r.path)
    for name, values in fresh.items():
        nz = values != 0
        rel = np.abs(stored[name].astype(np.float64)[nz] - values[nz]) / np.abs(values[nz])
        assert rel.max() <= 2.0**-keepbits, name
    assert r.compression["trajectories"] > 1.5  # fewer mantissa bits compress, and the manifest says why


def test_sharded_layout_holds_the_same_values(built: TensorBuildResult, tmp_path: Path) -> None:
    r = build_tensor_dataset(tmp_path, "sharded", samples=N, seed=SEED, simulator=SIM, T=T, H=H,
                             chunk_samples=CHUNK, inner_chunk_samples=5, executor="inline")
    traj = r.manifest.arrays["trajectories"]
    assert traj.shard_shape == [CHUNK, T, 3] and traj.chunk_shape == [5, T, 3]
    assert traj.codecs[0]["name"] == "sharding_indexed" and len(traj.chunks) == N // CHUNK
    assert r.manifest.arrays["theta"].shard_shape is None
    assert verify_tensor_dataset(r.manifest_path, tmp_path, reproduce=3, reproduce_seed=0).ok
    plain = load_tensor_dataset(built.path, samples=[3, 44])
    sharded = load_tensor_dataset(r.path, samples=[3, 44])
    assert all(np.array_equal(plain[k], sharded[k]) for k in plain)
    shutil.rmtree(r.path)


def test_detached_worker_encodes_the_same_bytes_without_touching_the_store(tmp_path: Path) -> None:
    """A Ray node may not share the driver's filesystem: it encodes in memory against the store's zarr.json."""
    from feature_platform.datasets.zarr_store import encode_range, store_metadata

    layout, data = _layout_and_data(0, 2 * CHUNK)
    create_store(tmp_path, 2 * CHUNK, layout, chunk_samples=CHUNK)
    metadata = store_metadata(tmp_path)
    before = sorted(p for p in (tmp_path / STORE_NAME).rglob("*"))
    written_d, counts_d, payload = encode_range(metadata, layout, CHUNK, 2 * CHUNK,
                                                {k: v[CHUNK:] for k, v in data.items()},
                                                chunk_samples=CHUNK, n_samples=2 * CHUNK)
    assert sorted(p for p in (tmp_path / STORE_NAME).rglob("*")) == before  # nothing written locally
    written, counts = write_range(tmp_path, layout, CHUNK, 2 * CHUNK, {k: v[CHUNK:] for k, v in data.items()},
                                  chunk_samples=CHUNK, n_samples=2 * CHUNK)
    assert (written_d, counts_d) == (written, counts)
    assert set(payload) == {w.path for w in written}
    for w in written:
        assert payload[w.path] == (tmp_path / w.path).read_bytes()
