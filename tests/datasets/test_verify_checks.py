"""One test per named check: break exactly what the check guards and see it fail by name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from feature_platform.contracts.feature_contract import FEATURE_ORDER
from feature_platform.datasets.build import BuildResult
from feature_platform.datasets.verify import VerifyReport, verify_dataset
from tests import tamper

ALL_CHECKS = {"manifest_exists", "manifest_parses", "dataset_id_safe", "manifest_schema", "dataset_location",
              "file_path_safe", "file_exists", "file_size", "file_sha256", "parquet_footer", "no_extra_files",
              "schema_columns", "schema_types", "schema_nullability", "feature_order", "column_roles",
              "contract_types", "row_count", "size_limit"}


def _verify(dataset: Path, **kwargs: object) -> VerifyReport:
    return verify_dataset(dataset / "manifest.json", dataset.parent, **kwargs)  # type: ignore[arg-type]


def _failed(report: VerifyReport) -> set[str]:
    return {c.name for c in report.failures}


def test_intact_dataset_passes_every_check(dataset: Path) -> None:
    report = _verify(dataset)
    assert report.ok, [c.line() for c in report.failures]
    assert {c.name for c in report.checks} == ALL_CHECKS
    assert report.dataset_id == "golden_ds" and report.manifest_digest


def test_manifest_exists(tmp_path: Path) -> None:
    report = verify_dataset(tmp_path / "nope" / "manifest.json")
    assert not report.ok and _failed(report) == {"manifest_exists"}


def test_manifest_exists_rejects_a_symlinked_manifest(dataset: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    (dataset / "manifest.json").rename(real)
    os.symlink(real, dataset / "manifest.json")
    assert _failed(_verify(dataset)) == {"manifest_exists"}


@pytest.mark.parametrize("text", ["{not json", '{"row_count": NaN}', b"\xff\xfe".decode("latin-1")])
def test_manifest_parses(dataset: Path, text: str) -> None:
    (dataset / "manifest.json").write_text(text, encoding="latin-1")
    assert _failed(_verify(dataset)) == {"manifest_parses"}


def test_dataset_id_safe(dataset: Path) -> None:
    tamper.set_field("dataset_id", "../golden_ds")(dataset)
    report = _verify(dataset)
    assert {"dataset_id_safe", "manifest_schema"} <= _failed(report)
    assert not any(c.name.startswith("file_") for c in report.checks)  # nothing opened on an unsafe id


def test_manifest_schema(dataset: Path) -> None:
    tamper.set_field("spec_version", "0")(dataset)
    report = _verify(dataset)
    assert _failed(report) == {"manifest_schema"}
    assert "spec_version" in report.failures[0].detail


def test_dataset_location(dataset: Path, tmp_path: Path) -> None:
    moved = tmp_path / "other" / "renamed_ds"
    moved.parent.mkdir()
    dataset.rename(moved)
    assert _failed(verify_dataset(moved / "manifest.json")) == {"dataset_location"}
    assert _failed(verify_dataset(moved / "manifest.json", dataset.parent)) == {"dataset_location"}


def test_dataset_location_rejects_a_symlinked_dataset_dir(dataset: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "golden_ds"
    outside.parent.mkdir()
    dataset.rename(outside)
    os.symlink(outside, dataset)
    assert _failed(_verify(dataset)) == {"dataset_location"}


def test_file_path_safe(dataset: Path) -> None:
    tamper.set_field("files.0.path", "../golden_ds/data.parquet")(dataset)
    report = _verify(dataset)
    assert "file_path_safe" in _failed(report)


def test_file_exists(dataset: Path) -> None:
    tamper.missing_file(dataset)
    assert _failed(_verify(dataset)) == {"file_exists"}


def test_file_size(dataset: Path) -> None:
    tamper.set_field("files.0.bytes", 1)(dataset)
    assert _failed(_verify(dataset)) == {"file_size"}


def test_file_sha256(dataset: Path) -> None:
    tamper.set_field("files.0.sha256", "0" * 64)(dataset)
    report = _verify(dataset)
    assert _failed(report) == {"file_sha256"}
    assert report.failures[0].expected == "0" * 64 and report.failures[0].actual != "0" * 64


def test_parquet_footer(dataset: Path) -> None:
    data = dataset / "data.parquet"
    data.write_bytes(data.read_bytes()[:-8] + b"XXXXXXXX")  # same size, broken magic
    tamper.reseal(dataset)
    assert _failed(_verify(dataset)) == {"parquet_footer"}


def test_no_extra_files(dataset: Path) -> None:
    tamper.extra_file(dataset)
    (dataset / "sub").mkdir()
    (dataset / "sub" / ".hidden").write_text("x")
    report = _verify(dataset)
    assert _failed(report) == {"no_extra_files"}
    assert report.failures[0].actual == ["notes.txt", "sub/.hidden"]


def test_schema_columns(dataset: Path) -> None:
    tamper.rename_column(dataset)
    assert "schema_columns" in _failed(_verify(dataset))


def test_schema_types(dataset: Path) -> None:
    def edit(raw: dict[str, object]) -> None:
        raw["schema"][5]["type"] = "double"  # type: ignore[index]

    tamper.edit_manifest(dataset, edit)
    assert _failed(_verify(dataset)) == {"schema_types"}


def test_schema_nullability(dataset: Path) -> None:
    def edit(raw: dict[str, object]) -> None:
        raw["schema"][0]["nullable"] = True  # type: ignore[index]

    tamper.edit_manifest(dataset, edit)
    assert _failed(_verify(dataset)) == {"schema_nullability"}


def test_feature_order_in_manifest(dataset: Path) -> None:
    order = list(FEATURE_ORDER)
    order[0], order[1] = order[1], order[0]
    tamper.set_field("feature_order", order)(dataset)
    report = _verify(dataset)
    assert _failed(report) == {"feature_order"}
    assert "position 0" in report.failures[0].detail


def test_feature_order_in_file(dataset: Path) -> None:
    tamper.reorder_columns(dataset)

    def edit(raw: dict[str, object]) -> None:  # a manifest schema that agrees with the file
        schema = raw["schema"]
        schema[2], schema[3] = schema[3], schema[2]  # type: ignore[index]

    tamper.edit_manifest(dataset, edit)
    report = _verify(dataset)
    assert _failed(report) == {"feature_order"}
    assert report.failures[0].target == "data.parquet"


def test_contract_types(dataset: Path) -> None:
    tamper.change_type(dataset)

    def edit(raw: dict[str, object]) -> None:  # the manifest is made to agree with the file
        for column in raw["schema"]:  # type: ignore[attr-defined]
            if column["name"] == "vol_1d":
                column["type"] = "double"

    tamper.edit_manifest(dataset, edit)
    report = _verify(dataset)
    assert _failed(report) == {"contract_types"}
    assert report.failures[0].actual["vol_1d"] == "double not null"  # type: ignore[index]


@pytest.mark.parametrize("field,value", [("row_count", 1), ("files.0.rows", 10), ("splits.rows.train", 0)])
def test_row_count(dataset: Path, field: str, value: int) -> None:
    tamper.set_field(field, value)(dataset)
    assert _failed(_verify(dataset)) == {"row_count"}


def test_size_limit_from_manifest_and_policy(dataset: Path) -> None:
    assert _failed(_verify(dataset, max_bytes=1_000)) == {"size_limit"}
    tamper.set_field("limits.max_bytes", 1_000)(dataset)
    assert _failed(_verify(dataset)) == {"size_limit"}


def test_size_limit_cannot_be_raised_past_the_spec(dataset: Path) -> None:
    tamper.set_field("limits.max_bytes", 10**15)(dataset)
    assert _failed(_verify(dataset)) == {"manifest_schema"}


def test_manifest_digest(dataset: Path, golden: BuildResult) -> None:
    assert _verify(dataset, expected_digest=golden.digest).ok
    tamper.set_field("created_at", "2020-01-01T00:00:00Z")(dataset)
    report = _verify(dataset, expected_digest=golden.digest)
    assert _failed(report) == {"manifest_digest"}


def test_report_json_round_trips(dataset: Path) -> None:
    tamper.flip_byte(dataset)
    report = _verify(dataset)
    data = json.loads(json.dumps(report.to_json_dict()))
    assert data["ok"] is False
    failed = [c for c in data["checks"] if not c["passed"]]
    assert {c["name"] for c in failed} >= {"file_sha256"}
    assert all({"name", "passed", "expected", "actual", "target", "detail"} <= set(c) for c in data["checks"])
