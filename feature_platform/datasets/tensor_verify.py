"""Fail-closed verification of a Zarr tensor dataset (docs/ARCHITECTURE.md §3, §7).

The manifest's file list is the authority, never the store listing: zarr reads a missing chunk
back as the fill value without error, so every listed chunk is stat'ed and re-hashed, the Merkle
root is recomputed from the listed hashes, every ``zarr.json`` must match the manifest (shape,
dtype, chunk grid, codecs, fill value, axes) and any unlisted file fails. With ``samples=(a, b)``
only the chunks covering that range are read (their hashes are bound to the root by the manifest).
``reproduce=K`` regenerates K random samples from their seeds and compares the stored bytes.
"""

from __future__ import annotations

import hashlib
import math
import stat
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from feature_platform.contracts.canonical import sha256_file
from feature_platform.contracts.checks import Check
from feature_platform.contracts.manifest import MANIFEST_NAME
from feature_platform.contracts.paths import UnsafePathError, resolve_inside
from feature_platform.contracts.safe_read import read_json
from feature_platform.contracts.tensor_manifest import TensorDatasetManifest, parse_tensor_manifest
from feature_platform.datasets.checks import (
    VerifyReport,
    check_location,
    check_no_extra_files,
    check_size,
    read_manifest,
    walk_entries,
)

# How the named checks roll up into the blocking checks of the tensor dataset asset.
TENSOR_CHECK_GROUPS: dict[str, frozenset[str]] = {
    "sha256_matches": frozenset({"manifest_exists", "manifest_parses", "manifest_schema", "dataset_id_safe",
                                 "dataset_location", "sample_range", "file_path_safe", "file_exists", "file_size",
                                 "file_sha256", "no_extra_files", "manifest_digest", "verify_completed"}),
    "merkle_root_matches": frozenset({"merkle_root"}),
    "schema_valid": frozenset({"zarr_metadata", "zarr_shape", "zarr_dtype", "zarr_chunks", "zarr_codecs",
                               "zarr_fill_value", "zarr_axes", "codec_policy", "chunk_layout"}),
    "values_finite": frozenset({"nan_inf_counts", "split_counts", "reproduce_sample"}),
    "size_within_limit": frozenset({"size_limit"}),
}

_FINITE = {"nan": 0, "inf": 0}
EXPECTED_BLOSC = {"cname": "zstd", "clevel": 3, "shuffle": "bitshuffle"}


def grouped_tensor(report: VerifyReport) -> dict[str, list[Check]]:
    """Checks of ``report`` per group; a group with no checks at all counts as failed upstream."""
    return {group: [c for c in report.checks if c.name in names] for group, names in TENSOR_CHECK_GROUPS.items()}


def verify_tensor_dataset(
    manifest_path: Path | str,
    base_dir: Path | str | None = None,
    *,
    samples: tuple[int, int] | None = None,
    reproduce: int = 0,
    reproduce_seed: int | None = None,
    max_bytes: int | None = None,
    expected_digest: str | None = None,
    scan_values: bool = True,
    known_sha256: Mapping[str, str] | None = None,
) -> VerifyReport:
    """Verify the tensor dataset whose manifest is at ``manifest_path``; see the module docstring.

    ``scan_values`` decodes the checked chunks to recount NaN/Inf and split codes (the builder turns
    it off: it counted the very values it encoded). ``known_sha256`` lets the builder pass digests
    of the bytes it wrote instead of re-reading them.
    """
    report = VerifyReport(manifest_path=str(manifest_path))
    try:
        _verify(report, Path(manifest_path), None if base_dir is None else Path(base_dir), samples, reproduce,
                reproduce_seed, max_bytes, expected_digest, scan_values, known_sha256 or {})
    except Exception as exc:  # noqa: BLE001 - fail closed on anything unforeseen
        report.add("verify_completed", False, "no error", f"{type(exc).__name__}: {exc}")
    return report


