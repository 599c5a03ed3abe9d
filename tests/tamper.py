"""Ways to damage a dataset directory, shared by the per-check tests and the tamper suite."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.datasets.verify import sha256_file

Tamper = Callable[[Path], None]


def edit_manifest(dataset: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = dataset / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw, indent=2, sort_keys=True))


def reseal(dataset: Path) -> None:
    """Update size and sha256 in the manifest, as a careless 'fix' would."""
    data = dataset / "data.parquet"

    def edit(raw: dict[str, Any]) -> None:
        raw["files"][0]["sha256"] = sha256_file(data)
        raw["files"][0]["bytes"] = data.stat().st_size

    edit_manifest(dataset, edit)


def rewrite_table(dataset: Path, change: Callable[[pa.Table], pa.Table], sealed: bool) -> None:
    data = dataset / "data.parquet"
    table = change(pq.read_table(data))
    pq.write_table(table, data)
    if sealed:
        reseal(dataset)


def flip_byte(dataset: Path) -> None:
    data = dataset / "data.parquet"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))


def truncate(dataset: Path) -> None:
    data = dataset / "data.parquet"
    os.truncate(data, data.stat().st_size // 2)


def reorder_columns(dataset: Path, sealed: bool = True) -> None:
    def swap(t: pa.Table) -> pa.Table:
        names = t.column_names
        names[2], names[3] = names[3], names[2]
        return t.select(names)

    rewrite_table(dataset, swap, sealed)


def rename_column(dataset: Path, sealed: bool = True) -> None:
    rewrite_table(dataset, lambda t: t.rename_columns([("ret_1h_x" if n == "ret_1h" else n) for n in t.column_names]),
                  sealed)


def change_type(dataset: Path, sealed: bool = True) -> None:
    def widen(t: pa.Table) -> pa.Table:
        i = t.schema.get_field_index("vol_1d")
        return t.set_column(i, pa.field("vol_1d", pa.float64(), nullable=False), t.column(i).cast(pa.float64()))

    rewrite_table(dataset, widen, sealed)


def set_field(path: str, value: Any) -> Tamper:
    """Edit one manifest field, addressed like ``files.0.rows``."""

    def tamper(dataset: Path) -> None:
        def edit(raw: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            node: Any = raw
            for p in parents:
                node = node[int(p)] if isinstance(node, list) else node[p]
            node[int(last) if isinstance(node, list) else last] = value

        edit_manifest(dataset, edit)

    return tamper


def extra_file(dataset: Path) -> None:
    (dataset / "notes.txt").write_text("not in the manifest")


def missing_file(dataset: Path) -> None:
    (dataset / "data.parquet").unlink()


def symlink_escape(dataset: Path) -> None:
    outside = dataset.parent.parent / "outside.parquet"
    (dataset / "data.parquet").rename(outside)
    os.symlink(outside, dataset / "data.parquet")
