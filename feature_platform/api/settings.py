"""What the API is configured with (``ApiSettings``) and the request dependencies every router shares: the
settings and the Dagster instance (opened once per app). Routers import this module, never ``app``."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from feature_platform.contracts.data_root import DATA_ROOT_ENV, DEFAULT_DATA_ROOT

if TYPE_CHECKING:
    import dagster as dg

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ApiSettings:
    """Where the API finds everything. ``None`` means: as the environment says (as for ``fp``)."""

    data_root: Path
    dagster_home: Path | None = None  # the Dagster instance ($DAGSTER_HOME when None)
    mlflow_tracking_uri: str | None = None  # $MLFLOW_TRACKING_URI, else SQLite under <data_root>/mlflow
    dagster_url: str | None = None  # the webserver's base URL for run links ($FP_DAGSTER_URL when None)
    poll_interval_s: float = 1.0  # how often an event stream re-reads a run's status
    keepalive_s: float = 15.0  # an event stream with no news sends a comment line this often
    max_body_bytes: int = MAX_BODY_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ApiSettings:
        """Settings from ``FP_DATA_ROOT``, ``DAGSTER_HOME``, ``MLFLOW_TRACKING_URI``, ``FP_DAGSTER_URL``."""
        from feature_platform.observability.links import dagster_base_url

        environ = os.environ if env is None else env
        values: dict[str, object] = {
            "data_root": Path(environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT).resolve(),
            "dagster_home": Path(environ["DAGSTER_HOME"]) if environ.get("DAGSTER_HOME") else None,
            "mlflow_tracking_uri": environ.get("MLFLOW_TRACKING_URI") or None,
            "dagster_url": dagster_base_url(environ),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def settings_of(request: Request) -> ApiSettings:
    settings = request.app.state.settings
    assert isinstance(settings, ApiSettings)
    return settings


_instance_lock = threading.Lock()


def dagster_instance(request: Request) -> dg.DagsterInstance:
    """The Dagster instance of ``settings.dagster_home`` (or ``$DAGSTER_HOME``), opened once per app."""
    state = request.app.state
    instance = getattr(state, "dagster_instance", None)
    if instance is None:
        with _instance_lock:
            instance = getattr(state, "dagster_instance", None)
            if instance is None:
                import dagster as dg

                home = settings_of(request).dagster_home
                instance = dg.DagsterInstance.from_config(str(home)) if home else dg.DagsterInstance.get()
                state.dagster_instance = instance
    return instance
