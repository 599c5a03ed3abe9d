"""Atomic per-version publish on a local directory and on a real S3 server, with faults injected.

Faults are real: botocore event hooks make the real client fail a chosen request, or a thin wrapper
does a real write to the real backend (a corrupted object, a pointer write whose response is lost)
at a chosen moment. After every failure the test checks what a reader would see: nothing left
under the candidate prefix, ``current.json`` byte-identical, the catalog unchanged, and the
previous version still verifying.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from feature_platform.contracts.manifest import MANIFEST_NAME
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.datasets.verify import verify_dataset
from feature_platform.storage.catalog import Catalog, CatalogEntry
from feature_platform.storage.dataset_publish import (
    PUBLISH_MANIFEST_NAME,
    DatasetPublishError,
    current_pointer,
    fetch_published,
    pointer_key,
    publish_dataset_version,
    verify_published,
    versions_prefix,
)
from feature_platform.storage.object_store import LocalObjectStore, ObjectStore, S3ObjectStore
from tests.s3_server import s3_bucket_fixture, s3_server_fixture, small_part_store  # noqa: F401

DS = "pub_ds"


def build(root: Path, seed: int, version: str) -> BuildResult:
    return build_dataset(SyntheticMarketSource(2000, seed, batch_rows=500, entities=50), root, DS,
                         dataset_version=version)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    root = tmp_path_factory.mktemp("built")
    return {"v1": build(root / "a", 1, "v1"), "v2": build(root / "b", 2, "v2"),
            "v1_other": build(root / "c", 3, "v1")}


@pytest.fixture
def extras(tmp_path: Path) -> dict[str, Path]:
    files = {"quality_report.json": b'{"metrics": []}\n', "coverage_gap_report.md": b"# Coverage gaps\n\nnone\n",
             "plots/feature_hist.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256))}
    out = {}
    for name, data in files.items():
        path = tmp_path / "reports" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[name] = path
    return out


@dataclass
class Target:
    store: ObjectStore
    catalog: Catalog
    client: Any = None  # the real boto3 client behind an S3 store

    def publish(self, result: BuildResult, **kwargs: Any) -> Any:
        return publish_dataset_version(result.path, result.manifest, self.store, self.catalog, **kwargs)

    def state(self) -> tuple[dict[str, str], bytes | None, list[CatalogEntry]]:
        """Everything a reader could observe: every object's sha256, the pointer bytes, the catalog."""
        objects = {k: self.store.sha256(k) for k in self.store.list()}
        pointer = self.store.get_bytes(pointer_key(DS)) if self.store.exists(pointer_key(DS)) else None
        return objects, pointer, self.catalog.versions(DS)


def make_s3_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    client, bucket = request.getfixturevalue("s3_bucket")
    return Target(S3ObjectStore(client, bucket, "fp"), Catalog(tmp_path / "catalog.sqlite"), client)


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "local":
        return Target(LocalObjectStore(tmp_path / "store"), Catalog(tmp_path / "catalog.sqlite"))
    return make_s3_target(request, tmp_path)


@pytest.fixture
def s3_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_s3_target(request, tmp_path)


