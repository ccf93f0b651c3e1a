"""The Users API: paging, Link headers, search/filter, reads, updates, validation and permissions."""
from __future__ import annotations

import re
import time
import unicodedata
from urllib.parse import quote

import pytest
from conftest import SHARED_USERS, OrgClient
from client_assertions import new_rsa_key, public_jwk

LINK = re.compile(r'^<([^>]+)>; rel="(self|next)"$')


def links(response) -> dict[str, str]:
    found = {}
    for value in response.raw.headers.getlist("Link"):
        match = LINK.match(value)
        assert match, f"Link header not in Okta's form: {value!r}"
        found[match.group(2)] = match.group(1)
    return found


def page_all(api, url):
    pages = []
    while url:
        response = api.get(url, timeout=10)
        assert response.status_code == 200, response.text
        pages.append(response)
        url = links(response).get("next")
    return pages


def test_paging_returns_every_non_deprovisioned_user_exactly_once(devorg, api):
    pages = page_all(api, f"{devorg.url}/api/v1/users?limit=50")
    ids = [user["id"] for page in pages for user in page.json()]
    everyone = devorg.admin.users()
    expected = [u["id"] for u in everyone if u["status"] != "DEPROVISIONED"]
    assert len(everyone) == SHARED_USERS
    assert len(expected) < SHARED_USERS, "the seed should include DEPROVISIONED users"
    assert ids == expected  # each once, in id order
    assert ids == sorted(ids)


def test_link_headers_have_okta_form(devorg, api):
    first = api.get(f"{devorg.url}/api/v1/users")
    found = links(first)
    assert found["self"] == f"{devorg.url}/api/v1/users?limit=200"
    last_id = first.json()[-1]["id"]
    assert found["next"] == f"{devorg.url}/api/v1/users?after=0{last_id}&limit=200"
    pages = page_all(api, found["next"])
    assert "next" not in links(pages[-1])
    assert links(pages[0])["self"] == found["next"]


def test_limit_defaults_to_200_and_is_capped_at_200(devorg, api):
    assert len(api.get(f"{devorg.url}/api/v1/users").json()) == 200
    capped = api.get(f"{devorg.url}/api/v1/users?limit=1000")
    assert len(capped.json()) == 200
    assert links(capped)["self"].endswith("?limit=200")


