"""Provenance stamps for manifests: code revision and creation time."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"
MAX_SOURCE_DATE_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z, the last instant a manifest timestamp can carry


class SourceDateEpochError(ValueError):
    """``$SOURCE_DATE_EPOCH`` is set but is not integer seconds since the epoch."""


_SEEN_COMMITS: dict[Path, str] = {}


def git_hash(repo: Path = PROJECT_ROOT) -> str:
    """The checked-out commit, or ``unknown`` outside a git checkout.

    The first commit found is kept for the rest of the process: a commit made while it runs (the code it
    imported is the earlier one's) must not change what it stamps, so two builds of one process stamp the
    same revision and a same-input rebuild keeps its manifest digest. ``unknown`` is not kept (a ``git``
    that timed out under load is asked again)."""
    key = repo.resolve()
    if key in _SEEN_COMMITS:
        return _SEEN_COMMITS[key]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if len(out) != 40:
        return "unknown"
    _SEEN_COMMITS[key] = out
    return out


def utc_now() -> datetime:
    """Now, or ``$SOURCE_DATE_EPOCH`` when set (reproducible builds convention).

    The value must be ASCII decimal digits (integer seconds since the epoch, no sign, no fraction, no
    spaces) up to 9999-12-31T23:59:59Z; anything else is refused rather than silently ignored, so a
    build that was asked to be reproducible never stamps the wall clock instead.
    """
    epoch = os.environ.get(SOURCE_DATE_EPOCH)
    if epoch is None:
        return datetime.now(tz=UTC)
    return source_date_epoch(epoch)


def source_date_epoch(text: str) -> datetime:
    """The instant ``$SOURCE_DATE_EPOCH``'s value ``text`` names; ``SourceDateEpochError`` (one line) otherwise."""
    if not re.fullmatch(r"[0-9]{1,12}", text) or int(text) > MAX_SOURCE_DATE_EPOCH:
        raise SourceDateEpochError(
            f"environment variable {SOURCE_DATE_EPOCH}={text!r}: expected integer seconds since 1970-01-01T00:00:00Z"
            f" (ASCII digits, at most {MAX_SOURCE_DATE_EPOCH})")
    return datetime.fromtimestamp(int(text), tz=UTC)


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
