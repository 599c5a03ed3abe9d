"""`fp contracts schema|features`: JSON Schemas and the feature contract."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from feature_platform.cli.common import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from feature_platform.cli.common import Commands


def register(groups: Commands) -> None:
    contract_cmds = groups.group("contracts", "{schema,features}",
                                 help="manifest JSON Schemas and the feature contract")
    schema = contract_cmds.add("schema", _contracts_schema,
                               help="print, check or rewrite the committed JSON Schema")
    mode = schema.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the committed schema drifted from the models")
    mode.add_argument("--write", action="store_true", help="rewrite the committed schema from the models")
    contract_cmds.add("features", _contracts_features, help="print FEATURE_ORDER from feature_contract.yaml")


def _contracts_schema(args: argparse.Namespace) -> int:
    from feature_platform.contracts.manifest import SCHEMA_PATH, json_schema_text
    from feature_platform.contracts.model_manifest import MODEL_SCHEMA_PATH, model_json_schema_text
    from feature_platform.contracts.tensor_manifest import TENSOR_SCHEMA_PATH, tensor_json_schema_text

    schemas = [(SCHEMA_PATH, json_schema_text()), (MODEL_SCHEMA_PATH, model_json_schema_text()),
               (TENSOR_SCHEMA_PATH, tensor_json_schema_text())]
    if not args.write and not args.check:
        sys.stdout.write(schemas[0][1])
        return EXIT_OK
    drifted = False
    for path, text in schemas:
        if args.write:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        elif (path.read_text(encoding="utf-8") if path.exists() else "") != text:
            print(f"{path}: drifted from the models; run `fp contracts schema --write`", file=sys.stderr)
            drifted = True
        else:
            print(f"{path}: matches the models")
    return EXIT_FAILED if drifted else EXIT_OK


def _contracts_features(args: argparse.Namespace) -> int:
    from feature_platform.contracts.feature_contract import load_feature_contract

    contract = load_feature_contract()
    for feature in contract.features:
        print(f"{feature.name}\t{feature.type}{'' if feature.nullable else ' not null'}")
    return EXIT_OK
