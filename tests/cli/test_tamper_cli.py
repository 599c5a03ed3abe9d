"""The tamper suite: each kind of damage makes `fp dataset verify` exit 1 and name the failing check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import tamper
from tests.conftest import CliResult

CASES: dict[str, tuple[tamper.Tamper, str]] = {
    "flipped byte": (tamper.flip_byte, "file_sha256"),
    "truncated file": (tamper.truncate, "file_size"),
    "reordered columns": (tamper.reorder_columns, "schema_columns"),
    "reordered columns, manifest not resealed": (lambda d: tamper.reorder_columns(d, sealed=False), "file_sha256"),
    "renamed column": (tamper.rename_column, "schema_columns"),
    "changed type": (tamper.change_type, "schema_types"),
    "edited row_count": (tamper.set_field("row_count", 2), "row_count"),
    "edited sha256": (tamper.set_field("files.0.sha256", "a" * 64), "file_sha256"),
    "edited feature_order": (tamper.set_field("feature_order", ["ret_5m", "ret_1m"]), "feature_order"),
    "edited schema type": (tamper.set_field("schema.4.type", "int32"), "schema_types"),
    "edited limits": (tamper.set_field("limits.max_bytes", 10), "size_limit"),
    "extra file": (tamper.extra_file, "no_extra_files"),
    "missing file": (tamper.missing_file, "file_exists"),
    "symlink escape": (tamper.symlink_escape, "file_path_safe"),
}

TRAVERSAL_IDS = ["../x", "/abs", "a/b", "..", "", "x\x00y"]


def _verify(cli: Callable[..., CliResult], dataset: Path, *extra: str) -> CliResult:
    return cli("dataset", "verify", "--path", dataset / "manifest.json", "--base-dir", dataset.parent, *extra)


def test_intact_dataset_exits_zero(cli: Callable[..., CliResult], dataset: Path) -> None:
    code, out, _ = _verify(cli, dataset)
    assert code == 0 and out.startswith("OK: golden_ds:")


@pytest.mark.parametrize("case", list(CASES))
def test_tamper_fails_closed(cli: Callable[..., CliResult], dataset: Path, case: str) -> None:
    damage, check = CASES[case]
    damage(dataset)
    code, out, _ = _verify(cli, dataset)
    assert code == 1
    assert f"FAIL {check}" in out
    assert out.splitlines()[-1].startswith("FAILED: ")
    assert check in out.splitlines()[-1]


def test_oversized_dataset(cli: Callable[..., CliResult], dataset: Path) -> None:
    code, out, _ = _verify(cli, dataset, "--max-bytes", "4096")
    assert code == 1 and "FAIL size_limit" in out


@pytest.mark.parametrize("bad_id", TRAVERSAL_IDS)
def test_traversal_ids_fail_verify(cli: Callable[..., CliResult], dataset: Path, bad_id: str) -> None:
    tamper.set_field("dataset_id", bad_id)(dataset)
    code, out, _ = _verify(cli, dataset, "--json")
    assert code == 1
    report = json.loads(out)
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert "dataset_id_safe" in failed
    assert not any(c["name"].startswith("file_") for c in report["checks"])


@pytest.mark.parametrize("bad_id", TRAVERSAL_IDS)
def test_traversal_ids_are_refused_by_build(cli: Callable[..., CliResult], tmp_path: Path, bad_id: str) -> None:
    code, _, err = cli("dataset", "build", "--out-dir", tmp_path / "out", "--dataset-id", bad_id,
                       "--source", "synthetic", "--rows", "100")
    assert code == 2
    assert err.startswith("fp: error: --dataset-id") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
