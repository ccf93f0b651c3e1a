"""The response value handlers return, and the headers every Okta response carries."""
from __future__ import annotations

import email.utils
import secrets
import time
from dataclasses import dataclass, field

JSON = "application/json"
_date_cache = [0, ""]


def http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]


def request_id() -> str:
    return secrets.token_hex(16)  # the 2026 recordings show 32 hex characters


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON


REASONS = {200: "OK", 204: "No Content", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 412: "Precondition Failed", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def encode(response: Response, extra: list[tuple[str, str]], close: bool, content_length: int | None = None) -> bytes:
    """Status line and headers, ready to send before the body."""
    length = len(response.body) if content_length is None else content_length
    # A 204 has no content, so neither a Content-Type nor a Content-Length (RFC 9110 8.6; the Okta SDK decodes any
    # application/json body, an empty one too).
    content = [] if response.status == 204 else [f"Content-Type: {response.content_type}", f"Content-Length: {length}"]
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}", f"Date: {http_date()}",
             *content, "Cache-Control: no-cache, no-store", "Pragma: no-cache", "Expires: 0",
             f"Connection: {'close' if close else 'keep-alive'}"]
    lines.extend(f"{name}: {value}" for name, value in extra)
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