def _verify(report: VerifyReport, manifest_path: Path, base_dir: Path | None, samples: tuple[int, int] | None,
            reproduce: int, reproduce_seed: int | None, max_bytes: int | None, expected_digest: str | None,
            scan_values: bool, known_sha256: Mapping[str, str]) -> None:
    m = read_manifest(report, manifest_path, parse_tensor_manifest, "tensor dataset manifest spec v1 (zarr)")
    if m is None:
        return
    dataset_dir = manifest_path.parent
    check_location(report, m.dataset_id, dataset_dir, base_dir)
    lo, hi = 0, m.n_samples
    if samples is not None:
        lo, hi = int(samples[0]), int(samples[1])
        if not report.add("sample_range", 0 <= lo < hi <= m.n_samples, f"0 <= start < stop <= {m.n_samples}",
                          [lo, hi]):
            return
    meta_ok = _check_metadata_files(report, m, dataset_dir, known_sha256)
    chunks_ok, values = _check_chunks(report, m, dataset_dir, known_sha256, lo, hi, scan_values)
    report.add("merkle_root", m.computed_merkle_root() == m.merkle_root, m.merkle_root, m.computed_merkle_root(),
               MANIFEST_NAME, detail="recomputed over every listed file's (path, sha256)")
    entries = walk_entries(dataset_dir)
    check_no_extra_files(report, (p for p, _, _ in m.files()), entries)
    if meta_ok:
        _check_zarr_metadata(report, m, dataset_dir)
    _check_layout(report, m)
    _check_counts(report, m, dataset_dir, lo, hi, values if scan_values and chunks_ok and meta_ok else None)
    check_size(report, m.limits.max_bytes, entries, max_bytes)
    if reproduce > 0:
        _check_reproduce(report, m, dataset_dir, lo, hi, reproduce, reproduce_seed)
    if expected_digest is not None:
        report.add("manifest_digest", report.manifest_digest == expected_digest, expected_digest,
                   report.manifest_digest)


def _check_file(report: VerifyReport, dataset_dir: Path, rel: str, size: int, sha: str, what: str,
                known_sha256: Mapping[str, str]) -> bool:
    path = _stat_file(report, dataset_dir, rel, size, what)
    if path is None:
        return False
    actual = known_sha256.get(rel) or sha256_file(path)
    return report.add("file_sha256", actual == sha, sha, actual, rel, what if actual != sha else "")


def _check_metadata_files(report: VerifyReport, m: TensorDatasetManifest, dataset_dir: Path,
                          known_sha256: Mapping[str, str]) -> bool:
    ok = True
    for f in m.metadata_files:
        ok &= _check_file(report, dataset_dir, f.path, f.bytes, f.sha256, "store metadata", known_sha256)
    return ok


@dataclass
class _Values:
    """What the scan of one array's checked chunks found."""

    nan: int = 0
    inf: int = 0
    codes: np.ndarray | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)


def _check_chunks(report: VerifyReport, m: TensorDatasetManifest, dataset_dir: Path,
                  known_sha256: Mapping[str, str], lo: int, hi: int, scan: bool) -> tuple[bool, dict[str, _Values]]:
    """Stat, hash and (for plain chunks) decode every listed chunk of ``[lo, hi)`` in one read each.

    Hashing and Blosc decoding release the GIL, so two threads overlap them; results are reported
    in manifest order, so the report does not depend on scheduling.
    """
    jobs: list[tuple[str, Path, Any, tuple[str, tuple[int, ...], int] | None]] = []
    ok = True
    for name, arr in m.arrays.items():
        plain = arr.shard_shape is None and [c.get("name") for c in arr.codecs] == ["bytes", "blosc"]
        for c in arr.chunks:
            if c.stop <= lo or c.start >= hi:
                continue
            what = f"chunk of {name}, samples [{c.start}, {c.stop})"
            path = _stat_file(report, dataset_dir, c.path, c.bytes, what)
            if path is None:
                ok = False
                continue
            decode = (arr.dtype, tuple(arr.chunk_shape), c.stop - c.start) if scan and plain else None
            jobs.append((name, path, c, decode))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda j: _hash_and_decode(j[1], j[2].path, known_sha256, j[3]), jobs))
    values: dict[str, _Values] = {name: _Values() for name in m.arrays}
    for (name, _, c, _), (sha, found) in zip(jobs, results, strict=True):
        what = f"chunk of {name}, samples [{c.start}, {c.stop})"
        good = report.add("file_sha256", sha == c.sha256, c.sha256, sha, c.path, what if sha != c.sha256 else "")
        ok &= good
        if good and isinstance(found, str):
            values[name].errors.append((c.path, found))
        elif good and found is not None:
            v = values[name]
            v.nan, v.inf = v.nan + found[0], v.inf + found[1]
            if name == m.splits.array:
                v.codes = found[2] if v.codes is None else v.codes + found[2]
    return ok, values


