"""Croissant export: mlcroissant reads the file back, row for row, and the sha256s are the manifest's."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlcroissant as mlc
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.manifest import load_manifest
from feature_platform.datasets.build import build_dataset
from feature_platform.datasets.croissant import croissant_metadata, croissant_type
from feature_platform.datasets.verify import sha256_file, verify_dataset
from tests.conftest import CliResult, small_source

ROWS = 60


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("croissant") / "datasets"
    return build_dataset(small_source(rows=ROWS), out, "tiny_ds", dataset_version="v1").manifest_path


@pytest.fixture
def manifest_path(tiny: Path, tmp_path: Path) -> Path:
    target = tmp_path / "tiny_ds"
    shutil.copytree(tiny.parent, target)
    return target / "manifest.json"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bytes):
        a = a.decode()
    if hasattr(a, "to_pydatetime"):
        a = a.to_pydatetime()
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-7)
    return bool(a == b)


def test_mlcroissant_reads_back_the_parquet_rows(manifest_path: Path, cli: Callable[..., CliResult]) -> None:
    code, out, err = cli("dataset", "export-croissant", "--path", manifest_path, "--json")
    assert code == 0, err
    written = Path(json.loads(out)["croissant"])
    assert written == manifest_path.parent / "croissant.json"
    assert verify_dataset(manifest_path).ok  # the sidecar is not an "extra file"

    ds = mlc.Dataset(jsonld=str(written))
    manifest = load_manifest(manifest_path)
    rows = pq.read_table(manifest_path.parent / manifest.files[0].path).to_pylist()
    records = list(ds.records(record_set="records"))
    assert len(records) == len(rows) == ROWS
    names = [c.name for c in manifest.columns]
    for record, row in zip(records, rows, strict=True):
        assert list(record) == [f"records/{n}" for n in names]  # the ordered fields
        for name in names:
            assert _same(record[f"records/{name}"], row[name]), (name, record[f"records/{name}"], row[name])

    splits = {r["splits/name"].decode() if isinstance(r["splits/name"], bytes) else r["splits/name"]:
              r["splits/rows"] for r in ds.records(record_set="splits")}
    assert splits == dict(manifest.splits.rows)

    files = {f.name: f for f in ds.metadata.distribution}
    for entry in manifest.files:
        assert files[entry.path].sha256 == entry.sha256 == sha256_file(manifest_path.parent / entry.path)
        assert files[entry.path].content_url == entry.path  # relative to the manifest


def test_out_elsewhere_keeps_urls_resolvable(manifest_path: Path, tmp_path: Path,
                                             cli: Callable[..., CliResult]) -> None:
    out = tmp_path / "meta" / "c.json"
    code, _, err = cli("dataset", "export-croissant", "--path", manifest_path, "--out", out)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["distribution"][0]["contentUrl"] == "../tiny_ds/data.parquet"
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    assert len(list(mlc.Dataset(jsonld=str(out)).records(record_set="records"))) == ROWS


def test_changed_bytes_are_refused(manifest_path: Path, cli: Callable[..., CliResult]) -> None:
    data = manifest_path.parent / "data.parquet"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    code, out, err = cli("dataset", "export-croissant", "--path", manifest_path)
    assert code == 1 and out == ""
    assert "data.parquet: sha256" in err and "not exported" in err and len(err.strip().splitlines()) == 1
    assert not (manifest_path.parent / "croissant.json").exists()


def test_bad_inputs_are_usage_errors(manifest_path: Path, tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(manifest_path.read_text()), "row_count": "60"}))
    code, _, err = cli("dataset", "export-croissant", "--path", bad)
    assert code == 2 and "row_count" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("dataset", "export-croissant", "--path", manifest_path, "--out", tmp_path)
    assert code == 2 and "a directory" in err
    code, _, err = cli("dataset", "export-croissant", "--path", tmp_path / "missing.json")
    assert code == 2 and "missing.json" in err


def test_types_fail_closed() -> None:
    assert croissant_type("int64", "a", "m") == "sc:Integer"
    assert croissant_type("uint8", "a", "m") == "sc:Integer"
    assert croissant_type("float", "a", "m") == "sc:Float"
    assert croissant_type("timestamp[us, tz=UTC]", "a", "m") == "sc:DateTime"
    with pytest.raises(ValueError, match=r"schema\[emb\]\.type"):
        croissant_type("list<item: float>", "emb", "m")


def test_split_rule_is_stated(manifest_path: Path) -> None:
    doc = croissant_metadata(manifest_path)
    splits = next(r for r in doc["recordSet"] if r["@id"] == "splits")
    assert splits["dataType"] == "cr:Split"
    assert '"algorithm": "entity_hash"' in splits["description"]
