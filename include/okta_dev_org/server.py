"""The HTTP/1.1 keep-alive server: parses requests, runs DevOrgApp, writes responses (and damages them on demand)."""
from __future__ import annotations

import ipaddress
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .app import DevOrgApp, Request
from .errors import NOT_WELL_FORMED, okta_error
from .responses import Response, encode

MAX_BODY = 10 * 1024 * 1024


class DevOrgHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    disable_nagle_algorithm = True
    server: "DevOrgHTTPServer"

    def log_message(self, format, *args):  # noqa: A002 - quiet by default; stats are the record
        pass

    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._serve()
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            self.close_connection = True

    def _serve(self) -> None:
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._write(Response(400, okta_error(NOT_WELL_FORMED)), close=True)
            return
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if path.startswith("/_dev/") and not self._loopback():
            self._write(Response(403, b'{"error":"admin endpoints are loopback-only"}'), close=False)
            return
        host = self.headers.get("Host") or self.server.default_host
        request = Request(self.command, path, query, self.headers, body, self.server.scheme, host)
        outcome = app.handle(request)
        if outcome.response is None:
            self._reset()
            return
        close = self.close_connection
        fault = outcome.post_fault
        if fault is None:
            self._write(outcome.response, close)
        elif fault.kind == "truncate":
            data = outcome.response.body
            self.wfile.write(encode(outcome.response, [], True, len(data)) + data[: len(data) // 2])
            self.close_connection = True
        elif fault.kind == "invalid_json":
            response = outcome.response
            broken = response.body[: max(1, len(response.body) * 2 // 3)]
            response.body = broken
            self._write(response, close)
        elif fault.kind == "slow_body":
            data = outcome.response.body
            self.wfile.write(encode(outcome.response, [], close))
            pause = app.faults.settings.slow_body_ms / 1000 / 4
            step = max(1, len(data) // 4)
            for start in range(0, len(data), step):
                time.sleep(pause)
                self.wfile.write(data[start:start + step])
            self.close_connection = close

    def _write(self, response: Response, close: bool) -> None:
        self.wfile.write(encode(response, [], close) + response.body)
        if close:
            self.close_connection = True

    def _reset(self) -> None:
        """Abort the connection with a TCP RST, as a dropped upstream connection looks to a client."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def _loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.client_address[0]).is_loopback
        except ValueError:
            return False


class DevOrgHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, app_factory, tls_context: ssl.SSLContext | None = None):
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, DevOrgHandler)
        self.tls_context = tls_context
        self.scheme = "https" if tls_context else "http"
        if tls_context is not None:
            self.socket = tls_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.server_address[1]
        self.default_host = f"{host}:{self.port}"
        self.app: DevOrgApp = app_factory(self)

    def get_request(self):
        sock, address = self.socket.accept()
        return sock, address

    def handle_error(self, request, client_address):  # noqa: D401 - keep client disconnects quiet
        pass


def serve_in_thread(server: DevOrgHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="okta-dev-org",
                              daemon=True)
    thread.start()
    return thread
