"""The SQLite catalog of published dataset versions, including writers racing from threads."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from feature_platform.contracts.paths import UnsafePathError
from feature_platform.storage.catalog import SCHEMA_VERSION, Catalog, CatalogError

DIGEST = "a" * 64


def record(catalog: Catalog, version: str, **overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "dataset_id": "ds", "dataset_version": version, "manifest_digest": DIGEST,
        "location": f"s3://b/datasets/ds/versions/{version}/t/", "prefix": f"datasets/ds/versions/{version}/t",
        "quality_summary": {"passed": True, "metrics": 3}, "previous_version": None,
    }
    return catalog.record_publish(**{**fields, **overrides})


def test_empty_catalog(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "sub" / "catalog.sqlite")
    assert catalog.current("ds") is None and catalog.get("ds", "v1") is None and catalog.versions("ds") == []


def test_record_and_read_back(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    first = record(catalog, "v1")
    second = record(catalog, "v2", previous_version="v1", manifest_digest="b" * 64)
    assert first.status == "published" and first.published_at.endswith("Z")
    assert first.quality_summary == {"metrics": 3, "passed": True}
    assert catalog.current("ds") == second
    assert catalog.get("ds", "v1") == first
    assert [e.dataset_version for e in catalog.versions("ds")] == ["v2", "v1"]
    assert second.previous_version == "v1"
    assert catalog.versions("other") == []


def test_versions_are_unique(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    record(catalog, "v1")
    with pytest.raises(CatalogError, match="already in the catalog"):
        record(catalog, "v1", manifest_digest="b" * 64)
    assert len(catalog.versions("ds")) == 1


def test_mark_rolled_back_moves_current_to_the_previous_published(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    record(catalog, "v1")
    record(catalog, "v2")
    marked = catalog.mark("ds", "v2", "rolled_back")
    assert marked.status == "rolled_back" and marked.updated_at >= marked.published_at
    current = catalog.current("ds")
    assert current is not None and current.dataset_version == "v1"
    assert [e.status for e in catalog.versions("ds")] == ["rolled_back", "published"]
    with pytest.raises(CatalogError, match="not one of"):
        catalog.mark("ds", "v1", "deleted")
    with pytest.raises(CatalogError, match="not in the catalog"):
        catalog.mark("ds", "v9", "rolled_back")


def test_bad_input_is_refused(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(UnsafePathError):
        record(catalog, "../v1")
    with pytest.raises(CatalogError, match="JSON"):
        record(catalog, "v1", quality_summary={"ratio": float("nan")})
    assert catalog.versions("ds") == []


def test_schema_is_idempotent_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    record(Catalog(path), "v1")
    again = Catalog(path)
    assert again.schema_version() == SCHEMA_VERSION and len(again.versions("ds")) == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(CatalogError, match="newer than this code"):
        Catalog(path)


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(RuntimeError, match="boom"), catalog.transaction() as tx:
        tx.record_publish(dataset_id="ds", dataset_version="v1", manifest_digest=DIGEST, location="l", prefix="p")
        assert tx.get("ds", "v1") is not None
        raise RuntimeError("boom")
    assert catalog.versions("ds") == []


def test_transaction_holds_the_write_lock(tmp_path: Path) -> None:
    """A second writer waits for the first transaction instead of interleaving with it."""
    catalog = Catalog(tmp_path / "catalog.sqlite")
    order: list[str] = []
    inside = threading.Event()

    def second_writer() -> None:
        inside.wait()
        record(Catalog(catalog.path), "v2")
        order.append("second committed")

    thread = threading.Thread(target=second_writer)
    thread.start()
    with catalog.transaction() as tx:
        tx.record_publish(dataset_id="ds", dataset_version="v1", manifest_digest=DIGEST, location="l", prefix="p")
        inside.set()
        thread.join(timeout=0.3)
        assert thread.is_alive(), "the second writer got in while the first held the lock"
        order.append("first committing")
    thread.join(timeout=10)
    assert order == ["first committing", "second committed"]
    assert [e.dataset_version for e in catalog.versions("ds")] == ["v2", "v1"]


def test_concurrent_writers_from_threads(tmp_path: Path) -> None:
    """Eight threads, each with its own Catalog on one fresh file: schema creation and 80 inserts, no loss."""
    path = tmp_path / "catalog.sqlite"
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            start.wait()
            catalog = Catalog(path)
            for i in range(10):
                record(catalog, f"t{n}-v{i}", dataset_id="ds")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    versions = Catalog(path).versions("ds")
    assert len(versions) == 80 and len({e.dataset_version for e in versions}) == 80


def test_concurrent_writers_of_one_version_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    Catalog(path)
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def writer(n: int) -> None:
        catalog = Catalog(path)
        start.wait()
        try:
            record(catalog, "v1", manifest_digest=f"{n:x}" * 64)
            outcomes.append("won")
        except CatalogError:
            outcomes.append("refused")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["refused"] * 5 + ["won"]
    assert len(Catalog(path).versions("ds")) == 1
