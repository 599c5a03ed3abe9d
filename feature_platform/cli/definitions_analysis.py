"""`fp definitions analyze|preview|compare`: what a definition would produce, before building it.

Registered into the `fp definitions` group by `feature_platform.cli.definitions` (``register_analysis``).
Bad input (unknown definition, table or column, a query DuckDB cannot run) is a one-line error, exit 2;
``analyze`` exits 1 when the definition selects no rows or leaves a split empty (nothing worth building).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from feature_platform.cli.common import EXIT_FAILED, EXIT_OK, iso_date, positive_int, print_json
from feature_platform.cli.definition_inputs import add_definition_inputs, connect_warehouse, find_definition_arg

if TYPE_CHECKING:
    import duckdb

    from feature_platform.cli.common import Commands
    from feature_platform.datasets.definitions.model import DatasetDefinition


def register_analysis(subparsers: Commands) -> None:
    """Add analyze, preview and compare to the ``fp definitions`` subcommands."""
    analyze = subparsers.add(
        "analyze", _analyze,
        help="row/user/product counts, date range, split sizes and quality issues of a definition",
        description="Analyze the rows a definition selects. Exit 1 if it selects no rows or a split is empty.",
    )
    analyze.add_argument("name", help="definition name (the `name:` field of a YAML file in the definitions dir)")
    preview = subparsers.add("preview", _preview, help="the first rows of a definition with each column's ML role")
    preview.add_argument("name", help="definition name")
    preview.add_argument("--limit", type=positive_int, default=20, help="rows to show (default 20)")
    compare = subparsers.add("compare", _compare, help="2 to 5 definitions side by side")
    compare.add_argument("names", nargs="+", metavar="NAME", help="definition names (2 to 5)")
    for parser in (analyze, preview, compare):
        add_definition_inputs(parser)
        parser.add_argument("--as-of", type=iso_date,
                            help="pin 'today' for rolling ranges and time splits, YYYY-MM-DD (default: CURRENT_DATE)")


@contextmanager
def _session(args: argparse.Namespace,
             names: list[str]) -> Iterator[tuple[list[DatasetDefinition], duckdb.DuckDBPyConnection]]:
    """The named definitions and the warehouse sandboxed for them; a definition the warehouse cannot answer
    for is a usage error."""
    defns = [find_definition_arg(args, name) for name in names]
    conn = connect_warehouse(args, defns)
    with conn:
        yield defns, conn


def _print(args: argparse.Namespace, result: Any) -> None:
    if args.json:
        print_json(result.to_json_dict())
    else:
        print(result.render())


def _analyze(args: argparse.Namespace) -> int:
    from feature_platform.datasets.definitions.analysis import analyze_definition

    with _session(args, [args.name]) as ((defn,), conn):
        analysis = analyze_definition(defn, conn, as_of=args.as_of)
    _print(args, analysis)
    empty = [i for i in analysis.issues if i.kind in ("empty", "empty_split")]
    if empty:
        print(f"fp: {defn.where}: {empty[0].message}; nothing worth building", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _preview(args: argparse.Namespace) -> int:
    from feature_platform.datasets.definitions.analysis import preview_definition

    with _session(args, [args.name]) as ((defn,), conn):
        preview = preview_definition(defn, conn, args.limit, as_of=args.as_of)
    _print(args, preview)
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from feature_platform.datasets.definitions.analysis import compare_definitions, require_compare_count

    require_compare_count(args.names)  # before touching any file or the warehouse
    with _session(args, list(args.names)) as (defns, conn):
        comparison = compare_definitions(defns, conn, as_of=args.as_of)
    _print(args, comparison)
    return EXIT_OK
