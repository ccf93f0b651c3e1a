"""How `GET|POST /api/v1/users/{x}` resolves x, as Okta documents it (OpenAPI getUser, pathId): an id, a login, or a
login shortname "as long as the shortname is unambiguous"; logins holding `/` only by id; `;` and `\\` as Okta's
servlet stack reads them (okta-sdk-java #1526). And conditional updates: `ETag` on a user, `If-Match`, 412."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from conftest import OrgClient

from include.okta_dev_org import DevOrg, DevOrgOptions

USERS = "/api/v1/users"


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    """A private org: these tests add users, which the shared org's listing tests must not see."""
    options = DevOrgOptions(users=30, seed=11, deprovisioned_fraction=0, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-lookup"))
    with DevOrg(options) as org:
        for login in ("jdoe@example.com", "kim.twin@a.example", "kim.twin@b.example", "ops/bot@example.com"):
            org.admin.add_user({"login": login, "email": login, "firstName": "F", "lastName": "L"})
        yield org


@pytest.fixture(scope="module")
def api(org):
    return OrgClient(org).api()


def by_login(org, login: str) -> dict:
    return next(u for u in org.admin.users() if u["profile"]["login"] == login)


def get(org, api, key: str, encoded: bool = False):
    return api.get(f"{org.url}{USERS}/{key if encoded else quote(key, safe='')}", timeout=10)


def test_a_unique_login_shortname_resolves_like_the_login_and_the_id(org, api):
    jdoe = by_login(org, "jdoe@example.com")
    for key in (jdoe["id"], "jdoe@example.com", "JDoe@Example.COM", "jdoe", "JDOE"):
        response = get(org, api, key)
        assert response.status_code == 200, key
        assert response.json()["id"] == jdoe["id"]
    seeded = org.admin.users(limit=4)[3]
    shortname = seeded["profile"]["login"].partition("@")[0]
    assert get(org, api, shortname).json()["id"] == seeded["id"]
    # updates resolve the path the same way (pathId): a POST to /users/jdoe writes jdoe@example.com
    assert api.post(f"{org.url}{USERS}/jdoe", json={"profile": {"title": "Via shortname"}}, timeout=10).status_code == 200
    assert org.admin.user(jdoe["id"])["profile"]["title"] == "Via shortname"


def test_an_ambiguous_shortname_finds_nobody(org, api):
    response = get(org, api, "kim.twin")
    assert response.status_code == 404
    assert response.json()["errorCode"] == "E0000007"
    for login in ("kim.twin@a.example", "kim.twin@b.example"):
        assert get(org, api, login).json()["profile"]["login"] == login


def test_a_login_holding_a_slash_is_found_only_by_id_or_search(org, api):
    bot = by_login(org, "ops/bot@example.com")
    response = get(org, api, "ops/bot@example.com")  # ops%2Fbot%40example.com
    assert response.status_code == 404
    assert response.json()["errorCode"] == "E0000007"
    assert api.post(f"{org.url}{USERS}/ops%2Fbot%40example.com", json={"profile": {"title": "x"}},
                    timeout=10).status_code == 404
    assert get(org, api, bot["id"]).json()["profile"]["login"] == "ops/bot@example.com"
    found = api.get(f"{org.url}{USERS}", params={"search": 'profile.login eq "ops/bot@example.com"'}, timeout=10)
    assert [u["id"] for u in found.json()] == [bot["id"]]


def test_a_semicolon_cuts_the_key_and_a_backslash_is_refused(org, api):
    jdoe = by_login(org, "jdoe@example.com")
    cut = get(org, api, "jdoe;evil@example.com")  # Okta drops the path parameter: this is a lookup of "jdoe"
    assert cut.status_code == 200 and cut.json()["id"] == jdoe["id"]
    refused = get(org, api, "jdoe\\x@example.com")
    assert refused.status_code == 400
    assert refused.headers["Content-Type"].startswith("text/html")


def test_every_user_read_and_update_carries_an_etag_that_changes_with_the_user(org, api):
    user = org.admin.users(limit=1)[0]
    url = f"{org.url}{USERS}/{user['id']}"
    first, again = api.get(url, timeout=10), api.get(url, timeout=10)
    assert first.headers["ETag"].startswith('W/"') and first.headers["ETag"] == again.headers["ETag"]
    updated = api.post(url, json={"profile": {"title": "ETag one"}}, timeout=10)
    assert updated.status_code == 200
    assert updated.headers["ETag"] != first.headers["ETag"]
    assert api.get(url, timeout=10).headers["ETag"] == updated.headers["ETag"]


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_an_update_conditional_on_a_stale_etag_is_412_and_writes_nothing(org, api, method):
    user = org.admin.users(offset=1, limit=1)[0]
    url = f"{org.url}{USERS}/{user['id']}"
    stale = api.get(url, timeout=10).headers["ETag"]
    assert api.post(url, json={"profile": {"title": "Changed elsewhere"}}, timeout=10).status_code == 200
    current = api.get(url, timeout=10)
    profile = dict(current.json()["profile"], title="Mine")
    org.admin.reset_stats()
    refused = api.request(method, url, json={"profile": profile}, headers={"If-Match": stale}, timeout=10)
    assert refused.status_code == 412
    body = refused.json()
    assert set(body) == {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}
    assert org.admin.user(user["id"])["profile"]["title"] == "Changed elsewhere"
    assert org.admin.stats()["updates_total"] == 0
    for if_match in (current.headers["ETag"], "*"):
        accepted = api.request(method, url, json={"profile": profile}, headers={"If-Match": if_match}, timeout=10)
        assert accepted.status_code == 200, accepted.text
        profile["title"] += "!"
    assert org.admin.user(user["id"])["profile"]["title"] == "Mine!"


def test_an_update_without_if_match_is_unconditional(org, api):
    user = org.admin.users(offset=2, limit=1)[0]
    response = api.post(f"{org.url}{USERS}/{user['id']}", json={"profile": {"title": "No precondition"}}, timeout=10)
    assert response.status_code == 200
