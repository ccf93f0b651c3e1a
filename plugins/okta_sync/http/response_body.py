"""Reading a response body within bounds: a deadline for the whole request and a cap on its size.

`read_timeout` bounds each socket read, so a server trickling one byte every few seconds never trips it; the body
is therefore read with `read1` (returns as soon as any bytes arrive) and the deadline is checked between reads,
with each read's socket timeout lowered to what is left of it. The cap applies to the decoded bytes (a gzip bomb
is stopped as it inflates) and to a declared `Content-Length` before anything is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
import urllib3

from okta_sync.errors import ResponseLimitError

_READ_SIZE = 64 * 1024


def read_body(response: requests.Response, *, deadline: float, max_bytes: int, read_timeout: float,
              monotonic: Callable[[], float] = time.monotonic) -> bytes:
    """The whole (decoded) body of a `stream=True` response. Raises `ResponseLimitError` past `max_bytes`,
    `requests.exceptions.ReadTimeout` once `deadline` (a `monotonic()` value) has passed, and the requests
    exceptions `Response.content` would raise for a truncated or undecodable body."""
    declared = response.headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    raw = response.raw
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - monotonic()
        if remaining <= 0:
            raise requests.exceptions.ReadTimeout("request deadline passed while reading the body")
        _limit_socket_wait(raw, min(read_timeout, remaining))
        chunk = _read1(raw)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)


def _read1(raw: urllib3.HTTPResponse) -> bytes:
    """One read, with urllib3's errors mapped as `Response.iter_content` maps them."""
    try:
        return raw.read1(_READ_SIZE, decode_content=True)
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(type(exc).__name__) from None
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(type(exc).__name__) from None
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(type(exc).__name__) from None
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(type(exc).__name__) from None
    except TimeoutError as exc:  # the socket timeout lowered to the deadline
        raise requests.exceptions.ReadTimeout(type(exc).__name__) from None
    except OSError as exc:  # a reset mid-body
        raise requests.exceptions.ConnectionError(type(exc).__name__) from None


def _limit_socket_wait(raw: urllib3.HTTPResponse, seconds: float) -> None:
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _too_large(max_bytes: int) -> ResponseLimitError:
    return ResponseLimitError(
        f"the response body is larger than max_response_bytes ({max_bytes} bytes); refused without reading the "
        f"rest (a page of 200 users is normally well under 1 MB)", setting="max_response_bytes",
    )