def test_listed_users_carry_only_a_self_link_and_okta_timestamps(devorg, api):
    user = api.get(f"{devorg.url}/api/v1/users?limit=1").json()[0]
    assert list(user["_links"]) == ["self"]
    assert re.fullmatch(r"00u[0-9A-Za-z]{17}", user["id"])
    for name in ("created", "lastUpdated"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", user[name])
    assert {"firstName", "lastName", "email", "login", "mobilePhone", "secondEmail"} <= set(user["profile"])


def test_filter_and_search_include_deprovisioned_users(devorg, api):
    everyone = devorg.admin.users()
    gone = sorted(u["id"] for u in everyone if u["status"] == "DEPROVISIONED")
    expression = quote('status eq "DEPROVISIONED"')
    for param in ("filter", "search"):
        pages = page_all(api, f"{devorg.url}/api/v1/users?{param}={expression}&limit=7")
        assert [u["id"] for p in pages for u in p.json()] == gone
        if len(pages) > 1:
            assert f"&{param}=status%20eq%20%22DEPROVISIONED%22" in links(pages[0])["next"]


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


def test_filter_on_last_updated_ranges_and_combinations(devorg, api):
    everyone = devorg.admin.users()
    stamps = sorted(u["lastUpdated"] for u in everyone)
    pivot = stamps[len(stamps) // 2]
    expression = f'lastUpdated gt "{pivot}" and (status eq "ACTIVE" or status eq "SUSPENDED")'
    got = [u["id"] for p in page_all(api, f"{devorg.url}/api/v1/users?filter={quote(expression)}") for u in p.json()]
    want = [u["id"] for u in everyone
            if u["lastUpdated"] > pivot and u["status"] in ("ACTIVE", "SUSPENDED")]
    assert got == want and want
    ge = api.get(f"{devorg.url}/api/v1/users", params={"filter": f'lastUpdated ge "{pivot}"'}).json()
    assert pivot in {u["lastUpdated"] for u in ge}


def test_filter_on_login_and_id(devorg, api):
    someone = devorg.admin.users()[5]
    by_login = api.get(f"{devorg.url}/api/v1/users",
                       params={"filter": f'profile.login eq "{someone["profile"]["login"]}"'}).json()
    assert [u["id"] for u in by_login] == [someone["id"]]
    by_id = api.get(f"{devorg.url}/api/v1/users", params={"filter": f'id eq "{someone["id"]}"'}).json()
    assert [u["id"] for u in by_id] == [someone["id"]]


def test_search_supports_created_ranges_and_starts_with(devorg, api):
    everyone = devorg.admin.users()
    pivot = sorted(u["created"] for u in everyone)[100]
    expression = quote(f'created lt "{pivot}"')
    got = [u["id"] for p in page_all(api, f"{devorg.url}/api/v1/users?search={expression}") for u in p.json()]
    assert got == [u["id"] for u in everyone if u["created"] < pivot]
    department = everyone[0]["profile"]["department"]
    found = api.get(f"{devorg.url}/api/v1/users",
                    params={"search": f'profile.department eq "{department}"'}).json()
    assert found and all(u["profile"]["department"] == department for u in found)


@pytest.mark.parametrize("param,expression", [
    ("filter", 'created gt "2020-01-01T00:00:00.000Z"'),  # filter supports lastUpdated ranges only
    ("filter", 'profile.department eq "Sales"'),
    ("filter", 'status ne "ACTIVE"'),
    ("filter", 'not status eq "ACTIVE"'),
    ("search", 'status ne "ACTIVE"'),
    ("search", 'profile.department co "Sal"'),
    ("search", 'lastUpdated gt "yesterday"'),
    ("search", 'status eq ACTIVE'),
    ("search", '(status eq "ACTIVE"'),
])
def test_unsupported_expressions_are_400_e0000031(devorg, api, param, expression):
    response = api.get(f"{devorg.url}/api/v1/users", params={param: expression})
    assert response.status_code == 400
    assert response.json()["errorCode"] == "E0000031"


def test_get_user_by_id_and_by_url_encoded_login_with_etag(devorg, api):
    someone = devorg.admin.users()[3]
    by_id = api.get(f"{devorg.url}/api/v1/users/{someone['id']}")
    assert by_id.status_code == 200
    assert by_id.headers["ETag"]
    assert {"self", "schema", "type"} <= set(by_id.json()["_links"])
    by_login = api.get(f"{devorg.url}/api/v1/users/{quote(someone['profile']['login'], safe='')}")
    assert by_login.json()["id"] == someone["id"]


def test_unknown_user_is_404_e0000007(devorg, api):
    response = api.get(f"{devorg.url}/api/v1/users/00uDoesNotExist000000")
    assert response.status_code == 404
    body = response.json()
    assert body["errorCode"] == "E0000007"
    assert body["errorSummary"] == "Not found: Resource not found: 00uDoesNotExist000000 (User)"
    assert re.fullmatch(r"oae[\w-]{22}", body["errorId"])
    assert response.headers["X-Okta-Request-Id"]


def test_partial_update_merges_and_advances_last_updated(fresh_org):
    org = fresh_org()
    api = OrgClient(org).api()
    user = org.admin.users()[0]
    response = api.post(f"{org.url}/api/v1/users/{user['id']}", json={"profile": {"nickName": "JD", "title": "CTO"}})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["profile"]["nickName"] == "JD" and updated["profile"]["title"] == "CTO"
    assert updated["profile"]["firstName"] == user["profile"]["firstName"]
    assert updated["lastUpdated"] > user["lastUpdated"]
    assert api.get(f"{org.url}/api/v1/users/{user['id']}").json()["profile"]["nickName"] == "JD"
    assert org.admin.stats()["updates"] == {user["id"]: {"POST": 1}}


def test_replace_removes_unspecified_attributes(fresh_org):
    org = fresh_org()
    api = OrgClient(org).api()
    user = org.admin.users()[1]
    profile = {k: user["profile"][k] for k in ("login", "email", "lastName")}
    profile["firstName"] = "Jane"
    response = api.put(f"{org.url}/api/v1/users/{user['id']}", json={"profile": profile})
    assert response.status_code == 200, response.text
    replaced = response.json()["profile"]
    assert replaced["firstName"] == "Jane"
    assert "department" not in replaced and "title" not in replaced
    assert replaced["mobilePhone"] is None and replaced["secondEmail"] is None
    missing = api.put(f"{org.url}/api/v1/users/{user['id']}", json={"profile": {"firstName": "Jane"}})
    assert missing.status_code == 400 and missing.json()["errorCode"] == "E0000001"
    assert org.admin.stats()["updates"][user["id"]] == {"PUT": 1}


@pytest.mark.parametrize("body", [None, [], {"nickName": "x"}, {"profile": "x"}, {"profile": []}])
def test_bodies_without_a_profile_object_are_e0000003(devorg, api, body):
    user = devorg.admin.users()[2]
    response = api.post(f"{devorg.url}/api/v1/users/{user['id']}", json=body)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "E0000003"
    assert response.json()["errorSummary"] == "The request body was not well-formed."


def test_invalid_json_is_e0000003(devorg, api):
    user = devorg.admin.users()[2]
    response = api.post(f"{devorg.url}/api/v1/users/{user['id']}", data=b"{not json",
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["errorCode"] == "E0000003"


@pytest.mark.parametrize("profile,cause", [
    ({"firstName": "x" * 51}, "firstName: The field cannot exceed 50 characters"),
    ({"lastName": "y" * 51}, "lastName: The field cannot exceed 50 characters"),
    ({"login": "not-an-email"}, "login: Username must be in the form of an email address"),
    ({"email": "nope@"}, "email: Does not match required pattern"),
    ({"firstName": ""}, "firstName: The field cannot be left blank"),
])
def test_values_okta_refuses_are_e0000001_with_causes(devorg, api, profile, cause):
    user = devorg.admin.users()[2]
    response = api.post(f"{devorg.url}/api/v1/users/{user['id']}", json={"profile": profile})
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == "E0000001"
    assert body["errorSummary"].startswith("Api validation failed: ")
    assert {"errorSummary": cause} in body["errorCauses"]
    assert devorg.admin.user(user["id"])["profile"] == user["profile"]


def test_a_login_taken_by_another_user_is_refused(devorg, api):
    first, second = devorg.admin.users()[:2]
    response = api.post(f"{devorg.url}/api/v1/users/{first['id']}",
                        json={"profile": {"login": second["profile"]["login"].upper()}})
    assert response.status_code == 400
    assert response.json()["errorCauses"] == [
        {"errorSummary": "login: An object with this field already exists in the current organization"}]


def test_users_outside_the_resource_set_are_403_e0000006(fresh_org):
    org = fresh_org()
    api = OrgClient(org).api()
    user = org.admin.users()[0]
    org.admin.set_user_flags(user["id"], outside_resource_set=True)
    response = api.post(f"{org.url}/api/v1/users/{user['id']}", json={"profile": {"title": "x"}})
    assert response.status_code == 403
    assert response.json()["errorCode"] == "E0000006"
    assert response.json()["errorSummary"] == "You do not have permission to perform the requested action"


def test_missing_scope_is_403_with_okta_www_authenticate(fresh_org):
    org = fresh_org()
    reader_key = new_rsa_key()
    org.admin.register_client("0oaReadOnly000000000", [public_jwk(reader_key, "r1")], ["okta.users.read"])
    reader = OrgClient(org, client_id="0oaReadOnly000000000", key=reader_key, kid="r1")
    api = reader.api("okta.users.read")
    user = org.admin.users()[0]
    response = api.post(f"{org.url}/api/v1/users/{user['id']}", json={"profile": {"title": "x"}})
    assert response.status_code == 403
    assert response.json()["errorCode"] == "E0000006"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer authorization_uri="{org.url}/oauth2/v1/authorize", realm="IdpRealm", ')
    assert 'error="insufficient_scope"' in challenge
    assert 'error_description="The access token provided does not contain the required scopes."' in challenge
    assert f'resource="/api/v1/users/{user["id"]}"' in challenge
    assert api.get(f"{org.url}/api/v1/users?limit=1").status_code == 200


def normalise(value: str) -> str:
    value = unicodedata.normalize("NFC", value)
    value = "".join(c for c in value if c not in "\u200b\ufeff" and unicodedata.category(c) != "Cc")
    return " ".join(value.split())


def test_messy_users_are_recorded_and_a_normaliser_fixes_exactly_them(devorg):
    everyone = devorg.admin.users()
    messy = devorg.admin.messy()
    assert 0.1 < len(messy) / len(everyone) < 0.3  # messy_fraction=0.2
    for user in everyone:
        fields = user["_dev"]["messy_fields"]
        assert bool(fields) == (user["id"] in messy) == user["_dev"]["messy"]
        for name in ("firstName", "lastName", "displayName", "title", "department"):
            value = user["profile"][name]
            if name in fields:
                assert value != fields[name] and normalise(value) == fields[name]
            else:
                assert normalise(value) == value


def test_q_is_a_prefix_match_without_paging(devorg, api):
    someone = next(u for u in devorg.admin.users() if u["status"] == "ACTIVE" and not u["_dev"]["messy"])
    prefix = someone["profile"]["lastName"][:3]
    response = api.get(f"{devorg.url}/api/v1/users", params={"q": prefix})
    found = response.json()
    assert 0 < len(found) <= 10  # q defaults to limit 10
    assert "next" not in links(response)
    assert all(any(str(u["profile"].get(n) or "").casefold().startswith(prefix.casefold())
                   for n in ("firstName", "lastName", "email")) for u in found)


def test_search_cap_stops_paging_a_search(fresh_org):
    org = fresh_org(users=120, search_cap=50, deprovisioned_fraction=0.0)
    api = OrgClient(org).api()
    pages = page_all(api, f"{org.url}/api/v1/users?limit=20&search={quote('status pr')}")
    assert sum(len(p.json()) for p in pages) == 50
    listed = page_all(api, f"{org.url}/api/v1/users?limit=20")
    assert sum(len(p.json()) for p in listed) == 120  # plain listing is not capped


def test_admin_can_change_status_and_add_users(fresh_org):
    org = fresh_org()
    api = OrgClient(org).api()
    user = org.admin.users()[0]
    org.admin.set_user_status(user["id"], "DEPROVISIONED")
    listed = [u["id"] for p in page_all(api, f"{org.url}/api/v1/users") for u in p.json()]
    assert user["id"] not in listed
    added = org.admin.add_user({"firstName": "Ada", "lastName": "Lovelace", "login": "ada@example.com",
                                "email": "ada@example.com"})
    assert api.get(f"{org.url}/api/v1/users/ada%40example.com").json()["id"] == added["id"]
