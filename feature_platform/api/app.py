"""The FastAPI application: ``create_app(ApiSettings(...))``; ``fp api serve`` runs it under uvicorn.

Every endpoint needs ``Authorization: Bearer <token>`` with the endpoint's scope (see ``auth``); every
error is JSON, ``{"error": {"field": ..., "expected": ..., "message": ...}}`` (see ``errors``):
401 no/unknown/revoked/expired token, 403 missing scope, 404 unknown id, 409 conflict, 413 body too
large, 422 bad input. OpenAPI is at ``/openapi.json``, interactive docs at ``/docs``.

``app.state.settings`` holds the ``ApiSettings``, ``app.state.tokens`` the token store; routes reach the
settings and the Dagster instance through the dependencies in ``api.settings`` (opened once, on first use).
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import ASGIApp

from feature_platform.api.errors import JsonPlainErrors, install_error_handlers
from feature_platform.api.settings import ApiSettings
from feature_platform.api.tokens import TokenStore, token_store_path


class Health(BaseModel):
    status: str
    version: str


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
