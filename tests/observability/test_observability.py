"""Observability against real loopback servers: an HTTP recorder (Slack, PagerDuty, Pushgateway) and aiosmtpd."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import email.utils
import hashlib
import io
import json
import logging
import logging.handlers
import os
import queue
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError

from feature_platform.observability.logs import (
    ContextFilter,
    JsonFormatter,
    configure_json_logging,
    current_log_context,
    log_context,
)
from feature_platform.observability.metrics import GaugeSet, MetricError, PushError, RunMetrics
from feature_platform.observability.notify import (
    EmailSmtp,
    FileOutbox,
    Notification,
    NotificationError,
    Notifier,
    NotifyConfig,
    PagerDutyEvents,
    SlackWebhook,
    notifier_from_env,
)
from feature_platform.observability.outbox import OUTBOX_FILE
from tests.servers import LoopbackHttp, Reply

# --------------------------------------------------------------------------------------------- servers


@dataclasses.dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: bytes | None


class SmtpRecorder:
    """aiosmtpd handler: stores accepted mail, answers DATA from planned replies, refuses ``bounce@`` recipients."""

    def __init__(self) -> None:
        self.mail: list[Mail] = []
        self.data_replies: deque[str] = deque()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("bounce@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_replies:
            return self.data_replies.popleft()
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth = getattr(session, "auth_data", None)
        login = auth.login if isinstance(auth, LoginPassword) else None
        self.mail.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), message, login))
        return "250 Message accepted for delivery"


def _authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"fp", b"s3cret")
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class SmtpServer:
    host: str
    port: int
    recorder: SmtpRecorder


@pytest.fixture(scope="module")
def _http_server() -> Iterator[LoopbackHttp]:
    server = LoopbackHttp()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def http(_http_server: LoopbackHttp) -> LoopbackHttp:
    _http_server.reset()
    return _http_server


@pytest.fixture(scope="module")
def _smtp_server() -> Iterator[SmtpServer]:
    recorder = SmtpRecorder()
    port = _unused_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=_authenticate,
                            auth_require_tls=False)
    controller.start()
    yield SmtpServer("127.0.0.1", port, recorder)
    controller.stop()


@pytest.fixture
def smtp(_smtp_server: SmtpServer) -> SmtpServer:
    _smtp_server.recorder.mail.clear()
    _smtp_server.recorder.data_replies.clear()
    return _smtp_server


# --------------------------------------------------------------------------------------------- notifications

REPORT_MD = b"# Coverage gaps\n\n- regime `bear`: 4 of 12 weeks missing\n"
GATE_FAILURE = Notification(
    title="Quality gate failed",
    text="coverage 0.81 < baseline 0.90 & <diversity> ok",
    severity="error",
    dataset_version="2024-05-01",
    details={"coverage": 0.81, "baseline": 0.9, "passed": False, "rows": 3000, "note": None, "drift": float("nan")},
    links={"quality report": "https://dagster.example/runs/abc?a=1&b=2"},
    attachments=[("coverage_gap_report.md", REPORT_MD, "text/markdown")],
    kind="quality_gate_failure",
    created_at=datetime(2024, 5, 1, 2, 7, 3, tzinfo=UTC),
)
SLACK_SECRET = "/services/T000/B000/s3cr3tT0ken"
PD_KEY = "R0UT1NGKEY0000000000000000000000"


def test_slack_posts_block_kit_payload(http: LoopbackHttp) -> None:
    SlackWebhook(http.url + SLACK_SECRET).send(GATE_FAILURE)

    (req,) = http.requests
    assert (req.method, req.path, req.headers["content-type"]) == ("POST", SLACK_SECRET, "application/json")
    payload = req.json()
    assert "Quality gate failed" in payload["text"] and "2024-05-01" in payload["text"]
    header, summary, facts, attachment, context = payload["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "Quality gate failed", "emoji": True}}
    assert summary["text"]["text"] == ":x: *ERROR*\ncoverage 0.81 &lt; baseline 0.90 &amp; &lt;diversity&gt; ok"
    assert [f["text"] for f in facts["fields"]] == [
        "*dataset_version*\n2024-05-01", "*coverage*\n0.81", "*baseline*\n0.9", "*passed*\nFalse",
        "*rows*\n3000", "*note*\n—", "*drift*\nnan",
    ]
    assert attachment["text"]["text"].startswith("*coverage_gap_report.md*\n# Coverage gaps")
    assert context["elements"] == [
        {"type": "mrkdwn", "text": "<https://dagster.example/runs/abc?a=1&b=2|quality report>"}
    ]


def test_slack_respects_block_limits(http: LoopbackHttp) -> None:
    many = dataclasses.replace(GATE_FAILURE, title="t" * 500, text="x" * 5000,
                               details={f"k{i}": i for i in range(25)}, attachments=[])
    SlackWebhook(http.url + SLACK_SECRET).send(many)

    blocks = http.requests[0].json()["blocks"]
    assert len(blocks[0]["text"]["text"]) == 150 and blocks[0]["text"]["text"].endswith("…")
    assert len(blocks[1]["text"]["text"]) == 3000
    field_counts = [len(b["fields"]) for b in blocks if "fields" in b]
    assert field_counts == [10, 10, 6]  # dataset_version + 25 details, at most 10 per section


def test_slack_error_is_one_line_and_hides_the_webhook_secret(http: LoopbackHttp) -> None:
    http.reply(Reply(404, b"no_service\n"))
    with pytest.raises(NotificationError) as err:
        SlackWebhook(http.url + SLACK_SECRET).send(GATE_FAILURE)

    message = str(err.value)
    assert message == f"slack -> {http.url}/…: HTTP 404 (expected 200): no_service"
    assert "s3cr3t" not in message and "s3cr3t" not in repr(SlackWebhook(http.url + SLACK_SECRET))
    assert (err.value.status, err.value.retryable) == (404, False)


def test_http_channel_does_not_follow_redirects(http: LoopbackHttp) -> None:
    http.reply(Reply(302, b"", {"Location": http.url + "/elsewhere"}))
    with pytest.raises(NotificationError, match="HTTP 302"):
        SlackWebhook(http.url + SLACK_SECRET).send(GATE_FAILURE)
    assert [r.path for r in http.requests] == [SLACK_SECRET]


def test_http_channel_times_out(http: LoopbackHttp) -> None:
    http.reply(Reply(delay=0.5))
    started = time.monotonic()
    with pytest.raises(NotificationError, match="timed out") as err:
        SlackWebhook(http.url + SLACK_SECRET, timeout=0.1).send(GATE_FAILURE)
    assert time.monotonic() - started < 0.45
    assert err.value.status is None


def test_http_channels_refuse_non_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        SlackWebhook("file:///etc/passwd")
    with pytest.raises(ValueError, match="http"):
        PagerDutyEvents(PD_KEY, url="ftp://events.example/v2/enqueue")


def test_pagerduty_trigger_event(http: LoopbackHttp) -> None:
    http.reply(Reply(202, b'{"status":"success","message":"Event processed","dedup_key":"x"}'))
    PagerDutyEvents(PD_KEY, url=http.url + "/v2/enqueue").send(GATE_FAILURE)

    (req,) = http.requests
    assert (req.path, req.headers["content-type"]) == ("/v2/enqueue", "application/json")
    event = req.json()
    assert {k: event[k] for k in ("routing_key", "event_action", "dedup_key")} == {
        "routing_key": PD_KEY, "event_action": "trigger", "dedup_key": GATE_FAILURE.dedup_key,
    }
    payload = event["payload"]
    assert payload["summary"] == "[ERROR] Quality gate failed (dataset_version 2024-05-01)"
    assert (payload["severity"], payload["class"], payload["source"]) == ("error", "quality_gate_failure",
                                                                          "feature_platform")
    assert datetime.fromisoformat(payload["timestamp"]) == GATE_FAILURE.created_at
    assert payload["component"] and payload["group"]
    details = payload["custom_details"]
    assert (details["priority"], details["coverage"], details["drift"]) == ("P2", 0.81, "nan")
    assert event["links"] == [{"href": "https://dagster.example/runs/abc?a=1&b=2", "text": "quality report"}]


def test_pagerduty_summary_is_capped_and_dedup_key_is_stable(http: LoopbackHttp) -> None:
    http.default = Reply(202, b"{}")
    channel = PagerDutyEvents(PD_KEY, url=http.url)
    again = dataclasses.replace(GATE_FAILURE, text="other text", created_at=datetime.now(UTC))
    other_version = dataclasses.replace(GATE_FAILURE, dataset_version="2024-05-02")
    long_title = dataclasses.replace(GATE_FAILURE, title="q" * 2000)
    for n in (GATE_FAILURE, again, other_version, long_title):
        channel.send(n)

    keys = [r.json()["dedup_key"] for r in http.requests]
    assert keys[0] == keys[1] != keys[2]
    assert len(http.requests[3].json()["payload"]["summary"]) == 1024


def test_pagerduty_rejections_raise(http: LoopbackHttp) -> None:
    http.reply(Reply(400, b'{"status":"invalid event","errors":["\'routing_key\' is invalid"]}'),
               Reply(200, b"ok"))
    channel = PagerDutyEvents(PD_KEY, url=http.url + "/v2/enqueue")
    with pytest.raises(NotificationError, match=r"HTTP 400 .*invalid event"):
        channel.send(GATE_FAILURE)
    with pytest.raises(NotificationError, match=r"HTTP 200 \(expected 202\)"):  # e.g. a proxy's HTML page
        channel.send(GATE_FAILURE)


def test_email_multipart_with_attachment(smtp: SmtpServer) -> None:
    EmailSmtp(smtp.host, smtp.port, "fp@example.org", ["lead@example.org", "oncall@example.org"]).send(GATE_FAILURE)

    (mail,) = smtp.recorder.mail
    assert (mail.mail_from, mail.rcpt_tos, mail.login) == (
        "fp@example.org", ["lead@example.org", "oncall@example.org"], None)
    msg = mail.message
    assert msg["Subject"] == "[ERROR] Quality gate failed (dataset_version 2024-05-01)"
    assert msg["To"] == "lead@example.org, oncall@example.org"
    assert email.utils.parsedate_to_datetime(msg["Date"]) == GATE_FAILURE.created_at
    assert msg.is_multipart() and msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "coverage 0.81 < baseline 0.90" in text and "rows: 3000" in text and "quality report: https://" in text
    (part,) = list(msg.iter_attachments())
    assert (part.get_filename(), part.get_content_type()) == ("coverage_gap_report.md", "text/markdown")
    assert part.get_payload(decode=True) == REPORT_MD


def test_email_logs_in_with_credentials(smtp: SmtpServer) -> None:
    EmailSmtp(smtp.host, smtp.port, "fp@example.org", ["a@example.org"], username="fp", password="s3cret").send(
        GATE_FAILURE)
    assert smtp.recorder.mail[0].login == b"fp"

    with pytest.raises(NotificationError, match="535") as err:
        EmailSmtp(smtp.host, smtp.port, "fp@example.org", ["a@example.org"], username="fp", password="wrong").send(
            GATE_FAILURE)
    assert err.value.retryable is False and len(smtp.recorder.mail) == 1


def test_email_partial_recipient_refusal_is_an_error(smtp: SmtpServer) -> None:
    channel = EmailSmtp(smtp.host, smtp.port, "fp@example.org", ["lead@example.org", "bounce@example.org"])
    with pytest.raises(NotificationError, match=re.escape("recipients refused: ['bounce@example.org']")) as err:
        channel.send(GATE_FAILURE)
    assert err.value.status == 550
    assert smtp.recorder.mail[0].rcpt_tos == ["lead@example.org"]  # the others still got it


def test_email_transient_reply_is_retried_permanent_is_not(smtp: SmtpServer) -> None:
    channel = EmailSmtp(smtp.host, smtp.port, "fp@example.org", ["a@example.org"])
    delays: list[float] = []
    smtp.recorder.data_replies.extend(["451 4.3.0 try again later"])
    report = Notifier([channel], retries=2, retry_base_seconds=0.01, sleep=delays.append).send(GATE_FAILURE)
    assert report.ok and report.results[0].attempts == 2 and delays == [0.01]
    assert len(smtp.recorder.mail) == 1

    smtp.recorder.data_replies.extend(["554 5.7.1 rejected"])
    report = Notifier([channel], retries=2, retry_base_seconds=0.01, sleep=delays.append).send(GATE_FAILURE)
    (outcome,) = report.results
    assert not report.ok and outcome.attempts == 1 and "554" in (outcome.error or "")


def test_email_unreachable_server_names_the_endpoint() -> None:
    port = _unused_port()
    with pytest.raises(NotificationError, match=f"email -> smtp://127.0.0.1:{port}: ConnectionRefusedError"):
        EmailSmtp("127.0.0.1", port, "fp@example.org", ["a@example.org"], timeout=2).send(GATE_FAILURE)


def test_email_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="recipient"):
        EmailSmtp("h", 25, "fp@example.org", [])
    with pytest.raises(ValueError, match="invalid email address"):
        EmailSmtp("h", 25, "fp@example.org", ["a@example.org\r\nBcc: evil@example.org"])
    with pytest.raises(ValueError, match="not both"):
        EmailSmtp("h", 465, "fp@example.org", ["a@example.org"], starttls=True, use_ssl=True)
    with pytest.raises(ValueError, match="together"):
        EmailSmtp("h", 25, "fp@example.org", ["a@example.org"], username="fp")


def test_outbox_appends_json_lines_and_keeps_attachments(tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path / "outbox")
    outbox.send(GATE_FAILURE)
    outbox.send(dataclasses.replace(GATE_FAILURE, severity="info", title="Dataset published", attachments=[]))

    first, second = (json.loads(line) for line in outbox.path.read_text("utf-8").splitlines())
    assert (first["title"], first["severity"], first["details"]["drift"]) == ("Quality gate failed", "error", "nan")
    (meta,) = first["attachments"]
    assert meta["sha256"] == hashlib.sha256(REPORT_MD).hexdigest() and meta["bytes"] == len(REPORT_MD)
    assert (tmp_path / "outbox" / meta["path"]).read_bytes() == REPORT_MD
    assert (second["title"], second["attachments"]) == ("Dataset published", [])


def test_outbox_concurrent_appends_stay_whole_lines(tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path)
    big = dataclasses.replace(GATE_FAILURE, text="z" * 20_000, attachments=[])

    def worker(i: int) -> None:
        for j in range(20):
            outbox.send(dataclasses.replace(big, title=f"w{i}-{j}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    titles = [json.loads(line)["title"] for line in (tmp_path / OUTBOX_FILE).read_text("utf-8").splitlines()]
    assert sorted(titles) == sorted(f"w{i}-{j}" for i in range(8) for j in range(20))


def test_outbox_unwritable_directory_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(NotificationError, match=r"outbox -> .*notifications\.jsonl"):
        FileOutbox(blocker).send(GATE_FAILURE)


class BrokenChannel:
    """A channel with a bug (not a NotificationError): the notifier must still reach the others."""

    name = "broken"

    def send(self, notification: Notification) -> None:
        raise KeyError("missing template\nsecond line")


def test_notifier_tries_every_channel(http: LoopbackHttp, smtp: SmtpServer, tmp_path: Path) -> None:
    http.default = Reply(500, b"internal error")
    notifier = Notifier([
        SlackWebhook(http.url + SLACK_SECRET), BrokenChannel(),
        EmailSmtp(smtp.host, smtp.port, "fp@example.org", ["lead@example.org"]), FileOutbox(tmp_path),
    ], retries=0)
    report = notifier.send(GATE_FAILURE)

    assert not report.ok
    assert [(o.channel, o.ok) for o in report.results] == [
        ("slack", False), ("broken", False), ("email", True), ("outbox", True)]
    assert "HTTP 500" in (report.results[0].error or "")
    assert report.results[1].error == "KeyError: 'missing template\\nsecond line'"
    assert len(smtp.recorder.mail) == 1 and (tmp_path / OUTBOX_FILE).exists()
    assert "slack: FAILED" in report.summary() and "email: ok" in report.summary()


def test_notifier_retries_5xx_with_backoff(http: LoopbackHttp) -> None:
    http.reply(Reply(503, b"busy"), Reply(502, b"bad gateway"))
    delays: list[float] = []
    report = Notifier([SlackWebhook(http.url)], retries=2, retry_base_seconds=0.01, sleep=delays.append).send(
        GATE_FAILURE)
    assert report.ok and report.results[0].attempts == 3
    assert delays == [0.01, 0.02] and len(http.requests) == 3


def test_notifier_gives_up_after_retries_and_never_retries_4xx(http: LoopbackHttp) -> None:
    http.default = Reply(500, b"down")
    report = Notifier([SlackWebhook(http.url)], retries=2, retry_base_seconds=0, sleep=lambda _: None).send(
        GATE_FAILURE)
    assert report.results[0].attempts == 3 and len(http.requests) == 3 and not report.ok

    http.reset()
    http.default = Reply(403, b"invalid_token")
    report = Notifier([SlackWebhook(http.url)], retries=2, retry_base_seconds=0, sleep=lambda _: None).send(
        GATE_FAILURE)
    assert report.results[0].attempts == 1 and len(http.requests) == 1
    assert "invalid_token" in (report.results[0].error or "")


def test_notifier_honours_retry_after_with_a_cap(http: LoopbackHttp) -> None:
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    http.reply(Reply(429, b"rate_limited", {"Retry-After": "120"}), Reply(429, b"", {"Retry-After": later}),
               Reply(429, b"", {"Retry-After": "0"}))
    delays: list[float] = []
    notifier = Notifier([PagerDutyEvents(PD_KEY, url=http.url)], retries=3, retry_base_seconds=5,
                        max_delay_seconds=100, sleep=delays.append)
    http.default = Reply(202, b"{}")
    report = notifier.send(GATE_FAILURE)

    assert report.ok and report.results[0].attempts == 4
    assert delays[0] == 100 and 55 <= delays[1] <= 60 and delays[2] == 0


def test_notifier_rejects_empty_or_ambiguous_channel_lists(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        Notifier([])
    with pytest.raises(ValueError, match="unique"):
        Notifier([FileOutbox(tmp_path), FileOutbox(tmp_path / "b")])


def test_notification_validation() -> None:
    with pytest.raises(ValueError, match="severity"):
        Notification("t", severity="fatal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone"):
        Notification("t", created_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="empty"):
        Notification("  ")


def test_env_config_builds_the_alert_path_end_to_end(http: LoopbackHttp, smtp: SmtpServer) -> None:
    environ = {
        "FP_SLACK_WEBHOOK_URL": http.url + SLACK_SECRET,
        "FP_SMTP_HOST": smtp.host,
        "FP_SMTP_PORT": str(smtp.port),
        "FP_SMTP_SENDER": "fp@example.org",
        "FP_SMTP_RECIPIENTS": " lead@example.org , oncall@example.org ,",
        "FP_PAGERDUTY_ROUTING_KEY": PD_KEY,
        "FP_PAGERDUTY_URL": http.url + "/v2/enqueue",
    }
    http.reply(Reply(200, b"ok"), Reply(202, b'{"status":"success"}'))
    report = notifier_from_env(environ).send(GATE_FAILURE)

    assert report.ok, report.summary()
    assert [o.channel for o in report.results] == ["slack", "email", "pagerduty"]
    assert [r.path for r in http.requests] == [SLACK_SECRET, "/v2/enqueue"]
    assert http.requests[1].json()["payload"]["custom_details"]["priority"] == "P2"
    assert smtp.recorder.mail[0].rcpt_tos == ["lead@example.org", "oncall@example.org"]

    summary = notifier_from_env(environ, paging=False)
    assert [c.name for c in summary.channels] == ["slack", "email"]


def test_nothing_configured_falls_back_to_the_outbox(tmp_path: Path) -> None:
    notifier = notifier_from_env({"FP_SLACK_WEBHOOK_URL": "  "}, default_outbox=tmp_path / "outbox")
    assert [c.name for c in notifier.channels] == ["outbox"]
    assert notifier.send(GATE_FAILURE).ok
    assert json.loads((tmp_path / "outbox" / OUTBOX_FILE).read_text("utf-8"))["kind"] == "quality_gate_failure"


def test_config_validation_and_secret_hygiene(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="smtp_recipients"):
        NotifyConfig.from_env({"FP_SMTP_HOST": "mail.example.org"})
    with pytest.raises(ValidationError, match="smtp_port"):
        NotifyConfig.from_env({"FP_SMTP_PORT": "not-a-port"})
    config = NotifyConfig(slack_webhook_url=f"https://hooks.slack.com{SLACK_SECRET}",
                          pagerduty_routing_key=PD_KEY, outbox_dir=tmp_path)
    assert "s3cr3t" not in repr(config) and PD_KEY not in repr(config)
    assert PD_KEY not in repr(PagerDutyEvents(PD_KEY))


# --------------------------------------------------------------------------------------------- metrics

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_VALUE = r'"((?:[^"\\\n]|\\[\\"n])*)"'
_LABEL = rf"([a-zA-Z_][a-zA-Z0-9_]*)={_LABEL_VALUE}"
_SAMPLE = re.compile(
    rf"(?P<name>{_NAME})(?:\{{(?P<labels>{_LABEL}(?:,{_LABEL})*,?)?\}})? (?P<value>[^ ]+)(?: -?[0-9]+)?")
_HELP = re.compile(rf"# HELP (?P<name>{_NAME}) (?:[^\\\n]|\\[\\n])*")
_TYPE = re.compile(rf"# TYPE (?P<name>{_NAME}) (?:counter|gauge|histogram|summary|untyped)")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?|Inf|NaN)")

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def parse_exposition(text: str) -> Samples:
    """Checks every line against the 0.0.4 text grammar and that each family is one contiguous, typed block."""
    assert text.endswith("\n") and "\r" not in text
    samples: Samples = {}
    typed: set[str] = set()
    current: str | None = None
    for line in text.splitlines():
        if match := _HELP.fullmatch(line) or _TYPE.fullmatch(line):
            name = match["name"]
            if line.startswith("# TYPE"):
                assert name not in typed and name not in samples, f"TYPE after samples or twice: {line}"
                typed.add(name)
            current = name
            continue
        match = _SAMPLE.fullmatch(line)
        assert match, f"not an exposition line: {line!r}"
        name = match["name"]
        assert name == current and name in typed, f"sample outside its family block: {line!r}"
        assert _FLOAT.fullmatch(match["value"]), line
        labels = re.findall(_LABEL, match["labels"] or "")
        unescaped = frozenset((k, re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], v)) for k, v in labels)
        assert len(unescaped) == len(labels), f"duplicate label in {line!r}"
        family = samples.setdefault(name, {})
        assert unescaped not in family, f"duplicate series {line!r}"
        family[unescaped] = float(match["value"])
    return samples


def _series(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


TRICKY = 'C:\\data\\"quoted"\nline2 données'


def test_run_metrics_render_valid_exposition() -> None:
    metrics = RunMetrics("dataset_refresh", TRICKY)
    metrics.set_run(12.5, "failure")
    metrics.set_asset("dataset", duration_seconds=3.25, rows=3000)
    metrics.set_asset("quality/report", duration_seconds=0.004)
    metrics.set("quality_metric", float("nan"), {"metric": "coverage"}, help="Gate metric.\nLast value.")
    metrics.set("quality_metric", float("inf"), {"metric": "diversity"})
    metrics.set("quality_metric", 0.81, {"metric": "coverage"})  # overwrite, not a duplicate series

    parsed = parse_exposition(metrics.render())
    run = {"job": "dataset_refresh", "dataset_version": TRICKY}
    assert parsed["dag_duration_seconds"] == {_series(**run): 12.5}
    assert parsed["dag_status"] == {_series(**run, status="failure"): 1, _series(**run, status="success"): 0}
    assert parsed["asset_duration_seconds"] == {_series(**run, asset="dataset"): 3.25,
                                                _series(**run, asset="quality/report"): 0.004}
    assert parsed["asset_rows"] == {_series(**run, asset="dataset"): 3000}
    assert parsed["quality_metric"] == {_series(**run, metric="coverage"): 0.81,
                                        _series(**run, metric="diversity"): float("inf")}
    assert "# HELP quality_metric Gate metric.\\nLast value.\n" in metrics.render()


def test_dag_status_is_one_hot_and_follows_the_last_status() -> None:
    metrics = RunMetrics("refresh")
    metrics.set_run(1.0, "failure")
    metrics.set_run(2.0, "success")
    assert parse_exposition(metrics.render())["dag_status"] == {
        _series(job="refresh", status="success"): 1, _series(job="refresh", status="failure"): 0}
    with pytest.raises(ValueError, match="status"):
        metrics.set_run(1.0, "skipped")  # type: ignore[arg-type]


def test_invalid_names_labels_and_values_are_rejected() -> None:
    metrics = RunMetrics("refresh")
    for bad in ("1abc", "a-b", "", "a b"):
        with pytest.raises(MetricError, match="metric name"):
            metrics.set(bad, 1)
    for label in ("__reserved", "a-b", "9x"):
        with pytest.raises(MetricError, match="label name"):
            metrics.set("ok", 1, {label: "v"})
    with pytest.raises(MetricError, match="whole run"):
        metrics.set("ok", 1, {"job": "other"})
    with pytest.raises(TypeError):
        metrics.set("ok", True)
    assert metrics.render() == ""


def test_write_textfile_is_atomic_and_readable(tmp_path: Path) -> None:
    metrics = RunMetrics("refresh", "v1")
    metrics.set_run(3.0, "success")
    target = metrics.write_textfile(tmp_path / "collector" / "feature_platform.prom")
    metrics.set_run(4.0, "failure")
    metrics.write_textfile(target)

    assert target.read_text("utf-8") == metrics.render()
    assert parse_exposition(target.read_text("utf-8"))["dag_duration_seconds"] == {
        _series(job="refresh", dataset_version="v1"): 4.0}
    assert target.stat().st_mode & 0o777 == 0o644
    assert os.listdir(target.parent) == ["feature_platform.prom"]  # no temp files left behind
    with pytest.raises(ValueError, match=r"\*\.prom"):
        metrics.write_textfile(tmp_path / "metrics.txt")


EXPECTED_PUSH_BODY = """\
# HELP dag_duration_seconds Wall-clock duration of the DAG run in seconds.
# TYPE dag_duration_seconds gauge
dag_duration_seconds{dataset_version="v1",job="refresh"} 12.5
# HELP dag_status 1 for the status of the last DAG run, 0 for the other.
# TYPE dag_status gauge
dag_status{dataset_version="v1",job="refresh",status="success"} 1.0
dag_status{dataset_version="v1",job="refresh",status="failure"} 0.0
# HELP asset_duration_seconds Wall-clock duration of the asset's materialization in seconds.
# TYPE asset_duration_seconds gauge
asset_duration_seconds{asset="dataset",dataset_version="v1",job="refresh"} 3.25
# HELP asset_rows Rows in the materialized asset.
# TYPE asset_rows gauge
asset_rows{asset="dataset",dataset_version="v1",job="refresh"} 3000.0
"""


def test_push_puts_exact_body_to_the_grouping_path(http: LoopbackHttp) -> None:
    metrics = RunMetrics("refresh", "v1")
    metrics.set_run(12.5, "success")
    metrics.set_asset("dataset", duration_seconds=3.25, rows=3000)
    metrics.push(http.url + "/", "refresh", {"instance": "runner/1", "env": "prod eu", "shard": ""})

    (req,) = http.requests
    assert req.method == "PUT"
    assert req.path == "/metrics/job/refresh/env/prod%20eu/instance@base64/cnVubmVyLzE=/shard@base64/="
    assert req.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert req.body.decode("utf-8") == EXPECTED_PUSH_BODY
    parse_exposition(EXPECTED_PUSH_BODY)


def test_push_job_with_slash_and_basic_auth(http: LoopbackHttp) -> None:
    metrics = RunMetrics("team/refresh")
    metrics.set_run(1, "success")
    gateway = http.url.replace("http://", "http://pusher:p%40ss@")
    metrics.push(gateway, "team/refresh")

    (req,) = http.requests
    assert req.path == "/metrics/job@base64/dGVhbS9yZWZyZXNo"
    assert req.headers["authorization"] == "Basic cHVzaGVyOnBAc3M="  # pusher:p@ss

    http.default = Reply(500, b"storage full")
    with pytest.raises(PushError) as err:
        metrics.push(gateway, "team/refresh")
    assert "HTTP 500: storage full" in str(err.value) and "p%40ss" not in str(err.value)


def test_push_failures_raise_push_error(http: LoopbackHttp) -> None:
    metrics = RunMetrics("refresh")
    metrics.set_run(1, "success")
    http.reply(Reply(400, b"pushed metrics are invalid or inconsistent with existing metrics"))
    with pytest.raises(PushError, match="HTTP 400: pushed metrics are invalid"):
        metrics.push(http.url, "refresh")
    with pytest.raises(PushError, match=r"URLError: .*Connection refused"):
        metrics.push(f"http://127.0.0.1:{_unused_port()}", "refresh")


def test_push_refuses_labels_that_contradict_the_grouping_key(http: LoopbackHttp) -> None:
    metrics = RunMetrics("refresh", "v1")
    metrics.set_run(1, "success")
    with pytest.raises(MetricError, match="contradicts grouping key job"):
        metrics.push(http.url, "other_job")
    with pytest.raises(MetricError, match="dataset_version"):
        metrics.push(http.url, "refresh", {"dataset_version": "v2"})
    with pytest.raises(MetricError, match="empty"):
        metrics.push(http.url, "")
    with pytest.raises(MetricError, match="given separately"):
        RunMetrics("refresh").push(http.url, "refresh", {"job": "refresh"})
    with pytest.raises(MetricError, match="label name"):
        RunMetrics("refresh").push(http.url, "refresh", {"bad-name": "x"})
    with pytest.raises(ValueError, match="http"):
        RunMetrics("refresh").push("ftp://gateway", "refresh")
    assert http.requests == []


# The exposition of this run as rendered by the hand-written renderer before prometheus_client took over.
_TRICKY_LABEL = 'dataset_version="C:\\\\data\\\\\\"quoted\\"\\nline2 données"'
RECORDED_EXPOSITION = """\
# HELP dag_duration_seconds Wall-clock duration of the DAG run in seconds.
# TYPE dag_duration_seconds gauge
dag_duration_seconds{@,job="dataset_refresh"} 12.5
# HELP dag_status 1 for the status of the last DAG run, 0 for the other.
# TYPE dag_status gauge
dag_status{@,job="dataset_refresh",status="success"} 0
dag_status{@,job="dataset_refresh",status="failure"} 1
# HELP asset_duration_seconds Wall-clock duration of the asset's materialization in seconds.
# TYPE asset_duration_seconds gauge
asset_duration_seconds{asset="dataset",@,job="dataset_refresh"} 3.25
asset_duration_seconds{asset="quality/report",@,job="dataset_refresh"} 0.004
# HELP asset_rows Rows in the materialized asset.
# TYPE asset_rows gauge
asset_rows{asset="dataset",@,job="dataset_refresh"} 3000
asset_rows{asset="quality/report",@,job="dataset_refresh"} 12345678
# HELP quality_metric Gate metric.\\nLast \\\\ value.
# TYPE quality_metric gauge
quality_metric{@,job="dataset_refresh",metric="coverage"} NaN
quality_metric{@,job="dataset_refresh",metric="diversity"} -Inf
quality_metric{@,job="dataset_refresh",metric="tiny"} 1e-07
quality_metric{@,job="dataset_refresh",metric="huge"} 1.152921504606847e+18
quality_metric{@,job="dataset_refresh",metric="negzero"} 0
""".replace("@", _TRICKY_LABEL)


def _recorded_run() -> RunMetrics:
    metrics = RunMetrics("dataset_refresh", TRICKY)
    metrics.set_run(12.5, "failure")
    metrics.set_asset("dataset", duration_seconds=3.25, rows=3000)
    metrics.set_asset("quality/report", duration_seconds=0.004, rows=12_345_678)
    metrics.set("quality_metric", float("nan"), {"metric": "coverage"}, help="Gate metric.\nLast \\ value.")
    metrics.set("quality_metric", float("-inf"), {"metric": "diversity"})
    metrics.set("quality_metric", 1e-7, {"metric": "tiny"})
    metrics.set("quality_metric", 2.0**60, {"metric": "huge"})
    metrics.set("quality_metric", -0.0, {"metric": "negzero"})
    return metrics


def _families(text: str) -> list[tuple[str, str, str, list[tuple[str, dict[str, str], str]]]]:
    """prometheus_client's own parser; values as text of the float so NaN compares equal to NaN."""
    from prometheus_client.parser import text_string_to_metric_families

    return [(f.name, f.documentation, f.type, [(x.name, x.labels, repr(float(x.value))) for x in f.samples])
            for f in text_string_to_metric_families(text)]


