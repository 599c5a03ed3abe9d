"""Hostile dataset definitions: no name, filter or string of a definition file reaches SQL as SQL.

Three lines of defence, each tested on its own: the model refuses any name that is not a plain identifier
(one line naming the file and the field; the CLI exits 2), every generated query is checked against a node
whitelist before it leaves ``sql.py`` (names only as quoted identifiers, only the definition's tables and
columns, a short function list), and DuckDB runs definition queries sandboxed (no file access but the
definition's own Parquet files, configuration locked).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from feature_platform.datasets.definitions.model import (
    IDENTIFIER,
    DatasetDefinition,
    DefinitionError,
    load_definition,
    parse_definition,
)
from feature_platform.datasets.definitions.source import build_definition_dataset
from feature_platform.datasets.definitions.sql import (
    DIALECTS,
    check_query_sql,
    open_warehouse,
    render_query,
    split_of,
    tfx_query_config,
)
from feature_platform.datasets.definitions.validation import validate_against
from feature_platform.warehouse.connection import connect, quote_identifier
from feature_platform.warehouse.introspect import column_stats, sample_values, table_schema
from tests.datasets.test_definitions_model import BASE, changed, write

REPO = Path(__file__).resolve().parents[2]
AS_OF = date(2026, 5, 31)
Cli = Callable[..., tuple[int, str, str]]

# Names an attacker would put where a column, table or alias name goes. None is a plain identifier.
HOSTILE_NAMES: list[str] = [
    "quantity, (SELECT secret FROM other.secrets) AS stolen",
    "uid || (SELECT string_agg(content, '') FROM read_text('/etc/hostname'))",
    "amount) AS x FROM raw_data.transactions; COPY raw_data.users TO '/tmp/fp_pwned.csv'; --",
    "segment FROM raw_data.users UNION ALL SELECT secret FROM other.secrets --",
    "segment; ATTACH '/tmp/fp_pwned.db' AS pwned",
    "read_csv('/etc/passwd')",
    "getenv('HOME')",
    'user"id',
    "user`id",
    "user'id",
    'segment" AS x, "country',
    "`segment`, `country`",
    "[segment]",
    "segment -- comment",
    "segment /* comment */",
    "segment;",
    "users.segment",
    "raw_data.users.segment",
    "usér_id",  # é
    "segment\u200b",  # zero-width space
    "\uff53egment",  # fullwidth s
    "s\u0435gment",  # Cyrillic e
    "segment\n",
    "segment\x00",
    " segment",
    "1segment",
    "",
    "a" * 200,
]

FIELDS = ["columns[4].column", "columns[4].table", "columns[4].alias", "joins[0].left_column",
          "joins[0].right_column", "joins[0].left_table", "joins[0].right_table", "split.key", "tables[1].name"]


def _raw_with(field: str, value: str) -> dict[str, Any]:
    """BASE with ``value`` at ``field`` (a YAML path as the error messages spell it)."""
    raw = changed()
    if field == "split.key":
        raw["split"] = {**raw["split"], "key": value}
    elif field == "tables[1].name":
        raw["tables"] = [raw["tables"][0], {"name": value}, raw["tables"][2]]
    else:
        section, key = field.split(".")
        name, index = section[:-3], int(section[-2])
        items = [dict(x) for x in raw[name]]
        items[index][key] = value
        raw[name] = items
    return raw


def _bypass(defn: DatasetDefinition, field: str, value: str) -> DatasetDefinition:
    """``defn`` with ``value`` at ``field``, built in code without validation: what a caller that skipped the
    model (or a future bug in it) would hand to the SQL layer."""
    if field == "split.key":
        return defn.model_copy(update={"split": defn.split.model_copy(update={"key": value})})
    if field == "tables[1].name":
        tables = list(defn.tables)
        tables[1] = tables[1].model_copy(update={"name": value})
        return defn.model_copy(update={"tables": tables})
    section, key = field.split(".")
    name, index = section[:-3], int(section[-2])
    items = list(getattr(defn, name))
    items[index] = items[index].model_copy(update={key: value})
    return defn.model_copy(update={name: items})


def _every_rendering(defn: DatasetDefinition) -> Iterator[str]:
    for dialect in DIALECTS:
        for split in (None, "train", "eval"):
            yield render_query(defn, split=split, dialect=dialect, as_of=AS_OF)  # type: ignore[arg-type]


def _assert_refused(defn: DatasetDefinition, payload: str) -> list[str]:
    """No rendering of ``defn`` (any dialect, any split, TFX) produces SQL; returns the refusal messages."""
    messages = []
    for dialect in DIALECTS:
        for split in (None, "train", "eval"):
            with pytest.raises(DefinitionError) as info:
                render_query(defn, split=split, dialect=dialect, as_of=AS_OF)  # type: ignore[arg-type]
            messages.append(str(info.value))
    with pytest.raises(DefinitionError) as info:
        tfx_query_config(defn)
    messages.append(str(info.value))
    for m in messages:
        assert "\n" not in m and m.startswith(defn.where), m
    return messages


# --- 1. The model refuses hostile names at load; the SQL layer refuses them even past the model ----------


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("payload", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_name_is_refused_at_load_and_by_the_sql_layer(tmp_path: Path, field: str, payload: str) -> None:
    path = write(tmp_path, _raw_with(field, payload))
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field {field}: expected"), message
    assert "\n" not in message

    valid = load_definition(write(tmp_path, BASE, "valid.yaml"))
    if field == "columns[4].alias" and payload == "":
        return  # an empty alias means "no alias" past the model: the column's own name is the output name
    for m in _assert_refused(_bypass(valid, field, payload), payload):
        assert f"field {field}: expected a plain column or table name" in m, m


def test_the_issue_payload_never_reaches_bigquery_or_tfx_sql(tmp_path: Path) -> None:
    payload = "quantity, (SELECT secret FROM other.secrets) AS stolen"
    valid = load_definition(write(tmp_path, BASE))
    outputs = [*_every_rendering(valid), str(tfx_query_config(valid))]
    assert all("secrets" not in o for o in outputs)
    hostile = _bypass(valid, "columns[4].column", payload)
    _assert_refused(hostile, payload)


def test_plain_names_that_are_sql_keywords_stay_names(tmp_path: Path) -> None:
    """A plain identifier is not necessarily harmless text (``select``, ``from``): it only ever appears quoted."""
    valid = load_definition(write(tmp_path, BASE))
    for keyword in ("select", "from", "where", "union", "drop", "null", "read_text"):
        defn = _bypass(_bypass(valid, "columns[4].column", keyword), "columns[4].alias", keyword)
        for dialect in DIALECTS:
            text = render_query(defn, dialect=dialect)  # type: ignore[arg-type]
            tree = sqlglot.parse_one(text, read=dialect)
            refs = {(c.table, c.name) for c in tree.find_all(exp.Column) if c.table}
            assert ("users", keyword) in refs
            assert all(i.args.get("quoted") for c in tree.find_all(exp.Column) if c.name == keyword for i in c.parts)


def test_a_hostile_definition_name_never_leaves_the_header_comment(tmp_path: Path) -> None:
    payload = "demo\nCOPY raw_data.users TO '/tmp/fp_pwned.csv'; --"
    path = write(tmp_path, changed(name=payload))
    with pytest.raises(DefinitionError, match=r"field name: expected a value matching"):
        load_definition(path)
    valid = load_definition(write(tmp_path, BASE, "valid.yaml"))
    for m in _assert_refused(valid.model_copy(update={"name": payload}), payload):
        assert "field name: expected a value matching" in m


@pytest.mark.parametrize("payload", ["x.parquet'); COPY raw_data.users TO '/tmp/fp_pwned.csv'; --",
                                     "x.parquet\" || read_text('/etc/hostname') || \"", "`x`.parquet"])
def test_a_hostile_parquet_path_is_one_string_literal(tmp_path: Path, warehouse: Path, payload: str) -> None:
    raw = changed(tables=[{"name": "transactions"}, {"name": "users", "path": payload}, {"name": "products"}])
    defn = load_definition(write(tmp_path, raw))
    tree = sqlglot.parse_one(render_query(defn), read="duckdb")
    reads = [t.this for t in tree.find_all(exp.Table) if not isinstance(t.this, exp.Identifier)]
    assert len(reads) == 1 and [a.this for a in reads[0].expressions] == [str(tmp_path / payload)]
    assert not list(tree.find_all(exp.Copy, exp.Anonymous, exp.Command))
    with open_warehouse([defn], warehouse) as conn:
        problems = validate_against(defn, conn)
    assert problems == [f"{defn.where}: field tables[1].path: expected an existing Parquet file; got {payload!r} "
                        f"({tmp_path / payload} does not exist)"]


# --- 2. Against the warehouse schema -------------------------------------------------------------------


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "secret.txt"
    path.write_text("FP-SECRET-7d1c0b3a\n")
    return path


@pytest.fixture(scope="module")
def hostile_warehouse(warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample warehouse with secrets in another schema and in raw_data."""
    path = tmp_path_factory.mktemp("hostile_wh") / "warehouse.duckdb"
    shutil.copy(warehouse, path)
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA other")
        conn.execute("CREATE TABLE other.secrets AS SELECT 'FP-SECRET-other' AS secret")
        conn.execute("CREATE TABLE raw_data.secrets AS SELECT 1::BIGINT AS user_id, 'FP-SECRET-raw' AS secret")
    return path


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        ({"table": "transactions", "column": "secret"}, "columns[7].column", "expected a column of transactions"),
        ({"table": "users", "column": "amount"}, "columns[7].column", "expected a column of users"),
        ({"table": "secrets", "column": "secret"}, "columns[7].table", "expected one of the listed tables"),
    ],
)
def test_names_are_checked_against_the_warehouse_schema(tmp_path: Path, hostile_warehouse: Path,
                                                        edit: dict[str, str], field: str, expected: str) -> None:
    raw = changed(columns=[*BASE["columns"], edit])
    path = write(tmp_path, raw)
    try:
        defn = load_definition(path)
    except DefinitionError as exc:  # caught without the warehouse (an unlisted table)
        problems = [str(exc)]
    else:
        with open_warehouse([defn], hostile_warehouse) as conn:
            problems = validate_against(defn, conn)
    assert problems and problems[0].startswith(f"{path}: field {field}: {expected}"), problems
    assert all("FP-SECRET" not in p for p in problems)


