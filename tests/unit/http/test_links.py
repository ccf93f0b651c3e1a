"""Link header parsing: Okta's real headers, every legal shape, and loud failure on garbage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from okta_sync.errors import LinkHeaderError
from okta_sync.http.links import parse_link_header

RECORDINGS = Path(__file__).resolve().parents[3].parent / "shared" / "okta-reference" / "recordings"


def _recorded_link_headers() -> list[tuple[str, list[str]]]:
    if not RECORDINGS.is_dir():
        return []
    found = []
    for cassette in sorted(RECORDINGS.glob("*.yaml")):
        for interaction in yaml.safe_load(cassette.read_text())["interactions"]:
            for name, value in interaction["response"]["headers"].items():
                if name.lower() == "link":
                    values = value if isinstance(value, list) else [value]
                    found.append((f"{cassette.name}:{interaction['request']['uri']}", values))
    return found


RECORDED = _recorded_link_headers()


@pytest.mark.skipif(not RECORDED, reason="../shared/okta-reference/recordings is absent")
@pytest.mark.parametrize("where, values", RECORDED, ids=[w for w, _ in RECORDED] or None)
def test_real_okta_link_headers_parse(where, values):
    links = parse_link_header(values)
    assert links, where
    for rel, url in links.items():
        assert rel in {"self", "next"}
        assert url.startswith("https://test.okta.com/api/v1/")
    if "next" in links:
        assert "after=" in links["next"]


@pytest.mark.skipif(not RECORDED, reason="../shared/okta-reference/recordings is absent")
def test_recorded_pagination_has_next_and_last_page_only_self():
    nexts = [parse_link_header(v).get("next") for _, v in RECORDED]
    assert any(nexts) and any(n is None for n in nexts)


@pytest.mark.parametrize(
    "value, expected",
    [
        ('<https://o/api/v1/users?limit=2>; rel="self"', {"self": "https://o/api/v1/users?limit=2"}),
        ('<https://o/a>; rel="self", <https://o/b?after=x%2Cy>; rel="next"', {"self": "https://o/a", "next": "https://o/b?after=x%2Cy"}),
        ("<https://o/b>; rel=next", {"next": "https://o/b"}),
        ('<https://o/b>;rel="NEXT"', {"next": "https://o/b"}),
        ('<https://o/b>; title="x, y"; rel="prev next"', {"prev": "https://o/b", "next": "https://o/b"}),
        ("", {}),
    ],
)
def test_legal_shapes(value, expected):
    assert parse_link_header(value) == expected


def test_several_headers_combine():
    assert parse_link_header(['<https://o/a>; rel="self"', '<https://o/b>; rel="next"']) == {
        "self": "https://o/a",
        "next": "https://o/b",
    }


@pytest.mark.parametrize("value", ["https://o/b; rel=next", '<https://o/b> rel="next"', "<https://o/b", "garbage"])
def test_garbage_raises(value):
    with pytest.raises(LinkHeaderError):
        parse_link_header(value)


_url = st.from_regex(r"https://[a-z]{1,10}\.okta\.com/api/v1/users\?after=[A-Za-z0-9%]{1,20}&limit=[0-9]{1,3}", fullmatch=True)
_rel = st.sampled_from(["self", "next", "prev"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_url, _rel), min_size=1, max_size=4, unique_by=lambda x: x[1]), st.booleans())
def test_property_formatted_links_round_trip(pairs, one_header):
    rendered = [f'<{url}>; rel="{rel}"' for url, rel in pairs]
    parsed = parse_link_header(", ".join(rendered) if one_header else rendered)
    assert parsed == {rel: url for url, rel in pairs}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_property_never_an_untyped_error(text):
    try:
        result = parse_link_header(text)
    except LinkHeaderError:
        return
    assert isinstance(result, dict)
