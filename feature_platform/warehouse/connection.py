"""Where the warehouse lives and how to open it: one DuckDB file, schema ``raw_data``, session time zone UTC."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from feature_platform.contracts.data_root import DataRoot

if TYPE_CHECKING:
    import duckdb

RAW_SCHEMA = "raw_data"
SANDBOX_CATALOG = "warehouse"  # the warehouse's name inside a sandboxed connection (connect_sandboxed)
WAREHOUSE_ENV = "FP_WAREHOUSE"


class WarehouseError(ValueError):
    """The warehouse, a table or a column is missing or unusable; the message is one line."""


def warehouse_path() -> Path:
    """``$FP_WAREHOUSE``, else ``${FP_DATA_ROOT:-data}/warehouse/warehouse.duckdb``."""
    explicit = os.environ.get(WAREHOUSE_ENV)
    if explicit:
        return Path(explicit)
    return DataRoot.from_env(resolve=False).warehouse_db


def _existing(path: Path | None) -> Path:
    target = Path(path) if path is not None else warehouse_path()
    if not target.is_file():
        raise WarehouseError(
            f"warehouse {target} does not exist; create it with `fp warehouse seed --path {target}` "
            f"or point ${WAREHOUSE_ENV} at an existing DuckDB file"
        )
    return target


def connect(path: Path | None = None, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; UTC so that dates cut from TIMESTAMPTZ agree with BigQuery's UTC semantics."""
    import duckdb

    target = _existing(path)
    try:
        conn = duckdb.connect(str(target), read_only=read_only)
    except duckdb.Error as exc:
        raise WarehouseError(f"warehouse {target}: cannot open: {one_line(exc)}") from None
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def connect_sandboxed(
    path: Path | None = None, *, allowed_files: Iterable[Path | str] = ()
) -> duckdb.DuckDBPyConnection:
    """The warehouse for queries generated from definitions: a private in-memory DuckDB with the warehouse
    attached read-only as its default database, ``allowed_files`` (the definitions' Parquet files) readable,
    and nothing else: external access disabled and the configuration locked, so no query, not even one a
    bug let through, can read or write a local file, attach a database or load an extension.

    A private instance, because DuckDB shares one instance (and its settings) between connections to the
    same file in a process: locking ``connect()``'s connection would lock every other one too.
    """
    import duckdb

    target = _existing(path)
    conn = duckdb.connect(":memory:")
    try:
        conn.execute(f"ATTACH ? AS {quote_identifier(SANDBOX_CATALOG)} (READ_ONLY)", [str(target)])
        conn.execute(f"USE {quote_identifier(SANDBOX_CATALOG)}")
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET temp_directory = ?", [f"{target}.tmp"])
        conn.execute("SET allowed_paths = ?", [[str(p) for p in allowed_files]])
        conn.execute("SET autoinstall_known_extensions = false")
        conn.execute("SET autoload_known_extensions = false")
        conn.execute("SET enable_external_access = false")
        conn.execute("SET lock_configuration = true")
    except duckdb.Error as exc:
        conn.close()
        raise WarehouseError(f"warehouse {target}: cannot open: {one_line(exc)}") from None
    return conn


def quote_identifier(name: str, dialect: str = "duckdb") -> str:
    """``name`` as one quoted SQL identifier, built by sqlglot (quotes inside it escaped for ``dialect``)."""
    from sqlglot import exp

    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def one_line(exc: BaseException) -> str:
    """DuckDB errors span several lines (with hints and carets); the CLI reports one."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__