def test_a_name_the_schema_has_but_the_model_refuses_is_refused_by_validate(tmp_path: Path, warehouse: Path) -> None:
    """A column that exists (in a Parquet file) under an expression-like name: validate refuses it too."""
    evil = "user_id || 'x'"
    target = tmp_path / "users.parquet"
    with connect(warehouse) as conn:
        conn.execute(f"COPY (SELECT *, 'plain' AS {quote_identifier(evil)} FROM raw_data.users) TO "
                     f"{exp.Literal.string(str(target)).sql('duckdb')} (FORMAT parquet)")
    raw = changed(tables=[{"name": "transactions"}, {"name": "users", "path": "users.parquet"}, {"name": "products"}])
    defn = _bypass(load_definition(write(tmp_path, raw)), "columns[4].column", evil)
    with open_warehouse([defn], warehouse) as conn:
        problems = validate_against(defn, conn)
    assert len(problems) == 1 and "field columns[4].column: expected a plain column or table name" in problems[0]


# --- 3. The issue's parquet attack: a column *named* as an expression that reads a local file ----------------


@pytest.fixture
def evil_parquet_dir(tmp_path: Path, warehouse: Path, secret_file: Path) -> tuple[Path, str]:
    """A definitions directory whose users table is a Parquet file with a column named as an expression that
    would read ``secret_file``; returns (directory, that column name)."""
    directory = tmp_path / "definitions"
    directory.mkdir()
    evil = f"user_id || (SELECT string_agg(content, '') FROM read_text('{secret_file}'))"
    with connect(warehouse) as conn:
        conn.execute(f"COPY (SELECT *, 'plain' AS {quote_identifier(evil)} FROM raw_data.users) TO "
                     f"{exp.Literal.string(str(directory / 'users.parquet')).sql('duckdb')} (FORMAT parquet)")
    assert evil in pq.read_schema(directory / "users.parquet").names
    return directory, evil


