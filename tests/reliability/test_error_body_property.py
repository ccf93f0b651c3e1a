"""Property: whatever bytes an error response carries (Okta JSON, OAuth JSON, a proxy's HTML, garbage, truncation),
`parse_error_body` returns text fields and never raises, and a real Okta error keeps its code, summary and causes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from okta_sync.http.api_errors import api_error, parse_error_body

_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
_json = st.recursive(_json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=12), inner, max_size=3)),
                     max_leaves=8)
_okta_error = st.fixed_dictionaries(
    {"errorCode": st.from_regex(r"E0{3}\d{3}", fullmatch=True), "errorSummary": st.text(max_size=60)},
    optional={"errorId": st.text(max_size=25), "errorLink": st.text(max_size=10),
              "errorCauses": st.lists(st.one_of(st.fixed_dictionaries({"errorSummary": st.text(max_size=40)}),
                                                _json), max_size=3)},
)


def _bodies():
    as_json = st.one_of(_okta_error, _json).map(lambda value: json.dumps(value).encode())
    truncated = as_json.flatmap(lambda data: st.integers(0, len(data)).map(lambda cut: data[:cut]))
    return st.one_of(as_json, truncated, st.binary(max_size=200),
                     st.text(max_size=120).map(lambda text: text.encode("utf-8", "surrogatepass")))


@settings(max_examples=400, deadline=None)
@given(_bodies(), st.one_of(st.none(), st.sampled_from(["application/json", "text/html; charset=utf-8", ""])))
def test_any_body_gives_text_fields_and_never_raises(content, content_type):
    fields = parse_error_body(content, content_type)
    assert fields.get("error_summary") is None or isinstance(fields["error_summary"], str)
    for name in ("error_code", "error_id"):
        assert fields.get(name) is None or isinstance(fields[name], str)
    assert all(isinstance(cause, str) for cause in fields.get("error_causes", []))
    if not fields.get("error_code"):
        assert fields["error_summary"]  # something a person can read, even for a proxy's page
    error = api_error(status=502, method="GET", path="/api/v1/users", headers={}, content=content)
    assert str(error).startswith("GET /api/v1/users failed: HTTP 502")


@settings(max_examples=200, deadline=None)
@given(_okta_error)
def test_an_okta_error_keeps_its_fields(body):
    fields = parse_error_body(json.dumps(body).encode(), "application/json")
    assert fields["error_code"] == body["errorCode"]
    assert fields["error_summary"] == body["errorSummary"]
    summaries = [c["errorSummary"] for c in body.get("errorCauses", []) if isinstance(c, dict) and "errorSummary" in c]
    assert all(summary in fields["error_causes"] for summary in summaries if summary)
