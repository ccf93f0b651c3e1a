"""Text a server sent, made safe to put in a log line or an exception message: the one place that does it.

Okta's `errorCode`, `errorSummary`, `errorCauses`, `errorId`, OAuth's `error`/`error_description`, request ids and
any header value quoted in an error are the server's words. Printed raw, a newline starts a log line the server
wrote ("FORGED ..."), ESC/ANSI sequences recolour or erase a terminal, and bidi overrides (U+202E) make a line
read differently from its bytes. Every control character (C0, DEL, C1), bidi control, line or paragraph separator
and lone surrogate is therefore written as its escape (`\\n`, `\\x1b`, `\\u202e`), and a text longer than
`MAX_SERVER_TEXT` characters is cut (a 10 MiB errorSummary must not become a 10 MiB log line).

The exceptions keep only the escaped text in their fields too: an exception's fields reach logs through its
message, Airflow's task log, XCom and reports, so no raw copy is kept anywhere it could leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MAX_SERVER_TEXT = 1000
MAX_SERVER_ITEMS = 20  # errorCauses kept, at most

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 controls (newline, ESC...), DEL, C1 controls (NEL, CSI...)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides and isolates
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff]"  # lone surrogates (from JSON escapes): no log encoder can write them
)
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def server_text(value: Any) -> str | None:
    """`value` (None stays None; anything else as `str`) with unsafe characters escaped, cut at MAX_SERVER_TEXT."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    cut = ""
    if len(text) > MAX_SERVER_TEXT:
        text, cut = text[:MAX_SERVER_TEXT], f"... ({len(text)} characters, cut)"
    if _UNSAFE.search(text):
        text = _UNSAFE.sub(_escape, text)
    return text + cut


def holds_unsafe_text(text: str) -> bool:
    """Whether `text` holds a character `server_text` would escape (controls, bidi, separators, lone surrogates):
    what an input refuses rather than carries into plans, reports and logs."""
    return _UNSAFE.search(text) is not None


def server_texts(values: Iterable[Any]) -> list[str]:
    """Each of `values` as `server_text`, at most MAX_SERVER_ITEMS of them (a count of the rest is added)."""
    texts: list[str] = []
    dropped = 0
    for value in values:
        if len(texts) < MAX_SERVER_ITEMS:
            texts.append(server_text(value) or "")
        else:
            dropped += 1
    if dropped:
        texts.append(f"... and {dropped} more")
    return texts


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
