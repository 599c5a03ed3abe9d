"""JSON-lines logs whose every record carries the run context (dag_run_id, task_id, dataset_version)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

CONTEXT_FIELDS = ("dag_run_id", "task_id", "dataset_version")
BASE_FIELDS = ("ts", "level", "logger", "message")
_STAMP = "fp_log_context"
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("fp_log_context", default=MappingProxyType({}))


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[Mapping[str, Any]]:
    """Add fields to every record emitted inside; nested contexts merge, and ``field=None`` removes one.

    contextvars semantics: asyncio tasks inherit the context, new threads start empty (hand it over with
    ``contextvars.copy_context().run``).
    """
    merged = {k: v for k, v in {**_CONTEXT.get(), **fields}.items() if v is not None}
    token = _CONTEXT.set(MappingProxyType(merged))
    try:
        yield _CONTEXT.get()
    finally:
        _CONTEXT.reset(token)


def current_log_context() -> dict[str, Any]:
    return dict(_CONTEXT.get())


class ContextFilter(logging.Filter):
    """Captures the context where the record is emitted: a queue handler may format it on another thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, _STAMP):
            setattr(record, _STAMP, dict(_CONTEXT.get()))
        return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # json.dumps would write NaN, which is not JSON
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Precedence: base fields, then per-call ``extra``, then the context."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, _STAMP, None)
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k != _STAMP}
        for key, value in {**(context if context is not None else _CONTEXT.get()), **extra}.items():
            out["extra." + key if key in BASE_FIELDS else key] = _jsonable(value)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class _JsonStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    fp_target = ""


class _JsonFileHandler(logging.FileHandler):
    fp_target = ""


def configure_json_logging(target: TextIO | str | os.PathLike[str], level: int | str = logging.INFO, *,
                           logger: logging.Logger | str | None = None) -> logging.Handler:
    """Attach a JSON handler for ``target`` (a stream or a file path) to ``logger`` (default: root).

    Idempotent: calling again for the same target returns the existing handler (with the new level).
    """
    lg = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    numeric = level if isinstance(level, int) else logging.getLevelNamesMapping().get(level.upper(), -1)
    if numeric < 0:
        raise ValueError(f"unknown log level {level!r}")
    if isinstance(target, str | os.PathLike):
        path = Path(target).resolve()
        key = f"file:{path}"
    else:
        key = f"stream:{id(target)}"
    handler: logging.Handler | None = next(
        (h for h in lg.handlers if isinstance(h, _JsonStreamHandler | _JsonFileHandler) and h.fp_target == key), None
    )
    if handler is None:
        if isinstance(target, str | os.PathLike):
            path.parent.mkdir(parents=True, exist_ok=True)
            file_handler = _JsonFileHandler(path, encoding="utf-8", delay=True)
            file_handler.fp_target = key
            handler = file_handler
        else:
            stream_handler = _JsonStreamHandler(target)
            stream_handler.fp_target = key
            handler = stream_handler
        handler.setFormatter(JsonFormatter())
        handler.addFilter(ContextFilter())
        lg.addHandler(handler)
    handler.setLevel(numeric)
    if lg.level == logging.NOTSET or lg.level > numeric:
        lg.setLevel(numeric)
    return handler
