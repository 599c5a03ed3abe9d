"""Which data file of a sharded dataset a row belongs to: a stable hash of its entity.

A row's file depends only on its entity value and the number of files, never on batch boundaries,
workers or executor, so all rows of one entity share a file and a rebuild with the same number of
files puts every row where it was. The hash is FarmHash Fingerprint64 (the project's stable hash,
the same function BigQuery's ``FARM_FINGERPRINT`` runs) of the key's text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.datasets.definitions.farmhash import fingerprint64

DERIVATION = ("file = FarmHash Fingerprint64(UTF-8 text of the entity value) mod files, files numbered from 0; "
              "a null entity goes to file 0")
MAX_FILES = 4096


def require_files(files: object) -> int:
    """``files`` as a count of data files: an integer in [1, MAX_FILES] (not a bool, not a float)."""
    if isinstance(files, bool) or not isinstance(files, int) or not 1 <= files <= MAX_FILES:
        raise ValueError(f"files must be an integer from 1 to {MAX_FILES}, got {files!r}")
    return files


def data_file_name(index: int, files: int, stem: str = "data") -> str:
    """``data.parquet`` for an unsharded dataset (today's layout), else ``<stem>-00003-of-00008.parquet``.

    The one data file is ``data.parquet`` whatever ``stem``: only the files of a sharded set take it.
    """
    return "data.parquet" if files == 1 else f"{stem}-{index:05d}-of-{files:05d}.parquet"


@lru_cache(maxsize=1 << 16)
def shard_of(text: str, files: int) -> int:
    """The file of a key whose text is ``text``."""
    return fingerprint64(text.encode("utf-8")) % files


def shard_codes(keys: pa.Array | pa.ChunkedArray, files: int) -> np.ndarray:
    """File index per row of ``keys``; each distinct key is hashed once."""
    if files == 1:
        return np.zeros(len(keys), dtype=np.int64)
    distinct = pc.unique(keys)
    codes = np.fromiter((0 if k is None else shard_of(str(k), files) for k in distinct.to_pylist()),
                        np.int64, len(distinct))
    position = pc.index_in(keys, value_set=distinct, skip_nulls=False)
    return codes[np.asarray(position.to_numpy(zero_copy_only=False), dtype=np.int64)]


def shard_batches(batches: Iterable[pa.RecordBatch], key: str, shard: int, files: int) -> Iterator[pa.RecordBatch]:
    """The rows of ``batches`` that belong to file ``shard`` of ``files``, in their original order: the batch
    sequence data file ``shard`` is written from (one row group per non-empty batch). The map/reduce build
    reproduces exactly this sequence from ``split_batch`` pieces."""
    for batch in batches:
        if files == 1:
            yield batch
            continue
        keep = shard_codes(batch.column(key), files) == shard
        yield batch.filter(pa.array(keep))


def split_batch(batch: pa.RecordBatch, key: str, files: int,
                shards: Sequence[int] | None = None) -> list[pa.RecordBatch]:
    """``batch`` cut into ``files`` pieces, piece k holding the rows of file k in their original order (what
    ``shard_batches`` keeps of this batch for file k), with the entities hashed once for all files. With
    ``shards`` (distinct file indices in ascending order), only the pieces of those files, in that order (one
    gather of just their rows)."""
    wanted = range(files) if shards is None else list(shards)
    if shards is not None and (wanted != sorted(set(wanted)) or not all(0 <= k < files for k in wanted)):
        raise ValueError(f"shards must be distinct file indices below {files} in ascending order, got {wanted}")
    if files == 1:
        return [batch]
    codes = shard_codes(batch.column(key), files).astype(np.int16)  # MAX_FILES fits: a stable radix sort
    if shards is None:
        order, kept = np.argsort(codes, kind="stable"), codes
    else:
        rows = np.flatnonzero(np.isin(codes, np.asarray(wanted, dtype=np.int16)))
        kept = codes[rows]
        order = rows[np.argsort(kept, kind="stable")]
    grouped = batch.take(pa.array(order))
    counts = np.bincount(kept, minlength=files)[list(wanted)]
    ends = np.cumsum(counts)
    return [grouped.slice(int(end - n), int(n)) for end, n in zip(ends, counts, strict=True)]


def batch_ranges(batch_count: int, maps: int) -> list[tuple[int, int]]:
    """``[start, stop)`` batch ranges of the map tasks: ``maps`` (at least 1, at most one per batch) contiguous
    ranges of near-equal length covering ``range(batch_count)`` in order."""
    n = max(1, min(maps, batch_count))
    return [(m * batch_count // n, (m + 1) * batch_count // n) for m in range(n)]
