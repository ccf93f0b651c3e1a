"""A page of users decoded once, keeping each user's own JSON text: the export writes it without re-encoding.

`decode_user_page` walks the top-level array with the C scanner that `json.loads` uses, one element at a time, so
it costs about what `json.loads` costs and also records where each user's text starts and ends.
"""

from __future__ import annotations

import json
from typing import Any

_scan_once = json.scanner.make_scanner(json.JSONDecoder())
_WHITESPACE = " \t\n\r"
_WHITESPACE_CHARS = frozenset(_WHITESPACE)


class UserPage(list):
    """A list of user dicts that also knows each user's JSON text as the server sent it."""

    __slots__ = ("_text", "_spans")

    def __init__(self, users: list[dict[str, Any]], text: str, spans: list[tuple[int, int]]):
        super().__init__(users)
        self._text = text
        self._spans = spans

    def json_text(self, index: int) -> str:
        start, end = self._spans[index]
        return self._text[start:end]

    def subset(self, indexes: list[int]) -> "UserPage":
        """The users at these positions, still with their JSON text."""
        return UserPage([self[i] for i in indexes], self._text, [self._spans[i] for i in indexes])


def decode_user_page(content: bytes) -> Any:
    """`json.loads(content)`, except that a top-level array comes back as a `UserPage`. Raises ValueError."""
    text = content.decode("utf-8")
    end = len(text)
    position = _skip(text, 0)
    if position >= end or text[position] != "[":
        return json.loads(text)
    users: list[Any] = []
    spans: list[tuple[int, int]] = []
    position = _skip(text, position + 1)
    if position < end and text[position] == "]":
        return _finish(text, position, users, spans)
    while True:
        try:
            user, after = _scan_once(text, position)
        except StopIteration:
            raise json.JSONDecodeError("Expecting value", text, position) from None
        users.append(user)
        spans.append((position, after))
        delimiter = text[after:after + 1]
        if delimiter == ",":  # compact JSON, as Okta sends it: no whitespace to skip
            position = after + 1
            if text[position:position + 1] in _WHITESPACE_CHARS:
                position = _skip(text, position)
            continue
        if delimiter != "]":
            position = _skip(text, after)
            delimiter = text[position:position + 1]
            if delimiter == ",":
                position = _skip(text, position + 1)
                continue
            if delimiter != "]":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
        else:
            position = after
        return _finish(text, position, users, spans)


def _finish(text: str, position: int, users: list, spans: list) -> UserPage:
    if _skip(text, position + 1) != len(text):
        raise json.JSONDecodeError("Extra data", text, position + 1)
    return UserPage(users, text, spans)


def _skip(text: str, position: int) -> int:
    end = len(text)
    while position < end and text[position] in _WHITESPACE:
        position += 1
    return position
