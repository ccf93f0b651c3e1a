"""The one reading of a URL's origin that config checks and the HTTP layer share (no Airflow, no requests)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from urllib3.util import parse_url

from okta_sync.errors import UnsafeUrlError

RFC3986_URL = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*\Z")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute URL, as the HTTP stack will connect; UnsafeUrlError when the URL is not
    plain RFC 3986, carries userinfo, or when urllib's and urllib3's readings of it differ."""
    if not RFC3986_URL.match(url):
        raise UnsafeUrlError("refusing a URL that is not plain RFC 3986 (a backslash, space, control or non-ASCII "
                             "character, or a stray %)")
    ours, theirs = urlsplit(url), parse_url(url)
    authority = url.partition("//")[2].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0] if "//" in url else ""
    if "@" in authority or ours.username is not None or theirs.auth:
        raise UnsafeUrlError("refusing a URL with userinfo (user@ or user:password@ before the host)")
    scheme = (ours.scheme or "").lower()
    try:
        port = ours.port
    except ValueError:
        raise UnsafeUrlError("refusing a URL whose port is not a number") from None
    origin = (scheme, (ours.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0))
    stack = ((theirs.scheme or "").lower(), (theirs.host or "").lower().strip("[]"),
             theirs.port or _DEFAULT_PORTS.get((theirs.scheme or "").lower(), 0))
    if origin != (stack[0], stack[1], stack[2]) or not origin[1]:
        raise UnsafeUrlError("refusing a URL that parsers read as different hosts")
    return origin
