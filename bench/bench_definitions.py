"""Dataset definitions benchmark: the split hash's cost over bare pyfarmhash, and a definition build vs the bare
DuckDB query, measured in the same run (ratios, no absolute targets).

(a) ``farm_fingerprint`` (UTF-8 encode, pyfarmhash Fingerprint64, signed INT64) µs per key for keys of each
    length class (8, 24, 48, 200 characters), against ``farmhash.fingerprint64`` on the same bytes.
(b) ``build_definition_dataset`` (query → Arrow → parquet hashed while written → manifest → verify → publish,
    split counted by the FARM_FINGERPRINT rule) in rows/s, against executing the same query to Arrow alone.

Usage: ``.venv/bin/python bench/bench_definitions.py [--users 20000] [--products 2000] [--days 365]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import farmhash as pyfarmhash

from feature_platform.datasets.definitions.farmhash import farm_fingerprint
from feature_platform.datasets.definitions.model import load_definition
from feature_platform.datasets.definitions.source import build_definition_dataset
from feature_platform.datasets.definitions.sql import open_warehouse, render_query
from feature_platform.warehouse.sample import seed_sample_warehouse

REPO = Path(__file__).resolve().parents[1]


def per_key_us(fn: object, keys: list[bytes] | list[str], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for k in keys:
            fn(k)  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best / len(keys) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--products", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()

    print("(a) FARM_FINGERPRINT, µs per key (best of 3)")
    for size in (8, 24, 48, 200):
        texts = [os.urandom(size // 2).hex() for _ in range(20_000)]
        ours = per_key_us(farm_fingerprint, texts)
        theirs = per_key_us(pyfarmhash.fingerprint64, [t.encode() for t in texts])
        print(f"  {size:4d} chars: farm_fingerprint {ours:5.2f} µs, bare pyfarmhash {theirs:5.2f} µs, "
              f"ratio {ours / theirs:4.1f}x")

    with tempfile.TemporaryDirectory() as tmp:
        wh = Path(tmp) / "warehouse.duckdb"
        rows = seed_sample_warehouse(wh, users=args.users, products=args.products, days=args.days, seed=1)
        defn = load_definition(REPO / "definitions" / "purchases_90d.yaml")
        with open_warehouse([defn], wh) as conn:  # the build's own sandboxed connection
            started = time.perf_counter()
            n = conn.sql(render_query(defn)).to_arrow_table().num_rows
            query_s = time.perf_counter() - started
        result = build_definition_dataset(defn, Path(tmp) / "out", dataset_version="bench", warehouse=wh)
        print(f"(b) definition build: warehouse {rows['transactions']:,} transactions, {result.manifest.row_count:,} "
              f"rows selected")
        print(f"  query to Arrow alone: {query_s:.2f} s ({n / query_s:,.0f} rows/s)")
        print(f"  build (query, parquet + sha256, split count, manifest, verify, publish): {result.seconds:.2f} s "
              f"({result.manifest.row_count / result.seconds:,.0f} rows/s), ratio {result.seconds / query_s:.1f}x")


if __name__ == "__main__":
    main()