def _parquet_raw(column: str, name: str = "demo_def") -> dict[str, Any]:
    raw = changed(name=name, tables=[{"name": "transactions"}, {"name": "users", "path": "users.parquet"},
                                     {"name": "products"}])
    raw["columns"] = [*raw["columns"][:4], {"table": "users", "column": column, "alias": "stolen"},
                      *raw["columns"][5:]]
    return raw


def test_expression_named_parquet_column_cannot_build(evil_parquet_dir: tuple[Path, str], tmp_path: Path,
                                                      warehouse: Path, secret_file: Path) -> None:
    directory, evil = evil_parquet_dir
    write(directory, _parquet_raw(evil))
    out = tmp_path / "datasets"
    env = {**os.environ, "PYTHONPATH": str(REPO), "FP_DEFINITIONS_DIR": str(directory), "FP_WAREHOUSE": str(warehouse)}
    proc = subprocess.run([sys.executable, "-m", "feature_platform.cli", "definitions", "build", "demo_def",
                           "--version", "v1", "--out-dir", str(out), "--as-of", AS_OF.isoformat()],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "demo_def.yaml: field columns[4].column: expected a value matching" in proc.stderr
    assert "FP-SECRET" not in proc.stdout + proc.stderr
    assert not out.exists()

    # Past the model (built in code): refused before any query runs; nothing written.
    valid = load_definition(write(tmp_path, _parquet_raw("segment"), "valid.yaml"))
    shutil.copy(directory / "users.parquet", tmp_path / "users.parquet")
    hostile = _bypass(valid, "columns[4].column", evil)
    with pytest.raises(DefinitionError, match=r"field columns\[4\]\.column: expected a plain column") as info:
        build_definition_dataset(hostile, out, dataset_version="v1", warehouse=warehouse, as_of=AS_OF)
    assert "FP-SECRET" not in str(info.value)
    assert not out.exists()


def test_the_same_parquet_file_builds_with_plain_columns_and_no_file_content(
        evil_parquet_dir: tuple[Path, str], tmp_path: Path, warehouse: Path) -> None:
    """The sandbox lets the definition read its own Parquet file, and only its plain columns are selected."""
    directory, _ = evil_parquet_dir
    defn = load_definition(write(directory, _parquet_raw("segment")))
    result = build_definition_dataset(defn, tmp_path / "datasets", dataset_version="v1", warehouse=warehouse,
                                      as_of=AS_OF)
    table = pq.read_table(result.path / "data.parquet")
    assert table.num_rows > 0 and "stolen" in table.column_names
    assert all("FP-SECRET" not in str(v) for v in table.column("stolen").to_pylist())
    for f in result.path.rglob("*"):
        if f.is_file():
            assert b"FP-SECRET" not in f.read_bytes(), f


# --- 4. Filters and strings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "split", "field"),
    [
        ({"where": "1=1 OR (SELECT secret FROM other.secrets) IS NOT NULL"}, None, "filters.where"),
        ({"sql": "COPY raw_data.users TO '/tmp/fp_pwned.csv'"}, None, "filters.sql"),
        ({"date_range": {"last_days": "90) OR (SELECT 1"}}, None, "filters.date_range.last_days"),
        ({"date_range": {"last_days": "90; ATTACH '/tmp/fp.db' AS x"}}, None, "filters.date_range.last_days"),
        ({"date_range": {"start": "2025-01-01' OR '1'='1", "end": "2026-01-01"}}, None, "filters.date_range.start"),
        ({"date_range": {"start": "2025-01-01", "end": "read_text('/etc/hostname')"}}, None,
         "filters.date_range.end"),
        ({"date_range": {"last_days": 30, "expression": "read_csv('/etc/passwd')"}}, None,
         "filters.date_range.expression"),
        ({"top_products_percent": "80 OR 1=1"}, None, "filters.top_products_percent"),
        ({"min_transactions_per_user": "2; DROP TABLE raw_data.users"}, None, "filters.min_transactions_per_user"),
        ({"min_transactions_per_user": "getenv('HOME')"}, None, "filters.min_transactions_per_user"),
        ({}, {"strategy": "random", "eval_fraction": "0.2 OR 1=1", "salt": "s"}, "split.eval_fraction"),
        ({}, {"strategy": "time", "eval_days": "7 DAY) OR (1=1"}, "split.eval_days"),
        ({}, {"strategy": "random", "eval_fraction": 0.2, "salt": "s", "where": "1=1"}, "split.where"),
    ],
)
def test_filter_fields_accept_typed_values_only(tmp_path: Path, filters: dict[str, Any],
                                                split: dict[str, Any] | None, field: str) -> None:
    raw = changed(filters=filters or BASE["filters"], split=split or BASE["split"])
    path = write(tmp_path, raw)
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    assert str(info.value).startswith(f"{path}: field {field}: expected"), str(info.value)
    assert "\n" not in str(info.value)