def _stat_file(report: VerifyReport, dataset_dir: Path, rel: str, size: int, what: str) -> Path | None:
    try:
        path = resolve_inside(dataset_dir, rel)
    except UnsafePathError as exc:
        report.add("file_path_safe", False, "a path inside the dataset directory", rel, rel, f"{what}: {exc}")
        return None
    try:
        st = path.lstat()
    except OSError as exc:
        report.add("file_exists", False, "a regular file", exc.strerror or "missing", rel, what)
        return None
    if not report.add("file_exists", stat.S_ISREG(st.st_mode), "a regular file",
                      "a regular file" if stat.S_ISREG(st.st_mode) else "not a regular file (symlink or directory)",
                      rel, what if not stat.S_ISREG(st.st_mode) else ""):
        return None
    if not report.add("file_size", st.st_size == size, size, st.st_size, rel, what if st.st_size != size else ""):
        return None
    return path


_SPLIT_CODES = 256  # int8 codes are counted over all values; out-of-range ones are reported


def _hash_and_decode(path: Path, rel: str, known_sha256: Mapping[str, str],
                     decode: tuple[str, tuple[int, ...], int] | None) -> tuple[str, Any]:
    """sha256 of the file and, if asked, (NaN, Inf, code counts) of its decoded rows, or a decode error."""
    import numcodecs.blosc

    from feature_platform.datasets.zarr_store import nonfinite_counts

    if decode is None and rel in known_sha256:
        return known_sha256[rel], None
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if decode is None:
        return sha, None
    dtype, chunk_shape, rows = decode
    try:
        raw = numcodecs.blosc.decompress(data)
        values = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(chunk_shape)[:rows]
    except (RuntimeError, ValueError) as exc:
        return sha, f"{type(exc).__name__}: {exc}"
    nan, inf = nonfinite_counts(values)
    codes = np.bincount(values.ravel().astype(np.int64) % _SPLIT_CODES, minlength=_SPLIT_CODES) \
        if values.dtype.kind == "i" and values.ndim == 1 else None
    return sha, (nan, inf, codes)


