"""The quality profile as map (per file) and exact reduce: the same report for any executor and worker
count, the same counts as one file holding the same rows, moments that match numpy."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.manifest import data_file_paths
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.quality.baseline import Baseline, load_baseline
from feature_platform.quality.distributions import Cuts, FileScan, Moments, bin_counts, edges
from feature_platform.quality.gate import evaluate_quality
from feature_platform.quality.profile import (
    ProfileError,
    _count_file,
    _CountTask,
    _FilePartial,
    _FileTask,
    _map_file,
    profile_against,
    profile_dataset,
)
from feature_platform.quality.sketch import HyperLogLog
from tests.conftest import small_source


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return build_dataset(small_source(), tmp_path_factory.mktemp("pq"), "sharded_q", dataset_version="v1", files=3)


def test_profile_same_for_inline_and_process_workers(sharded: BuildResult) -> None:
    files = data_file_paths(sharded.manifest_path, sharded.manifest)
    inline = profile_dataset(files, sharded.manifest, sample_size=500)
    two = profile_dataset(files, sharded.manifest, sample_size=500, executor="process", workers=2)
    assert inline == two
    assert inline.model_dump_json() == two.model_dump_json()  # bit for bit, floats included


def test_profile_on_ray_is_the_inline_profile(sharded: BuildResult, ray_local: str) -> None:
    """Map per file on Ray tasks (one thread each), exact reduce here: the same bytes as inline (threads per core)."""
    files = data_file_paths(sharded.manifest_path, sharded.manifest)
    inline = profile_dataset(files, sharded.manifest, sample_size=500)
    on_ray = profile_dataset(files, sharded.manifest, sample_size=500, executor="ray", workers=2)
    assert on_ray.model_dump_json() == inline.model_dump_json()


def test_quality_report_same_for_any_workers(sharded: BuildResult) -> None:
    baseline = load_baseline("baseline_eval_v1")
    files = data_file_paths(sharded.manifest_path, sharded.manifest)
    inline = evaluate_quality(files, sharded.manifest, baseline)
    two = evaluate_quality(files, sharded.manifest, baseline, executor="process", workers=2)
    assert inline.to_json_dict() == two.to_json_dict()


def test_sharded_profile_counts_equal_one_file_of_the_same_rows(sharded: BuildResult, golden: BuildResult) -> None:
    whole = profile_dataset(golden.path / "data.parquet", golden.manifest)
    parts, at_ref = profile_against(data_file_paths(sharded.manifest_path, sharded.manifest), sharded.manifest, whole)
    _, at_own = profile_against(golden.path / "data.parquet", golden.manifest, whole)
    assert (parts.rows, parts.entity, parts.time, parts.label, parts.duplicates) == (
        whole.rows, whole.entity, whole.time, whole.label, whole.duplicates)
    assert at_ref == at_own  # exact counts at the same edges, summed over files
    for name, f in whole.features.items():
        g = parts.features[name]
        assert (g.valid, g.min, g.max, g.approx_distinct) == (f.valid, f.min, f.max, f.approx_distinct)
        assert g.mean == pytest.approx(f.mean, rel=1e-12, abs=1e-15)
        assert g.std == pytest.approx(f.std, rel=1e-10, abs=1e-15)
        assert sum(g.bin_counts) == g.valid and g.cdf_counts[-1] == g.valid


def test_entities_split_across_files_still_count_duplicates_exactly(golden: BuildResult, tmp_path: Path) -> None:
    """Files not sharded by entity (one entity in several files): distinct keys come from all files at once."""
    table = pq.read_table(golden.path / "data.parquet")
    table = pa.concat_tables([table, table.slice(0, 40)])  # 40 duplicated keys, in another file than their twins
    halves = [tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"]
    pq.write_table(table.slice(0, 1000), halves[0])
    pq.write_table(table.slice(1000, 2000), halves[1])
    pq.write_table(table.slice(3000), halves[2])
    single = tmp_path / "all.parquet"
    pq.write_table(table, single)
    split = profile_dataset(halves, golden.manifest, sample_size=500)
    one = profile_dataset(single, golden.manifest, sample_size=500)
    assert split.duplicates == one.duplicates and split.duplicates.duplicate_rows == 40
    assert (split.rows, split.entity, split.time, split.label) == (one.rows, one.entity, one.time, one.label)


def test_worker_profile_error_is_one_line(golden: BuildResult, tmp_path: Path) -> None:
    table = pq.read_table(golden.path / "data.parquet")
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    pq.write_table(table, good)
    pq.write_table(table.drop_columns(["rsi_14"]), bad)
    with pytest.raises(ProfileError) as info:
        profile_dataset([good, bad], golden.manifest, executor="process", workers=2)
    assert str(info.value).count("\n") == 0 and "bad.parquet" in str(info.value) and "rsi_14" in str(info.value)


# --- moments: Chan et al.'s combination against numpy on hand cases ---

def _moments(parts: list[list[float]], sample_size: int = 4) -> Moments:
    total = Moments(sample_size)
    rng = np.random.default_rng(0)
    for values in parts:
        m = Moments(sample_size)
        x = np.asarray(values, dtype=np.float64)
        m.add(x, rng.random(x.size))
        total.merge(m)
    return total


@pytest.mark.parametrize("parts", [
    [[1, 2, 3, 4], [5, 6, 7, 8]],
    [[1], [2, 3, 4, 5, 6, 7], [8]],
    [[], [1, 2], [], [3, 4, 5, 6, 7, 8], []],
    [[2.0, 2.0], [2.0]],
    [[-3.5, 1e-3], [7.25], [0.0, -0.0, 100.0]],
])
def test_merged_moments_match_numpy(parts: list[list[float]]) -> None:
    flat = np.asarray([v for p in parts for v in p], dtype=np.float64)
    m = _moments(parts)
    assert m.valid == flat.size
    assert m.mean == pytest.approx(float(flat.mean()), rel=1e-15, abs=1e-15)
    assert m.m2 / m.valid == pytest.approx(float(flat.var()), rel=1e-14, abs=1e-15)
    assert (m.lo, m.hi) == (float(flat.min()), float(flat.max()))


def test_integers_combine_exactly() -> None:
    m = _moments([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert (m.mean, m.m2) == (4.5, 42.0)  # population variance 5.25 of 1..8, no rounding at all


def test_combination_is_stable_under_a_large_offset() -> None:
    """The naive sum-of-squares formula loses every digit here; the pairwise combination keeps them."""
    rng = np.random.default_rng(1)
    x = 1e9 + rng.standard_normal(30_000)
    m = _moments([list(x[:7_000]), list(x[7_000:7_001]), list(x[7_001:])])
    assert m.m2 / m.valid == pytest.approx(float(x.var()), rel=1e-8)
    naive = float(np.mean(x * x) - np.mean(x) ** 2)
    assert abs(naive - float(x.var())) > 1e-3 * float(x.var())  # the case is hard for the naive formula


def test_nan_inf_and_empty_parts_are_ignored() -> None:
    m = _moments([[math.nan, 1.0, math.inf], [-math.inf], [3.0]])
    assert (m.valid, m.mean, m.m2, m.lo, m.hi) == (2, 2.0, 2.0, 1.0, 3.0)
    empty = _moments([[], [math.nan]])
    assert empty.valid == 0 and empty.keys.size == 0


def test_merged_sample_is_the_k_smallest_keys_of_the_union() -> None:
    rng = np.random.default_rng(5)
    x, keys = rng.standard_normal(1_000), rng.random(1_000)
    total = Moments(50)
    for lo, hi in ((0, 300), (300, 301), (301, 1_000)):
        part = Moments(50)
        part.add(x[lo:hi], keys[lo:hi])
        total.merge(part)
    want = np.sort(x[np.argsort(keys)[:50]])
    assert np.array_equal(np.sort(total.values), want)


# --- the distinct-value sketch ---

def test_sketch_small_cardinalities_exact_and_merge_is_union() -> None:
    assert HyperLogLog().estimate() == 0
    for n, tolerance in ((1, 0), (3, 0), (100, 2), (1_000, 10)):  # linear counting: a register collision costs one
        h = HyperLogLog()
        h.add_floats(np.arange(n, dtype=np.float64))
        assert abs(h.estimate() - n) <= tolerance
    a, b, both = HyperLogLog(), HyperLogLog(), HyperLogLog()
    x = np.random.default_rng(2).standard_normal(200_000)
    a.add_floats(x[:120_000])
    b.add_floats(x[80_000:])
    both.add_floats(x)
    a.merge(b)
    assert np.array_equal(a.registers, both.registers)
    assert abs(both.estimate() - 200_000) < 0.03 * 200_000
    zero = HyperLogLog()
    zero.add_floats(np.array([0.0, -0.0]))
    assert zero.estimate() == 1


def test_sketch_of_text_values() -> None:
    h = HyperLogLog()
    h.add_texts(pa.array(["a", "b", None, "a", "é"]))
    assert h.estimate() == 3


def test_committed_baseline_still_loads(golden: BuildResult) -> None:
    baseline: Baseline = load_baseline("baseline_eval_v1")
    report = evaluate_quality(golden.path / "data.parquet", golden.manifest, baseline)
    assert report.profile.rows == 3_000 and report.baseline == "baseline_eval_v1"


def test_sorted_counting_equals_a_binary_search_per_value() -> None:
    rng = np.random.default_rng(3)
    cuts = [-1.0, 0.0, 0.5, 2.0]
    values = np.concatenate([rng.standard_normal(5_000), np.array(cuts * 3), np.array([-9.0, 9.0])])
    c = Cuts.of(cuts)
    c.add(values)
    c.add(values[:100])
    assert c.counts.tolist() == (bin_counts(values, cuts) + bin_counts(values[:100], cuts)).tolist()
    assert c.per_bin([0.0]).tolist() == [int((values <= 0).sum()) + int((values[:100] <= 0).sum()),
                                         int((values > 0).sum()) + int((values[:100] > 0).sum())]


def test_float32_values_are_counted_exactly_at_float64_cuts() -> None:
    """float32 columns are sorted as read; the cuts move to the largest float32 at or below them."""
    rng = np.random.default_rng(11)
    values = (rng.standard_normal(20_000) * 3).astype(np.float32)
    at_values = values[:20].astype(np.float64)  # cuts that are float32 values themselves
    between = np.nextafter(at_values, np.inf)  # just above a float32 value: still no float32 between
    below = np.nextafter(at_values, -np.inf)  # just below: that value is no longer <= the cut
    cuts = np.unique(np.concatenate([at_values, between, below, [-1e300, -1e-30, 0.0, 1e-30, 1e300]]))
    as32, as64 = Cuts.of(cuts.tolist()), Cuts.of(cuts.tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cuts beyond float32's range are no overflow to warn about
        as32.add(values)
    as64.add(values.astype(np.float64))
    assert as32.counts.tolist() == as64.counts.tolist() == bin_counts(values.astype(np.float64), cuts).tolist()
    assert as32.cuts32.dtype == np.float32 and bool(np.all(as32.cuts32.astype(np.float64) <= cuts))


def _canonical(scan: FileScan) -> list[tuple[object, ...]]:
    """Everything a file scan holds, by feature name, floats and arrays as their exact bytes."""
    out: list[tuple[object, ...]] = []
    for name in sorted(scan.valid):
        m = scan.moments.get(name)
        stats = (m.valid, m.mean, m.m2, m.lo, m.hi, m.keys.tobytes(), m.values.tobytes()) if m else ()
        out.append((name, scan.valid[name], scan.sketches[name].registers.tobytes(), *stats))
    return out


def _pairs(part: _FilePartial) -> list[tuple[int, int]]:
    return sorted(zip(part.counts.entity_values.tolist(), part.counts.entity_counts.tolist(), strict=True))


def test_a_files_scan_and_counts_are_the_same_for_any_number_of_threads(golden: BuildResult, tmp_path: Path) -> None:
    """Column groups in threads: each feature's numbers come from its own column and the row keys only."""
    table = pq.read_table(golden.path / "data.parquet")
    n = table.num_rows
    wide = np.where(np.arange(n) % 97 == 0, np.nan, np.linspace(-5.0, 5.0, n))
    wide[::131] = np.inf
    table = table.append_column("wide", pa.array(wide)).append_column(
        "venue", pa.array([None if i % 7 == 0 else f"v{i % 11}" for i in range(n)]))
    path = tmp_path / "mixed.parquet"
    pq.write_table(table, path, row_group_size=700)
    numeric = [*golden.manifest.feature_order, "wide"]
    m = golden.manifest

    def task(threads: int) -> _FileTask:
        return _FileTask(str(path), 1, m.entity_column, m.timestamp_column, m.label_column, numeric, ["venue"],
                         300, threads)

    one = _map_file(task(1))
    edge_sets = {name: [edges(acc, 10, 20)[0]] for name, acc in one.scan.moments.items()}
    counts_one = _count_file(_CountTask(str(path), edge_sets, 1))
    assert one.counts.rows == n and one.scan.valid["wide"] == n - len(set(range(0, n, 97)) | set(range(0, n, 131)))
    for threads in (2, 3, 40):
        other = _map_file(task(threads))
        assert _canonical(other.scan) == _canonical(one.scan)
        got, want = other.counts, one.counts  # DuckDB's groups come unordered: compared sorted
        assert (got.rows, _pairs(other), sorted(got.days.tolist()), got.distinct_keys) == (
            want.rows, _pairs(one), sorted(want.days.tolist()), want.distinct_keys)
        counts = _count_file(_CountTask(str(path), edge_sets, threads))
        assert {k: c.counts.tolist() for k, c in counts.items()} == {
            k: c.counts.tolist() for k, c in counts_one.items()}
