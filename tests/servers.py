"""Real loopback servers shared by tests: an HTTP recorder for webhooks, PagerDuty and Pushgateway."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclasses.dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        def no_constants(name: str) -> None:
            raise AssertionError(f"non-JSON constant {name} in body")

        return json.loads(self.body, parse_constant=no_constants)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out closes early; the late reply's broken pipe is expected."""


class LoopbackHttp:
    """Records every request; answers from a queue of planned replies, then with ``default``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    outer.requests.append(Recorded(self.command, self.path, headers, body))
                    reply = outer.replies.popleft() if outer.replies else outer.default
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_POST = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self.replies.clear()
        self.default = Reply()


def serve() -> Iterator[LoopbackHttp]:
    """Start a recorder; use as the body of a fixture."""
    server = LoopbackHttp()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