def _check_zarr_metadata(report: VerifyReport, m: TensorDatasetManifest, dataset_dir: Path) -> None:
    """Each array's zarr.json (already hash-checked) must describe exactly what the manifest says."""
    for name, arr in m.arrays.items():
        rel = f"{m.store}/{name}/zarr.json"
        if rel not in {f.path for f in m.metadata_files}:
            report.add("zarr_metadata", False, "listed in metadata_files", "not listed", rel)
            continue
        try:
            meta = read_json(dataset_dir / rel, what=rel, nofollow=True)
            grid = meta["chunk_grid"]["configuration"]["chunk_shape"]
            codecs = meta["codecs"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            report.add("zarr_metadata", False, "a zarr v3 array zarr.json", f"{type(exc).__name__}: {exc}", rel)
            continue
        fmt = (meta.get("zarr_format"), meta.get("node_type"), meta.get("chunk_key_encoding"))
        want_fmt = (3, "array", {"name": "default", "configuration": {"separator": "/"}})
        report.add("zarr_metadata", fmt == want_fmt, list(want_fmt), list(fmt), rel)
        report.add("zarr_shape", meta.get("shape") == arr.shape, arr.shape, meta.get("shape"), rel)
        report.add("zarr_dtype", meta.get("data_type") == arr.dtype, arr.dtype, meta.get("data_type"), rel)
        file_shape = arr.shard_shape or arr.chunk_shape
        inner = codecs[0].get("configuration", {}).get("chunk_shape") if arr.shard_shape else None
        report.add("zarr_chunks", grid == file_shape and (arr.shard_shape is None or inner == arr.chunk_shape),
                   {"file": file_shape, "inner": arr.chunk_shape if arr.shard_shape else None},
                   {"file": grid, "inner": inner}, rel)
        report.add("zarr_codecs", codecs == arr.codecs, arr.codecs, codecs, rel)
        fill = meta.get("fill_value")
        report.add("zarr_fill_value", isinstance(fill, (int, float)) and not isinstance(fill, bool)
                   and fill == arr.fill_value, arr.fill_value, fill, rel)
        report.add("zarr_axes", meta.get("dimension_names") == arr.axes
                   and meta.get("attributes", {}).get("units") == arr.units,
                   {"axes": arr.axes, "units": arr.units},
                   {"axes": meta.get("dimension_names"), "units": meta.get("attributes", {}).get("units")}, rel)
        blosc = _find_blosc(arr.codecs)
        policy_ok = blosc is not None and all(blosc.get(k) == v for k, v in EXPECTED_BLOSC.items())
        report.add("codec_policy", policy_ok, {"blosc": EXPECTED_BLOSC}, {"blosc": blosc}, name)


def _find_blosc(codecs: list[dict[str, Any]]) -> dict[str, Any] | None:
    for codec in codecs:
        config = codec.get("configuration")
        if codec.get("name") == "blosc" and isinstance(config, dict):
            return config
        if codec.get("name") == "sharding_indexed" and isinstance(config, dict):
            return _find_blosc(config.get("codecs", []))
    return None


def _check_layout(report: VerifyReport, m: TensorDatasetManifest) -> None:
    """Chunk files sit where the v3 key encoding puts them, one per ``file`` shape step along samples."""
    from feature_platform.datasets.zarr_store import chunk_path

    for name, arr in m.arrays.items():
        step = (arr.shard_shape or arr.chunk_shape)[0]
        count = math.ceil(arr.shape[0] / step)
        expected = [(chunk_path(name, i, len(arr.shape)), i * step, min((i + 1) * step, arr.shape[0]))
                    for i in range(count)]
        actual = [(c.path, c.start, c.stop) for c in arr.chunks]
        bad = next((a for a, e in zip(actual, expected, strict=False) if a != e), None)
        report.add("chunk_layout", actual == expected, f"{count} chunk files of {step} samples",
                   f"{len(actual)} chunk files", name, detail=f"unexpected entry {bad}" if bad else "")


def _check_counts(report: VerifyReport, m: TensorDatasetManifest, dataset_dir: Path, lo: int, hi: int,
                  scanned: dict[str, _Values] | None) -> None:
    listed = sum(m.splits.counts.values())
    report.add("split_counts", listed == m.n_samples, m.n_samples, listed, "splits",
               detail="" if listed == m.n_samples else "splits.counts do not add up to n_samples")
    if scanned is None:
        for name, arr in m.arrays.items():
            declared = {"nan": arr.nan_count, "inf": arr.inf_count}
            report.add("nan_inf_counts", declared == _FINITE, _FINITE, declared, name,
                       detail="declared counts only (values not scanned)")
        return
    whole = (lo, hi) == (0, m.n_samples)
    for name, arr in m.arrays.items():
        v = scanned[name] if arr.shard_shape is None else _scan_with_zarr(m, dataset_dir, name, lo, hi)
        for path, error in v.errors:
            report.add("nan_inf_counts", False, "a chunk that decodes", error, path)
        declared = {"nan": arr.nan_count, "inf": arr.inf_count}
        actual = {"nan": v.nan, "inf": v.inf}
        # Training tensors must be finite; a scan of the whole array must also agree with the manifest.
        ok = (actual == _FINITE and declared == _FINITE) if whole else actual == _FINITE
        detail = "" if ok else f"manifest declares {declared}"
        report.add("nan_inf_counts", ok, _FINITE, actual, name if whole else f"{name}[{lo}:{hi}]", detail=detail)
        if name == m.splits.array and v.codes is not None:
            k = len(m.splits.names)
            invalid = int(v.codes[k:].sum())
            if invalid:
                report.add("split_counts", False, f"codes in [0, {k})", f"{invalid} invalid codes", name)
            if whole:
                counts = dict(zip(m.splits.names, (int(c) for c in v.codes[:k]), strict=True))
                report.add("split_counts", counts == m.splits.counts, m.splits.counts, counts, name)


def _scan_with_zarr(m: TensorDatasetManifest, dataset_dir: Path, name: str, lo: int, hi: int) -> _Values:
    """Sharded arrays: decode through zarr (the files were hash-checked already)."""
    import zarr
    from zarr.storage import LocalStore

    from feature_platform.datasets.zarr_store import nonfinite_counts

    za = zarr.open_array(LocalStore(dataset_dir / m.store, read_only=True), path=name, zarr_format=3)
    v = _Values()
    for c in m.arrays[name].chunks:
        if c.stop > lo and c.start < hi:
            nan, inf = nonfinite_counts(np.asarray(za[c.start:c.stop]))
            v.nan, v.inf = v.nan + nan, v.inf + inf
    return v


def _check_reproduce(report: VerifyReport, m: TensorDatasetManifest, dataset_dir: Path, lo: int, hi: int,
                     k: int, seed: int | None) -> None:
    """Regenerate ``k`` random samples of ``[lo, hi)`` from their own seeds; compare stored bytes."""
    from feature_platform.datasets.tensor_splits import TensorSplitSpec, assign_tensor_splits
    from feature_platform.datasets.zarr_store import SPLIT_ARRAY, ArraySpec, convert, load_tensor_dataset
    from feature_platform.simulators import get_simulator, simulate_range

    (sim_name,) = m.simulators
    spec = get_simulator(sim_name).spec
    keepbits = getattr(m.compression, "keepbits", None)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(np.arange(lo, hi), size=min(k, hi - lo), replace=False))
    stored = load_tensor_dataset(dataset_dir, samples=picks)
    splits = TensorSplitSpec.from_json({"algorithm": m.splits.algorithm, "parameters": m.splits.parameters})
    for row, i in enumerate(int(p) for p in picks):
        batch = simulate_range(sim_name, m.rng_seeds.global_seed, i, i + 1, m.T, m.H)
        fresh: dict[str, np.ndarray] = {**batch.arrays(), **{f"metadata/{k}": v for k, v in batch.metadata.items()}}
        if m.splits.array == SPLIT_ARRAY:
            fresh[SPLIT_ARRAY] = assign_tensor_splits(splits, batch.theta, np.array([i]), spec, m.splits.seed)
        differ = []
        for name, arr in m.arrays.items():
            want = convert(ArraySpec(name, tuple(arr.shape[1:]), arr.dtype, tuple(arr.axes), tuple(arr.units)),
                           fresh[name], keepbits)[0] if name in fresh else None
            if want is None or want.tobytes() != np.ascontiguousarray(stored[name][row]).tobytes():
                differ.append(name)
        report.add("reproduce_sample", not differ, "bit-identical to a fresh simulation", differ or "identical",
                   f"sample {i}", detail=f"differs in {', '.join(differ)}" if differ else "")
