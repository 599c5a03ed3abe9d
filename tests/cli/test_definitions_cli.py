"""`fp definitions …`: tables and --json, exit codes 0/1/2, atomic activate, refusing clone, one-line errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.datasets.test_definitions_model import BASE, changed, write

REPO = Path(__file__).resolve().parents[2]
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def defs_dir(tmp_path: Path, warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "definitions"
    shutil.copytree(REPO / "definitions", directory)
    write(directory, BASE)
    monkeypatch.setenv("FP_DEFINITIONS_DIR", str(directory))
    monkeypatch.setenv("FP_WAREHOUSE", str(warehouse))
    return directory


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_help_of_every_subcommand(cli: Cli) -> None:
    for sub in ("list", "validate", "query", "tfx", "activate", "clone", "build", "materialize", "analyze", "preview",
                "compare"):
        code, out, _ = cli("definitions", sub, "--help")
        assert code == 0 and "usage: fp definitions" in out, sub
    code, _, err = cli("definitions")
    assert code == 2 and "list,validate,query" in err


def test_list_table_and_json(cli: Cli, defs_dir: Path) -> None:
    code, out, _ = cli("definitions", "list")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["name", "status", "tables"]
    assert "purchases_90d" in out and "random: 0.2 eval by user_id" in out
    code, out, _ = cli("definitions", "list", "--json")
    names = {d["name"]: d for d in json.loads(out)["definitions"]}
    assert code == 0 and names["demo_def"]["status"] == "draft" and len(names["demo_def"]["sha256"]) == 64
    (defs_dir / "broken.yaml").write_text("name: broken\nstatus: live\n")
    code, out, err = cli("definitions", "list")
    assert code == 1 and "broken.yaml: field status: expected one of draft, active; got 'live'" in err


def test_validate_ok_and_problems(cli: Cli, defs_dir: Path) -> None:
    code, out, _ = cli("definitions", "validate")
    assert code == 0 and out.count("OK  ") == 4
    write(defs_dir, changed(name="bad_def", columns=[*BASE["columns"], {"table": "users", "column": "shoe_size"}]),
          "bad_def.yaml")
    code, out, _ = cli("definitions", "validate", "bad_def", "--json")
    result = json.loads(out)
    assert code == 1 and not result["ok"]
    assert result["definitions"][0]["problems"][0].endswith("got 'shoe_size'")
    code, _, err = cli("definitions", "validate", "no_such_def")
    assert code == 2 and "no definition named 'no_such_def'" in err and len(err.strip().splitlines()) == 1


def test_validate_shows_join_suggestions(cli: Cli, defs_dir: Path) -> None:
    # Joined on the wrong column: the detected foreign key is suggested; declared joins are not repeated.
    odd = {**BASE["joins"][0], "left_column": "transaction_id"}
    write(defs_dir, changed(name="odd_join", joins=[odd, BASE["joins"][1]]), "odd_join.yaml")
    code, out, _ = cli("definitions", "validate", "odd_join", "--json")
    assert code == 0
    found = {(s["left_table"], s["left_column"], s["right_table"], s["right_column"])
             for s in json.loads(out)["definitions"][0]["join_suggestions"]}
    assert ("transactions", "user_id", "users", "user_id") in found
    assert ("transactions", "product_id", "products", "product_id") not in found
    code, out, _ = cli("definitions", "validate", "odd_join")
    assert "suggestion: join transactions.user_id = users.user_id (confidence" in out


def test_query_dialects_and_tfx(cli: Cli, defs_dir: Path) -> None:
    code, out, _ = cli("definitions", "query", "demo_def", "--split", "eval", "--dialect", "bigquery")
    assert code == 0 and "FARM_FINGERPRINT(CONCAT('s1', CAST(`user_id` AS STRING)))" in out
    code, out, _ = cli("definitions", "query", "demo_def", "--dialect", "postgres", "--json")
    assert code == 0 and json.loads(out)["dialect"] == "postgres"
    code, _, err = cli("definitions", "query", "demo_def", "--dialect", "oracle")
    assert code == 2 and "invalid choice" in err
    code, out, _ = cli("definitions", "tfx", "demo_def")
    assert code == 0 and [s["name"] for s in json.loads(out)["input_config"]["splits"]] == ["train", "eval"]


def test_activate_rewrites_status_only_when_valid(cli: Cli, defs_dir: Path) -> None:
    path = defs_dir / "demo_def.yaml"
    before = path.read_text()
    code, out, _ = cli("definitions", "activate", "demo_def")
    assert code == 0 and "activated: demo_def" in out
    after = path.read_text()
    assert yaml.safe_load(after)["status"] == "active"
    assert after.replace("status: active", "status: draft") == before  # only the status line changed
    code, out, _ = cli("definitions", "activate", "demo_def")
    assert code == 0 and "already active" in out
    write(defs_dir, changed(name="bad_def", columns=[BASE["columns"][0], {"table": "users", "column": "country",
                                                                        "role": "timestamp"}, *BASE["columns"][2:]]),
          "bad_def.yaml")
    files = snapshot(defs_dir)
    code, _, err = cli("definitions", "activate", "bad_def")
    assert code == 1 and "bad_def.yaml: field columns[1].role: role timestamp expects" in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(defs_dir) == files


def test_clone_writes_a_new_draft_and_refuses_to_overwrite(cli: Cli, defs_dir: Path) -> None:
    code, out, _ = cli("definitions", "clone", "purchases_90d", "purchases_copy", "--json")
    assert code == 0
    target = Path(json.loads(out)["file"])
    raw = yaml.safe_load(target.read_text())
    assert target == defs_dir / "purchases_copy.yaml" and raw["status"] == "draft" and raw["name"] == "purchases_copy"
    code, out, _ = cli("definitions", "validate", "purchases_copy")
    assert code == 0
    files = snapshot(defs_dir)
    code, _, err = cli("definitions", "clone", "purchases_90d", "purchases_copy")
    assert code == 1 and "already exists; clone refuses to overwrite" in err
    code, _, err = cli("definitions", "clone", "purchases_90d", "../escape")
    assert code == 2 and "path separator" in err
    assert snapshot(defs_dir) == files


def test_build_and_verify_from_the_cli(cli: Cli, defs_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "datasets"
    code, out, _ = cli("definitions", "build", "demo_def", "--version", "v1", "--out-dir", out_dir,
                       "--as-of", "2026-05-31", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["rows"] > 0 and summary["split_algorithm"] == "farm_fingerprint"
    assert sum(summary["splits"].values()) == summary["rows"]
    code, out, _ = cli("dataset", "verify", "--path", out_dir / "demo_def-v1" / "manifest.json")
    assert code == 0 and out.startswith("OK: demo_def-v1")
    code, _, err = cli("definitions", "build", "demo_def", "--version", "v1", "--out-dir", out_dir,
                       "--as-of", "2026-05-31")
    assert code == 1 and "already exists" in err
    # Empty result: exit 1, one line naming the file, nothing written.
    write(defs_dir, changed(name="empty_def", filters={"date_range": {"start": "2020-01-01", "end": "2020-01-02"}}),
          "empty_def.yaml")
    code, _, err = cli("definitions", "build", "empty_def", "--version", "v1", "--out-dir", out_dir)
    assert code == 1 and "empty_def.yaml: field filters: query returned 0 rows" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["demo_def-v1"]
    code, _, err = cli("definitions", "build", "demo_def", "--version", "../x", "--out-dir", out_dir)
    assert code == 2


def test_missing_warehouse_is_a_usage_error(cli: Cli, defs_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FP_WAREHOUSE", str(tmp_path / "none.duckdb"))
    code, _, err = cli("definitions", "validate")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_materialize_runs_the_dagster_job_builds_checks_and_publishes(tmp_path: Path, warehouse: Path) -> None:
    """A fresh process, as a user runs it: its own data root, Dagster instance and the sample warehouse."""
    import os
    import subprocess
    import sys

    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "FP_DATA_ROOT": str(tmp_path / "data"), "DAGSTER_HOME": str(home),
           "FP_WAREHOUSE": str(warehouse), "FP_DEFINITIONS_DIR": str(REPO / "definitions")}
    args = [sys.executable, "-m", "feature_platform.cli", "definitions", "materialize", "--version", "m1",
            "--as-of", "2026-05-31"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "definition_datasets_job m1: SUCCESS, 10/10 checks passed" in done.stdout
    assert "definitions/purchases_90d_published" in done.stdout
    from feature_platform.storage.catalog import Catalog

    entry = Catalog(tmp_path / "data" / "catalog.sqlite").get("purchases_90d", "m1")
    assert entry is not None
    manifest = json.loads((tmp_path / "data" / "datasets" / "purchases_90d-m1" / "manifest.json").read_text())
    assert manifest["source"]["parameters"]["as_of"] == "2026-05-31"
    done = subprocess.run([*args[:-4], "--version", "a/b"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--version" in done.stderr