HOSTILE_SALTS = [
    "s1'), 1) OR (SELECT 1) --",
    "'; COPY raw_data.users TO '/tmp/fp_pwned.csv'; --",
    "\\'; SELECT * FROM read_text('/etc/hostname'); --",
    "` || (SELECT secret FROM other.secrets) || `",
    '" || getenv(\'HOME\') || "',
    "/* */ -- \n\r\t",
    "ünï©ødé \u200b \x00",
]


@pytest.mark.parametrize("salt", HOSTILE_SALTS, ids=range(len(HOSTILE_SALTS)))
def test_a_hostile_salt_is_one_string_literal(tmp_path: Path, salt: str, warehouse: Path) -> None:
    try:
        defn = load_definition(write(tmp_path, changed(split={**BASE["split"], "salt": salt})))
    except DefinitionError as exc:  # YAML cannot carry every character (NUL): refused, one line
        assert "\n" not in str(exc)
        return
    for dialect in DIALECTS:
        text = render_query(defn, split="eval", dialect=dialect)  # type: ignore[arg-type]
        statements = sqlglot.parse(text, read=dialect)
        assert len(statements) == 1 and statements[0] is not None
        strings = [lit.this for lit in statements[0].find_all(exp.Literal) if lit.is_string]
        assert salt in strings, (dialect, strings)
        assert not list(statements[0].find_all(exp.Copy, exp.Anonymous, exp.Command))
        assert {t.name for t in statements[0].find_all(exp.Table)} <= {
            "transactions", "users", "products", "base", "product_revenue", "top_products", "active_users"}
    # DuckDB hashes exactly that salt: the keys land where split_of puts them.
    with open_warehouse([defn], warehouse) as conn:
        keys = {r[0] for r in conn.execute(render_query(defn, split="eval", as_of=AS_OF)).fetchall()}
    assert keys and {split_of(defn, k) for k in keys} == {"eval"}


