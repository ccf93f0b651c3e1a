"""Normalisation rules, diff and the change plan (hygiene and changes feed)."""

from __future__ import annotations

import io
import unicodedata
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from okta_sync.sync.change_plan import (
    DEPROVISIONED_REASON, NoChange, Skipped, count_entries, plan_changes_feed, plan_hygiene,
)
from okta_sync.sync.changes_feed import read_changes_feed
from okta_sync.sync.profile_diff import ProfileChange, diff_profile
from okta_sync.sync.profile_rules import Normalizer, NormalizerConfigError

FAST = settings(max_examples=150, deadline=None)
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\x00\x07\x1b\x7f"


def user(uid, status="ACTIVE", **profile):
    profile.setdefault("login", f"{uid}@example.com")
    return {"id": uid, "status": status, "profile": profile}


# --- normalisation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    ("  Ann  ", "Ann"),
    ("Ann\u00a0\u00a0Marie", "Ann Marie"),          # NBSP runs collapse to one ASCII space
    ("Ann\t\nMarie", "Ann Marie"),                   # tabs and newlines are whitespace, not deleted
    ("Jo\u200bhn", "John"),                          # zero-width space
    ("\ufeffZoë", "Zoë"),                            # BOM
    ("Mül\u00adler", "Müller"),                      # soft hyphen
    ("Jose\u0301", "José"),                          # NFC composes
    ("e\u200b\u0301", "é"),                          # invisible removed before composing
    ("O\u2019Brien", "O\u2019Brien"),                # punctuation untouched
    ("ann", "ann"),                                  # no case change by default
])
def test_default_rule_cleans_human_readable_names(raw, clean):
    assert Normalizer.default().normalize_value("firstName", raw) == clean


def test_default_rule_leaves_identifiers_and_addresses_alone():
    normalizer = Normalizer.default()
    for attribute in ("login", "email", "employeeNumber", "managerId", "postalAddress", "customThing"):
        assert normalizer.normalize_value(attribute, " A\u200b  b ") == " A\u200b  b "


def test_non_string_values_pass_through():
    normalizer = Normalizer.from_config({"all_strings": True})
    for value in (None, 3, 2.5, True, [" a "], {"x": " y "}):
        assert normalizer.normalize_value("firstName", value) == value


def test_config_opts_email_into_lowercase_and_excludes_attributes():
    normalizer = Normalizer.from_config(
        '{"attributes": {"email": ["clean", "lowercase"]}, "exclude": ["nickName"], "include": ["costCenter"]}'
    )
    assert normalizer.normalize_value("email", " Ann.Lee@Example.COM ") == "ann.lee@example.com"
    assert normalizer.normalize_value("nickName", " Annie ") == " Annie "
    assert normalizer.normalize_value("firstName", " Ann ") == "Ann"


def test_config_can_start_from_nothing_and_clean_every_string():
    only_title = Normalizer.from_config({"use_defaults": False, "include": ["title"]})
    assert only_title.normalize_value("firstName", " Ann ") == " Ann "
    assert only_title.normalize_value("title", " CEO ") == "CEO"
    everything = Normalizer.from_config({"all_strings": True, "exclude": ["login"]})
    assert everything.normalize_value("customAttr", " x  y ") == "x y"
    assert everything.normalize_value("login", " a ") == " a "


@pytest.mark.parametrize("config, words", [
    ({"attributes": {"email": ["shout"]}}, "unknown step 'shout'"),
    ({"exclude": "login"}, "'exclude' must be a list"),
    ({"default_step": ["clean"]}, "unknown normalisation config keys ['default_step']"),
    ({"all_strings": "yes"}, "'all_strings' must be true or false"),
    ("{not json", "not valid JSON"),
    ([], "must be an object"),
])
def test_bad_config_is_refused_naming_the_problem(config, words):
    with pytest.raises(NormalizerConfigError) as caught:
        Normalizer.from_config(config)
    assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)


_text = st.text(st.characters(codec="utf-8") | st.sampled_from(list(INVISIBLE + " \t\n\u00a0\u2028\u3000\u0301\ud800")))


@FAST
@given(_text, st.booleans())
def test_normalising_twice_changes_nothing(raw, lowercase):
    steps = ["clean", "lowercase"] if lowercase else ["clean"]
    normalizer = Normalizer.from_config({"attributes": {"firstName": steps}})
    once = normalizer.normalize_value("firstName", raw)
    assert normalizer.normalize_value("firstName", once) == once


@FAST
@given(_text)
def test_normalised_text_is_clean(raw):
    out = Normalizer.default().normalize_value("lastName", raw)
    assert unicodedata.is_normalized("NFC", out)
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in out)
    assert out == out.strip()
    assert "  " not in out
    assert all(ch == " " or not ch.isspace() for ch in out)


