from __future__ import annotations

import os
from pathlib import Path

import pytest

from feature_platform.contracts.paths import UnsafePathError, id_problem, require_safe_id, resolve_inside

UNSAFE_IDS = ["", ".", "..", "../x", "/abs", "a/b", "a\\b", "x\x00y", "tab\tid", "new\nline", "-lead",
              ".hidden", "a" * 129, "sp ace", "é"]


@pytest.mark.parametrize("value", ["demo_ds", "golden_tiny_v1", "A.b-c_9", "a" * 128, "2026-11-25"])
def test_safe_ids_pass(value: str) -> None:
    assert id_problem(value) is None
    assert require_safe_id(value) == value


@pytest.mark.parametrize("value", UNSAFE_IDS)
def test_unsafe_ids_are_rejected_with_a_reason(value: str) -> None:
    problem = id_problem(value)
    assert problem is not None and "dataset_id" in problem
    with pytest.raises(UnsafePathError):
        require_safe_id(value)


def test_non_string_id_is_rejected() -> None:
    assert id_problem(5) == "dataset_id must be a string, got int"
    assert id_problem(None) is not None


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../b", "./a", "a//b", "", "a\\b", "a\x00b", "a/."])
def test_resolve_inside_rejects_unclean_paths(tmp_path: Path, rel: str) -> None:
    with pytest.raises(UnsafePathError):
        resolve_inside(tmp_path, rel)


def test_resolve_inside_rejects_symlink_escape_but_allows_inner_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")
    (root / "sub" / "inner.bin").write_bytes(b"y")
    os.symlink(outside, root / "escape.bin")
    os.symlink(root / "sub" / "inner.bin", root / "inner_link.bin")
    os.symlink(tmp_path, root / "sub" / "up")
    with pytest.raises(UnsafePathError, match="outside"):
        resolve_inside(root, "escape.bin")
    with pytest.raises(UnsafePathError, match="outside"):
        resolve_inside(root, "sub/up/outside.bin")
    assert resolve_inside(root, "inner_link.bin") == root / "inner_link.bin"
    assert resolve_inside(root, "sub/inner.bin") == root / "sub" / "inner.bin"


def test_sync_tree_falls_back_to_an_fsync_per_file_and_directory(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from feature_platform.storage import syscalls

    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("x", "a/y", "a/b/z"):
        (tmp_path / rel).write_bytes(rel.encode())
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    syscalls.sync_tree(tmp_path)  # syncfs: one call, no per-file fsync
    assert synced == []
    monkeypatch.setattr(syscalls, "_SYNCFS", None)
    syscalls.sync_tree(tmp_path)
    assert len(synced) == 6  # three files, three directories
