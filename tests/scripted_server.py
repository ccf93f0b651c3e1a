"""A real HTTP server on 127.0.0.1 whose answers a test scripts one by one.

The dev org is the faithful Okta; this server is for the exact edge a unit test needs (a Link header pointing at
another host, a proxy's HTML error page, a 429 whose reset lies on the server's clock, a truncated body), with every
request recorded for assertions.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes/str as is
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False  # announce a longer Content-Length than sent, then close
    delay: float = 0.0
    trickle: float = 0.0  # send the body one byte at a time, this many seconds apart (a slowloris server)
    trickle_head: float = 0.0  # send the status line and headers that way instead
    stream: Callable[[], Iterator[bytes]] | None = None  # a body produced on the fly, sent chunked (no length)


Handler = Callable[[Recorded], Reply]


class ScriptedServer:
    """Routes by (method, path): a queue of replies (consumed in order, the last one repeats) or a handler."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: dict[tuple[str, str], deque[Reply] | Handler] = {}
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body)
                reply = server._reply_for(recorded)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body
                if isinstance(payload, (dict, list)):
                    payload = json.dumps(payload).encode()
                elif isinstance(payload, str):
                    payload = payload.encode()
                elif payload is None:
                    payload = b""
                if reply.trickle_head:
                    self._send_trickled(b"HTTP/1.1 %d OK\r\n%sContent-Length: %d\r\n\r\n%s" % (
                        reply.status, b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in reply.headers.items()),
                        len(payload), payload), reply.trickle_head)
                    return
                self.send_response_only(reply.status)
                headers = {"Content-Type": "application/json", "Date": formatdate(usegmt=True), **reply.headers}
                for name, value in headers.items():
                    for one in value if isinstance(value, list) else [value]:
                        self.send_header(name, one)
                if reply.stream is not None:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._send_stream(reply.stream())
                    return
                self.send_header("Content-Length", str(len(payload) + (100 if reply.truncate else 0)))
                if reply.truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                if reply.trickle:
                    self._send_trickled(payload, reply.trickle)
                    return
                try:
                    self.wfile.write(payload)
                except OSError:  # the client hung up early (a size cap refusing a declared length)
                    self.close_connection = True
                if reply.truncate:
                    self.close_connection = True

            def _send_stream(self, chunks: Iterator[bytes]) -> None:
                try:
                    for chunk in chunks:
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the client stopped reading (what a bounded client does)
                    self.close_connection = True

            def _send_trickled(self, payload: bytes, seconds: float) -> None:
                try:
                    for i in range(len(payload)):
                        self.wfile.write(payload[i : i + 1])
                        self.wfile.flush()
                        time.sleep(seconds)
                except OSError:
                    pass
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def route(self, method: str, path: str, *replies: Reply | Handler) -> None:
        with self._lock:
            if len(replies) == 1 and callable(replies[0]) and not isinstance(replies[0], Reply):
                self._routes[(method, path)] = replies[0]
            else:
                self._routes[(method, path)] = deque(replies)  # type: ignore[arg-type]

    def _reply_for(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            route = self._routes.get((recorded.method, recorded.path))
            if route is None:
                return Reply(404, {"errorCode": "E0000022", "errorSummary": f"no scripted route {recorded.path}"})
            if callable(route):
                handler = route
            else:
                return route.popleft() if len(route) > 1 else route[0]
        return handler(recorded)

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]


def token_reply(token: str = "tok-1", expires_in: int = 3600, scope: str = "okta.users.read okta.users.manage") -> Reply:
    return Reply(200, {"token_type": "Bearer", "expires_in": expires_in, "access_token": token, "scope": scope})
