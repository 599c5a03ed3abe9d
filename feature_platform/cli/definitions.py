"""`fp definitions list|validate|query|tfx|activate|clone|build` (+ analyze|preview|compare): dataset definitions.

Exit codes: 0 ok; 1 a definition does not validate against the warehouse, activate/clone refuse, or a build
fails (nothing written); 2 bad input: bad arguments, an unreadable or malformed definition file, an unknown
definition name, a missing warehouse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from feature_platform.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CheckFailed,
    UsageError,
    add_run_flags,
    iso_date,
    layout,
    print_json,
    report_build,
    report_run,
    run_in_process,
    safe_id,
)
from feature_platform.cli.definition_inputs import add_definition_inputs, connect_warehouse, find_definition_arg

if TYPE_CHECKING:
    from feature_platform.cli.common import Commands

T = TypeVar("T")
COMMANDS = "{list,validate,query,tfx,activate,clone,delete,build,materialize,analyze,preview,compare}"


def register(groups: Commands) -> None:
    cmds = groups.group(
        "definitions", COMMANDS, help="declarative dataset definitions: YAML → SQL → spec v1 datasets",
        description="Dataset definitions are YAML files in $FP_DEFINITIONS_DIR (default ./definitions): tables of "
        "the DuckDB warehouse (schema raw_data) or Parquet files, joins, columns with ML roles, filters and a "
        "train/eval split. Exit codes: 0 ok, 1 validation failure or refusal, 2 bad input.",
    )

    lst = cmds.add("list", _list, help="every definition with its status, tables, columns and split")
    validate = cmds.add("validate", _validate,
                        help="check definitions against the warehouse; show join suggestions",
                        description="Check the named definitions (default: all) against the warehouse "
                        "schema: tables, columns, role types, joins and the query itself. Exit 1 on any problem.")
    validate.add_argument("names", nargs="*", metavar="NAME", help="definitions to check (default: all)")
    query = cmds.add("query", _query, help="print the generated SQL of a definition")
    query.add_argument("name", help="definition name")
    query.add_argument("--split", choices=["train", "eval"], help="only the train or eval rows")
    query.add_argument("--dialect", choices=["duckdb", "bigquery", "postgres"], default="duckdb",
                       help="SQL dialect (default duckdb)")
    query.add_argument("--as-of", type=iso_date, help="pin 'today' (YYYY-MM-DD) instead of CURRENT_DATE")
    tfx = cmds.add("tfx", _tfx, help="TFX BigQueryExampleGen input config (train/eval queries) as JSON")
    tfx.add_argument("name", help="definition name")
    activate = cmds.add("activate", _activate, help="set status: active (refused unless it validates)",
                        description="Validate against the warehouse, then rewrite the file's status line "
                        "atomically. Exit 1 (file unchanged) if validation fails.")
    activate.add_argument("name", help="definition name")
    clone = cmds.add("clone", _clone, help="copy a definition to a new draft file under a new name")
    clone.add_argument("name", help="definition to copy")
    clone.add_argument("new_name", help="name of the copy (also its file name, <new_name>.yaml)")
    clone.add_argument("--description", help="description of the copy")
    delete = cmds.add("delete", _delete, help="remove a draft's file (an active definition is refused: clone it)",
                      description="Delete the file of a draft definition. Exit 1 (nothing deleted) if it "
                      "is active: datasets built from it cite its content.")
    delete.add_argument("name", help="definition name")
    build = cmds.add("build", _build,
                     help="build the definition's spec v1 dataset (verified, published atomically)",
                     description="Run the definition's DuckDB query into <out-dir>/<name>-<version>/ "
                     "through the same builder, verification and atomic publish as every dataset.")
    build.add_argument("name", help="definition name")
    build.add_argument("--version", required=True, dest="dataset_version", type=safe_id("dataset_version"),
                       help="dataset version (safe id)")
    build.add_argument("--out-dir", type=Path, help="datasets directory (default: $FP_DATA_ROOT/datasets)")
    build.add_argument("--as-of", type=iso_date, help="pin 'today' (YYYY-MM-DD); default: today, UTC")
    build.add_argument("--force", action="store_true", help="replace an existing dataset once the new one verifies")

    materialize = cmds.add(
        "materialize", _materialize,
        help="run the Dagster job: build, check and publish every active definition (headless)",
        description="Materialize definition_datasets_job for one definition_version partition in process, on the "
        "project's Dagster instance ($DAGSTER_HOME): each active definition's dataset, its blocking integrity "
        "checks, then the publish to the object store and catalog. The runs show in the UI afterwards.")
    materialize.add_argument("--version", required=True, type=safe_id("definition_version"),
                             help="definition_version partition (safe id)")
    materialize.add_argument("--as-of", type=iso_date, help="pin 'today' (YYYY-MM-DD); default: today, UTC")
    add_run_flags(materialize)

    for parser in (lst, validate, query, tfx, activate, clone, delete, build):
        add_definition_inputs(parser, warehouse=parser in (validate, activate, build), json=parser is not tfx)
    _register_analysis(cmds)


def _register_analysis(cmds: Commands) -> None:
    from feature_platform.cli.definitions_analysis import register_analysis

    register_analysis(cmds)


def _list(args: argparse.Namespace) -> int:
    from feature_platform.datasets.definitions.model import definitions_dir, list_entries

    directory = args.definitions_dir or definitions_dir()
    entries = list_entries(directory)
    if args.json:
        print_json({"directory": str(directory), "definitions": entries})
    else:
        from feature_platform.warehouse.render import aligned_table

        rows = [[e["name"], e["status"], ",".join(e.get("tables", [])), e.get("columns"), e.get("split", ""),
                 e["file"]] for e in entries]
        print(aligned_table(["name", "status", "tables", "columns", "split", "file"], rows))
        for e in entries:
            if e["status"] == "invalid":
                print(f"invalid: {e['error']}", file=sys.stderr)
    return EXIT_FAILED if any(e["status"] == "invalid" for e in entries) else EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from feature_platform.datasets.definitions.model import load_definitions
    from feature_platform.datasets.definitions.validation import join_suggestions, validate_against

    defns = ([find_definition_arg(args, n) for n in args.names] if args.names
             else load_definitions(args.definitions_dir))
    results: list[dict[str, Any]] = []
    with connect_warehouse(args, defns) as conn:
        for d in defns:
            problems = validate_against(d, conn)
            results.append({"name": d.name, "file": d.where, "ok": not problems, "problems": problems,
                            "join_suggestions": [j.to_json_dict() for j in join_suggestions(d, conn)]
                            if not problems else []})
    if args.json:
        print_json({"ok": all(r["ok"] for r in results), "definitions": results})
    else:
        for r in results:
            print(f"{'OK' if r['ok'] else 'INVALID'}  {r['name']}  ({r['file']})")
            for p in r["problems"]:
                print(f"  {p}")
            for s in r["join_suggestions"]:
                print(f"  suggestion: join {s['left_table']}.{s['left_column']} = {s['right_table']}."
                      f"{s['right_column']} (confidence {s['confidence']:.2f}: {s['reason']})")
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_FAILED


def _query(args: argparse.Namespace) -> int:
    from feature_platform.datasets.definitions.sql import render_query

    defn = find_definition_arg(args, args.name)
    text = render_query(defn, split=args.split, dialect=args.dialect, as_of=args.as_of)
    if args.json:
        print_json({"name": defn.name, "dialect": args.dialect, "split": args.split,
                    "as_of": args.as_of.isoformat() if args.as_of else None, "sql": text})
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _tfx(args: argparse.Namespace) -> int:
    from feature_platform.datasets.definitions.sql import tfx_query_config

    defn = find_definition_arg(args, args.name)
    config = tfx_query_config(defn)
    print_json(config)
    return EXIT_OK


def _change(args: argparse.Namespace, change: Callable[[], T], document: Callable[[T], dict[str, Any]],
            line: Callable[[T], str], unchanged: str = "") -> int:
    """A change to a definition file: the workflow's refusal is exit 1 (``unchanged`` says what stayed as it was),
    else the outcome as one JSON line or ``line``."""
    from feature_platform.datasets.definitions.model import DefinitionError

    try:
        outcome = change()
    except DefinitionError as exc:
        print(f"fp: refused: {exc}{unchanged}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print_json(document(outcome))
    else:
        print(line(outcome))
    return EXIT_OK


def _activate(args: argparse.Namespace) -> int:
    from feature_platform.datasets.definitions.workflow import activate_definition

    defn = find_definition_arg(args, args.name)

    def activate() -> bool:
        with connect_warehouse(args, [defn]) as conn:
            return activate_definition(defn, conn)

    return _change(args, activate,
                   lambda changed: {"name": defn.name, "status": "active", "changed": changed, "file": defn.where},
                   lambda changed: f"{'activated' if changed else 'already active'}: {defn.name} ({defn.where})",
                   unchanged="; status unchanged")


def _clone(args: argparse.Namespace) -> int:
    from feature_platform.datasets.definitions.workflow import clone_definition

    defn = find_definition_arg(args, args.name)
    return _change(args, lambda: clone_definition(defn, args.new_name, args.definitions_dir, args.description),
                   lambda target: {"name": args.new_name, "status": "draft", "file": str(target),
                                   "cloned_from": defn.name},
                   lambda target: f"cloned {defn.name} → {args.new_name} (draft): {target}")


def _delete(args: argparse.Namespace) -> int:
    from feature_platform.datasets.definitions.workflow import delete_definition

    defn = find_definition_arg(args, args.name)
    return _change(args, lambda: delete_definition(defn),
                   lambda path: {"name": defn.name, "deleted": True, "file": str(path)},
                   lambda path: f"deleted draft {defn.name} ({path})")


def _materialize(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.definition_assets import DEFINITION_ASSETS
    from feature_platform.orchestration.headless import run_definition_datasets

    builds = [a for a in DEFINITION_ASSETS if not a.key.path[-1].endswith("_published")]
    if not builds:
        raise CheckFailed("no active definition: nothing to materialize (fp definitions activate NAME)")
    as_of = args.as_of.isoformat() if args.as_of else None
    config: dict[str, Any] = {"ops": {a.node_def.name: {"config": {"as_of": as_of}} for a in builds}}
    summary = run_in_process(args, f"definition_datasets_job {args.version}", run_definition_datasets,
                             args.version, config)
    lines = [f"  materialized  {asset:<48} {'' if rows is None else f'{rows:,} rows'}"
             for asset, rows in summary.materialized.items()]
    failed = [k for k, ok in summary.checks.items() if not ok]
    lines.append(f"definition_datasets_job {args.version}: {summary.status}, {len(summary.checks) - len(failed)}/"
                 f"{len(summary.checks)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return report_run(args, summary, lines)


def _build(args: argparse.Namespace) -> int:
    from feature_platform.datasets.build import BuildError
    from feature_platform.datasets.definitions.model import DefinitionError
    from feature_platform.datasets.definitions.source import build_definition_dataset
    from feature_platform.warehouse.connection import WarehouseError

    defn = find_definition_arg(args, args.name)
    out_dir = args.out_dir or layout().datasets
    try:
        result = build_definition_dataset(defn, out_dir, dataset_version=args.dataset_version,
                                          warehouse=args.warehouse, force=args.force, as_of=args.as_of)
    except WarehouseError as exc:
        raise UsageError(str(exc)) from None
    except (DefinitionError, BuildError) as exc:
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    m = result.manifest
    rows_per_s = m.row_count / max(result.seconds, 1e-9)
    summary = {"definition": defn.name, "dataset_id": m.dataset_id, "dataset_version": m.dataset_version,
               "path": str(result.path), "manifest_digest": result.digest, "rows": m.row_count,
               "splits": dict(m.splits.rows), "split_algorithm": m.splits.algorithm,
               "sha256": {f.path: f.sha256 for f in m.files}, "seconds": round(result.seconds, 3),
               "rows_per_second": round(rows_per_s), "checks_passed": len(result.report.checks)}
    return report_build(
        args, summary, f"built {m.dataset_id} from definition {defn.name} ({m.row_count:,} rows) "
        f"in {result.seconds:.2f}s",
        [f"  splits:          {m.splits.algorithm}: "
         + ", ".join(f"{k}={v:,}" for k, v in sorted(m.splits.rows.items()))])
