"""Tensor dataset verify: tamper suite on chunks and metadata, range verify, reproduce, groups, CLI dispatch."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from feature_platform.contracts.tensor_manifest import merkle_root
from feature_platform.datasets.tensor_build import TensorBuildResult, build_tensor_dataset
from feature_platform.datasets.tensor_verify import TENSOR_CHECK_GROUPS, grouped_tensor, verify_tensor_dataset
from feature_platform.datasets.verify import VerifyReport, verify_dataset
from tests.conftest import CliResult

CHUNK = "data.zarr/trajectories/c/1/0/0"  # samples [20, 40)
ZARR_JSON = "data.zarr/trajectories/zarr.json"
EXTRA = "data.zarr/trajectories/c/3/0/0"  # a chunk beyond the 60 samples


@pytest.fixture(scope="module")
def golden_tensor(tmp_path_factory: pytest.TempPathFactory) -> TensorBuildResult:
    return build_tensor_dataset(tmp_path_factory.mktemp("tv") / "datasets", "tv_ds", samples=60, seed=8,
                                simulator="regime_switching", T=24, H=8, chunk_samples=20, executor="inline")


@pytest.fixture
def ds(golden_tensor: TensorBuildResult, tmp_path: Path) -> Path:
    target = tmp_path / "datasets" / golden_tensor.path.name
    shutil.copytree(golden_tensor.path, target)
    return target


def _verify(ds: Path, **kwargs: Any) -> VerifyReport:
    return verify_tensor_dataset(ds / "manifest.json", ds.parent, **kwargs)


def _edit_manifest(ds: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = ds / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw, indent=2, sort_keys=True))


def _reseal(ds: Path) -> None:
    """Update every size, sha256 and the Merkle root, as a careful forger would."""

    def edit(raw: dict[str, Any]) -> None:
        entries = raw["metadata_files"] + [c for a in raw["arrays"].values() for c in a["chunks"]]
        for e in entries:
            data = (ds / e["path"]).read_bytes()
            e["bytes"], e["sha256"] = len(data), hashlib.sha256(data).hexdigest()
        for a in raw["arrays"].values():
            a["stored_bytes"] = sum(c["bytes"] for c in a["chunks"])
            a["compression_ratio"] = a["raw_bytes"] / a["stored_bytes"]
        raw["merkle_root"] = merkle_root((e["path"], e["sha256"]) for e in entries)

    _edit_manifest(ds, edit)


def flip_byte(ds: Path) -> None:
    raw = bytearray((ds / CHUNK).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (ds / CHUNK).write_bytes(bytes(raw))


def truncate(ds: Path) -> None:
    os.truncate(ds / CHUNK, (ds / CHUNK).stat().st_size - 1)


def delete_chunk(ds: Path) -> None:
    (ds / CHUNK).unlink()


def extra_chunk(ds: Path) -> None:
    (ds / EXTRA).parent.mkdir(parents=True)
    shutil.copy(ds / CHUNK, ds / EXTRA)


def edit_zarr_json(ds: Path) -> None:
    meta = json.loads((ds / ZARR_JSON).read_text())
    meta["shape"][0] = 40  # same length: the size still matches, the hash does not
    (ds / ZARR_JSON).write_text(json.dumps(meta, indent=2))


def edit_zarr_json_resealed(ds: Path) -> None:
    meta = json.loads((ds / ZARR_JSON).read_text())
    meta["codecs"][-1]["configuration"]["clevel"] = 9
    (ds / ZARR_JSON).write_text(json.dumps(meta))
    _reseal(ds)


def edit_manifest_sha(ds: Path) -> None:
    _edit_manifest(ds, lambda raw: raw["arrays"]["trajectories"]["chunks"][1].update(sha256="0" * 64))


def edit_manifest_merkle(ds: Path) -> None:
    _edit_manifest(ds, lambda raw: raw.update(merkle_root="0" * 64))


def edit_manifest_nan(ds: Path) -> None:
    _edit_manifest(ds, lambda raw: raw["arrays"]["irfs"].update(nan_count=3))


def nan_chunk_resealed(ds: Path) -> None:
    import zarr

    arr = zarr.open_array(ds / "data.zarr" / "trajectories", mode="r+").with_config({"write_empty_chunks": True})
    values = np.asarray(arr[20:40])
    values[3, 4, 1] = np.nan
    arr[20:40] = values
    _reseal(ds)


def split_code_resealed(ds: Path) -> None:
    import zarr

    arr = zarr.open_array(ds / "data.zarr" / "split", mode="r+").with_config({"write_empty_chunks": True})
    codes = np.asarray(arr[:])
    codes[codes == 0] = 2  # every train sample moved to test: splits.counts no longer tell the truth
    arr[:] = codes
    _reseal(ds)


def garbage_chunk_resealed(ds: Path) -> None:
    (ds / CHUNK).write_bytes(np.random.default_rng(0).bytes(500))
    _reseal(ds)


def symlink_escape(ds: Path) -> None:
    outside = ds.parent.parent / "outside_chunk"
    (ds / CHUNK).rename(outside)
    os.symlink(outside, ds / CHUNK)


# damage → (check that must fail, target it must name)
CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "flipped byte": (flip_byte, "file_sha256", CHUNK),
    "truncated chunk": (truncate, "file_size", CHUNK),
    "deleted chunk": (delete_chunk, "file_exists", CHUNK),
    "extra chunk": (extra_chunk, "no_extra_files", ""),
    "edited zarr.json": (edit_zarr_json, "file_sha256", ZARR_JSON),
    "edited zarr.json, manifest resealed": (edit_zarr_json_resealed, "zarr_codecs", ZARR_JSON),
    "edited manifest sha256": (edit_manifest_sha, "file_sha256", CHUNK),
    "edited merkle root": (edit_manifest_merkle, "merkle_root", "manifest.json"),
    "edited nan_count": (edit_manifest_nan, "nan_inf_counts", "irfs"),
    "NaN written, manifest resealed": (nan_chunk_resealed, "nan_inf_counts", "trajectories"),
    "split codes rewritten, manifest resealed": (split_code_resealed, "split_counts", "split"),
    "undecodable chunk, manifest resealed": (garbage_chunk_resealed, "nan_inf_counts", CHUNK),
    "symlinked chunk": (symlink_escape, "file_path_safe", CHUNK),
}


def test_intact_dataset_passes_every_group(ds: Path) -> None:
    report = _verify(ds)
    assert report.ok, [c.line() for c in report.failures]
    groups = grouped_tensor(report)
    assert set(groups) == set(TENSOR_CHECK_GROUPS)
    assert all(found and all(c.passed for c in found) for found in groups.values())
    assert {c.name for c in report.checks} <= set().union(*TENSOR_CHECK_GROUPS.values())


@pytest.mark.parametrize("case", list(CASES))
def test_tamper_is_caught_and_names_the_file(ds: Path, case: str) -> None:
    damage, check, target = CASES[case]
    damage(ds)
    report = _verify(ds)
    assert not report.ok
    failed = [c for c in report.failures if c.name == check]
    assert failed, [c.line() for c in report.failures]
    if target:
        assert any(c.target == target for c in failed), [c.line() for c in failed]
    if check.startswith("file_") and target == CHUNK:
        assert "samples [20, 40)" in failed[0].line()


def test_extra_chunk_is_named(ds: Path) -> None:
    extra_chunk(ds)
    (check,) = [c for c in _verify(ds).failures if c.name == "no_extra_files"]
    assert check.actual == [EXTRA]


def test_resealed_edit_of_values_is_caught_by_reproduce(ds: Path) -> None:
    import zarr

    arr = zarr.open_array(ds / "data.zarr" / "shocks", mode="r+")
    values = np.asarray(arr[20:40])
    values[5] += np.float32(0.25)
    arr[20:40] = values
    _reseal(ds)
    assert _verify(ds).ok  # every hash matches a manifest that was re-signed after the edit …
    report = _verify(ds, reproduce=60, reproduce_seed=0)  # … but the values no longer follow from the seed
    (bad,) = report.failures
    assert (bad.name, bad.target, bad.actual) == ("reproduce_sample", "sample 25", ["shocks"])


def test_reproduce_k_random_samples(ds: Path) -> None:
    report = _verify(ds, reproduce=5, reproduce_seed=3)
    checks = [c for c in report.checks if c.name == "reproduce_sample"]
    assert report.ok and len(checks) == 5 and len({c.target for c in checks}) == 5


def test_range_verify_reads_only_the_covering_chunks(ds: Path) -> None:
    flip_byte(ds)  # damages samples [20, 40)
    report = _verify(ds, samples=(0, 20))
    assert report.ok, [c.line() for c in report.failures]
    hashed = {c.target for c in report.checks if c.name == "file_sha256"}
    assert all("/c/0" in t or t.endswith("zarr.json") for t in hashed if t)
    assert CHUNK not in hashed
    bad = _verify(ds, samples=(35, 41))
    assert [(c.name, c.target) for c in bad.failures] == [("file_sha256", CHUNK)]
    assert not _verify(ds, samples=(10, 100)).ok


def test_size_limit_and_expected_digest(ds: Path, golden_tensor: TensorBuildResult) -> None:
    assert [c.name for c in _verify(ds, max_bytes=2048).failures] == ["size_limit"]
    assert _verify(ds, expected_digest=golden_tensor.digest).ok
    assert [c.name for c in _verify(ds, expected_digest="f" * 64).failures] == ["manifest_digest"]


def test_verify_dataset_dispatches_on_format(ds: Path) -> None:
    report = verify_dataset(ds / "manifest.json", ds.parent)
    assert report.ok and any(c.name == "merkle_root" for c in report.checks)
    flip_byte(ds)
    assert [c.name for c in verify_dataset(ds / "manifest.json", ds.parent).failures] == ["file_sha256"]


def test_cli_verify_exit_codes(cli: Callable[..., CliResult], ds: Path) -> None:
    args = ("dataset", "verify", "--path", ds / "manifest.json", "--base-dir", ds.parent)
    code, _, _ = cli(*args)
    assert code == 0
    delete_chunk(ds)
    code, out, _ = cli(*args)
    assert code == 1 and "FAIL file_exists" in out and CHUNK in out
