"""Zarr v3 store of a tensor dataset: ``<dataset_dir>/data.zarr/`` (docs/ARCHITECTURE.md §3, §7).

Bytes are reproducible only with an explicit codec list and single-threaded Blosc, so both are
fixed here and every writer calls ``single_thread_blosc``. Arrays are chunked along the sample
axis; a writer owns whole chunks (or whole shards), so tasks in different processes never touch
the same file, and each returns size and sha256 of the bytes it handed to the store (hashed in
``_HashingStore._set``, no second read). Floats are computed in float64 and stored as float32;
optional bit rounding is applied to the float32 values before encoding, so the store keeps the
spec-standard ``bytes`` + ``blosc`` codecs and any zarr reader decodes it.

Layout choice, measured on this 2-core box (20k samples, T=200, H=40): plain 1000-sample chunks
by default. Sharding (1000-sample shards, 10-sample inner chunks) cut a random one-sample read
from ~2-3 ms to ~1 ms per array, but built ~1.6x and iterated training batches ~6x slower
(0.18 s vs 1.05 s for 20k samples of four arrays), and training reads batches; it stays
available as ``inner_chunk_samples`` (trajectories, irfs and shocks only: theta rows are 36
bytes and do not compress in small inner chunks).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    from feature_platform.contracts.tensor_manifest import TensorDatasetManifest
    from feature_platform.simulators.base import SimulatorSpec

STORE_NAME: Final = "data.zarr"
SPLIT_ARRAY = "split"
METADATA_GROUP = "metadata"
LAYOUT_VERSION = "1.0.0"
BLOSC = {"cname": "zstd", "clevel": 3, "shuffle": "bitshuffle", "blocksize": 0}
_FLOAT_KINDS = "f"
_INT_DTYPES = ("uint8", "int8", "int16", "int32", "uint16", "uint32", "int64")


@dataclass(frozen=True)
class ArraySpec:
    """One array of the layout: name inside the store, per-sample shape, on-disk dtype, axes, units."""

    name: str
    sample_shape: tuple[int, ...]
    dtype: str
    axes: tuple[str, ...]
    units: tuple[str, ...]

    @property
    def is_float(self) -> bool:
        return np.dtype(self.dtype).kind in _FLOAT_KINDS


@dataclass(frozen=True)
class WrittenFile:
    """A chunk file as written: path relative to the dataset directory, sample range, size, sha256."""

    array: str
    path: str
    start: int
    stop: int
    bytes: int
    sha256: str


def array_layout(spec: SimulatorSpec, T: int, H: int, metadata_shapes: Mapping[str, tuple[int, ...]],
                 with_split: bool = True) -> list[ArraySpec]:
    """The arrays of a dataset from simulator ``spec``; metadata trailing shapes come from one sample."""
    obs = tuple(v.name for v in spec.observables)
    obs_units = tuple(v.units for v in spec.observables)
    layout = [
        ArraySpec("trajectories", (T, spec.n_obs), "float32", ("sample", "time", "observable"), obs_units),
        ArraySpec("irfs", (spec.n_shocks, H + 1, len(obs)), "float32", ("sample", "shock", "horizon", "observable"),
                  obs_units),
        ArraySpec("shocks", (T, spec.n_shocks), "float32", ("sample", "time", "shock"),
                  tuple(v.units for v in spec.shocks)),
        ArraySpec("theta", (spec.n_params,), "float32", ("sample", "parameter"),
                  tuple(v.units for v in spec.parameters)),
    ]
    for name, dtype in sorted(spec.metadata.items()):
        shape = tuple(metadata_shapes[name])
        disk = "float32" if np.dtype(dtype).kind == "f" else "uint8" if np.dtype(dtype).kind == "b" else dtype
        if disk not in ("float32", *_INT_DTYPES):
            raise ValueError(f"metadata array {name!r}: dtype {dtype} cannot be stored (expected float or integer)")
        axes = ("sample", "time") if shape == (T,) else ("sample", *(f"dim_{i}" for i in range(len(shape))))
        layout.append(ArraySpec(f"{METADATA_GROUP}/{name}", shape, disk, axes, ("1",)))
    if with_split:
        layout.append(ArraySpec(SPLIT_ARRAY, (), "int8", ("sample",), ("code",)))
    return layout


def single_thread_blosc() -> None:
    """Multithreaded Blosc output varies between runs (docs/ARCHITECTURE.md §7): one thread, in every process."""
    import numcodecs.blosc

    numcodecs.blosc.use_threads = False
    numcodecs.blosc.set_nthreads(1)


def codecs_json(spec: ArraySpec, chunk_samples: int, inner_chunk_samples: int | None) -> list[dict[str, Any]]:
    """The exact codec list this layout writes into ``zarr.json`` (verify compares it verbatim)."""
    inner = [{"name": "bytes", "configuration": {"endian": "little"}},
             {"name": "blosc", "configuration": {"typesize": np.dtype(spec.dtype).itemsize, **BLOSC}}]
    if np.dtype(spec.dtype).itemsize == 1:
        inner[0] = {"name": "bytes"}
    if inner_chunk_samples is None or not _sharded(spec, inner_chunk_samples):
        return inner
    return [{"name": "sharding_indexed", "configuration": {
        "chunk_shape": [inner_chunk_samples, *spec.sample_shape],
        "codecs": inner,
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
        "index_location": "end",
    }}]


def require_inner_chunks(chunk_samples: int, inner_chunk_samples: int | None) -> None:
    if inner_chunk_samples is not None and (inner_chunk_samples <= 0 or chunk_samples % inner_chunk_samples):
        raise ValueError(f"inner_chunk_samples must divide chunk_samples={chunk_samples}, got {inner_chunk_samples}")


def _sharded(spec: ArraySpec, inner_chunk_samples: int | None) -> bool:
    # theta, split codes and metadata rows are tiny: small inner chunks would not compress at all.
    return inner_chunk_samples is not None and spec.name in ("trajectories", "irfs", "shocks")


def create_store(dataset_dir: Path, n_samples: int, layout: Sequence[ArraySpec], *, chunk_samples: int,
                 inner_chunk_samples: int | None = None, attributes: Mapping[str, Any] | None = None) -> None:
    """Write the group and array metadata (``zarr.json`` files) of an empty store; no chunks yet."""
    import zarr
    from zarr.codecs import BloscCodec, BytesCodec
    from zarr.storage import LocalStore

    if n_samples <= 0 or chunk_samples <= 0:
        raise ValueError(f"n_samples and chunk_samples must be positive, got {n_samples} and {chunk_samples}")
    require_inner_chunks(chunk_samples, inner_chunk_samples)
    store = LocalStore(dataset_dir / STORE_NAME)
    root = zarr.create_group(store, attributes={"layout_version": LAYOUT_VERSION, **(attributes or {})},
                             zarr_format=3)
    if any(s.name.startswith(METADATA_GROUP + "/") for s in layout):
        root.create_group(METADATA_GROUP)
    for spec in layout:
        size = np.dtype(spec.dtype).itemsize
        blosc = BloscCodec(typesize=size, **BLOSC)  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {"chunks": (chunk_samples, *spec.sample_shape)}
        if _sharded(spec, inner_chunk_samples):
            assert inner_chunk_samples is not None
            kwargs = {"chunks": (inner_chunk_samples, *spec.sample_shape),
                      "shards": (chunk_samples, *spec.sample_shape)}
        zarr.create_array(
            store, name=spec.name, shape=(n_samples, *spec.sample_shape), dtype=spec.dtype,
            filters=[], serializer=BytesCodec(), compressors=[blosc], fill_value=0,
            dimension_names=list(spec.axes), attributes={"axes": list(spec.axes), "units": list(spec.units)},
            zarr_format=3, **kwargs,
        )


def convert(spec: ArraySpec, values: np.ndarray, keepbits: int | None) -> np.ndarray:
    """The on-disk values: float64 → float32 (round to nearest), then optional bit rounding."""
    out = np.ascontiguousarray(values, dtype=np.dtype(spec.dtype))
    if keepbits is not None and spec.is_float:
        import numcodecs

        out = np.asarray(numcodecs.BitRound(keepbits=keepbits).encode(out)).view(np.float32).reshape(out.shape)
    return out


def nonfinite_counts(values: np.ndarray) -> tuple[int, int]:
    """(NaN, Inf) counts; one pass in the usual all-finite case."""
    if values.dtype.kind != "f" or np.isfinite(values).all():
        return 0, 0
    return int(np.isnan(values).sum()), int(np.isinf(values).sum())


def validate_arrays(layout: Sequence[ArraySpec], data: Mapping[str, np.ndarray], n: int) -> None:
    """Every array present with shape ``(n, *sample_shape)`` and a convertible dtype, before any write."""
    for spec in layout:
        if spec.name not in data:
            raise ValueError(f"array {spec.name!r}: expected shape {(n, *spec.sample_shape)}, got nothing")
        arr = data[spec.name]
        expected = (n, *spec.sample_shape)
        if tuple(arr.shape) != expected:
            raise ValueError(f"array {spec.name!r}: expected shape {expected}, got {tuple(arr.shape)}")
        kind = arr.dtype.kind
        ok = kind in "fiu" if spec.is_float else kind in "iub"
        if not ok:
            want = "a float or integer dtype" if spec.is_float else "an integer or bool dtype"
            raise ValueError(f"array {spec.name!r}: expected {want} (stored as {spec.dtype}), got {arr.dtype}")
    extra = sorted(set(data) - {s.name for s in layout})
    if extra:
        raise ValueError(f"arrays {extra} are not part of the layout {[s.name for s in layout]}")


def _hashing_store_class() -> Any:
    from zarr.storage import LocalStore

    class _HashingStore(LocalStore):
        """LocalStore that records size and sha256 of every value it is asked to write."""

        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.written: dict[str, tuple[int, str]] = {}
            self._lock = threading.Lock()

        async def _set(self, key: str, value: Any, exclusive: bool = False) -> None:
            raw = np.ascontiguousarray(value.as_numpy_array())
            record = (int(raw.nbytes), hashlib.sha256(raw.data).hexdigest())
            await super()._set(key, value, exclusive)
            with self._lock:
                self.written[key] = record

    return _HashingStore


def write_range(dataset_dir: Path, layout: Sequence[ArraySpec], start: int, stop: int,
                data: Mapping[str, np.ndarray], *, chunk_samples: int, n_samples: int,
                keepbits: int | None = None) -> tuple[list[WrittenFile], dict[str, tuple[int, int]]]:
    """Write samples ``[start, stop)`` (whole chunks only) of every array into an existing store.

    Returns the chunk files written and, per array, the (NaN, Inf) counts of the stored values.
    """
    store = _hashing_store_class()(dataset_dir / STORE_NAME)
    return _write(store, layout, start, stop, data, chunk_samples, n_samples, keepbits)


def encode_range(metadata: Mapping[str, bytes], layout: Sequence[ArraySpec], start: int, stop: int,
                 data: Mapping[str, np.ndarray], *, chunk_samples: int, n_samples: int,
                 keepbits: int | None = None) -> tuple[list[WrittenFile], dict[str, tuple[int, int]], dict[str, bytes]]:
    """``write_range`` for a worker that shares no filesystem with the store (a Ray cluster node).

    The chunks are encoded into memory against the store's own ``zarr.json`` documents (``metadata``,
    keyed by path inside the store) and returned as ``{path relative to the dataset dir: bytes}``: the
    same bytes ``write_range`` would have written, for the driver to write.
    """
    from zarr.core.buffer import cpu
    from zarr.storage import MemoryStore

    store = MemoryStore({key: cpu.Buffer.from_bytes(doc) for key, doc in metadata.items()})
    written, counts = _write(store, layout, start, stop, data, chunk_samples, n_samples, keepbits)
    payload = {w.path: store._store_dict[w.path.removeprefix(STORE_NAME + "/")].to_bytes() for w in written}
    return written, counts, payload


def store_metadata(dataset_dir: Path) -> dict[str, bytes]:
    """Every ``zarr.json`` of the store at ``dataset_dir``, keyed by path inside the store (for ``encode_range``)."""
    root = dataset_dir / STORE_NAME
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("zarr.json"))}


def _write(store: Any, layout: Sequence[ArraySpec], start: int, stop: int, data: Mapping[str, np.ndarray],
           chunk_samples: int, n_samples: int, keepbits: int | None) -> tuple[list[WrittenFile],
                                                                             dict[str, tuple[int, int]]]:
    import zarr

    if start % chunk_samples or (stop % chunk_samples and stop != n_samples) or not 0 <= start < stop <= n_samples:
        raise ValueError(f"sample range [{start}, {stop}) is not made of whole {chunk_samples}-sample chunks "
                         f"of {n_samples} samples")
    validate_arrays(layout, data, stop - start)
    single_thread_blosc()
    converted = {s.name: convert(s, data[s.name], keepbits) for s in layout}
    counts = {name: nonfinite_counts(v) for name, v in converted.items()}
    for spec in layout:
        # A chunk equal to the fill value would otherwise be skipped, and read back silently as fill.
        arr = zarr.open_array(store, path=spec.name, zarr_format=3).with_config({"write_empty_chunks": True})
        arr[start:stop] = converted[spec.name]
    written: list[WrittenFile] = []
    for key, (size, sha) in sorted(_chunk_records(store).items()):
        name, _, index = key.rpartition("/c/")
        first = int(index.split("/")[0]) * chunk_samples
        written.append(WrittenFile(name, f"{STORE_NAME}/{key}", first, min(first + chunk_samples, n_samples),
                                   size, sha))
    expected = {(s.name, c) for s in layout for c in range(start // chunk_samples, -(-stop // chunk_samples))}
    got = {(w.array, w.start // chunk_samples) for w in written}
    if got != expected:
        raise RuntimeError(f"zarr wrote chunks {sorted(got)} for samples [{start}, {stop}), "
                           f"expected {sorted(expected)}")
    return written, counts


def _chunk_records(store: Any) -> dict[str, tuple[int, str]]:
    """(size, sha256) of every chunk the store received; anything but a chunk is a write nobody asked for."""
    if hasattr(store, "written"):
        records: dict[str, tuple[int, str]] = store.written
    else:
        records = {key: (len(raw := buf.to_bytes()), hashlib.sha256(raw).hexdigest())
                   for key, buf in store._store_dict.items() if not key.endswith("zarr.json")}
    for key in records:
        if "/c/" not in key:
            raise RuntimeError(f"unexpected store write {key!r}")
    return records


def chunk_path(array: str, chunk_index: int, ndim: int) -> str:
    """Relative path of a chunk file under the default v3 key encoding (``c/i/0/…``)."""
    return f"{STORE_NAME}/{array}/c/" + "/".join([str(chunk_index)] + ["0"] * (ndim - 1))


def _open(path: Path | str) -> tuple[Path, TensorDatasetManifest]:
    from feature_platform.contracts.manifest import MANIFEST_NAME, ManifestError
    from feature_platform.contracts.safe_read import InputError, read_json
    from feature_platform.contracts.tensor_manifest import parse_tensor_manifest

    p = Path(path)
    manifest_path = p if p.name == MANIFEST_NAME and p.is_file() else p / MANIFEST_NAME
    try:
        raw = read_json(manifest_path)
    except InputError as exc:
        raise ManifestError(f"cannot read a tensor manifest: {exc}") from None
    return manifest_path.parent, parse_tensor_manifest(raw, str(manifest_path))


def _select(path: Path | str, arrays: Sequence[str] | None) -> tuple[Path, TensorDatasetManifest, list[str]]:
    dataset_dir, manifest = _open(path)
    names = list(manifest.arrays) if arrays is None else list(arrays)
    unknown = [a for a in names if a not in manifest.arrays]
    if unknown:
        raise ValueError(f"unknown arrays {unknown}; the dataset has {sorted(manifest.arrays)}")
    return dataset_dir, manifest, names


def load_tensor_dataset(path: Path | str, arrays: Sequence[str] | None = None,
                        samples: tuple[int, int] | Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Arrays of a tensor dataset (dataset dir or its manifest.json), all samples or a selection.

    ``samples`` is a ``(start, stop)`` range or a sequence of sample indices. Reads trust the store;
    run ``verify_tensor_dataset`` first when the bytes matter.
    """
    import zarr
    from zarr.storage import LocalStore

    dataset_dir, manifest, names = _select(path, arrays)
    store = LocalStore(dataset_dir / STORE_NAME, read_only=True)
    n = manifest.n_samples
    out: dict[str, np.ndarray] = {}
    for name in names:
        arr = zarr.open_array(store, path=name, zarr_format=3)
        if samples is None:
            out[name] = np.asarray(arr[:])
        elif isinstance(samples, tuple) and len(samples) == 2 and not isinstance(samples, np.ndarray):
            a, b = int(samples[0]), int(samples[1])
            if not 0 <= a <= b <= n:
                raise ValueError(f"sample range [{a}, {b}) is outside [0, {n})")
            out[name] = np.asarray(arr[a:b])
        else:
            idx = np.asarray(samples, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"sample indices must lie in [0, {n})")
            out[name] = np.asarray(arr.get_orthogonal_selection((idx,)))
    return out


