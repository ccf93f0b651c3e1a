"""The Groups API of the dev org, driven over HTTP by a hand-rolled client: group types, paging, filter and search,
expand=stats, member paging, membership writes (OKTA_GROUP only, idempotent), lastMembershipUpdated, scopes and
rate-limit buckets; then the official Okta SDK as an independent client."""
from __future__ import annotations

import asyncio
import re
import ssl

import pytest
from conftest import OrgClient

from include.okta_dev_org import DevOrg, DevOrgOptions

LINK = re.compile(r'^<([^>]+)>; rel="(self|next)"$')
READ = "okta.groups.read"
MANAGE = "okta.groups.manage"


def links(response) -> dict[str, str]:
    found = {}
    for value in response.raw.headers.getlist("Link"):
        match = LINK.match(value)
        assert match, f"Link header not in Okta's form: {value!r}"
        found[match.group(2)] = match.group(1)
    return found


def page_all(api, url):
    items, pages = [], 0
    while url:
        response = api.get(url, timeout=10)
        assert response.status_code == 200, response.text
        items += response.json()
        pages += 1
        url = links(response).get("next")
    return items, pages


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=300, groups=30, seed=11, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-groups"))
    with DevOrg(options) as org:
        yield org


@pytest.fixture(scope="module")
def reader(org):
    return OrgClient(org).api(READ)


@pytest.fixture(scope="module")
def manager(org):
    return OrgClient(org).api(MANAGE)


def an_okta_group(org, smallest=True) -> dict:
    groups = sorted((g for g in org.admin.groups() if g["type"] == "OKTA_GROUP"), key=lambda g: g["_dev"]["members"])
    return groups[0] if smallest else groups[-1]


