"""A users page decoded once keeps each user's JSON text, and the export writes that text without re-encoding."""
from __future__ import annotations

import io
import json

import pytest

from okta_sync.export import read_users_jsonl, write_users_jsonl
from okta_sync.user_pages import UserPage, decode_user_page

USERS = [
    {"id": "00u1", "status": "ACTIVE", "lastUpdated": "2025-01-02T00:00:00.000Z",
     "profile": {"firstName": "Zoë", "note": "a,]}\" \\n tricky"}},
    {"id": "00u2", "status": "DEPROVISIONED", "lastUpdated": "2025-03-04T00:00:00.000Z", "profile": {}},
]


@pytest.mark.parametrize("body", [
    json.dumps(USERS, separators=(",", ":"), ensure_ascii=False),
    json.dumps(USERS, indent=2),
    json.dumps(USERS),
])
def test_a_page_decodes_like_json_loads_and_keeps_each_users_text(body):
    page = decode_user_page(body.encode())
    assert isinstance(page, UserPage) and page == USERS
    assert [json.loads(page.json_text(i)) for i in range(len(page))] == USERS


@pytest.mark.parametrize("body", [b"[", b"[1,", b"[1 2]", b"[1,]", b"[,]", b"[]x", b"", b"\xff"])
def test_a_damaged_page_is_a_value_error_the_transport_retries(body):
    with pytest.raises(ValueError):
        decode_user_page(body)


def test_bodies_that_are_not_arrays_decode_as_json_loads_would():
    assert decode_user_page(b'{"errorCode":"E0000031"}') == {"errorCode": "E0000031"}
    assert decode_user_page(b" [ ] ") == []


@pytest.mark.parametrize("indent", [None, 2])
def test_the_export_writes_the_servers_text_one_line_per_user(indent):
    body = json.dumps(USERS, separators=(",", ":"), indent=indent, ensure_ascii=False).encode()
    out = io.BytesIO()
    result = write_users_jsonl([decode_user_page(body)], out, keep=lambda u: u["status"] != "SUSPENDED")
    lines = out.getvalue().decode().splitlines()
    assert [json.loads(line) for line in lines] == USERS
    if indent is None:
        assert lines[0] == json.dumps(USERS[0], separators=(",", ":"), ensure_ascii=False)
    assert list(read_users_jsonl(io.BytesIO(out.getvalue()))) == USERS
    assert result.users == 2 and dict(result.by_status) == {"ACTIVE": 1, "DEPROVISIONED": 1}
    assert result.max_last_updated == "2025-03-04T00:00:00.000Z"


def test_the_export_filter_applies_to_server_text_too():
    out = io.BytesIO()
    result = write_users_jsonl([decode_user_page(json.dumps(USERS).encode()), []], out,
                               keep=lambda u: u["status"] == "ACTIVE")
    assert [json.loads(line)["id"] for line in out.getvalue().decode().splitlines()] == ["00u1"]
    assert result.users == 1 and result.pages == 2 and result.max_last_updated == "2025-01-02T00:00:00.000Z"
