"""A users page decoded once keeps each user's JSON text, and the export writes that text without re-encoding."""
from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from okta_sync.sync.export import read_users_jsonl, write_users_jsonl
from okta_sync.users import pages as pages_module
from okta_sync.users.pages import UserPage, decode_user_page

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


# Strings built from the characters that could fool a boundary scan: braces, commas, quotes, escapes, whitespace.
_tricky_text = st.text(alphabet=st.sampled_from(list('{},[]":\\ \t\n\r\u2028é😀a')) | st.characters(), max_size=12)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_tricky_text, inner, max_size=3), max_leaves=8)
_users = st.lists(st.fixed_dictionaries({"id": _tricky_text, "status": st.sampled_from(["ACTIVE", "SUSPENDED"])},
                                        optional={"profile": st.dictionaries(_tricky_text, _values, max_size=4)}),
                  max_size=6)


def _body(users, style: str) -> bytes:
    if style == "compact":
        return json.dumps(users, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    if style == "ascii":
        return json.dumps(users).encode()
    if style == "indent":
        return json.dumps(users, indent=1).encode()
    return (" [ " + " ,\t".join(json.dumps(u, separators=(", ", " : ")) for u in users) + " ] ").encode()


@given(users=_users, style=st.sampled_from(["compact", "ascii", "indent", "spaced"]), with_keep=st.booleans())
@settings(max_examples=400, deadline=None)
def test_any_page_exports_as_exactly_one_valid_json_object_per_line(users, style, with_keep):
    try:
        body = _body(users, style)
        body.decode("utf-8")
    except UnicodeError:
        return  # a lone surrogate written raw is not UTF-8: Okta cannot send it (it escapes it)
    page = decode_user_page(body)
    assert page == users
    indexes = list(range(0, len(users), 2))
    out = io.BytesIO()
    write_users_jsonl([page], out, keep=(lambda u: True) if with_keep else None)
    subset = io.BytesIO()
    write_users_jsonl([page.subset(indexes)], subset)
    for output, expected in ((out.getvalue(), users), (subset.getvalue(), [users[i] for i in indexes])):
        output.decode("utf-8")  # always valid UTF-8
        lines = output.split(b"\n")
        assert lines[-1] == b""
        assert [json.loads(line) for line in lines[:-1]] == expected


def test_a_boundary_lookalike_inside_a_string_is_not_cut():
    users = [{"id": "00u1", "note": "x},{y"}, {"id": "00u2", "note": "}, {"}]
    for body in (json.dumps(users, separators=(",", ":")), json.dumps(users)):
        page = decode_user_page(body.encode())
        assert page.json_lines() is None  # more lookalikes than boundaries: the users are encoded instead
        out = io.BytesIO()
        write_users_jsonl([page], out)
        assert [json.loads(line) for line in out.getvalue().splitlines()] == users


def test_an_okta_shaped_page_is_cut_from_the_servers_bytes_not_re_encoded():
    body = b'[{"id":"00u1","profile":{"firstName":"Zo\\u00eb","url":"a\\/b"}},\n{"id":"00u2","profile":{}}]'
    body = body.replace(b"\n", b"")
    out = io.BytesIO()
    write_users_jsonl([decode_user_page(body)], out)
    assert out.getvalue() == body[1:-1].replace(b"},{", b"}\n{") + b"\n"  # escapes kept as sent


# Large pages are decoded in runs of about RUN_BYTES; a tiny run size makes every page here a large one.
@given(users=_users, style=st.sampled_from(["compact", "ascii", "indent", "spaced"]),
       run_bytes=st.integers(min_value=1, max_value=120), cut=st.integers(min_value=0, max_value=10_000))
@settings(max_examples=400, deadline=None)
def test_a_page_decoded_in_runs_is_exactly_what_json_loads_gives(users, style, run_bytes, cut):
    try:
        body = _body(users, style)
        body.decode("utf-8")
    except UnicodeError:
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pages_module, "RUN_BYTES", run_bytes)
        assert pages_module.decode_page(body) == json.loads(body)
        page = decode_user_page(body)
        assert page == users
        out = io.BytesIO()
        write_users_jsonl([page, page.subset(list(range(0, len(users), 2)))], out)
        lines = out.getvalue().split(b"\n")
        assert [json.loads(line) for line in lines[:-1]] == users + users[::2]
        damaged = body[:cut % max(len(body), 1)]  # a truncated body: what json.loads gives, or its ValueError
        try:
            expected = json.loads(damaged)
        except ValueError:
            for decode in (pages_module.decode_page, decode_user_page):
                with pytest.raises(ValueError):
                    decode(damaged)
        else:
            assert pages_module.decode_page(damaged) == decode_user_page(damaged) == expected


def test_a_cut_that_lands_inside_a_string_decodes_the_page_whole():
    users = [{"id": f"00u{i}", "note": "x" * 20 + "},{" * 10} for i in range(6)]
    body = json.dumps(users, separators=(",", ":")).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pages_module, "RUN_BYTES", 10)  # every cut searched from inside a note: most land there
        assert pages_module.decode_page(body) == users
        page = decode_user_page(body)
    assert page == users and page.json_lines() is None  # lookalikes: the export encodes these users


def test_an_okta_sized_page_is_decoded_and_written_in_pieces_not_as_one_block():
    users = [{"id": f"00u{i:017d}", "status": "ACTIVE", "profile": {"login": f"user{i}@example.com",
                                                                     "note": "é" * 1200}} for i in range(200)]
    body = json.dumps(users, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(body) > 10 * pages_module.RUN_BYTES
    page = decode_user_page(body)
    assert page == users

    class Recorder(io.BytesIO):
        sizes: list[int] = []

        def write(self, data):
            self.sizes.append(len(data))
            return super().write(data)

    out = Recorder()
    write_users_jsonl([page], out)
    assert out.getvalue() == body[1:-1].replace(b"},{", b"}\n{") + b"\n"  # the server's bytes, one user a line
    longest_line = max(map(len, out.getvalue().split(b"\n")))
    assert len(out.sizes) > 1 and max(out.sizes) <= pages_module.RUN_BYTES + longest_line + 1