def iter_tensor_batches(path: Path | str, batch_size: int, split: str | None = None,
                        arrays: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``batch_size`` samples (the last may be smaller) in sample order, for training.

    Reads whole chunks at a time, so each chunk is decoded once; memory is bounded by one window
    of ``ceil(batch_size / chunk_samples)`` chunks per array plus one batch. ``split`` keeps one
    split's samples; every batch carries ``index``, the sample numbers of its rows.
    """
    import zarr
    from zarr.storage import LocalStore

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    dataset_dir, manifest, names = _select(path, arrays)
    store = LocalStore(dataset_dir / STORE_NAME, read_only=True)
    opened = {name: zarr.open_array(store, path=name, zarr_format=3) for name in names}
    codes = None
    if split is not None:
        if split not in manifest.splits.names:
            raise ValueError(f"unknown split {split!r}; the dataset has {manifest.splits.names}")
        if manifest.splits.array is None:
            raise ValueError("the dataset stores no per-sample split codes")
        codes = zarr.open_array(store, path=manifest.splits.array, zarr_format=3)
    n, chunk = manifest.n_samples, manifest.chunk_samples
    step = chunk * -(-batch_size // chunk)
    carry: dict[str, np.ndarray] | None = None
    for a in range(0, n, step):
        b = min(a + step, n)
        if codes is None:
            part = {name: np.asarray(arr[a:b]) for name, arr in opened.items()}
            part["index"] = np.arange(a, b, dtype=np.int64)
        else:
            idx = a + np.flatnonzero(np.asarray(codes[a:b]) == manifest.splits.names.index(str(split)))
            if idx.size == 0:
                continue
            part = {name: np.asarray(arr.get_orthogonal_selection((idx,))) for name, arr in opened.items()}
            part["index"] = idx.astype(np.int64)
        if carry is not None:
            part = {k: np.concatenate([carry[k], v]) for k, v in part.items()}
        count = len(part["index"])
        full = count - count % batch_size
        for s in range(0, full, batch_size):
            yield {k: v[s:s + batch_size] for k, v in part.items()}
        carry = {k: v[full:] for k, v in part.items()} if full < count else None
    if carry is not None:
        yield carry
