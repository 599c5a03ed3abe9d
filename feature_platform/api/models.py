"""``/api/models/{model_key}``: registered-model operations (rollback) launched as Dagster jobs."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/models", tags=["models"])