def test_exposition_unchanged_by_prometheus_client(tmp_path: Path) -> None:
    """Same families, help, types, label sets (escaping included) and values as the recorded rendering."""
    metrics = _recorded_run()
    recorded = _families(RECORDED_EXPOSITION)
    assert len(recorded) == 5 and recorded[4][3][0][1]["dataset_version"] == TRICKY
    assert _families(metrics.render()) == recorded
    assert parse_exposition(metrics.render()).keys() == parse_exposition(RECORDED_EXPOSITION).keys()  # 0.0.4 grammar
    target = metrics.write_textfile(tmp_path / "feature_platform.prom")
    assert _families(target.read_text("utf-8")) == recorded


def test_a_family_keeps_one_label_set() -> None:
    gauges = GaugeSet({"job": "j"})
    gauges.set("lag_seconds", 1.0, {"source": "a"})
    with pytest.raises(MetricError, match=r"lag_seconds: labels \['job'\] differ from the family's"):
        gauges.set("lag_seconds", 2.0)
    with pytest.raises(MetricError, match=r"labels \['job', 'region', 'source'\] differ"):
        gauges.set("lag_seconds", 2.0, {"source": "b", "region": "eu"})
    assert _families(gauges.render()) == [("lag_seconds", "lag seconds", "gauge",
                                           [("lag_seconds", {"job": "j", "source": "a"}, "1.0")])]


