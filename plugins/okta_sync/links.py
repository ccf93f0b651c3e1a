"""The one place that parses `Link` headers (RFC 8288) and decides where the next page is.

Okta sends `<url>; rel="self"` and `<url>; rel="next"`, as separate headers or comma-joined in one. A header that
does not parse raises `LinkHeaderError`: a lenient parser that returns nothing would silently end paging early.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from okta_sync.errors import LinkHeaderError

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
            raise LinkHeaderError(f"cannot parse Link header at character {position}: {_excerpt(text, position)!r}")
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
