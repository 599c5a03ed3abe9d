"""Provenance stamps for manifests: code revision and creation time."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def git_hash(repo: Path = PROJECT_ROOT) -> str:
    """The checked-out commit, or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out if len(out) == 40 else "unknown"


def utc_now() -> datetime:
    """Now, or ``$SOURCE_DATE_EPOCH`` when set (reproducible builds convention)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(tz=UTC)


def utc_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc_timestamp(text: str, what: str = "timestamp") -> datetime:
    """A UTC ISO 8601 timestamp with a trailing Z (``utc_timestamp``'s form), strictly: a real date and time."""
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError(f"{what} must be a UTC timestamp like 2026-01-31T00:00:00Z, got {text!r}")
    try:
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{what} must be a UTC timestamp like 2026-01-31T00:00:00Z, got {text!r}") from None
