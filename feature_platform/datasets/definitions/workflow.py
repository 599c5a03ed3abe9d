"""The draft → active workflow on definition files: activate (only when valid) and clone (as a new draft).

Files are rewritten with a temp file in the same directory and one rename, so a definition file is always
either the old or the new version; the temp name does not end in .yaml, so a crash never leaves a
half-written definition where ``load_definitions`` would read it.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from feature_platform.contracts.paths import require_safe_id
from feature_platform.contracts.safe_read import loads_yaml, read_input_text
from feature_platform.datasets.definitions.model import (
    DatasetDefinition,
    DefinitionError,
    definitions_dir,
    load_definitions,
    parse_definition,
)
from feature_platform.datasets.definitions.validation import require_valid

if TYPE_CHECKING:
    import duckdb

_STATUS_LINE = re.compile(r"^status:[^\n]*$", re.MULTILINE)


def _write_atomically(target: Path, text: str, *, replace: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails if target exists: never overwrite
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def activate_definition(defn: DatasetDefinition, conn: duckdb.DuckDBPyConnection) -> bool:
    """Set ``status: active`` in the definition's file after it validates against the warehouse.

    Returns False when it was already active. Comments and layout of the file are kept; only the status
    line changes (or is added after ``name:``).
    """
    path = defn.source_file
    if path is None:
        raise DefinitionError(f"{defn.where}: field status: expected a definition loaded from a file; got none")
    require_valid(defn, conn)
    if defn.status == "active":
        return False
    text = read_input_text(path)
    if _STATUS_LINE.search(text):
        new = _STATUS_LINE.sub("status: active", text, count=1)
    else:
        new = re.sub(r"^(name:[^\n]*\n)", r"\1status: active\n", text, count=1, flags=re.MULTILINE)
    updated = parse_definition(loads_yaml(new, str(path)), path)
    if updated.status != "active" or updated.digest() != defn.digest():
        raise DefinitionError(f"{path}: field status: could not rewrite the status line alone; edit the file "
                              f"by hand (nothing was changed)")
    _write_atomically(path, new, replace=True)
    return True


def clone_definition(defn: DatasetDefinition, new_name: str, directory: Path | None = None,
                     description: str | None = None) -> Path:
    """Write ``<directory>/<new_name>.yaml``: the same definition as a draft under a new name."""
    require_safe_id(new_name, "new name")
    directory = directory or (defn.source_file.parent if defn.source_file else definitions_dir())
    target = directory / f"{new_name}.yaml"
    if target.exists():
        raise DefinitionError(f"{target}: already exists; clone refuses to overwrite (nothing was written)")
    taken = {d.name: d for d in load_definitions(directory)}
    if new_name in taken:
        raise DefinitionError(f"{taken[new_name].where}: field name: {new_name!r} is already used; pick another "
                              f"name (nothing was written)")
    raw = defn.to_yaml_dict()
    raw.update(name=new_name, status="draft",
               description=description if description is not None else f"Clone of {defn.name}. {defn.description}")
    parse_definition(raw, target)  # the clone must itself be a valid definition
    header = f"# Cloned from {defn.name} ({defn.where}); a draft until `fp definitions activate {new_name}`.\n"
    _write_atomically(target, header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), replace=False)
    return target
