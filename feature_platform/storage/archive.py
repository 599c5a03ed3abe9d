"""Run archives in object storage, with a retention sweep (90 days by default).

Layout: ``archive/<dataset_version>/<run_id>/`` with ``archive.json`` (created_at, files) written last,
so a sweep never mistakes a half-written archive for a complete one: it only trusts archive.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feature_platform.contracts.paths import require_safe_id
from feature_platform.contracts.provenance import utc_now, utc_timestamp
from feature_platform.contracts.safe_read import loads_json
from feature_platform.storage.object_store import ObjectStore

ARCHIVE_ROOT = "archive"
INDEX = "archive.json"
RETENTION_DAYS = 90


@dataclass(frozen=True)
class Archived:
    location: str
    files: list[str]
    swept: list[str] = field(default_factory=list)


def archive_files(store: ObjectStore, version: str, run_id: str, files: dict[str, Path | bytes],
                  now: datetime | None = None) -> Archived:
    """Upload ``files`` (name → path or bytes) under the run's archive prefix; index last."""
    prefix = f"{ARCHIVE_ROOT}/{require_safe_id(version, 'dataset_version')}/{require_safe_id(run_id, 'run_id')}"
    names = []
    for name, content in sorted(files.items()):
        key = f"{prefix}/{name}"
        if isinstance(content, bytes):
            store.put_bytes(content, key)
        else:
            store.put_file(content, key)
        names.append(name)
    index = {"dataset_version": version, "run_id": run_id, "created_at": utc_timestamp(now or utc_now()),
             "files": names}
    store.put_bytes(json.dumps(index, indent=2, sort_keys=True).encode(), f"{prefix}/{INDEX}")
    return Archived(location=store.url(prefix), files=names)


def sweep_archives(store: ObjectStore, retention_days: int = RETENTION_DAYS, now: datetime | None = None) -> list[str]:
    """Delete archives whose ``created_at`` is older than the retention; returns their prefixes."""
    cutoff = (now or utc_now()) - timedelta(days=retention_days)
    removed = []
    for key in store.list(f"{ARCHIVE_ROOT}/"):
        if not key.endswith(f"/{INDEX}"):
            continue
        try:
            created = datetime.strptime(loads_json(store.get_bytes(key), key)["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        except (ValueError, KeyError, TypeError):
            continue  # not ours to judge: leave it
        if created.replace(tzinfo=UTC) < cutoff:
            prefix = key[: -len(INDEX)]
            store.delete_prefix(prefix)
            removed.append(prefix)
    return removed
