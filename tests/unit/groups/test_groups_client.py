"""The Groups API client against a scripted server on a real socket: scopes checked before any request, paging by
the `after` cursor through Link, bounds on what a page may hold, idempotent membership writes, concurrent member
reads within one bucket."""

from __future__ import annotations

import threading
import time

import pytest

from okta_sync import OktaClient, OktaConfig, ScopeNotConfiguredError
from okta_sync.errors import LinkHeaderError, NotFoundError, ResponseLimitError
from tests import keys
from tests.fake_clock import FakeClock
from tests.scripted_server import Reply, ScriptedServer, token_reply

TOKEN = "/oauth2/v1/token"
GROUPS = "/api/v1/groups"
READ = "okta.groups.read"
MANAGE = "okta.groups.manage"


@pytest.fixture(scope="module")
def pem():
    return keys.pkcs8_pem(keys.rsa_key())


def client_for(server, pem, scopes=f"{READ} {MANAGE} okta.users.read", **settings) -> OktaClient:
    settings = {"max_attempts": 3, "max_retry_time": 10, **settings}
    config = OktaConfig(org_url=server.url, client_id="0oac", private_key=pem, key_id="k", scopes=scopes, **settings)
    return OktaClient(config, clock=FakeClock())


def scoped_tokens(server):
    server.route("POST", TOKEN, lambda r: token_reply(token="t-" + r.form()["scope"], scope=r.form()["scope"]))


def group(n: int) -> dict:
    return {"id": f"00g{n:017d}", "type": "OKTA_GROUP", "profile": {"name": f"G{n}"},
            "lastMembershipUpdated": "2026-01-01T00:00:00.000Z"}


def test_list_groups_follows_the_after_cursor_and_sends_the_query(pem):
    with ScriptedServer() as server:
        scoped_tokens(server)

        def pages(request):
            after = request.query.get("after", [None])[0]
            if after is None:
                return Reply(200, [group(1), group(2)],
                             {"Link": [f'<{server.url}{GROUPS}?limit=2>; rel="self"',
                                       f'<{server.url}{GROUPS}?after=00g2&limit=2>; rel="next"']})
            return Reply(200, [group(3)], {"Link": f'<{server.url}{GROUPS}?after=00g2&limit=2>; rel="self"'})

        server.route("GET", GROUPS, pages)
        listing = client_for(server, pem).list_groups(search='type eq "OKTA_GROUP"', expand="stats", limit=2,
                                                      sort_by="profile.name", sort_order="asc")
        assert server.requests == []  # a value: nothing requested yet
        assert [g["profile"]["name"] for g in listing] == ["G1", "G2", "G3"]
        first, second = server.requests_to("GET", GROUPS)
        assert first.query == {"search": ['type eq "OKTA_GROUP"'], "expand": ["stats"], "limit": ["2"],
                               "sortBy": ["profile.name"], "sortOrder": ["asc"]}
        assert second.query == {"after": ["00g2"], "limit": ["2"]}
        assert [r.form()["scope"] for r in server.requests_to("POST", TOKEN)] == [READ]  # reads never hold manage
        assert [len(p) for p in listing.pages()] == [2, 1]  # each iteration lists anew


@pytest.mark.parametrize("call, scope", [
    (lambda c: list(c.list_groups()), READ),
    (lambda c: list(c.list_group_members("00g1")), READ),
    (lambda c: c.add_group_member("00g1", "00u1"), MANAGE),
    (lambda c: c.remove_group_member("00g1", "00u1"), MANAGE),
    (lambda c: list(c.list_user_groups("00u1")), "okta.users.read"),
])
def test_each_call_checks_its_scope_before_any_request(pem, call, scope):
    with ScriptedServer() as server:
        scoped_tokens(server)
        client = client_for(server, pem, scopes="okta.users.manage" if scope != "okta.users.read" else READ)
        with pytest.raises(ScopeNotConfiguredError) as raised:
            call(client)
        assert raised.value.scope == scope
        assert scope in str(raised.value)
        assert server.requests == []


def test_manage_alone_serves_group_reads(pem):
    with ScriptedServer() as server:
        scoped_tokens(server)
        server.route("GET", GROUPS, Reply(200, [group(1)]))
        assert len(list(client_for(server, pem, scopes=MANAGE).list_groups())) == 1
        assert server.requests_to("POST", TOKEN)[0].form()["scope"] == MANAGE


