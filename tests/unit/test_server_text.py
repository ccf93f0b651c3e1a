"""`server_text`: what a server wrote, escaped before it reaches a log line or an exception message."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from okta_sync.server_text import MAX_SERVER_TEXT, server_text, server_texts


def test_controls_bidi_separators_and_surrogates_are_escaped_and_the_rest_kept():
    assert server_text("a\nb\r\tc\x1b[31md\x00\x7f\x85\x9b") == "a\\nb\\r\\tc\\x1b[31md\\x00\\x7f\\x85\\x9b"
    assert server_text("\u202eabc\u2066\u200f\u2028\u2029\ud800") == "\\u202eabc\\u2066\\u200f\\u2028\\u2029\\ud800"
    assert server_text("Müller, 東京, C:\\path, 'quoted'") == "Müller, 東京, C:\\path, 'quoted'"
    assert server_text(None) is None and server_text(42) == "42"


def test_long_texts_and_long_lists_are_cut_and_say_so():
    assert server_text("x" * 5000) == "x" * MAX_SERVER_TEXT + "... (5000 characters, cut)"
    assert server_texts(str(i) for i in range(25))[-2:] == ["19", "... and 5 more"]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_no_escaped_text_holds_a_character_that_breaks_or_recolours_a_line(text):
    escaped = server_text(text)
    assert escaped.isprintable() or all(
        unicodedata.category(char) not in ("Cc", "Zl", "Zp", "Cs") and char not in "\u202a\u202b\u202c\u202d\u202e"
        "\u2066\u2067\u2068\u2069\u200e\u200f\u061c" for char in escaped)
