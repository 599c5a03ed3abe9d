"""The FastAPI application: ``create_app(ApiSettings(...))``; ``fp api serve`` runs it under uvicorn.

Every endpoint needs ``Authorization: Bearer <token>`` with the endpoint's scope (see ``auth``); every
error is JSON, ``{"error": {"field": ..., "expected": ..., "message": ...}}`` (see ``errors``):
401 no/unknown/revoked/expired token, 403 missing scope, 404 unknown id, 409 conflict, 413 body too
large, 422 bad input. OpenAPI is at ``/openapi.json``, interactive docs at ``/docs``.

``app.state.settings`` holds the ``ApiSettings``, ``app.state.tokens`` the token store; routes reach the
Dagster instance through the ``dagster_instance`` dependency (opened once, on first use).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.types import ASGIApp

from feature_platform.api.errors import JsonPlainErrors, install_error_handlers
from feature_platform.api.tokens import TokenStore, token_store_path

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
            "data_root": Path(environ.get("FP_DATA_ROOT") or "data").resolve(),
            "dagster_home": Path(environ["DAGSTER_HOME"]) if environ.get("DAGSTER_HOME") else None,
            "mlflow_tracking_uri": environ.get("MLFLOW_TRACKING_URI") or None,
            "dagster_url": dagster_base_url(environ),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


class Health(BaseModel):
    status: str
    version: str


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


class _PlatformApi(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        return JsonPlainErrors(super().build_middleware_stack())


def create_app(settings: ApiSettings) -> FastAPI:
    """The application for ``settings``; nothing is opened until a request needs it."""
    from feature_platform import __version__
    from feature_platform.api import datasets, models, pages, trainings

    if settings.mlflow_tracking_uri:  # the domain functions read MLflow's location from the environment
        os.environ["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    app = _PlatformApi(
        title="feature_platform API",
        version=__version__,
        description="Trainings, models and dataset definitions over the same domain functions and Dagster jobs "
                    "as the `fp` CLI. Every endpoint needs `Authorization: Bearer <token>` with its scope "
                    "(`fp api token create`). Errors: `{\"error\": {\"field\", \"expected\", \"message\"}}`.",
        max_body_size=settings.max_body_bytes,
    )
    app.state.settings = settings
    app.state.tokens = TokenStore(token_store_path(settings.data_root))
    install_error_handlers(app)

    @app.get("/api/health", response_model=Health, tags=["health"], summary="liveness (no token needed)")
    def health() -> Health:
        return Health(status="ok", version=__version__)

    # routers: one line each
    app.include_router(trainings.router)
    app.include_router(models.router)
    app.include_router(datasets.router)
    app.include_router(pages.ui_api_router)
    app.include_router(pages.router)
    return app