# The whitelist on its own: hostile conditions spliced into a real query, hostile statements around it.
HOSTILE_CONDITIONS = [
    "(SELECT secret FROM other.secrets) IS NOT NULL",
    "EXISTS (SELECT * FROM read_text('/etc/hostname'))",
    "user_id IN (SELECT content FROM read_text('/etc/hostname'))",
    "(SELECT count(*) FROM read_csv('/etc/passwd')) > 0",
    "(SELECT count(*) FROM read_parquet('/tmp/other.parquet')) > 0",
    "(SELECT count(*) FROM read_json('/etc/passwd')) > 0",
    "(SELECT count(*) FROM glob('/etc/*')) > 0",
    "getenv('HOME') = 'x'",
    "lower(segment) = 'x'",
    "current_setting('enable_external_access') = 'true'",
    "segment = (SELECT segment FROM raw_data.secrets)",
    "segment IN (SELECT secret FROM raw_data.users)",
    "user_id IN (SELECT user_id FROM raw_data.transactions UNION ALL SELECT 1)",
    "transactions.transaction_id > 0",
    "other.secrets.secret IS NULL",
    "secret IS NULL",
    "user_id > 0 /* hidden */",
    "revenue > 0 -- hidden",
]
HOSTILE_STATEMENTS = [
    "{body}; COPY raw_data.users TO '/tmp/fp_pwned.csv'",
    "{body}; ATTACH '/tmp/fp_pwned.db' AS pwned",
    "COPY raw_data.users TO '/tmp/fp_pwned.csv'",
    "ATTACH '/tmp/fp_pwned.db' AS pwned",
    "INSTALL httpfs",
    "SET enable_external_access = true",
    "{body};",
    "{body}; SELECT 1",
    "{body} UNION ALL SELECT * FROM base",
    "SELECT * FROM read_text('/etc/hostname')",
    "{body}\n-- trailing comment",
    "/* leading */ {body}",
]


