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


# Hostile rows are reported as row issues (or refuse the feed, naming the line), never crash the plan task with an
# error outside okta_sync's, never carry control or bidi characters into the plan and report, never guess.
@pytest.mark.parametrize("line, reason", [
    (b'{"group":' + b"[" * 30_000 + b"]" * 30_000 + b"}", "not a JSON object"),  # RecursionError before
    (b'{"group":"Eng","user":"a@example.com","action":"remove","action":"add"}', "a member is repeated"),
    (b'{"group":"\\ud800","user":"a@example.com","action":"add"}', "group is longer than"),  # a lone surrogate
    (b'{"group":"Eng\\u202egnE","user":"a@example.com","action":"add"}', "group is longer than"),  # a bidi override
    (b'{"group":"Eng\\u009bX","user":"a@example.com","action":"add"}', "group is longer than"),  # a C1 control (CSI)
    (b'{"group":"Eng","user":"a@example.com","action":NaN}', "not a JSON object"),
])
def test_hostile_json_lines_rows_are_reported_by_reason(line, reason):
    rows = read_membership_feed(io.BytesIO(b'{"group":"Eng","user":"b@example.com","action":"add"}\n' + line + b"\n"))
    assert rows[0].issue is None and rows[1].line == 2 and rows[1].issue.startswith(reason)


def test_a_line_separator_inside_a_json_string_does_not_split_the_line():
    feed = '{"group":"Eng","user":"b@example.com","action":"add","note":"a\u2028b"}\n' \
           '{"group":"Ops","user":"c@example.com","action":"add"}\n'
    rows = read_membership_feed(io.BytesIO(feed.encode()))
    assert [(row.line, row.group, row.issue) for row in rows] == [(1, "Eng", None), (2, "Ops", None)]


def test_a_csv_cell_past_the_csv_field_limit_refuses_the_feed_naming_the_line():
    feed = b"group,user,action\nEng,a@example.com,add\n\"" + b"x" * 200_000 + b"\",b@example.com,add\n"
    with pytest.raises(ChangesFeedError) as refused:
        read_membership_feed(io.BytesIO(feed))
    assert refused.value.line == 3 and "xxxx" not in str(refused.value)


def test_no_more_than_one_row_past_the_row_cap_is_made(monkeypatch):
    from okta_sync.sync import membership_changes

    made = []
    real = membership_changes._row
    monkeypatch.setattr(membership_changes, "_row", lambda line, values: made.append(line) or real(line, values))
    feed = b"group,user,action\n" + b"Eng,a@example.com,add\n" * 1000
    with pytest.raises(ChangesFeedError, match="more than 10 rows"):
        read_membership_feed(io.BytesIO(feed), max_rows=10)
    assert len(made) == 11


@pytest.mark.parametrize("plan_line", [
    '{"line":3,"group":"Eng","user":"a","action":"add","status":"applied","group_id":null,"user_id":null,"reason":null}',
    '{"line":"3","group":"Eng","user":"a","action":"add","status":"skipped","group_id":null,"user_id":null,'
    '"reason":"x"}',
    '{"line":' + "[" * 30_000 + "]" * 30_000 + "}",
])
def test_a_plan_line_with_a_status_the_plan_task_never_writes_is_refused(plan_line):
    from okta_sync.sync.membership_changes import MembershipEntry

    with pytest.raises(ChangesFeedError, match="plan line 4"):
        MembershipEntry.from_json(plan_line, 4)
