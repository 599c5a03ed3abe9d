"""Definition files: the typed model, one-line errors naming file and field, warehouse validation."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from feature_platform.datasets.definitions.model import (
    DefinitionError,
    definitions_dir,
    find_definition,
    load_definition,
    load_definitions,
)
from feature_platform.datasets.definitions.validation import validate_against

REPO = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "name": "demo_def",
    "description": "test definition",
    "status": "draft",
    "tables": [{"name": "transactions"}, {"name": "users"}, {"name": "products"}],
    "joins": [
        {"left_table": "transactions", "left_column": "user_id", "right_table": "users", "right_column": "user_id",
         "type": "left"},
        {"left_table": "transactions", "left_column": "product_id", "right_table": "products",
         "right_column": "product_id"},
    ],
    "columns": [
        {"table": "transactions", "column": "user_id", "role": "user_id"},
        {"table": "transactions", "column": "transaction_ts", "alias": "event_timestamp", "role": "timestamp"},
        {"table": "transactions", "column": "product_id", "role": "product_id"},
        {"table": "transactions", "column": "amount", "alias": "revenue", "role": "revenue"},
        {"table": "users", "column": "segment"},
        {"table": "products", "column": "category"},
        {"table": "transactions", "column": "returned", "role": "label"},
    ],
    "filters": {"date_range": {"last_days": 60}, "top_products_percent": 80, "min_transactions_per_user": 2},
    "split": {"strategy": "random", "eval_fraction": 0.2, "salt": "s1"},
}


def write(tmp_path: Path, raw: dict[str, Any], name: str = "demo_def.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def changed(**edits: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    raw.update(edits)
    return raw


def test_loads_and_orders_columns(tmp_path: Path) -> None:
    d = load_definition(write(tmp_path, BASE))
    assert d.name == "demo_def" and d.status == "draft" and d.source_file == tmp_path / "demo_def.yaml"
    assert [c.output_name for c in d.output_columns] == [
        "user_id", "event_timestamp", "product_id", "revenue", "segment", "category", "returned"]
    assert [c.output_name for c in d.features] == ["product_id", "revenue", "segment", "category"]
    assert d.split_key == "user_id"


def test_digest_ignores_status_only(tmp_path: Path) -> None:
    a = load_definition(write(tmp_path, BASE, "a.yaml"))
    b = load_definition(write(tmp_path, changed(status="active"), "b.yaml"))
    c = load_definition(write(tmp_path, changed(description="other"), "c.yaml"))
    assert a.digest() == b.digest() != c.digest()


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        ({"columns": [*BASE["columns"][:3], {"table": "transactions", "column": "amount", "role": "usr"}]},
         r"demo_def\.yaml: field columns\[3\]\.role: expected one of user_id, product_id, timestamp, revenue, label, "
         r"feature; got 'usr'"),
        ({"name": "../escape"}, r"field name: expected a value matching .*; got '\.\./escape'"),
        ({"status": "live"}, r"field status: expected one of draft, active; got 'live'"),
        ({"columns": BASE["columns"][1:]}, r"field columns: expected exactly one column with role user_id; got none"),
        ({"columns": [*BASE["columns"], {"table": "users", "column": "user_id", "alias": "u2", "role": "user_id"}]},
         r"field columns\[7\]\.role: expected at most one user_id column"),
        ({"columns": [*BASE["columns"], {"table": "orders", "column": "x"}]},
         r"field columns\[7\]\.table: expected one of the listed tables \(transactions, users, products\); "
         r"got 'orders'"),
        ({"columns": [*BASE["columns"], {"table": "users", "column": "segment"}]},
         r"field columns\[7\]\.alias: expected a unique output name; got 'segment'"),
        ({"joins": [*BASE["joins"], {"left_table": "users", "left_column": "user_id", "right_table": "transactions",
                                     "right_column": "user_id"}]},
         r"field joins\[2\]\.right_table: join cycle: expected a table not yet joined; got 'transactions'"),
        ({"joins": [{"left_table": "users", "left_column": "user_id", "right_table": "users",
                     "right_column": "user_id"}, BASE["joins"][1]]},
         r"field joins\[0\]\.left_table: expected a table already joined \(transactions\); got 'users'"),
        ({"joins": BASE["joins"][:1]}, r"field tables\[2\]: expected every table after the first to be joined"),
        ({"split": {"strategy": "random"}}, r"field split\.eval_fraction: expected a fraction in \(0, 1\)"),
        ({"split": {"strategy": "random", "eval_fraction": 1.5}}, r"field split\.eval_fraction: expected less than 1"),
        ({"split": {"strategy": "time"}}, r"field split\.eval_days: expected a positive number of days"),
        ({"split": {"strategy": "random", "eval_fraction": 0.1, "key": "nope"}}, r"field split\.key: expected one of"),
        ({"filters": {"date_range": {"start": "2026-02-01", "end": "2026-01-01"}}},
         r"field filters\.date_range\.end: expected a date on or after start 2026-02-01; got 2026-01-01"),
        ({"filters": {"date_range": {"last_days": 0}}},
         r"field filters\.date_range\.last_days: expected greater than 0"),
        ({"filters": {"top_products_percent": 10},
          "columns": [c for c in BASE["columns"] if c.get("role") != "revenue"]},
         r"field filters\.top_products_percent: expected a column with role revenue"),
        ({"colums": []}, r"field colums: expected no such field; got \[\]"),
    ],
)
def test_bad_definitions_name_file_and_field(tmp_path: Path, edit: dict[str, Any], pattern: str) -> None:
    path = write(tmp_path, changed(**edit))
    with pytest.raises(DefinitionError, match=pattern) as info:
        load_definition(path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(path))


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="cannot read definition"):
        load_definition(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(DefinitionError, match=r"list\.yaml: expected a YAML mapping"):
        load_definition(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(DefinitionError, match=r"broken\.yaml: not valid YAML"):
        load_definition(tmp_path / "broken.yaml")


def test_directory_loading_and_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, BASE, "one.yaml")
    write(tmp_path, changed(name="other_def"), "two.yml")
    (tmp_path / "notes.txt").write_text("not a definition")
    monkeypatch.setenv("FP_DEFINITIONS_DIR", str(tmp_path))
    assert definitions_dir() == tmp_path
    assert [d.name for d in load_definitions()] == ["demo_def", "other_def"]
    assert find_definition("other_def").source_file == tmp_path / "two.yml"
    with pytest.raises(DefinitionError, match=r"no definition named 'nope' \(known: demo_def, other_def\)"):
        find_definition("nope")
    write(tmp_path, BASE, "three.yaml")
    with pytest.raises(DefinitionError, match=r"field name: expected a name no other definition uses"):
        load_definitions()


def test_committed_examples_load_and_one_is_active() -> None:
    defns = load_definitions(REPO / "definitions")
    assert len(defns) >= 2
    assert any(d.status == "active" for d in defns)


# Against the sample warehouse (B2's seeded DuckDB).


def test_valid_definition_has_no_problems(tmp_path: Path, warehouse: Path) -> None:
    from feature_platform.warehouse.connection import connect

    with connect(warehouse) as conn:
        assert validate_against(load_definition(write(tmp_path, BASE)), conn) == []
        for d in load_definitions(REPO / "definitions"):
            assert validate_against(d, conn) == [], d.name


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        ({"tables": [{"name": "transactions"}, {"name": "customers"}, {"name": "products"}],
          "joins": [{**BASE["joins"][0], "right_table": "customers"}, BASE["joins"][1]],
          "columns": [c for c in BASE["columns"] if c["table"] != "users"]},
         r"field tables\[1\]\.name: expected a table in raw_data \(products, transactions, users\); got 'customers'"),
        ({"columns": [*BASE["columns"], {"table": "users", "column": "shoe_size"}]},
         r"field columns\[7\]\.column: expected a column of users \(user_id, signup_date, country, segment\); "
         r"got 'shoe_size'"),
        ({"joins": [{**BASE["joins"][0], "right_column": "uid"}, BASE["joins"][1]]},
         r"field joins\[0\]\.right_column: expected a column of users .*; got 'uid'"),
        ({"columns": [BASE["columns"][0], {"table": "transactions", "column": "channel", "role": "timestamp"},
                      *BASE["columns"][2:]]},
         r"field columns\[1\]\.role: role timestamp expects a column of type TIMESTAMP \| DATE; got 'timestamp' on "
         r"transactions\.channel \(VARCHAR\)"),
        ({"split": {"strategy": "random", "eval_fraction": 0.2, "key": "revenue"}},
         r"field split\.key: expected an integer or text column .*got 'revenue' \(DOUBLE\)"),
    ],
)
def test_warehouse_problems_name_file_and_field(tmp_path: Path, warehouse: Path, edit: dict[str, Any],
                                                pattern: str) -> None:
    from feature_platform.warehouse.connection import connect

    path = write(tmp_path, changed(**edit))
    with connect(warehouse) as conn:
        problems = validate_against(load_definition(path), conn)
    assert problems, "expected a problem"
    assert all(p.startswith(str(path)) and "\n" not in p for p in problems)
    assert any(re.search(pattern, p) for p in problems), problems
