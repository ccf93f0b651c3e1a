"""The one place that parses `Link` headers (RFC 8288) and decides where the next page is.

Okta sends `<url>; rel="self"` and `<url>; rel="next"`, as separate headers or comma-joined in one. A header that
does not parse raises `LinkHeaderError`: a lenient parser that returns nothing would silently end paging early.

Where a link points is decided here too, and never from the server's host: `next_page_url` keeps only the link's
query (the cursor) and rebuilds the URL from the org URL and the path being paged. Two URL parsers disagree about
`http://127.0.0.1:B\\@127.0.0.1:A/` (urlsplit reads host A, urllib3 connects to B), so a link is refused unless it
is plain RFC 3986, has no userinfo, and both parsers read the org's origin from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

from okta_sync.errors import LinkHeaderError, UnsafeUrlError
from okta_sync.server_text import server_text
from okta_sync.urls import RFC3986_URL as _RFC3986, origin_of

# RFC 3986 URI characters (unreserved, reserved, and % only as the start of a %XX escape).

# One link-value: <URI-Reference> followed by zero or more `; param[=value]` (value token or quoted string).
_LINK_VALUE = re.compile(
    r"""\s*<(?P<url>[^<>\s]*)>
        (?P<params>(?:\s*;\s*[A-Za-z0-9!#$&+\-.^_`|~*]+(?:\s*=\s*(?:"[^"]*"|[^\s;,"]+))?)*)
        \s*(?:,|$)""",
    re.VERBOSE,
)
_PARAM = re.compile(r"""\s*;\s*(?P<name>[A-Za-z0-9!#$&+\-.^_`|~*]+)(?:\s*=\s*(?:"(?P<quoted>[^"]*)"|(?P<token>[^\s;,"]+)))?""")


def parse_link_header(values: str | Iterable[str] | None) -> dict[str, str]:
    """Map each relation type (lower-cased) to its URL. Several headers or several values in one are both fine."""
    if values is None:
        return {}
    if isinstance(values, str):
        values = [values]
    links: dict[str, str] = {}
    for value in values:
        _parse_one(value, links)
    return links


def _parse_one(value: str, links: dict[str, str]) -> None:
    position = 0
    text = value.strip()
    while position < len(text):
        match = _LINK_VALUE.match(text, position)
        if match is None or match.end() == position:
            raise LinkHeaderError(f"cannot parse Link header at character {position}: "
                                  f"{server_text(_excerpt(text, position))!r}")
        for param in _PARAM.finditer(match.group("params")):
            if param.group("name").lower() != "rel":
                continue
            rel_value = param.group("quoted") if param.group("quoted") is not None else param.group("token") or ""
            for rel in rel_value.split():
                links.setdefault(rel.lower(), match.group("url"))
        position = match.end()
        while position < len(text) and text[position] in " \t,":
            position += 1


def _excerpt(text: str, position: int) -> str:
    # Link URLs hold only cursors and filters, never credentials, so a short excerpt is safe to show.
    return text[position : position + 80]


def next_page_url(link: str, *, org_url: str, path: str) -> str:
    """The next page's URL: the org URL, the path being paged and the link's query (its cursor), nothing else.

    The link may be absolute (Okta's form) or a path; either way it must name the org's origin and the same path,
    or UnsafeUrlError is raised and nothing is sent. The error never repeats the link.
    """
    if link.startswith("/") and not link.startswith("//"):
        if not _RFC3986.match(link):
            raise UnsafeUrlError("refusing a next link that is not plain RFC 3986")
        parts = urlsplit(link)
    else:
        if origin_of(link) != origin_of(org_url):
            raise UnsafeUrlError(f"refusing to send the access token elsewhere: the next link does not point at "
                                 f"{org_url} (only the org's own URL is trusted)")
        parts = urlsplit(link)
    if parts.path != path:
        raise UnsafeUrlError(f"refusing a next link to another path than {path} (the listing being paged)")
    if parts.fragment:
        raise UnsafeUrlError("refusing a next link with a #fragment")
    return f"{org_url}{path}?{parts.query}" if parts.query else f"{org_url}{path}"


def cursor_of(url: str) -> str:
    """The `after` cursor of a page URL (the whole query when there is none): what must never repeat."""
    query = urlsplit(url).query
    after = parse_qs(query).get("after")
    return "after=" + after[0] if after else "query=" + query
