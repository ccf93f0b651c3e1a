"""A membership feed is held in memory whole: it is refused past a byte cap after reading at most one byte more."""

from __future__ import annotations

import io

import pytest

from okta_sync.errors import ChangesFeedError
from okta_sync.sync.membership_changes import MAX_FEED_BYTES, read_membership_feed


class CountingFeed(io.RawIOBase):
    """`size` bytes of valid CSV rows, generated as read, counting what the reader took."""

    ROW = b"Engineering,ann@example.com,add\n"

    def __init__(self, size: int):
        self.left, self.taken = size, 0
        self.header = b"group,user,action\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left <= 0:
            return 0
        chunk = (self.header + self.ROW * (len(buffer) // len(self.ROW) + 1))[:min(len(buffer), self.left)]
        self.header = b""
        buffer[:len(chunk)] = chunk
        self.left -= len(chunk)
        self.taken += len(chunk)
        return len(chunk)


def test_a_feed_over_the_byte_cap_is_refused_after_reading_at_most_one_byte_more():
    feed = CountingFeed(MAX_FEED_BYTES + 16 * 1024 * 1024)  # 80 MiB of rows: main read all of it
    with pytest.raises(ChangesFeedError) as refused:
        read_membership_feed(io.BufferedReader(feed))
    assert feed.taken <= MAX_FEED_BYTES + 1 + io.DEFAULT_BUFFER_SIZE
    assert f"larger than {MAX_FEED_BYTES} bytes" in str(refused.value)
    assert "ann@example.com" not in str(refused.value)


def test_a_feed_within_the_cap_is_read_whole():
    rows = read_membership_feed(io.BytesIO(b"group,user,action\nEngineering,ann@example.com,add\n"))
    assert [(row.group, row.user, row.action) for row in rows] == [("Engineering", "ann@example.com", "add")]
