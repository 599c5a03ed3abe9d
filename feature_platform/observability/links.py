"""Links a reader can follow from an alert or a UI: the Dagster webserver's run and asset pages, local files.

``FP_DAGSTER_URL`` (e.g. ``http://127.0.0.1:3000``) is the webserver's base URL; without it there is no
Dagster page to link to and only file links are given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit

DAGSTER_URL_ENV = "FP_DAGSTER_URL"


def http_base_url(value: str, source: str) -> str:
    """``value`` as a base URL without a trailing slash; one line naming ``source`` unless it is http(s)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{source}: expected an http(s) base URL like http://127.0.0.1:3000; got {value!r}")
    return value.strip().rstrip("/")


def dagster_base_url(env: Mapping[str, str] | None = None) -> str | None:
    """``$FP_DAGSTER_URL`` checked, or None when unset or empty."""
    value = (os.environ if env is None else env).get(DAGSTER_URL_ENV, "")
    return http_base_url(value, DAGSTER_URL_ENV) if value.strip() else None


def dagster_run_url(base: str, run_id: str) -> str:
    return f"{base}/runs/{quote(run_id, safe='')}"


def dagster_asset_url(base: str, asset_key: Sequence[str], partition: str | None = None) -> str:
    path = "/".join(quote(part, safe="") for part in asset_key)
    return f"{base}/assets/{path}" + (f"?partition={quote(partition, safe='')}" if partition else "")


def file_url(path: Path) -> str:
    """A local file as a ``file://`` URL (what a notification channel can carry for a path)."""
    return Path(path).resolve().as_uri()