@pytest.fixture
def base_defn(tmp_path: Path) -> DatasetDefinition:
    return load_definition(write(tmp_path, BASE))


def _body(defn: DatasetDefinition, dialect: str) -> str:
    text = render_query(defn, dialect=dialect)  # type: ignore[arg-type]
    return "\n".join(line for line in text.splitlines() if not line.startswith("--"))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_generated_query_passes_the_whitelist(base_defn: DatasetDefinition, dialect: str) -> None:
    check_query_sql(base_defn, _body(base_defn, dialect), dialect)  # type: ignore[arg-type]


@pytest.mark.parametrize("condition", HOSTILE_CONDITIONS, ids=range(len(HOSTILE_CONDITIONS)))
@pytest.mark.parametrize("dialect", DIALECTS)
def test_hostile_filter_conditions_are_refused(base_defn: DatasetDefinition, condition: str, dialect: str) -> None:
    tree = sqlglot.parse_one(_body(base_defn, dialect), read=dialect)
    assert isinstance(tree, exp.Select)
    hostile = tree.where(sqlglot.parse_one(condition, read="duckdb"), copy=True).sql(dialect=dialect, comments=True)
    with pytest.raises(DefinitionError) as info:
        check_query_sql(base_defn, hostile, dialect)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{base_defn.where}: field (query): expected")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("statement", HOSTILE_STATEMENTS, ids=range(len(HOSTILE_STATEMENTS)))
def test_hostile_statements_are_refused(base_defn: DatasetDefinition, statement: str) -> None:
    sql = statement.format(body=_body(base_defn, "duckdb"))
    with pytest.raises(DefinitionError) as info:
        check_query_sql(base_defn, sql, "duckdb")
    assert str(info.value).startswith(f"{base_defn.where}: field (query): expected")
    assert "\n" not in str(info.value)


# --- 5. The CLI: one line, exit 2, no traceback, no SQL ----------------------------------------------------


@pytest.mark.parametrize("payload", [HOSTILE_NAMES[0], HOSTILE_NAMES[1], 'user"id', "s\u0435gment", "segment\n"],
                         ids=range(5))
