"""The embedded default channel: a JSON-lines file showing what would have been sent, attachments beside it."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from feature_platform.observability.notification import Notification, NotificationError

OUTBOX_FILE = "notifications.jsonl"


def _write_once(path: Path, content: bytes) -> None:
    """Content-addressed, so an existing file already holds these bytes; otherwise temp file + rename."""
    if path.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _append(path: Path, data: bytes) -> None:
    """One O_APPEND write under an exclusive lock: concurrent writers never interleave inside a line."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)  # closing releases the lock


@dataclass(frozen=True)
class FileOutbox:
    directory: Path
    name: str = "outbox"

    @property
    def path(self) -> Path:
        return self.directory / OUTBOX_FILE

    def send(self, notification: Notification) -> None:
        record = notification.to_record()
        try:
            saved = self._save_attachments(notification)
            metas = notification.attachment_meta()
            record["attachments"] = [{**meta, "path": rel} for meta, rel in zip(metas, saved, strict=True)]
            line = json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
            _append(self.path, line.encode("utf-8"))
        except OSError as exc:
            raise NotificationError(self.name, str(self.path), f"{type(exc).__name__}: {exc}") from exc

    def _save_attachments(self, n: Notification) -> list[str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        saved = []
        for filename, content, _ in n.attachments:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(filename)).lstrip(".")[:100] or "attachment"
            rel = f"attachments/{hashlib.sha256(content).hexdigest()[:16]}-{safe}"
            (self.directory / "attachments").mkdir(exist_ok=True)
            _write_once(self.directory / rel, content)
            saved.append(rel)
        return saved
