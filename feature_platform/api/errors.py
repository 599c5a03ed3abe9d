"""Errors as JSON: every non-2xx answer of the API is ``{"error": {"field", "expected", "message"}}``.

``field`` names the input that was wrong (a body field like ``dataset_version``, a path parameter like
``training_id``, the ``Authorization`` header) or is null when no single input is to blame; ``expected``
says what would have been accepted; ``message`` is one line for a person. Status codes: 401 no or bad
token, 403 token lacks the scope, 404 unknown id, 409 conflict with the current state, 413 body too
large, 422 bad input, 500 an internal error (its message names only the exception type), 503 the Dagster
instance does not queue runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("feature_platform.api")


class ErrorDetail(BaseModel):
    field: str | None = Field(description="the input that was wrong: body field, path or query parameter, header")
    expected: str | None = Field(description="what would have been accepted")
    message: str = Field(description="one line for a person")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """An answer other than 2xx, raised anywhere below a route; rendered by the app's handler."""

    def __init__(self, status: int, message: str, *, field: str | None = None, expected: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = _one_line(message)
        self.field = field
        self.expected = expected
        self.headers = headers


def invalid(field: str, expected: str, message: str) -> ApiError:
    """422: the request's ``field`` is not acceptable."""
    return ApiError(422, message, field=field, expected=expected)


def not_found(field: str, expected: str, message: str) -> ApiError:
    """404: the id in ``field`` names nothing."""
    return ApiError(404, message, field=field, expected=expected)


def conflict(field: str | None, expected: str, message: str) -> ApiError:
    """409: the request is well formed but the current state refuses it."""
    return ApiError(409, message, field=field, expected=expected)


# documented error answers, for ``responses=`` on routes (OpenAPI shows the error model)
def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {401: "missing, unknown, revoked or expired bearer token", 403: "token lacks the scope",
                    404: "unknown id", 409: "conflict with the current state", 413: "request body too large",
                    422: "bad input: the field and the expected value",
                    503: "the Dagster instance does not queue runs"}
    return {code: {"model": ErrorResponse, "description": descriptions.get(code, "error")} for code in codes}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_json(status: int, message: str, *, field: str | None = None, expected: str | None = None,
               headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(field=field, expected=expected, message=_one_line(message)))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic/FastAPI error location as a field name: ``("body", "seed")`` → ``seed``."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] or parts
    return ".".join(parts) or "(body)"


def validation_error_json(errors: list[Any] | tuple[Any, ...]) -> JSONResponse:
    """422 for FastAPI's own parameter validation: the first error's field, message and input."""
    if not errors:
        return error_json(422, "invalid request", field=None, expected="a valid request")
    err = errors[0]
    field = _location(err.get("loc", ()))
    got = err.get("input")
    got_text = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    more = f"; {len(errors) - 1} more error(s)" if len(errors) > 1 else ""
    message = f"field {field}: {err.get('msg', 'invalid')}{got_text}{more}"
    return error_json(422, message, field=field, expected=str(err.get("msg", "a valid value")))


def install_error_handlers(app: FastAPI) -> None:
    """Every error, including FastAPI's and Starlette's own (404 route, 405, 413, 422), in the JSON shape."""

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_json(exc.status, exc.message, field=exc.field, expected=exc.expected, headers=exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_error_json(list(exc.errors()))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return error_json(404, f"no such endpoint: {request.method} {request.url.path}", field="path",
                              expected="an endpoint listed in /openapi.json", headers=exc.headers)
        if exc.status_code == 405:
            return error_json(405, f"method {request.method} not allowed on {request.url.path}", field="method",
                              expected=(exc.headers or {}).get("Allow", "another method"), headers=exc.headers)
        if exc.status_code == 413:
            return error_json(413, "request body too large", field="(body)", expected="a smaller body",
                              headers=exc.headers)
        return error_json(exc.status_code, str(exc.detail), headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # the type only: an exception's text may carry inputs; no request headers are ever logged
        log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__,
                  exc_info=exc)
        return error_json(500, f"internal error: {type(exc).__name__}", expected="a retry, or a report to the "
                          "platform team with the time of the request")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


_PLAIN_ERRORS = {413: ("(body)", "a request body of at most the server's limit (1 MiB by default)"),
                 400: (None, "a well-formed HTTP request")}


class JsonPlainErrors:
    """ASGI wrapper outside every middleware: the errors answered before any handler runs (413 from the body
    limit, whether by Content-Length or while streaming; a plain-text 400) get the same JSON shape as the rest."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}

        async def rewrite(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                plain = headers.get(b"content-type", b"").startswith(b"text/plain")
                if message["status"] == 413 or (message["status"] in _PLAIN_ERRORS and plain):
                    held["start"] = message
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                if message.get("more_body", False):
                    return
                status = held["start"]["status"]
                field, expected = _PLAIN_ERRORS[status]
                text = "request body too large" if status == 413 else "bad request"
                body = ErrorResponse(error=ErrorDetail(field=field, expected=expected, message=text))
                data = body.model_dump_json().encode()
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(data)).encode())]})
                await send({"type": "http.response.body", "body": data})
                return
            await send(message)

        await self.app(scope, receive, rewrite)
