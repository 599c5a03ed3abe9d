"""The draft → active workflow on definition files: create, update and delete drafts, activate (only when
valid) and clone (as a new draft).

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

from feature_platform.contracts.paths import SAFE_ID_PATTERN, require_safe_id
from feature_platform.contracts.safe_read import loads_yaml, read_input_text
from feature_platform.datasets.definitions.model import (
    ActiveDefinitionError,
    DatasetDefinition,
    DefinitionError,
    NameTakenError,
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
        raise NameTakenError(f"{target}: already exists; clone refuses to overwrite (nothing was written)")
    taken = {d.name: d for d in load_definitions(directory)}
    if new_name in taken:
        raise NameTakenError(f"{taken[new_name].where}: field name: {new_name!r} is already used; pick another "
                             f"name (nothing was written)")
    raw = defn.to_yaml_dict()
    raw.update(name=new_name, status="draft",
               description=description if description is not None else f"Clone of {defn.name}. {defn.description}")
    parse_definition(raw, target)  # the clone must itself be a valid definition
    header = f"# Cloned from {defn.name} ({defn.where}); a draft until `fp definitions activate {new_name}`.\n"
    try:
        _write_atomically(target, header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), replace=False)
    except FileExistsError:
        raise NameTakenError(f"{target}: already exists; clone refuses to overwrite (nothing was written)") from None
    return target


def name_taken_by(name: str, directory: Path | None = None) -> str | None:
    """Where ``name`` is already used (a definition with that name, or the file ``<name>.yaml``), else None.
    Raises DefinitionError naming the field when ``name`` is not a safe id."""
    if not isinstance(name, str) or not re.fullmatch(SAFE_ID_PATTERN, name):
        raise DefinitionError(f"field name: expected a value matching {SAFE_ID_PATTERN}; got {name!r}")
    directory = directory or definitions_dir()
    target = directory / f"{name}.yaml"
    if target.exists():
        return str(target)
    taken = {d.name: d for d in load_definitions(directory)} if directory.is_dir() else {}
    return taken[name].where if name in taken else None


def _new_draft(raw: object, target: Path, conn: duckdb.DuckDBPyConnection) -> DatasetDefinition:
    """``raw`` parsed as a draft stored at ``target``, valid against the warehouse, naming warehouse tables only
    (a file path written by a remote caller could read any Parquet file the server can)."""
    defn = parse_definition(raw, target)
    if defn.status != "draft":
        raise DefinitionError(f"{target}: field status: expected draft (activate a definition once it is saved); "
                              f"got {defn.status!r}")
    for i, t in enumerate(defn.tables):
        if t.path is not None:
            raise DefinitionError(f"{target}: field tables[{i}].path: expected no path (warehouse tables only); "
                                  f"got {t.path!r}")
    require_valid(defn, conn)
    return defn


def _yaml_text(defn: DatasetDefinition, note: str) -> str:
    return f"# {note}\n" + yaml.safe_dump(defn.to_yaml_dict(), sort_keys=False, allow_unicode=True)


def create_definition(raw: object, conn: duckdb.DuckDBPyConnection, directory: Path | None = None) -> DatasetDefinition:
    """Write ``<directory>/<name>.yaml``: a new draft that validates against the warehouse; nothing is written
    when it does not, or when its name is taken (NameTakenError)."""
    directory = directory or definitions_dir()
    if not directory.is_dir():
        raise DefinitionError(f"{directory}: definitions directory does not exist")
    name = raw.get("name") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not re.fullmatch(SAFE_ID_PATTERN, name):
        parse_definition(raw)  # the model's own one-line error for the name (or an earlier field)
        raise DefinitionError(f"field name: expected a value matching {SAFE_ID_PATTERN}; got {name!r}")
    target = directory / f"{name}.yaml"
    defn = _new_draft(raw, target, conn)
    where = name_taken_by(name, directory)
    if where is not None:
        raise NameTakenError(f"{where}: field name: {name!r} is already used; pick another name (nothing was written)")
    try:
        _write_atomically(target, _yaml_text(defn, f"Draft {name}; `fp definitions activate {name}` once reviewed."),
                          replace=False)
    except FileExistsError:
        raise NameTakenError(f"{target}: field name: {name!r} is already used; pick another name "
                             f"(nothing was written)") from None
    return defn


def update_definition(current: DatasetDefinition, raw: object, conn: duckdb.DuckDBPyConnection) -> DatasetDefinition:
    """Replace a draft's file with ``raw`` (same name, still a draft, valid against the warehouse); an active
    definition is refused (ActiveDefinitionError): datasets built from it cite its content."""
    path = _draft_file(current, "update", "clone it to change it; nothing was written")
    name = raw.get("name") if isinstance(raw, dict) else None
    if name != current.name:
        raise DefinitionError(f"{path}: field name: expected {current.name!r} (clone to rename); got {name!r}")
    defn = _new_draft(raw, path, conn)
    _write_atomically(path, _yaml_text(defn, f"Draft {defn.name}; `fp definitions activate {defn.name}` once "
                                             f"reviewed."), replace=True)
    return defn


def delete_definition(defn: DatasetDefinition) -> Path:
    """Remove a draft's file; an active definition is refused (ActiveDefinitionError)."""
    path = _draft_file(defn, "delete", "nothing was deleted")
    path.unlink()
    return path


def _draft_file(defn: DatasetDefinition, action: str, outcome: str) -> Path:
    """The file of a draft that ``action`` may change; an active definition is refused (ActiveDefinitionError)."""
    path = defn.source_file
    if path is None:
        raise DefinitionError(f"{defn.where}: field name: expected a definition loaded from a file; got none")
    if defn.status == "active":
        raise ActiveDefinitionError(f"{path}: field status: expected a draft to {action}; got active ({outcome})")
    return path
