"""Large files are written in small slices (``write_all``, ``copy_into``): every byte lands, in order, and no
single write() asks the kernel for more than ``WRITE_CHUNK`` bytes of new page cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from feature_platform.storage import syscalls
from feature_platform.storage.syscalls import WRITE_CHUNK, copy_into, write_all


@pytest.fixture
def write_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every write() the module makes (each one still written for real)."""
    sizes: list[int] = []
    real = os.write

    def spy(fd: int, data: bytes | memoryview) -> int:
        sizes.append(len(data))
        return real(fd, data)

    monkeypatch.setattr(syscalls.os, "write", spy)
    return sizes


@pytest.mark.parametrize("size", [0, 1, WRITE_CHUNK - 1, WRITE_CHUNK, WRITE_CHUNK + 1, 5 * WRITE_CHUNK + 7])
def test_write_all_writes_every_byte_in_small_slices(size: int, tmp_path: Path, write_sizes: list[int]) -> None:
    data = os.urandom(size)
    path = tmp_path / "out.bin"
    for kind in (bytes, bytearray, memoryview):
        with open(path, "wb", buffering=0) as f:
            write_all(f.fileno(), kind(data))
        assert path.read_bytes() == data
    assert all(0 < n <= WRITE_CHUNK for n in write_sizes)
    assert sum(write_sizes) == 3 * size


def test_copy_into_copies_the_rest_of_a_file(tmp_path: Path, write_sizes: list[int]) -> None:
    data = os.urandom(3 * WRITE_CHUNK + 11)
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(data)
    with open(src, "rb", buffering=0) as fin, open(dst, "xb", buffering=0) as fout:
        fin.seek(5)
        assert copy_into(fin, fout.fileno(), block=WRITE_CHUNK + 3) == len(data) - 5
    assert dst.read_bytes() == data[5:]
    assert max(write_sizes) <= WRITE_CHUNK
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with open(empty, "rb", buffering=0) as fin, open(tmp_path / "copy.bin", "xb", buffering=0) as fout:
        assert copy_into(fin, fout.fileno()) == 0
