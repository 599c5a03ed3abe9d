"""What every benchmark shares: medians of repeated timings, settled between runs, and the raw baselines."""

from __future__ import annotations

import gc
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HASH_BLOCK = 8 * 1024 * 1024


@dataclass
class Timing:
    name: str
    seconds: list[float] = field(default_factory=list)
    nbytes: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def raw_sha256(path: Path) -> str:
    """Plain hashlib over the file in 8 MiB blocks (one reused buffer, unbuffered reads): the baseline."""
    h = hashlib.sha256()
    buf = bytearray(HASH_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def settle() -> None:
    """Untimed: collect garbage and flush dirty pages so one measurement's writeback never bills the next."""
    gc.collect()
    os.sync()


def timed_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    settle()
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def timed(fn: Callable[[], object]) -> float:
    return timed_call(fn)[0]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
