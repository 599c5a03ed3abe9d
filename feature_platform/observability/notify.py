"""Fan a notification out to every configured channel; one channel failing never silences the others."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from feature_platform.contracts.data_root import DataRoot
from feature_platform.http_retry import RetryPolicy
from feature_platform.observability.email_smtp import EmailSmtp
from feature_platform.observability.notification import (
    Channel,
    Notification,
    NotificationError,
    Severity,
    clip,
    one_line,
)
from feature_platform.observability.outbox import FileOutbox
from feature_platform.observability.pagerduty import PAGERDUTY_EVENTS_URL, PagerDutyEvents
from feature_platform.observability.slack import SlackWebhook

__all__ = [
    "Channel",
    "ChannelResult",
    "DeliveryReport",
    "EmailSmtp",
    "FileOutbox",
    "Notification",
    "NotificationError",
    "Notifier",
    "NotifyConfig",
    "PagerDutyEvents",
    "Severity",
    "SlackWebhook",
    "notifier_from_config",
    "notifier_from_env",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelResult:
    channel: str
    ok: bool
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class DeliveryReport:
    results: tuple[ChannelResult, ...]

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(o.ok for o in self.results)

    @property
    def failed(self) -> tuple[ChannelResult, ...]:
        return tuple(o for o in self.results if not o.ok)

    def summary(self) -> str:
        return "; ".join(f"{o.channel}: ok" if o.ok else f"{o.channel}: FAILED ({o.error})" for o in self.results)


class Notifier:
    """Retries only what can succeed later (429, 5xx, SMTP 4xx): base delay doubling, or Retry-After, capped."""

    def __init__(self, channels: Sequence[Channel], *, retries: int = 2, retry_base_seconds: float = 1.0,
                 max_delay_seconds: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> None:
        if not channels:
            raise ValueError("a notifier needs at least one channel")
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique, got {names}")
        self.channels = tuple(channels)
        self.retry = RetryPolicy(retries, retry_base_seconds, max_delay_seconds, sleep=sleep)

    def send(self, notification: Notification) -> DeliveryReport:
        report = DeliveryReport(tuple(self._deliver(c, notification) for c in self.channels))
        for outcome in report.failed:
            log.warning("notification %r not delivered: %s", notification.title, outcome.error)
        return report

    def _deliver(self, channel: Channel, n: Notification) -> ChannelResult:
        attempts = 0
        try:
            for attempt in self.retry.retrying():
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    channel.send(n)
        except NotificationError as exc:
            return ChannelResult(channel.name, False, attempts, str(exc))
        except Exception as exc:  # noqa: BLE001 - a broken channel must not stop the others
            return ChannelResult(channel.name, False, attempts, clip(one_line(f"{type(exc).__name__}: {exc}"), 500))
        return ChannelResult(channel.name, True, attempts)


def _default_outbox() -> Path:
    return DataRoot.from_env(resolve=False).outbox


class NotifyConfig(BaseModel):
    """Every channel is optional and present only when configured; secrets stay out of reprs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slack_webhook_url: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "feature-platform@localhost"
    smtp_recipients: list[str] = Field(default_factory=list)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_url: str = PAGERDUTY_EVENTS_URL
    outbox_dir: Path | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    retries: int = Field(default=2, ge=0)
    retry_base_seconds: float = Field(default=1.0, ge=0)
    max_delay_seconds: float = Field(default=30.0, ge=0)

    @field_validator("smtp_recipients", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [r.strip() for r in value.split(",") if r.strip()]
        return value

    @model_validator(mode="after")
    def _smtp_complete(self) -> NotifyConfig:
        if self.smtp_host and not self.smtp_recipients:
            raise ValueError("smtp_host is set but smtp_recipients is empty")
        return self

    ENV: ClassVar[dict[str, str]] = {
        "slack_webhook_url": "FP_SLACK_WEBHOOK_URL",
        "smtp_host": "FP_SMTP_HOST",
        "smtp_port": "FP_SMTP_PORT",
        "smtp_sender": "FP_SMTP_SENDER",
        "smtp_recipients": "FP_SMTP_RECIPIENTS",
        "smtp_username": "FP_SMTP_USERNAME",
        "smtp_password": "FP_SMTP_PASSWORD",
        "smtp_starttls": "FP_SMTP_STARTTLS",
        "smtp_ssl": "FP_SMTP_SSL",
        "pagerduty_routing_key": "FP_PAGERDUTY_ROUTING_KEY",
        "pagerduty_url": "FP_PAGERDUTY_URL",
        "outbox_dir": "FP_OUTBOX_DIR",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotifyConfig:
        """Empty variables count as unset, so ``FP_SLACK_WEBHOOK_URL=`` disables Slack."""
        env = os.environ if environ is None else environ
        return cls.model_validate({field: env[var] for field, var in cls.ENV.items() if env.get(var, "").strip()})


def notifier_from_config(config: NotifyConfig, *, paging: bool = True, default_outbox: Path | None = None) -> Notifier:
    """``paging=False`` for summaries: PagerDuty is the alert path only. With nothing configured the outbox
    (``outbox_dir``, else ``$FP_DATA_ROOT/outbox``) still records what would have been sent."""
    timeout = config.timeout_seconds
    channels: list[Channel] = []
    if config.outbox_dir is not None:
        channels.append(FileOutbox(config.outbox_dir))
    if config.slack_webhook_url is not None:
        channels.append(SlackWebhook(config.slack_webhook_url.get_secret_value(), timeout=timeout))
    if config.smtp_host:
        channels.append(EmailSmtp(
            config.smtp_host, config.smtp_port, config.smtp_sender, config.smtp_recipients,
            username=config.smtp_username,
            password=config.smtp_password.get_secret_value() if config.smtp_password else None,
            starttls=config.smtp_starttls, use_ssl=config.smtp_ssl, timeout=timeout,
        ))
    if paging and config.pagerduty_routing_key is not None:
        key = config.pagerduty_routing_key.get_secret_value()
        channels.append(PagerDutyEvents(key, url=config.pagerduty_url, timeout=timeout))
    if not channels:
        channels.append(FileOutbox(default_outbox or _default_outbox()))
    return Notifier(channels, retries=config.retries, retry_base_seconds=config.retry_base_seconds,
                    max_delay_seconds=config.max_delay_seconds)


def notifier_from_env(environ: Mapping[str, str] | None = None, *, paging: bool = True,
                      default_outbox: Path | None = None) -> Notifier:
    return notifier_from_config(NotifyConfig.from_env(environ), paging=paging, default_outbox=default_outbox)