def test_membership_writes_are_put_and_delete_with_the_manage_scope_and_resent_when_the_answer_is_lost(pem):
    with ScriptedServer() as server:
        scoped_tokens(server)
        path = f"{GROUPS}/00g1/users/00u1"
        server.route("PUT", path, Reply(200, b"", truncate=True), Reply(204))  # first answer lost mid-body
        server.route("DELETE", path, Reply(503, "<html>503</html>", {"Content-Type": "text/html"}), Reply(204))
        client = client_for(server, pem)
        assert client.add_group_member("00g1", "00u1") is None
        assert client.remove_group_member("00g1", "00u1") is None
        assert len(server.requests_to("PUT", path)) == 2  # idempotent: sent again, no OutcomeUnknownError
        assert len(server.requests_to("DELETE", path)) == 2
        assert {r.form()["scope"] for r in server.requests_to("POST", TOKEN)} == {MANAGE}


@pytest.mark.parametrize("bad", ["", "..", "00g1/users", "00g1?x=1", "a" * 65, "00g%2F1"])
def test_ids_that_cannot_be_okta_ids_are_refused_without_a_request(pem, bad):
    with ScriptedServer() as server:
        scoped_tokens(server)
        client = client_for(server, pem)
        with pytest.raises(ValueError, match="group_id must be an Okta id") as raised:
            client.add_group_member(bad, "00u1")
        assert bad not in str(raised.value) or bad == ""
        with pytest.raises(ValueError, match="user_id"):
            client.remove_group_member("00g1", bad)
        with pytest.raises(ValueError):
            client.list_group_members(bad)
        assert server.requests == []


def test_a_members_page_larger_than_the_limit_or_a_bad_link_is_refused(pem):
    with ScriptedServer() as server:
        scoped_tokens(server)
        server.route("GET", f"{GROUPS}/00g1/users", Reply(200, [{"id": f"00u{i}"} for i in range(3)]))
        server.route("GET", f"{GROUPS}/00g2/users", Reply(200, [{"id": "00u1"}], {"Link": 'rel="next" <broken'}))
        client = client_for(server, pem)
        with pytest.raises(ResponseLimitError, match="more than the limit=2"):
            list(client.list_group_members("00g1", limit=2))
        with pytest.raises(LinkHeaderError):
            list(client.list_group_members("00g2"))


def test_list_user_groups_reads_the_users_resource(pem):
    with ScriptedServer() as server:
        scoped_tokens(server)
        server.route("GET", "/api/v1/users/00u1/groups", Reply(200, [group(1), group(2)]))
        assert [g["id"] for g in client_for(server, pem).list_user_groups("00u1")] == [group(1)["id"], group(2)["id"]]
        assert server.requests_to("POST", TOKEN)[0].form()["scope"] == "okta.users.read"


def test_many_groups_members_are_read_concurrently_and_each_groups_last_page_is_marked(pem):
    in_flight, peak, lock = [0], [0], threading.Lock()

    with ScriptedServer() as server:
        scoped_tokens(server)

        def members(request):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            time.sleep(0.05)
            with lock:
                in_flight[0] -= 1
            group_id = request.path.split("/")[4]
            if "after" not in request.query:
                return Reply(200, [{"id": f"00u{group_id}a"}],
                             {"Link": f'<{server.url}{GROUPS}/{group_id}/users?after=x&limit=1>; rel="next"'})
            return Reply(200, [{"id": f"00u{group_id}b"}])

        ids = [f"00g{n}" for n in range(12)]
        for group_id in ids:
            server.route("GET", f"{GROUPS}/{group_id}/users", members)
        client = client_for(server, pem, max_concurrency=4)
        started = time.monotonic()
        pages = list(client.read_group_members(ids, limit=1))
        elapsed = time.monotonic() - started
    by_group: dict[str, list] = {}
    for page in pages:
        by_group.setdefault(page.group_id, []).append(page)
    assert sorted(by_group) == sorted(ids)
    for group_id, group_pages in by_group.items():
        assert [p.last for p in group_pages] == [False, True]
        assert [u["id"] for p in group_pages for u in p.users] == [f"00u{group_id}a", f"00u{group_id}b"]
    assert 2 <= peak[0] <= 4  # concurrent, never beyond max_concurrency
    assert elapsed < 24 * 0.05  # not one request after another


def test_a_failing_member_read_stops_the_others_and_is_raised(pem):
    with ScriptedServer() as server:
        scoped_tokens(server)
        server.route("GET", f"{GROUPS}/00g1/users", Reply(200, [{"id": "00u1"}]))
        server.route("GET", f"{GROUPS}/00g2/users", Reply(404, {"errorCode": "E0000007", "errorSummary": "Not found"}))
        with pytest.raises(NotFoundError):
            list(client_for(server, pem, max_concurrency=2).read_group_members(["00g1", "00g2", "00g3"]))
