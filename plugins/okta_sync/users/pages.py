"""Decoding a page of users as `json.loads` would, in runs of users instead of the page's whole text, keeping each
user's JSON text as the server sent it for the export (which then writes it without re-encoding a single user).

Runs, not the whole page: a page of 200 users is up to ~0.5 MB. Decoding it in one piece allocates a `str` that
size (and the export's text more such copies) per page. glibc serves blocks over its 128 KiB mmap threshold with
mmap but raises that threshold once such a block is freed, so later ones come from the heaps of the threads that
page, where they fragment: a partitioned listing's peak RSS grew with the pages it read (docs/benchmarks.md,
snapshot feeds). The body itself is still one block (the transport reads it whole); alone it does not grow RSS.

A large array's body is cut about every `RUN_BYTES` at a text matching `}` ws* `,` ws* `{` and each run decoded as
`[run]`. The cut needs no proof that it is not inside a string: a JSON text has exactly one parse, so when every
`[run]` decodes, the runs' elements are the array's; when one does not, the page is decoded whole, as before (and a
page that is not valid JSON raises the same ValueError).

Each user's text is proved, not guessed, the same way per run: when a run holds exactly `len(run) - 1` matches of
that boundary, none of them can sit inside a string or a nested array, so each separates two users. Strings never
hold a raw newline (JSON escapes it), so each user's text is then one line. Any other shape (a pretty-printed page,
a `},{` inside a string value, an element that is not an object) keeps no text and the export encodes those users.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

_BOUNDARY = re.compile(rb"\}[ \t]*,[ \t]*\{")
_JSON_WHITESPACE = b" \t\r\n"
# The text decoded at once. Its `str` takes a byte per character for the ASCII and Latin-1 text Okta sends (2 or 4
# beyond), so a run and the one user past its cut stay under glibc's initial 128 KiB mmap threshold; a page of 200
# users is 5 to 15 runs (smaller runs cost measurable time in a partitioned listing, larger ones memory).
RUN_BYTES = 32 * 1024


class UserPage(list):
    """A list of user dicts that may also hold each user's JSON text (one line, UTF-8) as the server sent it."""

    __slots__ = ("_runs",)

    def __init__(self, users: list[dict[str, Any]], runs: list[bytes] | None):
        super().__init__(users)
        # The users' texts in order, in pieces of whole lines joined by b"\n" (no final newline), each a few KB;
        # None when the page could not be cut.
        self._runs = runs

    def json_lines(self, kept: Sequence[int] | None = None) -> bytes | None:
        """The users at `kept` (all when None) as JSON Lines with a final newline, or None without server text."""
        chunks = self.json_line_chunks(kept)
        return None if chunks is None else b"".join(chunks)

    def json_line_chunks(self, kept: Sequence[int] | None = None) -> list[bytes] | None:
        """`json_lines` in pieces of whole lines, each about `RUN_BYTES` (a page's text is never one block), or
        None without server text."""
        if self._runs is None:
            return None
        if kept is None or len(kept) == len(self):
            return [run + b"\n" for run in self._runs if run]
        return _chunks(self._lines(), kept)

    def json_text(self, index: int) -> str:
        """One user's JSON text: the server's when the page kept it, else encoded."""
        if self._runs is None:
            return json.dumps(self[index], ensure_ascii=False, separators=(",", ":"))
        return self._lines()[index].decode("utf-8")

    def subset(self, indexes: list[int]) -> "UserPage":
        """The users at these positions, still with their JSON text."""
        runs = None if self._runs is None else [chunk[:-1] for chunk in _chunks(self._lines(), indexes)]
        return UserPage([self[i] for i in indexes], runs)

    def _lines(self) -> list[bytes]:
        return [line for run in self._runs or () if run for line in run.split(b"\n")]


def decode_page(content: bytes) -> Any:
    """`json.loads(content)`, a large array decoded in runs (see the module's docstring). Raises ValueError."""
    runs = _runs(content)
    if runs is not None:
        users = _decode_runs(runs, strict_utf8=False)
        if users is not None:
            return users
    return json.loads(content)


def decode_user_page(content: bytes) -> Any:
    """`json.loads(content)` (strict UTF-8), except that a top-level array comes back as a `UserPage`. Raises
    ValueError."""
    runs = _runs(content)
    if runs is not None:
        users = _decode_runs(runs, strict_utf8=True)
        if users is not None:
            return UserPage(users, _run_lines(runs, users))
    data = json.loads(content.decode("utf-8"))
    if type(data) is not list:
        return data
    return UserPage(data, _cut_lines(content, data))


def _runs(content: bytes) -> list[bytes] | None:
    """A large array's body cut at a boundary about every `RUN_BYTES`; None for a small page, a non-array, or an
    array with no boundary past the first run (pretty-printed, or one huge element)."""
    if len(content) <= RUN_BYTES:
        return None
    body = content.strip(_JSON_WHITESPACE)
    if body[:1] != b"[" or body[-1:] != b"]":
        return None
    runs: list[bytes] = []
    start, end = 1, len(body) - 1
    while end - start > RUN_BYTES:
        boundary = _BOUNDARY.search(body, start + RUN_BYTES, end)
        if boundary is None:
            break
        runs.append(body[start:boundary.start() + 1])
        start = boundary.end() - 1
    runs.append(body[start:end])
    return runs if len(runs) > 1 else None


def _decode_runs(runs: list[bytes], *, strict_utf8: bool) -> list[Any] | None:
    """The elements of every run in order, or None when a run does not decode (a cut inside a string, or a page
    that is not JSON: the caller decodes it whole)."""
    users: list[Any] = []
    try:
        for run in runs:
            text = b"".join((b"[", run, b"]"))
            users += json.loads(text.decode("utf-8") if strict_utf8 else text)
    except ValueError:
        return None
    return users


def _run_lines(runs: list[bytes], users: list[Any]) -> list[bytes] | None:
    """The runs with a newline between users, or None when a cut is not proved (see the module's docstring)."""
    if set(map(type, users)) != {dict}:
        return None
    lines: list[bytes] = []
    count = 0
    for run in runs:
        run = run.strip(_JSON_WHITESPACE)
        if b"\n" in run or b"\r" in run:  # formatting newlines inside objects (strings never hold a raw one)
            return None
        cut, boundaries = _BOUNDARY.subn(b"}\n{", run)
        lines.append(cut)
        count += boundaries + 1
    return lines if count == len(users) else None


def _cut_lines(content: bytes, users: list[Any]) -> list[bytes] | None:
    """The array's whole body with a newline between users (one run), or None when that is not provable."""
    if not users:
        return []
    return _run_lines([content.strip()[1:-1]], users)  # json.loads accepted it: only whitespace around [ ]


def _chunks(lines: list[bytes], indexes: Sequence[int]) -> list[bytes]:
    """The lines at `indexes`, a newline after each, in pieces of about `RUN_BYTES`."""
    chunks: list[bytes] = []
    piece: list[bytes] = []
    size = 0
    for i in indexes:
        piece.append(lines[i])
        size += len(lines[i]) + 1
        if size >= RUN_BYTES:
            chunks.append(b"\n".join(piece) + b"\n")
            piece, size = [], 0
    if piece:
        chunks.append(b"\n".join(piece) + b"\n")
    return chunks