def test_cli_refuses_a_hostile_definition_on_one_line(cli: Cli, tmp_path: Path, warehouse: Path,
                                                      monkeypatch: pytest.MonkeyPatch, payload: str) -> None:
    directory = tmp_path / "definitions"
    directory.mkdir()
    path = write(directory, _raw_with("columns[4].column", payload))
    write(directory, changed(name="other_def"), "other_def.yaml")
    monkeypatch.setenv("FP_DEFINITIONS_DIR", str(directory))
    monkeypatch.setenv("FP_WAREHOUSE", str(warehouse))
    commands = [
        ["query", "demo_def", "--dialect", "bigquery"], ["query", "demo_def", "--split", "eval"], ["tfx", "demo_def"],
        ["validate"], ["validate", "demo_def"], ["preview", "demo_def"], ["analyze", "demo_def"],
        ["compare", "demo_def", "other_def"], ["activate", "demo_def"], ["clone", "demo_def", "copy_def"],
        ["build", "demo_def", "--version", "v1", "--out-dir", str(tmp_path / "out")],
    ]
    for args in commands:
        code, out, err = cli("definitions", *args)
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and err.startswith(f"fp: error: {path}: field columns[4].column: expected"), err
        assert out == "" and "Traceback" not in err, args
    assert not (tmp_path / "out").exists() and not (directory / "copy_def.yaml").exists()


# --- 6. The sandbox: DuckDB with external access disabled ----------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path, warehouse: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    allowed = tmp_path / "allowed.parquet"
    with connect(warehouse) as conn:
        conn.execute(f"COPY raw_data.users TO {exp.Literal.string(str(allowed)).sql('duckdb')} (FORMAT parquet)")
        conn.execute(f"COPY raw_data.users TO {exp.Literal.string(str(tmp_path / 'other.parquet')).sql('duckdb')} "
                     "(FORMAT parquet)")
    raw = changed(tables=[{"name": "transactions"}, {"name": "users", "path": "allowed.parquet"},
                          {"name": "products"}])
    defn = load_definition(write(tmp_path, raw))
    with open_warehouse([defn], warehouse) as sandboxed:
        yield sandboxed, tmp_path


def test_sandbox_runs_the_definition_and_nothing_else(sandbox: tuple[duckdb.DuckDBPyConnection, Path],
                                                      secret_file: Path, warehouse: Path) -> None:
    conn, directory = sandbox
    lit = exp.Literal.string
    assert conn.execute(f"SELECT count(*) FROM read_parquet({lit(str(directory / 'allowed.parquet')).sql()})"
                        ).fetchone() == (300,)
    assert conn.execute("SELECT count(*) FROM raw_data.users").fetchone() == (300,)
    refused = [
        f"SELECT * FROM read_text({lit(str(secret_file)).sql()})",
        f"SELECT * FROM read_blob({lit(str(secret_file)).sql()})",
        f"SELECT * FROM read_csv({lit(str(secret_file)).sql()})",
        f"SELECT * FROM read_json({lit(str(secret_file)).sql()})",
        f"SELECT * FROM read_parquet({lit(str(directory / 'other.parquet')).sql()})",
        f"SELECT * FROM glob({lit(str(secret_file.parent) + '/*').sql()})",
        f"COPY raw_data.users TO {lit(str(directory / 'out.csv')).sql()}",
        f"ATTACH {lit(str(directory / 'x.duckdb')).sql()} AS x",
        f"ATTACH {lit(str(warehouse)).sql()} AS again",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SET allowed_paths = ['/']",
        "RESET enable_external_access",
        "CREATE TABLE raw_data.x AS SELECT 1",
    ]
    for sql in refused:
        with pytest.raises(duckdb.Error):
            conn.execute(sql).fetchall()
    assert not (directory / "out.csv").exists() and not (directory / "x.duckdb").exists()
    # Other connections to the same warehouse are not locked down with it (DuckDB shares one instance per file).
    with connect(warehouse) as plain:
        plain.execute(f"COPY (SELECT 1) TO {lit(str(directory / 'plain.csv')).sql()}")
    assert (directory / "plain.csv").is_file()


# --- 7. Introspection quotes through sqlglot too ----------------------------------------------------------


