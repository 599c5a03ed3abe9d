"""Request bodies parsed as strictly as the CLI parses its JSON inputs: bounded, no duplicate keys, no NaN."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from feature_platform.api.errors import invalid


async def json_object(request: Request) -> dict[str, Any]:
    """A FastAPI dependency: the request body as a JSON object, or 422 naming the body and what was expected.

    The size is bounded by the app (``max_body_size``: 413); duplicate keys, NaN/Infinity and deep nesting
    are refused by the same reader as every JSON input of the platform.
    """
    from feature_platform.contracts.safe_read import InputError, loads_json

    raw = await request.body()
    try:
        value = loads_json(raw, "request body")
    except InputError as exc:
        raise invalid("(body)", "a JSON object", str(exc)) from None
    if not isinstance(value, dict):
        raise invalid("(body)", "a JSON object", f"request body: expected a JSON object, got {type(value).__name__}")
    return value