# --- diff ---------------------------------------------------------------------------------------------------

def test_diff_yields_only_attributes_that_differ():
    current = {"firstName": "Ann", "lastName": "Lee ", "title": None}
    desired = {"firstName": "Ann", "lastName": "Lee", "city": None, "department": "Ops"}
    assert list(diff_profile(current, desired)) == [("lastName", "Lee ", "Lee"), ("department", None, "Ops")]


def test_diff_keeps_json_types_apart():
    assert list(diff_profile({"flag": 1}, {"flag": True})) == [("flag", 1, True)]


def test_update_body_is_the_partial_profile():
    change = ProfileChange("00u1", "a@x.com", "ACTIVE", {"firstName": (" Ann", "Ann"), "city": ("x ", "x")})
    assert change.update_body() == {"profile": {"firstName": "Ann", "city": "x"}}


# --- hygiene plan -------------------------------------------------------------------------------------------

def test_hygiene_plan_accounts_for_every_user():
    users = [
        user("00u1", firstName=" Ann\u200b ", lastName="Lee"),
        user("00u2", firstName="Bo", lastName="Lee"),
        user("00u3", "DEPROVISIONED", firstName="Cy  Z", lastName="Lee"),
    ]
    counts: Counter[str] = Counter()
    entries = list(count_entries(plan_hygiene(users), counts))
    change, unchanged, skipped = entries
    assert isinstance(change, ProfileChange)
    assert change.update_body() == {"profile": {"firstName": "Ann"}}
    assert change.changes == {"firstName": (" Ann\u200b ", "Ann")} and change.source == "hygiene"
    assert unchanged == NoChange("00u2", "00u2@example.com", "ACTIVE")
    assert isinstance(skipped, Skipped) and skipped.reason == DEPROVISIONED_REASON
    assert skipped.changes == {"firstName": ("Cy  Z", "Cy Z")}
    assert counts == {"change": 1, "unchanged": 1, "skipped": 1}


def test_hygiene_plan_is_a_stream():
    def endless():
        n = 0
        while True:
            n += 1
            yield user(f"00u{n}", firstName=" x ", lastName="y")
    plan = plan_hygiene(endless())
    assert [next(plan).user_id for _ in range(3)] == ["00u1", "00u2", "00u3"]


def test_hygiene_never_sends_a_value_okta_refuses():
    # firstName made only of zero-width characters normalises to "", which Okta refuses for a required attribute.
    entry, = plan_hygiene([user("00u1", firstName="\u200b\u200b", lastName=" Lee")])
    assert isinstance(entry, Skipped)
    assert [(i.attribute, i.reason) for i in entry.issues] == [
        ("firstName", "firstName is 0 characters; Okta needs at least 1")
    ]
    assert entry.changes["lastName"] == (" Lee", "Lee")  # reported, not sent


def test_hygiene_skips_a_user_without_id():
    entry, = plan_hygiene([{"status": "ACTIVE", "profile": {"login": "x@y.z", "firstName": " a"}}])
    assert isinstance(entry, Skipped) and entry.login == "x@y.z" and "no id" in entry.reason


# --- changes-feed plan --------------------------------------------------------------------------------------

class FakeDirectory:
    def __init__(self, *users):
        self.users = users
        self.calls = []

    def lookup(self, kind, key):
        self.calls.append((kind, key))
        for u in self.users:
            if (kind == "id" and u["id"] == key) or (kind == "login" and u["profile"]["login"].lower() == key.lower()):
                return u
        return None


def test_feed_plan_changes_only_what_differs_and_reports_unknown_users():
    directory = FakeDirectory(
        user("00u1", login="ann@x.com", firstName="Ann", lastName="Lee", title="Eng"),
        user("00u2", login="bo@x.com", firstName="Bo", lastName="Kim"),
        user("00u3", "DEPROVISIONED", login="cy@x.com", firstName="Cy", lastName="Lee"),
    )
    feed = read_changes_feed(io.StringIO(
        "login,firstName,title\n"
        "ann@x.com,  Ann ,Senior\u00a0 Eng\n"      # title changes; firstName normalises to what Okta has
        "bo@x.com,Bo,\n"                           # nothing to change
        "nobody@x.com,Zed,\n"                      # unknown: reported, never guessed
        "cy@x.com,Cyrus,\n"                        # deprovisioned: skipped with a reason
    ))
    entries = list(plan_changes_feed(feed, directory.lookup))
    change, unchanged, unknown, deprovisioned = entries
    assert isinstance(change, ProfileChange) and change.user_id == "00u1"
    assert change.update_body() == {"profile": {"title": "Senior Eng"}}
    assert change.source == "changes_feed" and change.line == 2
    assert isinstance(unchanged, NoChange) and unchanged.user_id == "00u2"
    assert isinstance(unknown, Skipped) and unknown.reason == "no Okta user with login 'nobody@x.com'"
    assert unknown.changes == {"firstName": (None, "Zed")}
    assert isinstance(deprovisioned, Skipped) and deprovisioned.reason == DEPROVISIONED_REASON
    assert deprovisioned.changes == {"firstName": ("Cy", "Cyrus")}


