"""PagerDuty Events API v2 ``trigger``: one incident per dataset_version and title, however often it fires."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feature_platform.observability._http import endpoint_label, require_http_url
from feature_platform.observability.notification import Notification, clip, json_safe, post_json

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024


@dataclass(frozen=True)
class PagerDutyEvents:
    """Events API v2 cannot set incident priority itself: ``priority`` travels in custom_details for an
    event-orchestration rule to map (the runbook asks for P2 on a quality-gate failure)."""

    routing_key: str = field(repr=False)
    url: str = PAGERDUTY_EVENTS_URL
    priority: str = "P2"
    source: str = "feature_platform"
    component: str = "dataset_refresh"
    group: str = "feature_platform"
    timeout: float = 10.0
    name: str = "pagerduty"

    def __post_init__(self) -> None:
        if not self.routing_key.strip():
            raise ValueError("PagerDuty routing key is empty")
        require_http_url(self.url, "PagerDuty events URL")

    def payload(self, n: Notification) -> dict[str, Any]:
        details: dict[str, Any] = {k: json_safe(v) for k, v in n.details.items()}
        details.update(priority=self.priority, dataset_version=n.dataset_version)
        if n.text:
            details["text"] = n.text
        event: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": n.dedup_key,
            "payload": {
                "summary": clip(n.headline, SUMMARY_MAX),
                "source": self.source,
                "severity": n.severity,
                "timestamp": n.created_at.isoformat(),
                "component": self.component,
                "group": self.group,
                "class": n.kind,
                "custom_details": details,
            },
            "client": "feature_platform",
        }
        if n.links:
            event["links"] = [{"href": url, "text": label} for label, url in n.links.items()]
        return event

    def send(self, notification: Notification) -> None:
        post_json(self.name, self.url, endpoint_label(self.url), self.payload(notification), self.timeout, expect=202)