class HookedStore:
    """The real store, with test hooks run before or after chosen methods."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.before: dict[str, Callable[..., None]] = {}
        self.after: dict[str, Callable[..., None]] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any) -> Any:
            if name in self.before:
                self.before[name](*args)
            result = method(*args)
            if name in self.after:
                self.after[name](*args)
            return result

        return call


def fail_nth_request(client: Any, operation: str, n: int) -> list[int]:
    """Make the n-th ``operation`` request of this client fail before it is sent."""
    seen = [0]

    def hook(**_: Any) -> None:
        seen[0] += 1
        if seen[0] == n:
            raise ConnectionError(f"injected fault on {operation} #{n}")

    client.meta.events.register(f"before-call.s3.{operation}", hook)
    return seen


def assert_rolled_back(target: Target, before: tuple[dict[str, str], bytes | None, list[CatalogEntry]],
                       error: pytest.ExceptionInfo[DatasetPublishError]) -> None:
    assert "\n" not in str(error.value) and "rolled back" in str(error.value)
    assert target.state() == before
    assert target.store.list(versions_prefix(DS, "v2") + "/") == []


# -- the happy path, on both stores -------------------------------------------------------------------


def test_publish_end_to_end(target: Target, built: dict[str, BuildResult], extras: dict[str, Path],
                            tmp_path: Path) -> None:
    v1 = built["v1"]
    published = target.publish(v1, extra_files=extras, quality_summary={"passed": True, "metrics": 7})
    assert published.created and published.previous_version is None
    assert re.fullmatch(rf"datasets/{DS}/versions/v1/\d{{8}}T\d{{12}}Z-[0-9a-f]{{8}}", published.prefix)
    assert published.location == target.store.url(published.prefix) + "/"
    assert target.store.list(published.prefix + "/") == sorted(
        f"{published.prefix}/{name}" for name in
        ["data.parquet", MANIFEST_NAME, PUBLISH_MANIFEST_NAME, *extras])

    pointer = current_pointer(target.store, DS)
    assert pointer is not None
    assert (pointer["dataset_version"], pointer["manifest_digest"], pointer["prefix"], pointer["previous"]) == (
        "v1", v1.digest, published.prefix, None)
    entry = target.catalog.current(DS)
    assert entry == published.entry and entry is not None
    assert (entry.manifest_digest, entry.location, entry.prefix, entry.status) == (
        v1.digest, published.location, published.prefix, "published")
    assert entry.quality_summary == {"passed": True, "metrics": 7}

    record = yaml.safe_load(target.store.get_bytes(f"{published.prefix}/{PUBLISH_MANIFEST_NAME}"))
    assert (record["location"], record["manifest_digest"], record["generated_at"], record["published_at"]) == (
        published.location, v1.digest, v1.manifest.created_at, published.published_at)
    assert record["files"] == [{"path": "data.parquet", "sha256": v1.manifest.files[0].sha256,
                                "bytes": v1.manifest.files[0].bytes, "rows": 2000}]
    assert {e["path"] for e in record["extra_files"]} == set(extras)

    checks = verify_published(target.store, published.prefix, v1.manifest)
    assert checks and all(c.passed for c in checks), [c for c in checks if not c.passed]
    copy = fetch_published(target.store, published.prefix, tmp_path / "downloaded")
    report = verify_dataset(copy / MANIFEST_NAME, tmp_path / "downloaded", expected_digest=v1.digest)
    assert report.ok, [c.line() for c in report.failures]


def test_second_version_moves_the_pointer_and_keeps_the_first(target: Target, built: dict[str, BuildResult]) -> None:
    first = target.publish(built["v1"])
    second = target.publish(built["v2"])
    pointer = current_pointer(target.store, DS)
    assert pointer is not None and pointer["dataset_version"] == "v2"
    assert pointer["previous"] == {"dataset_version": "v1", "manifest_digest": built["v1"].digest,
                                   "prefix": first.prefix, "location": first.location}
    assert second.previous_version == "v1" and second.entry.previous_version == "v1"
    assert [e.dataset_version for e in target.catalog.versions(DS)] == ["v2", "v1"]
    assert all(c.passed for c in verify_published(target.store, first.prefix, built["v1"].manifest))


def test_republishing_a_version_is_idempotent_and_a_new_digest_is_refused(
        target: Target, built: dict[str, BuildResult]) -> None:
    first = target.publish(built["v1"])
    before = target.state()
    again = target.publish(built["v1"])
    assert not again.created and again.entry == first.entry and again.prefix == first.prefix
    with pytest.raises(DatasetPublishError, match="already published with manifest digest"):
        target.publish(built["v1_other"])
    assert target.state() == before


# -- refusals before anything is uploaded -------------------------------------------------------------


def test_a_dataset_that_fails_local_verification_is_not_published(built: dict[str, BuildResult],
                                                                  tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy" / DS
    shutil.copytree(built["v1"].path, copy)
    with open(copy / "data.parquet", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    store, catalog = LocalObjectStore(tmp_path / "store"), Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(DatasetPublishError, match=r"failed verification.*file_sha256"):
        publish_dataset_version(copy, built["v1"].manifest, store, catalog)
    assert store.list() == [] and catalog.versions(DS) == []


@pytest.mark.parametrize("name", ["../escape", "/abs", "manifest.json", "data.parquet/x", PUBLISH_MANIFEST_NAME,
                                  "plots//x.png"])
def test_unsafe_or_clashing_extra_file_names_are_refused(built: dict[str, BuildResult], tmp_path: Path,
                                                         name: str) -> None:
    extra = tmp_path / "x"
    extra.write_bytes(b"x")
    store = LocalObjectStore(tmp_path / "store")
    with pytest.raises(DatasetPublishError, match="extra file"):
        publish_dataset_version(built["v1"].path, built["v1"].manifest, store, Catalog(tmp_path / "c.sqlite"),
                                extra_files={name: extra})
    assert store.list() == []


def test_a_corrupt_pointer_is_refused_before_uploading(target: Target, built: dict[str, BuildResult]) -> None:
    target.store.put_bytes(b"{not json", pointer_key(DS))
    with pytest.raises(DatasetPublishError, match="not a valid pointer"):
        target.publish(built["v1"])
    assert target.store.list() == [pointer_key(DS)]


# -- faults against the real S3 server ------------------------------------------------------------------


@pytest.mark.parametrize("with_previous", [True, False], ids=["after-v1", "first-publish"])
def test_fault_mid_upload_deletes_the_candidate_and_keeps_the_pointer(
        s3_target: Target, built: dict[str, BuildResult], extras: dict[str, Path], with_previous: bool) -> None:
    if with_previous:
        first = s3_target.publish(built["v1"])
    before = s3_target.state()
    seen = fail_nth_request(s3_target.client, "PutObject", 3)  # data file and one extra landed, then a fault
    with pytest.raises(DatasetPublishError, match="injected fault on PutObject #3") as error:
        s3_target.publish(built["v2"], extra_files=extras)
    assert seen[0] >= 3
    assert_rolled_back(s3_target, before, error)
    if with_previous:
        assert all(c.passed for c in verify_published(s3_target.store, first.prefix, built["v1"].manifest))
    else:
        assert s3_target.store.list() == [] and current_pointer(s3_target.store, DS) is None


def test_fault_in_a_multipart_upload_leaves_no_parts_behind(s3_target: Target, built: dict[str, BuildResult],
                                                            tmp_path: Path) -> None:
    import os

    assert isinstance(s3_target.store, S3ObjectStore)
    store = small_part_store(s3_target.client, s3_target.store.bucket, "fp")
    s3_target.store = store
    s3_target.publish(built["v1"])
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * 1024 * 1024))  # three parts of at most 5 MiB
    before = s3_target.state()
    fail_nth_request(s3_target.client, "UploadPart", 2)
    with pytest.raises(DatasetPublishError, match="injected fault on UploadPart #2") as error:
        s3_target.publish(built["v2"], extra_files={"big.bin": big})
    assert_rolled_back(s3_target, before, error)
    uploads = s3_target.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    assert uploads == []


def test_corruption_found_by_the_destination_reverify_rolls_back(
        target: Target, built: dict[str, BuildResult]) -> None:
    target.publish(built["v1"])
    before = target.state()
    real = target.store
    hooked = HookedStore(real)

    def corrupt_before_hashing(key: str) -> None:
        if key.endswith("/data.parquet") and "/v2/" in key:
            data = bytearray(real.get_bytes(key))
            data[len(data) // 2] ^= 0xFF  # same size: only the sha256 can notice
            real.put_bytes(bytes(data), key)

    hooked.before["sha256"] = corrupt_before_hashing
    with pytest.raises(DatasetPublishError, match=r"re-verify failed: object_sha256\[data.parquet\]") as error:
        publish_dataset_version(built["v2"].path, built["v2"].manifest, hooked, target.catalog)
    assert_rolled_back(target, before, error)


@pytest.mark.parametrize("with_previous", [True, False], ids=["after-v1", "first-publish"])
def test_a_pointer_write_whose_response_is_lost_is_undone(
        s3_target: Target, built: dict[str, BuildResult], with_previous: bool) -> None:
    if with_previous:
        s3_target.publish(built["v1"])
    before = s3_target.state()
    hooked = HookedStore(s3_target.store)

    def lose_response(data: bytes, key: str) -> None:
        if key == pointer_key(DS):
            hooked.after.clear()  # only the switch fails; the restore goes through
            landed = current_pointer(s3_target.store, DS)
            assert landed is not None and landed["dataset_version"] == "v2"  # the switch really reached S3
            raise ConnectionError("response to the pointer write was lost")

    hooked.after["put_bytes"] = lose_response
    with pytest.raises(DatasetPublishError, match="pointer write was lost") as error:
        publish_dataset_version(built["v2"].path, built["v2"].manifest, hooked, s3_target.catalog)
    assert_rolled_back(s3_target, before, error)


def test_when_the_pointer_cannot_be_restored_the_candidate_it_names_is_kept(
        s3_target: Target, built: dict[str, BuildResult]) -> None:
    """Deleting the candidate then would leave ``current.json`` dangling; a complete, verified copy is safer."""
    s3_target.publish(built["v1"])
    catalog_before = s3_target.catalog.versions(DS)
    hooked = HookedStore(s3_target.store)

    def switch_lands_but_its_response_is_lost(data: bytes, key: str) -> None:
        if key == pointer_key(DS):
            hooked.before["put_bytes"] = restore_never_reaches_the_server
            raise ConnectionError("pointer write response lost")

    def restore_never_reaches_the_server(data: bytes, key: str) -> None:
        if key == pointer_key(DS):
            raise ConnectionError("server unreachable")

    hooked.after["put_bytes"] = switch_lands_but_its_response_is_lost
    with pytest.raises(DatasetPublishError, match="candidate kept because the pointer may name it"):
        publish_dataset_version(built["v2"].path, built["v2"].manifest, hooked, s3_target.catalog)
    assert s3_target.catalog.versions(DS) == catalog_before
    pointer = current_pointer(s3_target.store, DS)
    assert pointer is not None and pointer["dataset_version"] == "v2"
    assert all(c.passed for c in verify_published(s3_target.store, pointer["prefix"], built["v2"].manifest))


def test_losing_a_race_to_another_publisher_of_the_same_version_rolls_back(
        s3_target: Target, built: dict[str, BuildResult]) -> None:
    hooked = HookedStore(s3_target.store)
    v2 = built["v2"]

    def other_publisher_wins(*_: Any) -> None:
        hooked.before.clear()
        s3_target.catalog.record_publish(dataset_id=DS, dataset_version="v2", manifest_digest=v2.digest,
                                         location="s3://elsewhere/", prefix="elsewhere")

    hooked.before["put_file"] = other_publisher_wins
    before_objects = s3_target.state()[0]
    with pytest.raises(DatasetPublishError, match="published concurrently"):
        publish_dataset_version(v2.path, v2.manifest, hooked, s3_target.catalog)
    assert s3_target.state()[0] == before_objects and current_pointer(s3_target.store, DS) is None


def test_concurrent_publishers_keep_pointer_and_catalog_in_step(s3_target: Target,
                                                                built: dict[str, BuildResult]) -> None:
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def publish(version: str) -> None:
        try:
            start.wait()
            s3_target.publish(built[version])
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(v,)) for v in ("v1", "v2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    pointer, newest = current_pointer(s3_target.store, DS), s3_target.catalog.current(DS)
    assert pointer is not None and newest is not None
    assert (pointer["dataset_version"], pointer["prefix"]) == (newest.dataset_version, newest.prefix)
    older = s3_target.catalog.versions(DS)[1]
    assert pointer["previous"]["dataset_version"] == older.dataset_version == newest.previous_version


def test_verify_published_catches_a_damaged_remote_copy(s3_target: Target, built: dict[str, BuildResult]) -> None:
    v1 = built["v1"]
    published = s3_target.publish(v1)
    data_key = f"{published.prefix}/data.parquet"
    s3_target.store.put_bytes(s3_target.store.get_bytes(data_key)[:-1], data_key)
    failed = {c.name for c in verify_published(s3_target.store, published.prefix, v1.manifest) if not c.passed}
    assert failed == {"file_size[data.parquet]", "file_sha256[data.parquet]"}
    s3_target.store.delete(data_key)
    s3_target.store.put_bytes(json.dumps({"nope": 1}).encode(), f"{published.prefix}/{MANIFEST_NAME}")
    failed = {c.name for c in verify_published(s3_target.store, published.prefix, v1.manifest) if not c.passed}
    assert failed == {"manifest_digest", "file_exists[data.parquet]"}


def test_sweep_removes_only_old_uploads_a_killed_publish_left_behind(target: Target,
                                                                    built: dict[str, BuildResult]) -> None:
    from datetime import UTC, datetime, timedelta

    from feature_platform.storage.dataset_publish import _upload_token, sweep_abandoned_uploads

    published = target.publish(built["v1"])
    now = datetime.now(tz=UTC)
    data = built["v2"].path / "data.parquet"
    # What a publish killed by SIGKILL between upload and switch leaves: objects under an unrecorded token.
    orphan = f"{versions_prefix(DS, 'v2')}/{_upload_token(now - timedelta(days=2))}"
    in_flight = f"{versions_prefix(DS, 'v2')}/{_upload_token(now - timedelta(minutes=5))}"
    foreign = f"{versions_prefix(DS, 'v2')}/made-by-hand"
    for prefix in (orphan, in_flight, foreign):
        target.store.put_file(data, f"{prefix}/data.parquet")
    before = {k for k in target.store.list() if not k.startswith(orphan + "/")}

    assert sweep_abandoned_uploads(target.store, target.catalog, DS, now=now) == [orphan]
    assert set(target.store.list()) == before  # the published version, the young attempt and foreign keys stay
    assert all(c.passed for c in verify_published(target.store, published.prefix, built["v1"].manifest))
    assert sweep_abandoned_uploads(target.store, target.catalog, DS, now=now) == []
    # The published version is never swept, however old its token.
    assert sweep_abandoned_uploads(target.store, target.catalog, DS, now=now + timedelta(days=400)) == [in_flight]
    assert current_pointer(target.store, DS)["prefix"] == published.prefix  # type: ignore[index]
