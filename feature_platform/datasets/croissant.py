"""Croissant 1.0 metadata for a spec v1 parquet dataset: what other tools (``mlcroissant``, dataset hubs) read.

One ``cr:FileObject`` per data file with its ``sha256`` and a ``contentUrl`` relative to the Croissant file
(beside the manifest by default, so relative to the manifest); a ``records`` RecordSet whose fields are the
manifest's schema columns, in order, typed from their Arrow types; and a ``splits`` RecordSet
(``dataType: cr:Split``) naming each split with its row count. A row's split is not a column of the data
files: it is a function of the split key (the manifest's ``splits`` rule), which the ``splits`` RecordSet's
description states.

Everything is derived from the manifest and the files as they are now; the files must still match the
manifest's sha256s, or nothing is written (a Croissant file never names bytes the manifest does not).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Final

__all__ = ["CROISSANT_NAME", "CroissantError", "croissant_json", "croissant_metadata", "croissant_type"]

from feature_platform.contracts.canonical import sha256_file
from feature_platform.contracts.manifest import CROISSANT_NAME, MANIFEST_NAME, DatasetManifest, load_manifest
from feature_platform.contracts.paths import UnsafePathError, resolve_inside

CONFORMS_TO: Final = "http://mlcommons.org/croissant/1.0"
PARQUET_MIME: Final = "application/x-parquet"
RECORDS: Final = "records"
SPLITS: Final = "splits"
DATA_FILES: Final = "data-files"

# The JSON-LD @context of Croissant 1.0, as the specification's examples spell it.
CONTEXT: Final[dict[str, Any]] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

_INTEGER = re.compile(r"^u?int(8|16|32|64)$")
_EXACT_TYPES: Final = {
    "float": "sc:Float", "double": "sc:Float", "halffloat": "sc:Float",
    "bool": "sc:Boolean",
    "string": "sc:Text", "large_string": "sc:Text",
    "date32[day]": "sc:Date", "date64[ms]": "sc:Date",
}


class CroissantError(ValueError):
    """A dataset that cannot be described truthfully in Croissant (one line: file, field, expected)."""


def croissant_type(arrow_type: str, column: str, source: str) -> str:
    """The Croissant ``dataType`` of an Arrow type as the manifest prints it; unknown types fail closed."""
    if _INTEGER.match(arrow_type):
        return "sc:Integer"
    if arrow_type in _EXACT_TYPES:
        return _EXACT_TYPES[arrow_type]
    if arrow_type.startswith("timestamp["):
        return "sc:DateTime"
    raise CroissantError(f"{source}: field schema[{column}].type: {arrow_type!r} has no Croissant data type "
                         "(expected an integer, float, bool, string, date or timestamp type)")


def _split_rule(manifest: DatasetManifest) -> str:
    rule = manifest.splits.model_dump(mode="json", exclude={"rows"})
    return "A row's split is not stored in the data files; it is derived by this rule: " + json.dumps(
        rule, sort_keys=True)


def croissant_metadata(manifest_path: Path, out_dir: Path | None = None) -> dict[str, Any]:
    """The Croissant JSON-LD for the dataset whose manifest is ``manifest_path``; ``contentUrl``s are relative
    to ``out_dir`` (where the Croissant file goes; default the manifest's directory)."""
    manifest_path = Path(manifest_path)
    manifest = load_manifest(manifest_path)
    dataset_dir = manifest_path.parent
    base = Path(out_dir) if out_dir is not None else dataset_dir
    distribution: list[dict[str, Any]] = []
    for entry in manifest.files:
        try:
            path = resolve_inside(dataset_dir, entry.path)
        except UnsafePathError as exc:
            raise CroissantError(f"{manifest_path}: field files.path: {exc}") from None
        actual = sha256_file(path) if path.is_file() else "missing"
        if actual != entry.sha256:
            raise CroissantError(f"{path}: sha256 {actual}, expected {entry.sha256} (the manifest's); not exported")
        url = Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
        distribution.append({"@type": "cr:FileObject", "@id": entry.path, "name": entry.path,
                             "contentUrl": url, "encodingFormat": PARQUET_MIME, "sha256": entry.sha256,
                             "contentSize": f"{entry.bytes} B"})
    if len(manifest.files) == 1:
        file_ref: dict[str, Any] = {"fileObject": {"@id": manifest.files[0].path}}
    else:  # one record set over every file: a FileSet listing exactly the manifest's files
        base_dir = Path(os.path.relpath(dataset_dir.resolve(), base.resolve())).as_posix()
        prefix = "" if base_dir == "." else f"{base_dir}/"
        distribution.append({"@type": "cr:FileSet", "@id": DATA_FILES, "name": DATA_FILES,
                             "encodingFormat": PARQUET_MIME, "includes": [prefix + f.path for f in manifest.files]})
        file_ref = {"fileSet": {"@id": DATA_FILES}}
    fields = [{"@type": "cr:Field", "@id": f"{RECORDS}/{c.name}", "name": c.name,
               "description": f"Arrow type {c.type}{'' if c.nullable else ', not null'}",
               "dataType": croissant_type(c.type, c.name, str(manifest_path)),
               "source": {**file_ref, "extract": {"column": c.name}}} for c in manifest.columns]
    roles = {"entity": manifest.entity_column, "timestamp": manifest.timestamp_column,
             "label": manifest.label_column, "features": manifest.feature_order}
    splits = {
        "@type": "cr:RecordSet", "@id": SPLITS, "name": SPLITS, "dataType": "cr:Split",
        "description": _split_rule(manifest),
        "key": {"@id": f"{SPLITS}/name"},
        "field": [
            {"@type": "cr:Field", "@id": f"{SPLITS}/name", "name": "name", "dataType": "sc:Text"},
            {"@type": "cr:Field", "@id": f"{SPLITS}/rows", "name": "rows", "dataType": "sc:Integer"},
        ],
        "data": [{f"{SPLITS}/name": name, f"{SPLITS}/rows": rows} for name, rows in manifest.splits.rows.items()],
    }
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": manifest.dataset_id,
        "description": (f"{manifest.dataset_id} version {manifest.dataset_version}: {manifest.row_count} rows. "
                        f"Column roles: {json.dumps(roles)}. Identity: sha256 of the canonical {MANIFEST_NAME} "
                        f"{manifest.digest()}."),
        "identifier": manifest.digest(),
        "datePublished": manifest.created_at,
        "distribution": distribution,
        "recordSet": [splits, {"@type": "cr:RecordSet", "@id": RECORDS, "name": RECORDS,
                               "description": f"one record per row, {manifest.row_count} rows", "field": fields}],
    }


def croissant_json(manifest_path: Path, out_dir: Path | None = None) -> str:
    return json.dumps(croissant_metadata(manifest_path, out_dir), indent=2, ensure_ascii=False,
                      allow_nan=False) + "\n"
