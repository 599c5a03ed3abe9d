"""Atomic directory publish: build in a staging directory beside the target, then rename.

Readers see either the old complete directory or the new complete one, never a mix: a new
target appears with one rename that refuses to replace anything, and ``--force`` swaps old and
new in one ``renameat2(RENAME_EXCHANGE)`` on Linux. Staging directories of crashed builds are
reclaimed by the next build of the same target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from feature_platform.storage.files import fsync_dir
from feature_platform.storage.syscalls import RENAME_EXCHANGE, RENAME_NOREPLACE, renameat2

STAGING_PREFIX = ".staging-"
class PublishError(RuntimeError):
    """The target could not be published (exists, or a concurrent publish won)."""



def staging_name(target: Path) -> str:
    return f"{STAGING_PREFIX}{target.name}-{os.getpid()}-{os.urandom(4).hex()}"


def reclaim_stale_staging(target: Path) -> list[Path]:
    """Remove staging directories of ``target`` whose building process no longer runs."""
    removed: list[Path] = []
    prefix = f"{STAGING_PREFIX}{target.name}-"
    if not target.parent.is_dir():
        return removed
    for entry in target.parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix):].split("-")[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A fresh ``<parent>/.staging-…/<target name>`` directory; removed on exit unless published.

    The staged directory already has the target's name, so it can be verified exactly as it will
    be published; only its parent differs.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    reclaim_stale_staging(target)
    root = target.parent / staging_name(target)
    root.mkdir()
    try:
        staged = root / target.name
        staged.mkdir()
        yield staged
    finally:
        shutil.rmtree(root, ignore_errors=True)


def publish_dir(staging: Path, target: Path, *, replace: bool) -> None:
    """Move a complete ``staging`` directory to ``target`` atomically.

    Without ``replace`` an existing target is an error and stays untouched. With ``replace`` the
    old target is swapped out in one step and deleted only after the new one is in place.
    """
    fsync_dir(staging)
    if target.exists() or target.is_symlink():
        if not replace:
            raise PublishError(f"{target} already exists (use --force to replace it)")
        if not renameat2(staging, target, RENAME_EXCHANGE):
            # No atomic exchange here: park the old version, move the new one in, then drop it.
            parked = target.parent / staging_name(target)
            os.rename(target, parked)
            os.rename(staging, target)
            shutil.rmtree(parked, ignore_errors=True)
        else:
            shutil.rmtree(staging, ignore_errors=True)  # now holds the old version
    else:
        try:
            if not renameat2(staging, target, RENAME_NOREPLACE):
                os.rename(staging, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise PublishError(f"{target} was published concurrently by another build") from None
            raise
    fsync_dir(target.parent)
