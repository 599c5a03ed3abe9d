"""Stdlib HTTP for webhooks and the Pushgateway: http(s) only, no redirects, bounded reads, no secrets in errors."""

from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import IO

from feature_platform.http_retry import parse_retry_after

USER_AGENT = "feature-platform/0.1"
_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: str
    retry_after: float | None  # seconds, from a Retry-After header


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured; following it would replay the payload elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def require_http_url(url: str, what: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL with a host")
    return url


def endpoint_label(url: str, *, keep_path: bool = True) -> str:
    """The URL as it may appear in errors and logs: never credentials, and no path when the path is the secret."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = parts.path if keep_path else ("/…" if parts.path.strip("/") else "")
    return f"{parts.scheme}://{netloc}{path}"


def _read(stream: IO[bytes] | None) -> str:
    if stream is None:
        return ""
    return stream.read(_MAX_BODY).decode("utf-8", errors="replace")


def _retry_after(headers: Message | None) -> float | None:
    return parse_retry_after(headers.get("Retry-After")) if headers is not None else None


def request(method: str, url: str, body: bytes, content_type: str, timeout: float) -> HttpResponse:
    """Any HTTP status comes back as a response; transport failures raise ``OSError`` (URLError, timeout)."""
    parts = urllib.parse.urlsplit(url)
    headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
    if parts.username is not None:  # urllib cannot use user:pass@host itself
        creds = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return HttpResponse(resp.status, _read(resp), _retry_after(resp.headers))
    except urllib.error.HTTPError as exc:
        with exc:
            return HttpResponse(exc.code, _read(exc.fp), _retry_after(exc.headers))
