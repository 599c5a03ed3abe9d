"""Observability: structured JSON logs, Prometheus run metrics and notifications. No Dagster import."""

from feature_platform.observability.logs import JsonFormatter, configure_json_logging, log_context
from feature_platform.observability.metrics import GaugeSet, MetricError, PushError, RunMetrics
from feature_platform.observability.notify import (
    DeliveryReport,
    EmailSmtp,
    FileOutbox,
    Notification,
    NotificationError,
    Notifier,
    NotifyConfig,
    PagerDutyEvents,
    SlackWebhook,
    notifier_from_config,
    notifier_from_env,
)

__all__ = [
    "DeliveryReport",
    "EmailSmtp",
    "FileOutbox",
    "GaugeSet",
    "JsonFormatter",
    "MetricError",
    "Notification",
    "NotificationError",
    "Notifier",
    "NotifyConfig",
    "PagerDutyEvents",
    "PushError",
    "RunMetrics",
    "SlackWebhook",
    "configure_json_logging",
    "log_context",
    "notifier_from_config",
    "notifier_from_env",
]
