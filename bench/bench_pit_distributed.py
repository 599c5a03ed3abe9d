"""Distributed point-in-time training set: peak RSS per worker at a large size against a small one with the same
shard size, the output checked cell for cell against the single-node join, and per-worker throughputs.

For each size N (label rows = feature rows = N), untimed setup writes an N-row synthetic dataset, its offline
feature file (the dataset's rows with a created timestamp, row groups of 1Mi rows as ``pq.write_table``
writes) and a ``feature_build.json`` in the shape ``build_features`` writes (Feast's materialisation into its
online store is not what is measured here). Then, each once:

- single node: ``build_training_set`` with one shard, inline (today's path); its peak RSS is this process's.
- distributed: ``build_training_set`` with ``N / shard_rows`` shards on the process executor; a sampler thread
  reads the RSS of every worker process every 20 ms, so "peak RSS per worker" is the largest worker's peak.
- identity: stable-sorted by (timestamp, entity), the shards' rows equal the single-node file, column by column.
- throughput: the same partition and shard join, inline, timed per map task and per shard join.

Target: distributed peak RSS per worker at the large size <= 1.3x that at the small size.

Usage: ``.venv/bin/python bench/bench_pit_distributed.py [--sizes 1000000,10000000] [--shard-rows 250000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import log, settle, verdict

from feature_platform.contracts.feature_contract import load_feature_contract
from feature_platform.datasets.build import build_dataset
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.datasets.verify import sha256_file
from feature_platform.features import shards as shards_mod
from feature_platform.features import training_set as ts_mod
from feature_platform.features.build import CREATED_COLUMN, DATASET_VIEW, FeatureBuild, FeatureViewRef, OutputFile
from feature_platform.features.training_set import build_training_set

TARGET = 1.3
TTL_SECONDS = 2 * 86_400
CREATED = datetime(2025, 6, 1, tzinfo=UTC)


class RssSampler:
    """Peak RSS per descendant process of this one (the executor's workers), sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), rss)
            time.sleep(self.interval)


@dataclass
class Inputs:
    manifest: Path
    build_json: Path
    rows: int


def _setup(root: Path, rows: int, entities: int) -> Inputs:
    """The dataset, its feature file and feature build record (see the module docstring)."""
    ds = build_dataset(SyntheticMarketSource(rows, 0, entities=entities), root / "datasets", "bench_ds",
                       dataset_version="b1")
    contract = load_feature_contract()
    order = list(contract.feature_order)
    out = root / "features"
    offline = out / "offline" / "b1" / "dataset_features.parquet"
    offline.parent.mkdir(parents=True)
    source = pq.ParquetFile(ds.path / "data.parquet")
    cols = [contract.entity.name, contract.timestamp.name, *order]
    schema = pa.schema([*(source.schema_arrow.field(c) for c in cols), pa.field(CREATED_COLUMN, pa.timestamp("us",
                                                                                                    tz="UTC"))])
    with pq.ParquetWriter(offline, schema, compression="zstd") as writer:
        pending: list[pa.RecordBatch] = []
        for batch in source.iter_batches(batch_size=131_072, columns=cols):
            batch = batch.append_column(CREATED_COLUMN, pa.array([CREATED] * batch.num_rows, schema.field(-1).type))
            pending.append(batch)
            if sum(b.num_rows for b in pending) >= 1_048_576:
                writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=1_048_576)
                pending = []
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=1_048_576)
    rel = offline.relative_to(out).as_posix()
    view = FeatureViewRef(name=DATASET_VIEW, ttl_seconds=TTL_SECONDS, join_keys=[contract.entity.name],
                          timestamp_field=contract.timestamp.name, created_timestamp_column=CREATED_COLUMN,
                          features=order, path=rel)
    record = FeatureBuild(dataset_version="b1", feast_repo_sha="0" * 40, feast_repo_tree_sha="0" * 40,
                          feast_repo_dirty=False, feast_repo_ref=None, feast_version="bench", project="bench",
                          feature_contract_sha256=contract.digest(), feature_service="bench",
                          dataset_sha256=ds.manifest.files[0].sha256, market_sha256=None,
                          materialized_at="2025-06-01T00:00:00Z", materialization_start="2024-01-01T00:00:00Z",
                          materialization_end="2025-06-01T00:00:00Z", row_counts={DATASET_VIEW: rows},
                          outputs=[OutputFile(path=rel, bytes=offline.stat().st_size, sha256=sha256_file(offline))],
                          feature_views=[view])
    build_json = offline.parent / "feature_build.json"
    build_json.write_text(record.model_dump_json(indent=2))
    return Inputs(ds.manifest_path, build_json, rows)


