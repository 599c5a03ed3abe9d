"""Where the warehouse lives and how to open it: one DuckDB file, schema ``raw_data``, session time zone UTC."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

RAW_SCHEMA = "raw_data"
WAREHOUSE_ENV = "FP_WAREHOUSE"


class WarehouseError(ValueError):
    """The warehouse, a table or a column is missing or unusable; the message is one line."""


def warehouse_path() -> Path:
    """``$FP_WAREHOUSE``, else ``${FP_DATA_ROOT:-data}/warehouse/warehouse.duckdb``."""
    explicit = os.environ.get(WAREHOUSE_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("FP_DATA_ROOT") or "data") / "warehouse" / "warehouse.duckdb"


def connect(path: Path | None = None, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; UTC so that dates cut from TIMESTAMPTZ agree with BigQuery's UTC semantics."""
    import duckdb

    target = Path(path) if path is not None else warehouse_path()
    if not target.is_file():
        raise WarehouseError(
            f"warehouse {target} does not exist; create it with `fp warehouse seed --path {target}` "
            f"or point ${WAREHOUSE_ENV} at an existing DuckDB file"
        )
    try:
        conn = duckdb.connect(str(target), read_only=read_only)
    except duckdb.Error as exc:
        raise WarehouseError(f"warehouse {target}: cannot open: {one_line(exc)}") from None
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def one_line(exc: BaseException) -> str:
    """DuckDB errors span several lines (with hints and carets); the CLI reports one."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__