def _pushgateway_labels(path: str) -> dict[str, str]:
    """How the Pushgateway reads a push path: percent-decoded ('+' stays '+'), ``@base64`` values decoded."""
    import base64
    import urllib.parse

    parts = path.removeprefix("/metrics/").split("/")
    labels = {}
    for name, value in zip(parts[::2], parts[1::2], strict=True):
        decoded = urllib.parse.unquote(value)
        if name.endswith("@base64"):
            name, decoded = name.removesuffix("@base64"), base64.urlsafe_b64decode(decoded + "==").decode()
        labels[name] = decoded
    return labels


@pytest.mark.parametrize("value", ["prod eu", "a+b", "a + b", "50%", "x@y", "é ü", "runner/1 a+b", "", "?#&="])
def test_push_grouping_values_arrive_as_given(http: LoopbackHttp, value: str) -> None:
    metrics = RunMetrics("nightly job")
    metrics.set_run(1, "success")
    metrics.push(http.url, "nightly job", {"instance": value})
    (req,) = http.requests
    assert _pushgateway_labels(req.path) == {"job": "nightly job", "instance": value}
    assert _families(req.body.decode("utf-8")) == _families(metrics.render())


# --------------------------------------------------------------------------------------------- logs


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger = logging.getLogger(f"fp.test.{time.monotonic_ns()}")
    logger.propagate = False
    stream = io.StringIO()
    configure_json_logging(stream, "DEBUG", logger=logger)
    yield logger, stream
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_nested_log_context(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    logger.info("before")
    with log_context(dag_run_id="run-1", dataset_version="v1"):
        logger.info("run")
        with log_context(task_id="quality_report") as ctx:
            assert dict(ctx) == {"dag_run_id": "run-1", "dataset_version": "v1", "task_id": "quality_report"}
            logger.warning("step")
            with log_context(dataset_version=None):
                logger.info("unset")
        logger.info("after step")
    logger.info("after run")
    assert current_log_context() == {}

    context = {line["message"]: {k: line.get(k) for k in ("dag_run_id", "task_id", "dataset_version")}
               for line in _lines(stream)}
    assert context == {
        "before": {"dag_run_id": None, "task_id": None, "dataset_version": None},
        "run": {"dag_run_id": "run-1", "task_id": None, "dataset_version": "v1"},
        "step": {"dag_run_id": "run-1", "task_id": "quality_report", "dataset_version": "v1"},
        "unset": {"dag_run_id": "run-1", "task_id": "quality_report", "dataset_version": None},
        "after step": {"dag_run_id": "run-1", "task_id": None, "dataset_version": "v1"},
        "after run": {"dag_run_id": None, "task_id": None, "dataset_version": None},
    }
    assert "task_id" not in _lines(stream)[0]  # absent, not null, when not set


def test_json_lines_carry_base_fields_extras_and_exceptions(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    with log_context(dag_run_id="run-2", dataset_version="v1"):
        logger.info("rows %d\nsecond line", 5, extra={"rows": 5, "ratio": float("nan"), "dataset_version": "v9",
                                                      "level": "spoof", "when": datetime(2024, 1, 1, tzinfo=UTC)})
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.exception("failed")

    raw = stream.getvalue().splitlines()
    assert len(raw) == 2  # the message's newline stays inside one JSON line
    first, second = _lines(stream)
    assert (first["level"], first["message"], first["logger"]) == ("INFO", "rows 5\nsecond line", logger.name)
    ts = datetime.fromisoformat(first["ts"])
    assert ts.utcoffset() == timedelta(0) and abs((datetime.now(UTC) - ts).total_seconds()) < 60
    assert (first["rows"], first["ratio"], first["dataset_version"]) == (5, "nan", "v9")  # extra beats context
    assert (first["extra.level"], first["when"]) == ("spoof", "2024-01-01 00:00:00+00:00")
    assert second["level"] == "ERROR" and "ZeroDivisionError" in second["exc_info"]
    assert second["dag_run_id"] == "run-2"


def test_configure_json_logging_is_idempotent(tmp_path: Path) -> None:
    logger = logging.getLogger("fp.test.idempotent")
    logger.propagate = False
    path = tmp_path / "logs" / "run.jsonl"
    try:
        first = configure_json_logging(path, logging.INFO, logger=logger)
        again = configure_json_logging(str(path), "DEBUG", logger=logger)
        assert first is again and len(logger.handlers) == 1 and first.level == logging.DEBUG
        with log_context(task_id="dataset"):
            logger.debug("one record")
        first.flush()
        (line,) = path.read_text("utf-8").splitlines()
        assert json.loads(line)["task_id"] == "dataset"
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def test_contexts_are_isolated_between_threads(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    barrier = threading.Barrier(4)

    def worker(i: int) -> None:
        with log_context(dag_run_id=f"run-{i}"):
            for step in range(3):
                barrier.wait()
                logger.info(f"{i}/{step}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = _lines(stream)
    assert len(lines) == 12
    assert all(line["dag_run_id"] == f"run-{line['message'].split('/')[0]}" for line in lines)


def test_context_is_captured_where_the_record_is_emitted() -> None:
    """With a QueueHandler the record is formatted on the listener thread, outside the caller's context."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    producer = logging.handlers.QueueHandler(records)
    producer.addFilter(ContextFilter())
    stream = io.StringIO()
    sink = logging.StreamHandler(stream)
    sink.setFormatter(JsonFormatter())
    listener = logging.handlers.QueueListener(records, sink)
    logger = logging.getLogger("fp.test.queue")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(producer)
    listener.start()
    try:
        with log_context(dag_run_id="run-q", task_id="dataset"):
            logger.info("queued")
    finally:
        listener.stop()
        logger.removeHandler(producer)
    (line,) = _lines(stream)
    assert (line["message"], line["dag_run_id"], line["task_id"]) == ("queued", "run-q", "dataset")