def _identical(sharded: Path, single: Path) -> bool:
    """Column by column: the shards' rows, stable-sorted by (timestamp, entity), equal the single-node file."""
    sharded_manifest = json.loads((sharded / "manifest.json").read_text())
    files = [sharded / f["path"] for f in sharded_manifest["files"]]
    keys = pa.concat_tables([pq.read_table(f, columns=["event_timestamp", "entity_id"]) for f in files])
    perm = pc.sort_indices(keys, [("event_timestamp", "ascending"), ("entity_id", "ascending")])
    del keys
    single_file = pq.ParquetFile(single / "data.parquet")
    if single_file.metadata.num_rows != len(perm):
        return False
    for name in single_file.schema_arrow.names:
        mine = pa.concat_arrays([c for f in files for c in pq.read_table(f, columns=[name]).column(0).chunks])
        if not mine.take(perm).equals(pq.read_table(single / "data.parquet", columns=[name]).column(0)
                                      .combine_chunks()):
            return False
    return True


def _throughput(inputs: Inputs, root: Path, shards: int) -> tuple[float, float]:
    """(map rows/s, shard join rows/s) per worker: one map task and two shard joins, inline, timed alone."""
    contract = load_feature_contract()
    entity, ts = contract.entity.name, contract.timestamp.name
    order = list(contract.feature_order)
    label_cols = (entity, ts, contract.label.name if contract.label else "")
    feature_cols = (entity, ts, *order, CREATED_COLUMN)
    dataset_file = inputs.manifest.parent / "data.parquet"
    offline = inputs.build_json.parent / "dataset_features.parquet"
    scratch = shards_mod.Scratch(str(root / "scratch"))
    tasks = shards_mod.map_tasks(scratch, [
        shards_mod.PartitionInput("labels", (str(dataset_file),), label_cols, (dataset_file,)),
        shards_mod.PartitionInput("features", (str(offline),), feature_cols, (offline,))], entity, shards)
    map_rows = map_seconds = 0.0
    counts = []
    for task in tasks:
        settle()
        started = time.perf_counter()
        counts.append(shards_mod.partition_range(task))
        if task.role == "features":
            map_seconds += time.perf_counter() - started
            map_rows += sum(counts[-1])
    label_schema = pa.schema([pq.read_schema(dataset_file).field(c) for c in label_cols])
    feature_schema = pa.schema([pq.read_schema(offline).field(c) for c in feature_cols])
    schema = pa.schema([*contract.arrow_schema(), *ts_mod.PROVENANCE_FIELDS])
    join_rows = join_seconds = 0.0
    for shard in (0, 1):
        keys = {role: [t.piece(shard) for t, c in zip(tasks, counts, strict=True) if t.role == role and c[shard]]
                for role in ("labels", "features")}
        out = root / f"join-{shard}"
        out.mkdir()
        job = ts_mod._ShardJob(shard=shard, shards=shards, scratch=scratch, label_keys=tuple(keys["labels"]),
                               feature_keys=tuple(keys["features"]), label_schema=label_schema,
                               feature_schema=feature_schema, schema=schema, entity=entity, timestamp=ts,
                               created=CREATED_COLUMN, ttl_seconds=TTL_SECONDS, feature_names=tuple(order),
                               as_of=None, split_fractions={"test": 0.1, "train": 0.8, "val": 0.1},
                               split_salt="fp-split-v1", file_name="shard.parquet", out_dir=str(out))
        settle()
        started = time.perf_counter()
        result = ts_mod._join_shard(job)
        join_seconds += time.perf_counter() - started
        join_rows += result.label_rows
    scratch.clear()
    return map_rows / map_seconds, join_rows / join_seconds


