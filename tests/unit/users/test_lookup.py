"""Finding the user a feed row names, against the dev org with DPoP required (as new Okta service apps are).

Okta's `GET /api/v1/users/{x}` also resolves a login shortname (`jdoe` -> `jdoe@example.com`), cuts a key at `;`,
and cannot take a `/` at all: a row updates only the user whose id or login is its key. Logins with `@`, `+` and
spaces go through the path percent-encoded, with a DPoP proof whose `htu` is the decoded path (as Okta checks it).
"""

from __future__ import annotations

import io

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync import OktaClient, OktaConfig
from okta_sync.sync.change_plan import Skipped, plan_changes_feed
from okta_sync.sync.changes_feed import read_changes_feed
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.push import PushOptions, push_changes
from okta_sync.sync.reports import ReportStatus

LOGINS = ("jdoe@example.com", "ops/bot@example.com", "ann+tag@example.com", "semi;colon@example.com",
          'q"uote\\d@example.com')


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=20, seed=5, deprovisioned_fraction=0, rate_limit=0, concurrency_limit=0,
                            dpop="required", state_dir=tmp_path_factory.mktemp("devorg-dpop-lookup"))
    with DevOrg(options) as org:
        for login in LOGINS:
            org.admin.add_user({"login": login, "email": "x@example.com", "firstName": "F", "lastName": "L",
                                "title": "Before"})
        yield org


@pytest.fixture(scope="module")
def client(org):
    c = org.connection
    config = OktaConfig(org_url=c["org_url"], client_id=c["client_id"], private_key_path=c["private_key_path"],
                        key_id=c["key_id"], dpop="on", max_attempts=2, max_retry_time=10)
    with OktaClient(config) as client:
        yield client


def okta_user(org, login: str) -> dict:
    return next(u for u in org.admin.users() if u["profile"]["login"] == login)


def updates(org) -> dict:
    return org.admin.stats()["updates"]


@pytest.mark.parametrize("login", ["jdoe@example.com", "JDOE@example.COM", "ann+tag@example.com"])
def test_get_user_by_login_with_a_dpop_bound_token(org, client, login):
    assert client.get_user(login)["id"] == okta_user(org, login.lower())["id"]
    assert client.get_token().is_dpop


def test_a_seeded_login_and_a_missing_login_with_a_space(org, client):
    seeded = org.admin.users(limit=1)[0]
    assert client.get_user(seeded["profile"]["login"])["id"] == seeded["id"]
    assert client.find_user("login", "no body@example.com") is None  # 404 about the user, not a refused proof
    before = org.admin.stats()["requests"]
    for key in ("..", ".", "", "a\nb@example.com"):  # '..' would be sent as GET /api/v1/ (dot segments)
        assert client.find_user("login", key) is None
    assert org.admin.stats()["requests"] == before


def test_find_user_never_returns_the_user_okta_resolved_by_shortname(org, client):
    jdoe = okta_user(org, "jdoe@example.com")
    assert client.get_user("jdoe")["id"] == jdoe["id"]  # what Okta's path answers
    assert client.find_user("login", "jdoe") is None
    assert client.find_user("login", "jdoe;x@example.com") is None  # Okta would look up "jdoe"
    assert client.find_user("id", "jdoe") is None
    assert client.find_user("login", "JDoe@Example.com")["id"] == jdoe["id"]
    assert client.find_user("id", jdoe["id"])["id"] == jdoe["id"]


@pytest.mark.parametrize("login", ["ops/bot@example.com", "semi;colon@example.com", 'q"uote\\d@example.com'])
def test_logins_okta_cannot_take_in_the_path_are_searched_never_sent_there(org, client, login):
    with pytest.raises(ValueError, match="find_user"):
        client.get_user(login)
    assert client.find_user("login", login)["id"] == okta_user(org, login)["id"]
    assert client.find_user("login", login.upper())["id"] == okta_user(org, login)["id"]
    assert client.find_user("login", login.replace("@", "x@")) is None


def test_a_feed_keyed_by_login_changes_exactly_the_named_users(org, client):
    feed = read_changes_feed(io.StringIO(
        "login,title\n"
        "jdoe,Shortname\n"                      # resolves to jdoe@example.com in Okta's path: not found here
        "ops/bot@example.com,Slash\n"           # found by search
        "ANN+TAG@example.com,Plus\n"            # the login in another case
        "no body@example.com,Nobody\n"
    ))
    entries = list(plan_changes_feed(feed, client.find_user))
    assert [type(e).__name__ for e in entries] == ["Skipped", "ProfileChange", "ProfileChange", "Skipped"]
    assert entries[0].reason == "no Okta user with login 'jdoe'"
    before = updates(org)
    rows = []
    push_changes(client, [e for e in entries if isinstance(e, ProfileChange)], _Rows(rows), PushOptions())
    assert [(r.login, r.status) for r in rows] == [("ops/bot@example.com", ReportStatus.APPLIED),
                                                   ("ann+tag@example.com", ReportStatus.APPLIED)]
    assert okta_user(org, "jdoe@example.com")["profile"]["title"] == "Before"
    assert okta_user(org, "ops/bot@example.com")["profile"]["title"] == "Slash"
    assert okta_user(org, "ann+tag@example.com")["profile"]["title"] == "Plus"
    changed = {uid: n for uid, n in updates(org).items() if n != before.get(uid)}
    assert set(changed) == {okta_user(org, "ops/bot@example.com")["id"], okta_user(org, "ann+tag@example.com")["id"]}
    assert isinstance(entries[3], Skipped)


class _Rows:
    def __init__(self, rows):
        self.rows = rows

    def write(self, row):
        self.rows.append(row)
