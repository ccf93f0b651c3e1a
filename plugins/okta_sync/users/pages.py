"""A page of users decoded once with `json.loads`, that can also hand out its users as JSON Lines cut from the
server's own bytes: the export writes them without re-encoding a single user.

The cut is proved, not guessed: every boundary between two top-level objects matches `}` ws* `,` ws* `{`, so one
C-speed `re.subn` over the array's body finds all of them; when it finds exactly `len(page) - 1` matches, none of
them can sit inside a string or a nested array, and each becomes a newline. Strings never hold a raw newline
(JSON escapes it), so each line is then exactly one user. Any other shape (a pretty-printed page, a `},{` inside a
string value, an element that is not an object) keeps no text and the export encodes those users instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

_BOUNDARY = re.compile(rb"\}[ \t]*,[ \t]*\{")


class UserPage(list):
    """A list of user dicts that may also hold its users' JSON text, one user per line, as the server sent it."""

    __slots__ = ("_lines",)

    def __init__(self, users: list[dict[str, Any]], lines: bytes | None):
        super().__init__(users)
        self._lines = lines  # UTF-8, users joined by b"\n", no trailing newline; None when the page could not be cut

    def json_lines(self, kept: Sequence[int] | None = None) -> bytes | None:
        """The users at `kept` (all when None) as JSON Lines with a final newline, or None without server text."""
        if self._lines is None:
            return None
        if kept is None or len(kept) == len(self):
            return self._lines + b"\n" if self else b""
        lines = self._lines.split(b"\n")
        return b"".join(lines[i] + b"\n" for i in kept)

    def json_text(self, index: int) -> str:
        """One user's JSON text: the server's when the page kept it, else encoded."""
        if self._lines is None:
            return json.dumps(self[index], ensure_ascii=False, separators=(",", ":"))
        return self._lines.split(b"\n")[index].decode("utf-8")

    def subset(self, indexes: list[int]) -> "UserPage":
        """The users at these positions, still with their JSON text."""
        lines = None
        if self._lines is not None:
            every = self._lines.split(b"\n")
            lines = b"\n".join(every[i] for i in indexes)
        return UserPage([self[i] for i in indexes], lines)


def decode_user_page(content: bytes) -> Any:
    """`json.loads(content)` (strict UTF-8), except that a top-level array comes back as a `UserPage`. Raises
    ValueError."""
    data = json.loads(content.decode("utf-8"))
    if type(data) is not list:
        return data
    return UserPage(data, _cut_lines(content, data))


def _cut_lines(content: bytes, users: list[Any]) -> bytes | None:
    """The array's body with a newline in place of each top-level boundary, or None when that is not provable."""
    if not users:
        return b""
    if set(map(type, users)) != {dict}:
        return None
    body = content.strip()  # json.loads accepted it: only JSON whitespace around the brackets
    if b"\n" in body or b"\r" in body:  # formatting newlines inside objects (strings never hold a raw one)
        return None
    lines, boundaries = _BOUNDARY.subn(b"}\n{", body[1:-1].strip())
    return lines if boundaries == len(users) - 1 else None
