"""Point-in-time join benchmark: the project's ``point_in_time_join`` vs Feast's ``get_historical_features``
(file offline store) vs a plain DuckDB ``ASOF JOIN`` vs pandas ``merge_asof``, on the same generated data.

Data: ``--rows`` entity rows (duplicates, unknown keys and exact timestamp hits included) against ``--rows``
feature rows over 20,000 keys, with ~10% ties on the event timestamp broken by a created timestamp, 4 float32
features and a 1-day TTL. Every peer's result is compared cell for cell with the project's (mismatches are
counted and printed, not raised: docs/ARCHITECTURE.md §7 fixes the join semantics; the file store drops rows
and picks wrong ties, and a plain ASOF JOIN has no tie-break). Project and Feast both start from the parquet
files on disk. Feast runs in a child process so its memory use (about 16 GB at 1M rows) cannot take the
benchmark down; ``--feast-rows`` runs it on a prefix of the entity rows instead. Target: project >= 5x
faster than Feast's file offline store.

Usage: ``.venv/bin/python bench/bench_pit.py [--rows 1000000] [--feast-rows N] [--skip-feast]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # bench only; no pandas-stubs in the venv
import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.features.pit import point_in_time_join

KEYS = 20_000
SPAN_S = 30 * 86_400
TTL = timedelta(days=1)
FEATURES = ("f0", "f1", "f2", "f3")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def generate(rows: int, seed: int = 42) -> tuple[pa.Table, pa.Table]:
    """Feature and entity tables with ties, duplicates, misses and exact hits."""
    rng = np.random.default_rng(seed)
    t0_us = int(T0.timestamp() * 1e6)
    fk = rng.integers(0, KEYS, rows)
    fts = rng.integers(0, SPAN_S, rows)
    tie = rng.random(rows) < 0.1  # copy another row's key and event time: a tie for the created timestamp
    src = rng.integers(0, rows, rows)
    fk[tie], fts[tie] = fk[src[tie]], fts[src[tie]]
    created = fts + rng.integers(0, 3_600, rows)
    feats = pa.table({
        "k": pa.array(fk, pa.int64()),
        "ts": pa.array(t0_us + fts * 1_000_000, pa.int64()).cast(TS),
        "created": pa.array(t0_us + created * 1_000_000, pa.int64()).cast(TS),
        **{f: pa.array(rng.standard_normal(rows).astype(np.float32)) for f in FEATURES},
    })
    ek = rng.integers(0, int(KEYS * 1.05), rows)  # 5% of keys never appear in the features
    ets = rng.integers(0, SPAN_S + 86_400, rows)
    hit = rng.random(rows) < 0.05  # exact timestamp hits
    pick = rng.integers(0, rows, rows)
    ek[hit], ets[hit] = fk[pick[hit]], fts[pick[hit]]
    dup = rng.random(rows) < 0.05  # duplicate entity rows (same key and timestamp)
    prev = np.maximum(np.arange(rows) - 1, 0)
    ek[dup], ets[dup] = ek[prev[dup]], ets[prev[dup]]
    ents = pa.table({
        "k": pa.array(ek, pa.int64()),
        "event_timestamp": pa.array(t0_us + ets * 1_000_000, pa.int64()).cast(TS),
        "row_id": pa.array(np.arange(rows, dtype=np.int64)),
    })
    return feats, ents


def run_project(feat_path: Path, ents: pa.Table) -> pa.Table:
    feats = pq.read_table(feat_path)
    return point_in_time_join(ents, feats, join_keys=["k"], entity_ts_col="event_timestamp", feature_ts_col="ts",
                              created_ts_col="created", ttl=TTL, feature_names=FEATURES)


def run_duckdb(feat_path: Path, ents: pa.Table) -> pa.Table:
    """A plain ASOF JOIN as people write it: no tie-break on the created timestamp."""
    import duckdb

    con = duckdb.connect()
    con.register("ents", ents)
    cols = ", ".join(f"CASE WHEN f.ts >= e.event_timestamp - INTERVAL 1 DAY THEN f.{c} END AS {c}" for c in FEATURES)
    out = con.sql(f"""
        SELECT e.row_id, {cols} FROM ents e
        ASOF LEFT JOIN read_parquet('{feat_path}') f ON e.k = f.k AND e.event_timestamp >= f.ts
        ORDER BY e.row_id""").to_arrow_table()
    con.close()
    return out


def run_pandas(feat_path: Path, ents: pa.Table) -> pa.Table:
    """merge_asof over features sorted so the newest created row is last among ties: a tie-aware witness."""
    f = pd.read_parquet(feat_path).sort_values(["ts", "created"], kind="stable")
    e = ents.to_pandas().sort_values("event_timestamp", kind="stable")
    m = pd.merge_asof(e, f.drop(columns="created"), left_on="event_timestamp", right_on="ts", by="k",
                      direction="backward", tolerance=pd.Timedelta(TTL), allow_exact_matches=True)
    m = m.sort_values("row_id")
    return _result_table(m)


def _result_table(df: pd.DataFrame) -> pa.Table:
    columns = {c: pa.array(df[c].to_numpy(), pa.float32()) for c in FEATURES}
    return pa.table({"row_id": df["row_id"].to_numpy(), **columns})


def feast_child(work: Path, rows: int) -> None:
    """Runs in a subprocess: apply a one-view repo and time get_historical_features on the file store."""
    os.environ["FEAST_USAGE"] = "False"
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
    from feast.types import Float32, Int64
    from feast.value_type import ValueType

    config = RepoConfig(
        project="bench", provider="local", registry=str(work / "registry.db"),
        online_store={"type": "sqlite", "path": str(work / "online.db")}, offline_store={"type": "file"},
        entity_key_serialization_version=3, repo_path=work,
    )
    entity = Entity(name="ent", join_keys=["k"], value_type=ValueType.INT64)
    source = FileSource(path=str(work / "features.parquet"), timestamp_field="ts", created_timestamp_column="created")
    view = FeatureView(name="fv", entities=[entity], ttl=TTL, source=source,
                       schema=[Field(name="k", dtype=Int64), *(Field(name=c, dtype=Float32) for c in FEATURES)])
    store = FeatureStore(config=config)
    store.apply([entity, source, view])
    ents = pq.read_table(work / "entities.parquet").slice(0, rows).to_pandas()
    started = time.perf_counter()
    df = store.get_historical_features(entity_df=ents, features=[f"fv:{c}" for c in FEATURES]).to_df()
    seconds = time.perf_counter() - started
    pq.write_table(_result_table(df), work / "feast_result.parquet")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    (work / "feast_timing.json").write_text(json.dumps({"seconds": seconds, "peak_rss_gb": peak_gb}))


def compare(expected: pa.Table, got: pa.Table) -> dict[str, int]:
    """Cell mismatches by row_id: rows missing from ``got``, extra rows, and differing feature cells."""
    exp = expected.select(["row_id", *FEATURES]).to_pandas().set_index("row_id")
    g = got.select(["row_id", *FEATURES]).to_pandas()
    dup_ids = int(g["row_id"].duplicated().sum())
    g = g.drop_duplicates("row_id").set_index("row_id")
    missing = exp.index.difference(g.index)
    common = exp.index.intersection(g.index)
    a, b = exp.loc[common, list(FEATURES)].to_numpy(), g.loc[common, list(FEATURES)].to_numpy()
    differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return {"rows_compared": len(common), "rows_missing": len(missing), "rows_duplicated": dup_ids,
            "rows_differing": int(differ.any(axis=1).sum()), "cells_differing": int(differ.sum())}


def timed(fn: Callable[[Path, pa.Table], pa.Table], *args: Any) -> tuple[pa.Table, float]:
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--feast-rows", type=int, default=None, help="entity rows for Feast (default --rows)")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--feast-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feast_child:
        feast_child(args.feast_child, args.feast_rows)
        return

    feats, ents = generate(args.rows)
    with tempfile.TemporaryDirectory(prefix="bench_pit-") as tmp:
        work = Path(tmp)
        pq.write_table(feats, work / "features.parquet")
        pq.write_table(ents, work / "entities.parquet")
        feat_path = work / "features.parquet"
        print(f"{args.rows:,} entity rows x {args.rows:,} feature rows, {KEYS:,} keys, ttl {TTL}")
        run_project(feat_path, ents.slice(0, 1000))  # warm-up (imports)
        project, t_project = timed(run_project, feat_path, ents)
        print(f"project point_in_time_join  {t_project:8.2f} s")
        unmatched = project.column("f0").null_count
        print(f"  rows out {project.num_rows:,} (= entity rows), rows with null features {unmatched:,}")
        results = {}
        for name, fn in (("duckdb ASOF JOIN (no tie-break)", run_duckdb), ("pandas merge_asof", run_pandas)):
            out, secs = timed(fn, feat_path, ents)
            results[name] = (secs, compare(project, out), args.rows)
            print(f"{name:28s} {secs:8.2f} s  (peer/project {secs / t_project:5.1f}x)  {results[name][1]}")
        if not args.skip_feast:
            n = args.feast_rows or args.rows
            proc = subprocess.run([sys.executable, __file__, "--feast-child", str(work), "--feast-rows", str(n)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"feast get_historical_features FAILED (exit {proc.returncode}): {proc.stderr[-2000:]}")
            else:
                timing = json.loads((work / "feast_timing.json").read_text())
                feast_out = pq.read_table(work / "feast_result.parquet")
                expected = project.slice(0, n)
                cmp = compare(expected, feast_out)
                secs = timing["seconds"]
                # At a smaller Feast size, compare with the project's time on the same prefix.
                base = t_project if n == args.rows else timed(run_project, feat_path, ents.slice(0, n))[1]
                print(f"feast file offline store     {secs:8.2f} s  on {n:,} entity rows, peak RSS "
                      f"{timing['peak_rss_gb']:.1f} GB; project on the same rows {base:.2f} s -> "
                      f"{secs / base:.1f}x faster (target >= 5x: {'PASS' if secs / base >= 5 else 'FAIL'})")
                print(f"  vs project: {cmp}")


if __name__ == "__main__":
    main()
