"""The notification value, the channel contract and the one error type every channel raises."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, get_args

from feature_platform.http_retry import RetryableError, is_transient_status
from feature_platform.observability._http import request

Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
DetailValue = str | int | float | bool | None
Attachment = tuple[str, bytes, str]  # (filename, content, mime type)


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, marking the cut so a reader knows something is missing."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def one_line(text: str) -> str:
    return " ".join(text.split())


def json_safe(value: DetailValue) -> DetailValue:
    """NaN/Infinity are not JSON: receivers reject the whole payload, so send them as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@dataclass(frozen=True)
class Notification:
    """What happened, for whom it matters (dataset_version) and the evidence (details, links, attachments)."""

    title: str
    text: str = ""
    severity: Severity = "info"
    dataset_version: str | None = None
    details: dict[str, DetailValue] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    kind: str = "notification"  # e.g. quality_gate_failure: PagerDuty's event class, grep-able in the outbox
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise ValueError("notification title is empty")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        for name, content, mime in self.attachments:
            if not name or not isinstance(content, bytes) or "/" not in mime:
                raise ValueError(f"attachment {name!r} needs a filename, bytes content and a type/subtype mime")

    @property
    def dedup_key(self) -> str:
        """Same dataset_version and title, same key: re-sends and retries update one incident."""
        raw = f"{self.dataset_version or ''}\x00{self.title}".encode()
        return "fp-" + hashlib.sha256(raw).hexdigest()[:40]

    @property
    def headline(self) -> str:
        suffix = f" (dataset_version {self.dataset_version})" if self.dataset_version else ""
        return one_line(f"[{self.severity.upper()}] {self.title}{suffix}")

    def to_record(self) -> dict[str, object]:
        """JSON-ready form; attachments by name, type, size and sha256 (their bytes go elsewhere)."""
        return {
            "title": self.title,
            "text": self.text,
            "severity": self.severity,
            "kind": self.kind,
            "dataset_version": self.dataset_version,
            "created_at": self.created_at.isoformat(),
            "dedup_key": self.dedup_key,
            "details": {k: json_safe(v) for k, v in self.details.items()},
            "links": dict(self.links),
            "attachments": self.attachment_meta(),
        }

    def attachment_meta(self) -> list[dict[str, object]]:
        return [
            {"filename": n, "mime": m, "bytes": len(c), "sha256": hashlib.sha256(c).hexdigest()}
            for n, c, m in self.attachments
        ]


class NotificationError(RetryableError):
    """One line naming the channel, the endpoint (secrets redacted) and the HTTP status or SMTP error."""

    def __init__(self, channel: str, endpoint: str, detail: str, *, status: int | None = None,
                 retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(clip(one_line(f"{channel} -> {endpoint}: {detail}"), 500), retryable=retryable,
                         retry_after=retry_after)
        self.channel = channel
        self.endpoint = endpoint
        self.status = status


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    def send(self, notification: Notification) -> None: ...


def post_json(channel: str, url: str, endpoint: str, payload: object, timeout: float, expect: int) -> None:
    """POST JSON; anything but the ``expect`` status is a NotificationError (transient statuses marked retryable)."""
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    try:
        resp = request("POST", url, body, "application/json", timeout)
    except OSError as exc:
        raise NotificationError(channel, endpoint, f"{type(exc).__name__}: {exc}") from exc
    if resp.status != expect:
        raise NotificationError(
            channel, endpoint, f"HTTP {resp.status} (expected {expect}): {clip(one_line(resp.body), 200)}",
            status=resp.status, retryable=is_transient_status(resp.status), retry_after=resp.retry_after,
        )
