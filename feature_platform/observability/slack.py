"""Slack incoming webhook: Block Kit summary with a plain-text fallback, inside Slack's documented limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feature_platform.observability._http import endpoint_label, require_http_url
from feature_platform.observability.notification import DetailValue, Notification, clip, post_json

EMOJI = {"info": ":information_source:", "warning": ":warning:", "error": ":x:", "critical": ":rotating_light:"}
HEADER_MAX, TEXT_MAX, FIELD_MAX, FIELDS_PER_SECTION, CONTEXT_MAX = 150, 3000, 2000, 10, 10
MAX_FIELDS, MAX_TEXT_ATTACHMENTS = 40, 3


def escape(text: str) -> str:
    """Slack mrkdwn control characters; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    safe_url = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")
    return f"<{safe_url}|{escape(label).replace('|', '/')}>"


def _value(value: DetailValue) -> str:
    return "—" if value is None else str(value)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, TEXT_MAX)}}


def build_payload(n: Notification) -> dict[str, Any]:
    """Header, summary, detail fields (10 a section), text attachments inline, links as context."""
    emoji = EMOJI[n.severity]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(n.title, HEADER_MAX), "emoji": True}},
        _section(f"{emoji} *{n.severity.upper()}*" + (f"\n{escape(n.text)}" if n.text else "")),
    ]
    pairs: list[tuple[str, DetailValue]] = [("dataset_version", n.dataset_version)] if n.dataset_version else []
    pairs += list(n.details.items())[:MAX_FIELDS]
    fields = [{"type": "mrkdwn", "text": clip(f"*{escape(k)}*\n{escape(_value(v))}", FIELD_MAX)} for k, v in pairs]
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": fields[start : start + FIELDS_PER_SECTION]})
    other: list[str] = []
    shown = 0
    for name, content, mime in n.attachments:
        if mime.startswith("text/") and shown < MAX_TEXT_ATTACHMENTS:
            shown += 1
            blocks.append(_section(f"*{escape(name)}*\n{escape(content.decode('utf-8', errors='replace'))}"))
        else:
            other.append(name)
    context = [{"type": "mrkdwn", "text": link(url, label)} for label, url in n.links.items()]
    if other:
        context.append({"type": "mrkdwn", "text": escape("not shown here: " + ", ".join(other))})
    if context:
        blocks.append({"type": "context", "elements": context[:CONTEXT_MAX]})
    fallback = f"{emoji} {n.headline}" + (f": {n.text}" if n.text else "")
    return {"text": clip(escape(fallback), TEXT_MAX), "blocks": blocks}


@dataclass(frozen=True)
class SlackWebhook:
    """The webhook URL is the credential: it never appears in reprs or errors."""

    url: str = field(repr=False)
    timeout: float = 10.0
    name: str = "slack"

    def __post_init__(self) -> None:
        require_http_url(self.url, "Slack webhook URL")

    def send(self, notification: Notification) -> None:
        endpoint = endpoint_label(self.url, keep_path=False)
        post_json(self.name, self.url, endpoint, build_payload(notification), self.timeout, expect=200)
