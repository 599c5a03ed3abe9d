"""Object store on a local directory: the embedded default (docs/ARCHITECTURE.md §5).

Every write goes to a temp file in the target's directory, is fsynced, then ``os.replace``d, so a
reader sees the old object or the new one, never a torn file. Every key is resolved with symlinks
followed and refused if it lands outside the root.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from feature_platform.storage.files import fsync_dir
from feature_platform.storage.object_keys import (
    HASH_CHUNK,
    ObjectNotFoundError,
    ObjectStoreError,
    validate_key,
    validate_prefix,
)
from feature_platform.storage.syscalls import copy_into, write_all

TEMP_PREFIX = ".fp-tmp-"


class LocalObjectStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._real_root = Path(os.path.realpath(self.root))

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    # -- paths -----------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """``root/key`` after checking it cannot escape the root (symlinks followed)."""
        validate_key(key)
        if any(part.startswith(TEMP_PREFIX) for part in key.split("/")):
            raise ValueError(f"object key {key!r} uses the reserved prefix {TEMP_PREFIX!r}")
        path = self.root / PurePosixPath(key)
        self._require_inside(path, key)
        return path

    def _require_inside(self, path: Path, key: str) -> None:
        real = Path(os.path.realpath(path))
        if real == self._real_root or self._real_root not in real.parents:
            raise ValueError(f"object key {key!r} resolves outside the store root")

    def _existing_file(self, key: str) -> Path:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"{self.url(key)}: no such object") from None
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFoundError(f"{self.url(key)}: not an object (a directory or special file)")
        return path

    # -- writes ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _atomic_writer(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._require_inside(path, key)  # re-checked: a symlink may have appeared under the root
        tmp = path.parent / f"{TEMP_PREFIX}{path.name}-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            with open(tmp, "xb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def put_bytes(self, data: bytes, key: str) -> None:
        with self._atomic_writer(key) as f:
            write_all(f.fileno(), data)

    def put_file(self, local: Path, key: str) -> None:
        with open(local, "rb", buffering=0) as src, self._atomic_writer(key) as dst:
            copy_into(src, dst.fileno(), HASH_CHUNK)

    # -- reads -----------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        return self._existing_file(key).read_bytes()

    def sha256(self, key: str) -> str:
        h = hashlib.sha256()
        buf = bytearray(HASH_CHUNK)
        view = memoryview(buf)
        with open(self._existing_file(key), "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
        return h.hexdigest()

    def size(self, key: str) -> int:
        return self._existing_file(key).stat().st_size

    def exists(self, key: str) -> bool:
        try:
            return stat.S_ISREG(self._path(key).stat().st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def download_file(self, key: str, local: Path) -> None:
        src = self._existing_file(key)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.parent / f"{TEMP_PREFIX}{local.name}-{os.urandom(4).hex()}"
        try:
            with open(src, "rb", buffering=0) as fin, open(tmp, "xb", buffering=0) as fout:
                copy_into(fin, fout.fileno(), HASH_CHUNK)
            os.replace(tmp, local)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def list(self, prefix: str = "") -> builtins.list[str]:
        validate_prefix(prefix)
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / PurePosixPath(base) if base else self.root
        if base:
            self._require_inside(start, base)
        if not start.is_dir() or start.is_symlink():
            return []
        keys: builtins.list[str] = []
        for dirpath, dirs, files in os.walk(start, followlinks=False):
            dirs[:] = [d for d in dirs if not d.startswith(TEMP_PREFIX)]
            for name in files:
                full = os.path.join(dirpath, name)
                if name.startswith(TEMP_PREFIX) or not stat.S_ISREG(os.lstat(full).st_mode):
                    continue
                key = os.path.relpath(full, self.root).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    # -- deletes ---------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            raise ObjectStoreError(f"{self.url(key)}: is a directory, not an object") from None
        self._prune_empty_dirs(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def _prune_empty_dirs(self, directory: Path) -> None:
        """Drop directories emptied by a delete, so listings and ``exists`` match S3's flat model."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def url(self, key: str) -> str:
        validate_key(key)
        return (self._real_root / PurePosixPath(key)).as_uri()
