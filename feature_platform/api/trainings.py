"""``/api/trainings``: submit ``training_job`` to the Dagster instance, read its status and outcome, stream it."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/trainings", tags=["trainings"])
