"""One contract for every object store: the same tests run on a local directory and on a real S3 server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from feature_platform.storage.local_store import TEMP_PREFIX
from feature_platform.storage.object_store import (
    LocalObjectStore,
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
    S3StoreConfig,
    s3_store_from_env,
)
from tests.s3_server import s3_bucket_fixture, s3_server_fixture, small_part_store  # noqa: F401

S3_PREFIX = "tenant/a"
BAD_KEYS = ["", "/abs", "a/../b", "..", "a//b", "a/./b", "a/", "nul\x00byte", "line\nbreak", "back\\slash",
            "x" * 1025]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "store")
    client, bucket = request.getfixturevalue("s3_bucket")
    return small_part_store(client, bucket, S3_PREFIX)


def test_implements_the_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)


def test_bytes_round_trip_and_overwrite(store: ObjectStore) -> None:
    store.put_bytes(b"first", "d/one.txt")
    assert store.get_bytes("d/one.txt") == b"first"
    store.put_bytes(b"second, longer", "d/one.txt")
    assert store.get_bytes("d/one.txt") == b"second, longer"
    assert store.size("d/one.txt") == 14
    assert store.sha256("d/one.txt") == hashlib.sha256(b"second, longer").hexdigest()
    store.put_bytes(b"", "empty")
    assert (store.size("empty"), store.sha256("empty")) == (0, hashlib.sha256(b"").hexdigest())


def test_file_round_trip_larger_than_a_hash_chunk(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024)  # > 8 MiB hash chunk; on S3 > 5 MiB part size, so multipart
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    store.put_file(src, "blobs/big.bin")
    assert store.size("blobs/big.bin") == len(data)
    assert store.sha256("blobs/big.bin") == hashlib.sha256(data).hexdigest()
    out = tmp_path / "down" / "big.bin"
    store.download_file("blobs/big.bin", out)
    assert out.read_bytes() == data
    if isinstance(store, S3ObjectStore):
        head = store.client.head_object(Bucket=store.bucket, Key=f"{S3_PREFIX}/blobs/big.bin")
        assert head["ETag"].strip('"').endswith("-2")  # two parts: the multipart path really ran


def test_missing_keys(store: ObjectStore, tmp_path: Path) -> None:
    assert not store.exists("nope/x")
    for call in (lambda: store.get_bytes("nope/x"), lambda: store.sha256("nope/x"), lambda: store.size("nope/x"),
                 lambda: store.download_file("nope/x", tmp_path / "x")):
        with pytest.raises(ObjectNotFoundError, match="nope/x"):
            call()
    store.delete("nope/x")  # deleting a missing key is not an error
    assert not (tmp_path / "x").exists()


def test_list_uses_plain_string_prefixes_and_is_sorted(store: ObjectStore) -> None:
    for key in ("b/c/d", "a/2", "ab/3", "a/1"):
        store.put_bytes(key.encode(), key)
    assert store.exists("a/1") and not store.exists("a")
    assert store.list("a/") == ["a/1", "a/2"]
    assert store.list("a") == ["a/1", "a/2", "ab/3"]
    assert store.list("b/c") == ["b/c/d"]
    assert store.list() == ["a/1", "a/2", "ab/3", "b/c/d"]
    assert store.list("zz/") == []


def test_delete_and_delete_prefix(store: ObjectStore) -> None:
    for key in ("v/1/x", "v/1/y/z", "v/10/x", "w"):
        store.put_bytes(b"-", key)
    store.delete("w")
    assert not store.exists("w")
    assert store.delete_prefix("v/1/") == 2
    assert store.list() == ["v/10/x"]
    assert store.delete_prefix("nothing/") == 0
    assert store.delete_prefix("") == 1
    assert store.list() == []


def test_url_names_the_object(store: ObjectStore, tmp_path: Path) -> None:
    url = store.url("d/k.json")
    if isinstance(store, S3ObjectStore):
        assert url == f"s3://{store.bucket}/{S3_PREFIX}/d/k.json"
    else:
        assert url == (tmp_path / "store" / "d" / "k.json").resolve().as_uri()


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_bad_keys_are_refused_before_any_io(store: ObjectStore, key: str, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    calls: list[Callable[[], object]] = [
             lambda: store.put_bytes(b"x", key), lambda: store.put_file(src, key), lambda: store.get_bytes(key),
             lambda: store.sha256(key), lambda: store.size(key), lambda: store.exists(key),
             lambda: store.delete(key), lambda: store.url(key), lambda: store.download_file(key, tmp_path / "o")]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        assert "\n" not in str(info.value)
    assert store.list() == []


@pytest.mark.parametrize("prefix", ["/a", "../", "a//", "a/../b/"])
def test_bad_prefixes_are_refused(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError):
        store.list(prefix)
    with pytest.raises(ValueError):
        store.delete_prefix(prefix)


# -- local directory specifics ---------------------------------------------------------------------


def test_local_store_never_follows_keys_outside_its_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    store = LocalObjectStore(tmp_path / "root")
    (tmp_path / "root" / "link").symlink_to(outside)
    for call in (lambda: store.put_bytes(b"x", "link/new"), lambda: store.get_bytes("link/secret"),
                 lambda: store.exists("link/secret"), lambda: store.delete("link/secret"),
                 lambda: store.list("link/")):
        with pytest.raises(ValueError, match="outside the store root"):
            call()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_local_writes_leave_no_temp_files_and_listing_skips_crashed_ones(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    store.put_bytes(b"a", "d/a")
    store.put_bytes(b"b", "d/a")
    assert [p.name for p in (tmp_path / "root" / "d").iterdir()] == ["a"]
    (tmp_path / "root" / "d" / f"{TEMP_PREFIX}a-123-dead").write_bytes(b"half")  # a crashed writer's leftover
    assert store.list() == ["d/a"]
    with pytest.raises(ValueError, match="reserved"):
        store.put_bytes(b"x", f"d/{TEMP_PREFIX}x")


def test_local_delete_prunes_empty_directories(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    store.put_bytes(b"x", "a/b/c/d")
    store.delete_prefix("a/")
    assert list((tmp_path / "root").iterdir()) == []


# -- S3 specifics -----------------------------------------------------------------------------------


def test_s3_delete_prefix_pages_and_batches(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    store = S3ObjectStore(client, bucket, delete_batch=3, page_size=2)
    for i in range(7):
        store.put_bytes(b"-", f"p/{i}")
    store.put_bytes(b"-", "q/keep")
    assert store.list("p/") == [f"p/{i}" for i in range(7)]
    assert store.delete_prefix("p/") == 7
    assert store.list() == ["q/keep"]


def test_s3_delete_prefix_aborts_unfinished_multipart_uploads(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    store = S3ObjectStore(client, bucket)
    client.create_multipart_upload(Bucket=bucket, Key="cand/big.bin")
    client.create_multipart_upload(Bucket=bucket, Key="other/big.bin")
    assert store.delete_prefix("cand/") == 0
    left = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert left == ["other/big.bin"]


def test_s3_keys_without_a_store_prefix(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    store = S3ObjectStore(client, bucket)
    store.put_bytes(b"x", "top.txt")
    assert client.get_object(Bucket=bucket, Key="top.txt")["Body"].read() == b"x"
    assert store.list() == ["top.txt"] and store.url("top.txt") == f"s3://{bucket}/top.txt"


def test_s3_server_errors_are_one_line_store_errors(s3_bucket: tuple[Any, str]) -> None:
    client, _ = s3_bucket
    store = S3ObjectStore(client, "no-such-bucket-here")
    with pytest.raises(ObjectStoreError, match="NoSuchBucket") as info:
        store.put_bytes(b"x", "k")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="bucket name"):
        S3ObjectStore(client, "Bad_Bucket")


def test_s3_store_from_env_uses_standard_aws_variables(s3_server: str, monkeypatch: pytest.MonkeyPatch,
                                                       s3_bucket: tuple[Any, str], tmp_path: Path) -> None:
    _, bucket = s3_bucket
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("FP_S3_BUCKET", bucket)
    monkeypatch.setenv("FP_S3_PREFIX", "/env/prefix/")
    config = S3StoreConfig.from_env()
    assert (config.endpoint_url, config.region_name, config.prefix) == (s3_server, "eu-west-1", "/env/prefix/")
    store = s3_store_from_env()
    store.put_bytes(b"hello", "k.txt")
    assert store.url("k.txt") == f"s3://{bucket}/env/prefix/k.txt"
    assert s3_store_from_env().get_bytes("k.txt") == b"hello"
    monkeypatch.delenv("FP_S3_BUCKET")
    with pytest.raises(ValueError, match="FP_S3_BUCKET"):
        s3_store_from_env()