def okta_path_lookup(*users):
    """A lookup that answers as `GET /api/v1/users/{key}` does: id, login, or an unambiguous login shortname."""
    def lookup(kind, key):
        for u in users:
            if u["id"] == key or u["profile"]["login"].lower() == key.lower():
                return u
        by_shortname = [u for u in users if u["profile"]["login"].partition("@")[0].lower() == key.lower()]
        return by_shortname[0] if len(by_shortname) == 1 else None
    return lookup


def test_a_feed_row_updates_only_the_user_whose_login_or_id_is_its_key():
    jdoe = user("00u1", login="jdoe@example.com", firstName="Jo", title="Eng")
    lookup = okta_path_lookup(jdoe, user("00u2", login="ann@example.com", title="Ops"))
    feed = read_changes_feed(io.StringIO(
        "login,title\n"
        "jdoe,Boss\n"                   # Okta resolves the shortname to jdoe@example.com: not this row's user
        "JDoe@Example.com,Lead\n"       # the login, another case: the user
    ))
    shortname, exact = plan_changes_feed(feed, lookup)
    assert isinstance(shortname, Skipped) and shortname.reason == "no Okta user with login 'jdoe'"
    assert shortname.user_id is None and shortname.changes == {"title": (None, "Boss")}
    assert isinstance(exact, ProfileChange) and exact.user_id == "00u1" and exact.changes == {"title": ("Eng", "Lead")}
    by_id = read_changes_feed(io.StringIO('{"id": "ann", "title": "Boss"}\n{"id": "00u2", "title": "Boss"}\n'))
    wrong, right = plan_changes_feed(by_id, lookup)
    assert isinstance(wrong, Skipped) and wrong.reason == "no Okta user with id 'ann'"
    assert isinstance(right, ProfileChange) and right.user_id == "00u2"


def test_feed_rows_with_issues_are_never_looked_up_or_applied():
    directory = FakeDirectory(user("00u1", firstName="Ann", lastName="Lee"))
    feed = read_changes_feed(io.StringIO("id,firstName,lastName\n00u1,Annabel,%s\n00u9,X,\n" % ("L" * 51)))
    first, second = plan_changes_feed(feed, directory.lookup)
    assert isinstance(first, Skipped) and first.issues[0].attribute == "lastName"
    assert "firstName" in first.changes  # the whole row is held back, the valid attribute too
    assert directory.calls == [("id", "00u9")]
    assert isinstance(second, Skipped)


def test_feed_clearing_is_applied_only_when_allowed():
    directory = FakeDirectory(user("00u1", firstName="Ann", lastName="Lee", title="Eng"))
    line = '{"id": "00u1", "title": null}\n'
    assert isinstance(next(plan_changes_feed(read_changes_feed(io.StringIO(line)), directory.lookup)), NoChange)
    change = next(plan_changes_feed(read_changes_feed(io.StringIO(line), allow_clear=True), directory.lookup))
    assert change.update_body() == {"profile": {"title": None}}


def test_concurrent_feed_lookups_keep_feed_order_and_bound_the_lookahead():
    import threading
    import time as _time

    from okta_sync.sync.changes_feed import FeedRow

    rows = [FeedRow(line=i + 2, key_kind="id", key=f"00u{i}", values={"title": f"T{i}"}, issues=()) for i in range(40)]
    in_flight, peak, lock = [0], [0], threading.Lock()

    def lookup(kind, key):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        _time.sleep(0.01 if int(key[3:]) % 2 else 0.03)  # out-of-order completion
        with lock:
            in_flight[0] -= 1
        return {"id": key, "status": "ACTIVE", "profile": {"login": f"{key}@x.com", "title": "old"}}

    entries = list(plan_changes_feed(rows, lookup, max_workers=4))
    assert [e.user_id for e in entries] == [f"00u{i}" for i in range(40)]
    assert all(e.changes == {"title": ("old", f"T{int(e.user_id[3:])}")} for e in entries)
    assert 1 < peak[0] <= 4
