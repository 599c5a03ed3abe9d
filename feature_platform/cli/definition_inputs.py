"""What the `fp definitions` commands share: their input options, the named definition, the warehouse."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from feature_platform.datasets.definitions.model import DatasetDefinition


def add_definition_inputs(parser: argparse.ArgumentParser, *, warehouse: bool = True, json: bool = True) -> None:
    """The options every command reading definitions takes: where they are, the warehouse, JSON output."""
    parser.add_argument("--definitions-dir", type=Path,
                        help="directory of definition YAML files (default: $FP_DEFINITIONS_DIR or ./definitions)")
    if warehouse:
        parser.add_argument("--warehouse", type=Path,
                            help="DuckDB warehouse (default: $FP_WAREHOUSE or the data root's)")
    if json:
        parser.add_argument("--json", action="store_true", help="print the result as JSON")


def find_definition_arg(args: argparse.Namespace, name: str) -> DatasetDefinition:
    """The definition named on the command line; an unknown or unreadable one is a usage error."""
    from feature_platform.datasets.definitions.model import find_definition

    return find_definition(name, args.definitions_dir)


def connect_warehouse(args: argparse.Namespace, defns: list[DatasetDefinition]) -> duckdb.DuckDBPyConnection:
    """The warehouse sandboxed for ``defns``' queries (no file access but their own Parquet files)."""
    from feature_platform.datasets.definitions.sql import open_warehouse

    return open_warehouse(defns, args.warehouse)
