"""Training-set benchmark: building the training set of the demo dataset (label rows joined point-in-time with
the feature build's offline features, verified inputs, a verified spec v1 output) against the baseline of reading
the two files it joins with pyarrow, in the same run.

Setup (untimed): a ``--rows`` synthetic dataset (the demo's 200k by default) and its Feast feature build from a
committed copy of ``feature_repo/``. Target: build <= 1.5x the baseline read.

Usage: ``.venv/bin/python bench/bench_training_set.py [--rows 200000] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Timing, log, timed, verdict

from feature_platform.datasets.build import build_dataset
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.features.build import build_features, feature_build_path
from feature_platform.features.training_set import build_training_set

PROJECT = Path(__file__).resolve().parents[1]
TARGET = 1.5


def _committed_repo(root: Path) -> Path:
    repo = root / "feature_repo"
    repo.mkdir(parents=True)
    for name in ("definitions.py", "feature_store.yaml", "feature_contract.yaml"):
        shutil.copy2(PROJECT / "feature_repo" / name, repo / name)
    git = ["git", "-c", "user.email=b@example.com", "-c", "user.name=b", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "repo"]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)
    return repo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="dataset rows (default: the demo's 200,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions per measurement (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fp-bench-ts-") as tmp:
        root = Path(tmp)
        log(f"building a {args.rows:,}-row dataset and its feature build (untimed)")
        ds = build_dataset(SyntheticMarketSource(args.rows, 0), root / "datasets", "bench_ds", dataset_version="b1")
        build_features(_committed_repo(root / "repo"), ds.path / "data.parquet", "b1", root / "features", None)
        build_json = feature_build_path(root / "features", "b1")
        offline = build_json.parent / "dataset_features.parquet"

        def read_inputs() -> None:
            pq.read_table(ds.path / "data.parquet")
            pq.read_table(offline)

        runs = iter(range(10**6))

        def build() -> None:
            out = root / "ts" / str(next(runs))  # a fresh place each time: the same inputs would be reused
            build_training_set(ds.manifest_path, build_json, out)

        read, built = Timing("read dataset + feature files"), Timing("build training set")
        for _ in range(args.repeat):
            read.seconds.append(timed(read_inputs))
            built.seconds.append(timed(build))
        ratio = built.median / read.median
        print(f"training set, {args.rows:,} rows (medians of {args.repeat})")
        print(f"  {read.name:<34} {read.median * 1000:8.1f} ms")
        print(f"  {built.name:<34} {built.median * 1000:8.1f} ms")
        print(f"  ratio build / read = {ratio:.2f}x (target <= {TARGET}x): {verdict(ratio <= TARGET)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