def test_seeded_groups_have_the_three_types_and_the_specs_shape(org, reader):
    groups, pages = page_all(reader, f"{org.url}/api/v1/groups?limit=7")
    assert len(groups) == 30 and pages == 5
    assert [g["id"] for g in groups] == sorted(g["id"] for g in groups)  # each once
    kinds = {g["type"] for g in groups}
    assert kinds == {"OKTA_GROUP", "APP_GROUP", "BUILT_IN"}
    everyone = next(g for g in groups if g["type"] == "BUILT_IN")
    assert everyone["profile"]["name"] == "Everyone"
    app_group = next(g for g in groups if g["type"] == "APP_GROUP")
    assert app_group["objectClass"] == ["okta:windows_security_principal"]
    assert app_group["_links"]["source"]["href"].startswith(f"{org.url}/api/v1/apps/0oa")
    for group in groups:
        assert re.fullmatch(r"00g[A-Za-z0-9]{17}", group["id"])
        for stamp in ("created", "lastUpdated", "lastMembershipUpdated"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", group[stamp])
        assert group["_links"]["users"]["href"] == f"{org.url}/api/v1/groups/{group['id']}/users"
        assert "_embedded" not in group
    sizes = sorted(g["_dev"]["members"] for g in org.admin.groups() if g["type"] != "BUILT_IN")
    assert sizes[0] < 10 and sizes[-1] > 50  # realistic spread: a few large groups, many small ones


def test_expand_stats_counts_members(org, reader):
    groups = reader.get(f"{org.url}/api/v1/groups?expand=stats", timeout=10).json()
    for group in groups:
        members, _ = page_all(reader, f"{org.url}/api/v1/groups/{group['id']}/users?limit=200")
        assert group["_embedded"]["stats"]["usersCount"] == len(members)
    assert links(reader.get(f"{org.url}/api/v1/groups?expand=stats&limit=5", timeout=10))["next"].endswith(
        "&expand=stats")


def test_members_page_with_limit_and_after_each_once_as_users(org, reader):
    group = next(g for g in org.admin.groups() if 40 < g["_dev"]["members"] < 300)
    members, pages = page_all(reader, f"{org.url}/api/v1/groups/{group['id']}/users?limit=16")
    expected = org.admin.group_members(group["id"])
    assert [u["id"] for u in members] == expected
    assert pages == -(-len(expected) // 16)
    assert all(set(u) >= {"id", "status", "profile", "_links"} for u in members)
    everyone = next(g for g in org.admin.groups() if g["type"] == "BUILT_IN")
    members, _ = page_all(reader, f"{org.url}/api/v1/groups/{everyone['id']}/users?limit=200")
    assert len(members) == 300  # every user, DEPROVISIONED ones too


def test_filter_on_the_four_properties_and_search_with_sort(org, reader):
    groups = org.admin.groups()
    okta_groups = [g["id"] for g in groups if g["type"] == "OKTA_GROUP"]
    got = reader.get(f"{org.url}/api/v1/groups", params={"filter": 'type eq "OKTA_GROUP"'}, timeout=10).json()
    assert [g["id"] for g in got] == okta_groups
    cut = sorted(g["lastMembershipUpdated"] for g in groups)[len(groups) // 2]
    moved = reader.get(f"{org.url}/api/v1/groups", params={"filter": f'lastMembershipUpdated gt "{cut}"'},
                       timeout=10).json()
    assert {g["id"] for g in moved} == {g["id"] for g in groups if g["lastMembershipUpdated"] > cut}
    one = reader.get(f"{org.url}/api/v1/groups", params={"filter": f'id eq "{okta_groups[0]}" or lastUpdated lt '
                                                                    f'"2000-01-01T00:00:00.000Z"'}, timeout=10).json()
    assert [g["id"] for g in one] == [okta_groups[0]]
    for refused in ('profile.name eq "Everyone"', 'type sw "OKTA"', 'created gt "2020-01-01T00:00:00.000Z"'):
        response = reader.get(f"{org.url}/api/v1/groups", params={"filter": refused}, timeout=10)
        assert response.status_code == 400 and response.json()["errorCode"] == "E0000031", refused
    by_name, _ = page_all(reader, f"{org.url}/api/v1/groups?search=type%20eq%20%22okta_group%22%20or%20type%20eq"
                                  f"%20%22APP_GROUP%22&sortBy=profile.name&sortOrder=desc&limit=4")
    names = [g["profile"]["name"] for g in by_name]
    assert len(names) == 29 and names == sorted(names, key=str.casefold, reverse=True)
    contains = reader.get(f"{org.url}/api/v1/groups", params={"search": 'profile.name co "emea"'}, timeout=10).json()
    assert contains and all("emea" in g["profile"]["name"].lower() for g in contains)
    refused = reader.get(f"{org.url}/api/v1/groups", params={"search": 'type co "GROUP"'}, timeout=10)
    assert refused.status_code == 400


def test_membership_writes_move_last_membership_updated_once_per_change_and_are_idempotent(org, manager, reader):
    group = an_okta_group(org)
    outsider = next(u["id"] for u in org.admin.users() if u["id"] not in org.admin.group_members(group["id"]))
    before = org.admin.group(group["id"])["lastMembershipUpdated"]
    url = f"{org.url}/api/v1/groups/{group['id']}/users/{outsider}"
    assert manager.put(url, timeout=10).status_code == 204
    added = org.admin.group(group["id"])["lastMembershipUpdated"]
    assert added > before and outsider in org.admin.group_members(group["id"])
    assert manager.put(url, timeout=10).status_code == 204  # again: nothing changes
    assert org.admin.group(group["id"])["lastMembershipUpdated"] == added
    assert manager.delete(url, timeout=10).status_code == 204
    removed = org.admin.group(group["id"])["lastMembershipUpdated"]
    assert removed > added and outsider not in org.admin.group_members(group["id"])
    assert manager.delete(url, timeout=10).status_code == 204
    assert org.admin.group(group["id"])["lastMembershipUpdated"] == removed
    mine = reader.get(f"{org.url}/api/v1/users/{outsider}/groups", timeout=10)
    assert mine.status_code == 403  # listUserGroups is guarded by okta.users.read
    users_reader = OrgClient(org).api("okta.users.read")
    assert group["id"] not in [g["id"] for g in users_reader.get(f"{org.url}/api/v1/users/{outsider}/groups",
                                                                 timeout=10).json()]


def test_built_in_and_app_group_memberships_are_refused_and_unknown_ids_are_404(org, manager):
    user = org.admin.users()[0]["id"]
    for group in org.admin.groups():
        if group["type"] in ("BUILT_IN", "APP_GROUP"):
            before = org.admin.group(group["id"])
            for method in ("put", "delete"):
                response = getattr(manager, method)(f"{org.url}/api/v1/groups/{group['id']}/users/{user}", timeout=10)
                assert response.status_code == 403 and response.json()["errorCode"] == "E0000006"
            assert org.admin.group(group["id"]) == before
    okta_group = an_okta_group(org)["id"]
    assert manager.put(f"{org.url}/api/v1/groups/00gnosuchgroup0000000/users/{user}", timeout=10).status_code == 404
    assert manager.put(f"{org.url}/api/v1/groups/{okta_group}/users/00unosuchuser00000000", timeout=10).status_code == 404
    login = org.admin.users()[0]["profile"]["login"]
    assert manager.put(f"{org.url}/api/v1/groups/{okta_group}/users/{login}", timeout=10).status_code == 404
    assert manager.get(f"{org.url}/api/v1/groups/00gnosuchgroup0000000/users", timeout=10).status_code == 404


def test_scopes_read_cannot_write_and_users_scopes_cannot_read_groups(org, reader):
    group, user = an_okta_group(org)["id"], org.admin.users()[0]["id"]
    refused = reader.put(f"{org.url}/api/v1/groups/{group}/users/{user}", timeout=10)
    assert refused.status_code == 403 and 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    users_only = OrgClient(org).api("okta.users.read okta.users.manage")
    assert users_only.get(f"{org.url}/api/v1/groups", timeout=10).status_code == 403
    manage = OrgClient(org).api(MANAGE)
    assert manage.get(f"{org.url}/api/v1/groups?limit=1", timeout=10).status_code == 200  # manage reads too


def test_admin_changes_between_runs_any_type_and_deleted_groups_leave_the_listing(org, reader):
    app_group = next(g for g in org.admin.groups() if g["type"] == "APP_GROUP")
    user = next(u["id"] for u in org.admin.users() if u["id"] not in org.admin.group_members(app_group["id"]))
    changed = org.admin.change_members(app_group["id"], add=[user])  # as an AD import would
    assert changed["added"] == 1 and changed["lastMembershipUpdated"] > app_group["lastMembershipUpdated"]
    made = org.admin.create_group("Temporary", "made for a test")
    listed = {g["id"] for g in reader.get(f"{org.url}/api/v1/groups", timeout=10).json()}
    assert made["id"] in listed and made["type"] == "OKTA_GROUP"
    org.admin.delete_group(made["id"])
    listed = {g["id"] for g in reader.get(f"{org.url}/api/v1/groups", timeout=10).json()}
    assert made["id"] not in listed
    assert reader.get(f"{org.url}/api/v1/groups/{made['id']}/users", timeout=10).status_code == 404


def test_group_buckets_are_counted_apart_and_limited(fresh_org):
    org = fresh_org(users=30, groups=5, rate_limit=0, rate_limits={"group_members": 3})
    api = OrgClient(org).api(f"{READ} {MANAGE}")
    group = org.admin.groups()[1]["id"]
    statuses = [api.get(f"{org.url}/api/v1/groups/{group}/users", timeout=10).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert api.get(f"{org.url}/api/v1/groups", timeout=10).status_code == 200  # another bucket
    response = api.get(f"{org.url}/api/v1/groups/{group}/users", timeout=10)
    assert response.headers["X-Rate-Limit-Limit"] == "3" and response.headers["X-Rate-Limit-Remaining"] == "0"
    buckets = org.admin.stats()["requests_by_bucket"]
    assert buckets["group_members"] == 5 and buckets["groups_list"] == 1


okta_client = pytest.importorskip("okta.client")
okta_http_client = pytest.importorskip("okta.http_client")
PaginationHelper = pytest.importorskip("okta.pagination").PaginationHelper


@pytest.mark.filterwarnings("ignore:ssl_context is deprecated:DeprecationWarning")
def test_official_sdk_pages_groups_and_members_and_changes_a_membership(fresh_org):
    org = fresh_org(users=120, groups=12, tls=True, rate_limit=0)
    connection = org.connection
    context = ssl.create_default_context(cafile=connection["ca_bundle"])

    class TrustingHTTPClient(okta_http_client.HTTPClient):
        def __init__(self, http_config=None):
            super().__init__({**(http_config or {}), "sslContext": context})

    with open(connection["private_key_path"]) as handle:
        config = {"orgUrl": connection["org_url"], "authorizationMode": "PrivateKey",
                  "clientId": connection["client_id"], "scopes": [READ, MANAGE], "privateKey": handle.read(),
                  "kid": connection["key_id"], "httpClient": TrustingHTTPClient, "logging": {"enabled": False}}
    target = next(g for g in org.admin.groups() if g["type"] == "OKTA_GROUP" and 5 < g["_dev"]["members"] < 100)
    before = org.admin.group_members(target["id"])
    outsider = next(u["id"] for u in org.admin.users() if u["id"] not in before)

    async def run():
        client = okta_client.Client(config)
        groups, cursor = [], None
        for _ in range(20):
            page, response, error = await client.list_groups(limit=5, after=cursor)
            assert error is None, error
            groups += page
            cursor = PaginationHelper.extract_next_cursor(response.headers)
            if cursor is None:
                break
        members, cursor = [], None
        for _ in range(50):
            page, response, error = await client.list_group_users(target["id"], limit=3, after=cursor)
            assert error is None, error
            members += page
            cursor = PaginationHelper.extract_next_cursor(response.headers)
            if cursor is None:
                break
        *_, error = await client.assign_user_to_group(target["id"], outsider)
        assert error is None, error
        return groups, members

    groups, members = asyncio.run(run())
    assert [g.id for g in groups] == [g["id"] for g in org.admin.groups()]
    assert {g.type.value if hasattr(g.type, "value") else g.type for g in groups} >= {"OKTA_GROUP", "BUILT_IN"}
    assert [u.id for u in members] == before
    assert org.admin.group_members(target["id"]) == sorted([*before, outsider])
