"""Email over SMTP: a text body plus the attachments (e.g. the coverage gap report) as MIME parts."""

from __future__ import annotations

import email.utils
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

from feature_platform.observability.notification import Notification, NotificationError, one_line


def render_body(n: Notification) -> str:
    lines = [n.headline, ""]
    if n.text:
        lines += [n.text, ""]
    facts = ([("dataset_version", n.dataset_version)] if n.dataset_version else []) + list(n.details.items())
    lines += [f"{k}: {'-' if v is None else v}" for k, v in facts]
    if n.links:
        lines += ["", "Links:", *(f"  {label}: {url}" for label, url in n.links.items())]
    if n.attachments:
        lines += ["", "Attached: " + ", ".join(name for name, _, _ in n.attachments)]
    return "\n".join(lines).rstrip() + "\n"


def _smtp_code(exc: smtplib.SMTPException) -> int | None:
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return max((code for code, _ in exc.recipients.values()), default=None)
    return None


@dataclass(frozen=True)
class EmailSmtp:
    """SMTP 4xx replies are transient by definition (RFC 5321), so they are marked retryable."""

    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_ssl: bool = False
    timeout: float = 10.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    name: str = "email"

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipients", tuple(self.recipients))
        if not self.recipients:
            raise ValueError("email channel needs at least one recipient")
        for address in (self.sender, *self.recipients):
            if not address.strip() or any(c in address for c in "\r\n"):
                raise ValueError(f"invalid email address {address!r}")
        if self.starttls and self.use_ssl:
            raise ValueError("choose starttls or use_ssl, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP username and password go together")

    @property
    def endpoint(self) -> str:
        return f"{'smtps' if self.use_ssl else 'smtp'}://{self.host}:{self.port}"

    def message(self, n: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = n.headline
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = email.utils.format_datetime(n.created_at)
        # make_msgid() would otherwise resolve the local FQDN, which can stall on DNS
        msg["Message-ID"] = email.utils.make_msgid(domain=self.sender.rpartition("@")[2] or "localhost")
        msg["X-FP-Dedup-Key"] = n.dedup_key
        msg.set_content(render_body(n))
        for filename, content, mime in n.attachments:
            maintype, _, subtype = mime.partition("/")
            msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
        return msg

    def _connect(self) -> smtplib.SMTP:
        if self.use_ssl:
            context = self.ssl_context or ssl.create_default_context()
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.starttls:
            try:
                smtp.starttls(context=self.ssl_context or ssl.create_default_context())
            except BaseException:
                smtp.close()
                raise
        return smtp

    def send(self, notification: Notification) -> None:
        msg = self.message(notification)
        try:
            with self._connect() as smtp:
                if self.username is not None:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=list(self.recipients))
        except smtplib.SMTPException as exc:
            code = _smtp_code(exc)
            raise NotificationError(self.name, self.endpoint, f"{type(exc).__name__}: {one_line(str(exc))}",
                                    status=code, retryable=code is not None and 400 <= code < 500) from exc
        except OSError as exc:
            raise NotificationError(self.name, self.endpoint, f"{type(exc).__name__}: {exc}") from exc
        if refused:
            raise NotificationError(self.name, self.endpoint, f"recipients refused: {sorted(refused)}",
                                    status=max(code for code, _ in refused.values()))