def test_introspection_quotes_hostile_warehouse_column_names(tmp_path: Path) -> None:
    path = tmp_path / "odd.duckdb"
    pwned = tmp_path / "pwned.csv"
    odd = [f'x"); COPY (SELECT 1) TO \'{pwned}\'; --', "naïve", "sp ace", "`tick`", 'a""b']
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA raw_data")
        cols = ", ".join(f"{quote_identifier(c)} BIGINT" for c in odd)
        conn.execute(f"CREATE TABLE raw_data.t ({cols})")
        conn.execute(f"INSERT INTO raw_data.t VALUES ({', '.join(['7'] * len(odd))})")
    with connect(path) as conn:
        assert [c.name for c in table_schema(conn, "t")] == odd
        stats = column_stats(conn, "t")
        assert [s.name for s in stats] == odd and all(s.count == 1 and s.min == 7 for s in stats)
        for c in odd:
            assert [v.value for v in sample_values(conn, "t", c)] == [7]
    assert not pwned.exists()


# --- 8. Properties ---------------------------------------------------------------------------------------

NAMES = st.one_of(
    st.from_regex(IDENTIFIER, fullmatch=True),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=24),
    st.text(st.sampled_from(list("abc_01 ;'\"`()-*/,.|\\\n\t[]$@:")), min_size=1, max_size=16),
    st.sampled_from([*HOSTILE_NAMES, "select", "from", "SELECT", "_", "__", "A1", "read_text"]),
)


def _declared(defn: DatasetDefinition) -> set[tuple[str, str]]:
    pairs = {(c.table, c.column) for c in defn.columns}
    return pairs | {(j.left_table, j.left_column) for j in defn.joins} | \
        {(j.right_table, j.right_column) for j in defn.joins}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, field=st.sampled_from(["columns[4].column", "joins[0].right_column", "columns[4].alias"]))
def test_any_name_is_refused_or_only_a_quoted_identifier(name: str, field: str) -> None:
    plain = re.fullmatch(IDENTIFIER, name) is not None
    try:
        parse_definition(_raw_with(field, name))
        model_accepts = True
    except DefinitionError:
        model_accepts = False
    assert plain or not model_accepts, f"model accepted {name!r}"
    # Past the model too: the SQL layer's own check has the same rule as the model's field patterns
    # (an empty alias there means "no alias": the column's own name is the output name).
    plain = plain or (field == "columns[4].alias" and name == "")
    bypassed = _bypass(parse_definition(changed()), field, name)
    try:
        texts = {(d, s): render_query(bypassed, split=s, dialect=d) for d in DIALECTS  # type: ignore[arg-type]
                 for s in (None, "eval")}
    except DefinitionError:
        assert not plain, f"SQL layer refused the plain name {name!r}"
        return
    assert plain, f"SQL layer accepted {name!r}"
    for (dialect, _), text in texts.items():
        tree = sqlglot.parse_one(text, read=dialect)
        columns = list(tree.find_all(exp.Column))
        assert {(c.table, c.name) for c in columns if c.table} == _declared(bypassed)
        assert all(part.args.get("quoted") for c in columns if c.table for part in c.parts)
        if field != "columns[4].alias":
            assert ("users", name) in {(c.table, c.name) for c in columns}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spelling=st.sampled_from(["{p}", "{d}/./{n}", "{d}//{n}", "{d}/../{b}/{n}", "{d}/{n}/", "{d}/{n}*",
                                 "{d}/*", "file://{p}", "{d}/{n}?"]),
       function=st.sampled_from(["read_text", "read_blob", "read_csv", "read_json", "read_parquet"]))
def test_sandbox_refuses_reading_any_spelling_of_a_local_file(sandbox: tuple[duckdb.DuckDBPyConnection, Path],
                                                              secret_file: Path, spelling: str,
                                                              function: str) -> None:
    conn, _ = sandbox
    d = secret_file.parent
    path = spelling.format(p=secret_file, d=d, n=secret_file.name, b=d.name)
    sql = f"SELECT * FROM {function}({exp.Literal.string(path).sql('duckdb')})"
    with pytest.raises(duckdb.Error) as info:
        conn.execute(sql).fetchall()
    assert "FP-SECRET" not in str(info.value)