def _single_node(inputs: Inputs, out: Path) -> tuple[float, int, Path]:
    """In a child process, so its peak RSS is its own: (seconds, peak RSS bytes, training set dir)."""
    import subprocess

    code = ("import json, resource, sys, time; from pathlib import Path; "
            "from feature_platform.features.training_set import build_training_set; "
            "t = time.perf_counter(); "
            f"r = build_training_set(Path({str(inputs.manifest)!r}), Path({str(inputs.build_json)!r}), "
            f"Path({str(out)!r})); "
            "print(json.dumps([time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "
            "str(r.path)]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    seconds, rss, path = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(seconds), int(rss), Path(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="label = feature rows per size, small first")
    parser.add_argument("--shard-rows", type=int, default=250_000, help="label rows per shard (the same for all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--entities", type=int, default=50_000,
                        help="entities (lognormal popularity): with few, the largest of many shards is far above the "
                             "mean; 50,000 keeps the largest shard within ~10%% of the mean at 40 shards")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for rows in sizes:
        shards = max(1, rows // args.shard_rows)
        with tempfile.TemporaryDirectory(prefix="fp-bench-dpit-") as tmp:
            root = Path(tmp)
            log(f"{rows:,} x {rows:,}: setup (untimed)")
            inputs = _setup(root, rows, args.entities)
            log(f"{rows:,}: single node")
            single_s, single_rss, single_dir = _single_node(inputs, root / "single")
            log(f"{rows:,}: distributed, {shards} shards on {args.workers} processes")
            settle()
            with RssSampler() as sampler:
                started = time.perf_counter()
                sharded = build_training_set(inputs.manifest, inputs.build_json, root / "sharded", shards=shards,
                                             executor="process", workers=args.workers)
                dist_s = time.perf_counter() - started
            worker_rss = max(sampler.peaks.values())
            log(f"{rows:,}: identity check")
            same = _identical(sharded.path, single_dir)
            log(f"{rows:,}: per-worker throughput")
            map_rate, join_rate = _throughput(inputs, root, shards)
            largest = max(f.rows for f in sharded.manifest.files)
            results.append((rows, shards, single_s, single_rss, dist_s, worker_rss, same, map_rate, join_rate,
                            largest))
    print(f"distributed PIT training set, shard size {args.shard_rows:,} label rows, {args.entities:,} entities, "
          f"{args.workers} process workers, driver peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    for rows, shards, single_s, single_rss, dist_s, worker_rss, same, map_rate, join_rate, largest in results:
        print(f"  {rows:>11,} x {rows:<11,} shards {shards:>3} (largest {largest:,} rows)  single {single_s:7.1f} s "
              f"{single_rss / 2**20:7,.0f} MiB  | distributed {dist_s:7.1f} s, peak RSS per worker "
              f"{worker_rss / 2**20:6,.0f} MiB"
              f"  | identical: {same}  | per worker: map {map_rate:,.0f} rows/s, shard join {join_rate:,.0f} rows/s")
    small, large = results[0], results[-1]
    ratio = large[5] / small[5]
    print(f"  peak RSS per worker {large[0]:,} / {small[0]:,} = {ratio:.2f}x (target <= {TARGET}x): "
          f"{verdict(ratio <= TARGET)}; outputs identical: {verdict(all(r[6] for r in results))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
