"""Conditional updates: the push sends the re-read's ETag in `If-Match` (Okta's updateUser), so a change that lands
between the re-read and the POST gets a 412 instead of being overwritten; the user is re-read and decided again."""

from __future__ import annotations

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync import OktaClient, OktaConfig
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.push import CHANGED_SINCE_PLANNING, KEPT_CHANGING, MAX_PRECONDITION_REREADS, PushOptions, push_changes
from okta_sync.sync.reports import ReportStatus
from tests import keys
from tests.scripted_server import Reply, ScriptedServer, token_reply

USERS = "/api/v1/users"


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=12, seed=9, deprovisioned_fraction=0, other_status_fraction=0, rate_limit=0,
                            concurrency_limit=0, state_dir=tmp_path_factory.mktemp("devorg-conditional"))
    with DevOrg(options) as org:
        yield org


def client_for(org) -> OktaClient:
    c = org.connection
    return OktaClient(OktaConfig(org_url=c["org_url"], client_id=c["client_id"], private_key_path=c["private_key_path"],
                                 key_id=c["key_id"], max_attempts=2, max_retry_time=10))


class Rows:
    def __init__(self):
        self.rows = []

    def write(self, row):
        self.rows.append(row)

    def by_attribute(self):
        return {row.attribute: row for row in self.rows}


class SomeoneElseWritesAfterTheReread:
    """The push's client, but right after its re-read of a user another admin changes that user (once): the
    window a real concurrent change falls into."""

    def __init__(self, client: OktaClient, other: OktaClient, change: dict):
        self.client, self.other, self.change = client, other, change
        self.meddled: set[str] = set()

    def _meddle(self, user_id: str) -> None:
        if user_id not in self.meddled:
            self.meddled.add(user_id)
            self.other.update_profile(user_id, self.change)

    def get_user(self, user_id):
        user = self.client.get_user(user_id)
        self._meddle(user_id)
        return user

    def get_user_with_etag(self, user_id):
        version = self.client.get_user_with_etag(user_id)
        self._meddle(user_id)
        return version

    def update_profile(self, *args, **kwargs):
        return self.client.update_profile(*args, **kwargs)


def planned(org, index: int, **new) -> ProfileChange:
    user = org.admin.users(offset=index, limit=1)[0]
    changes = {name: (user["profile"].get(name), value) for name, value in new.items()}
    return ProfileChange(user["id"], user["profile"]["login"], user["status"], changes)


def test_a_change_made_between_the_reread_and_the_post_is_never_overwritten(org):
    change = planned(org, 1, title="Planned title")
    with client_for(org) as client, client_for(org) as other:
        report = Rows()
        users = SomeoneElseWritesAfterTheReread(client, other, {"title": "Set by someone else"})
        push_changes(users, [change], report, PushOptions(max_concurrency=1))
    (row,) = report.rows
    assert row.status == ReportStatus.SKIPPED and row.reason == CHANGED_SINCE_PLANNING
    assert row.old == "Set by someone else" and row.new == "Planned title"
    assert org.admin.user(change.user_id)["profile"]["title"] == "Set by someone else"
    assert org.admin.stats()["updates"][change.user_id] == {"POST": 1}  # only the other admin's


def test_after_a_412_attributes_nobody_touched_are_still_sent_and_the_concurrent_change_is_kept(org):
    change = planned(org, 2, title="Planned title", city="Planned city")
    with client_for(org) as client, client_for(org) as other:
        report = Rows()
        users = SomeoneElseWritesAfterTheReread(client, other, {"title": "Set by someone else",
                                                                "department": "Moved"})
        push_changes(users, [change], report, PushOptions(max_concurrency=1))
    rows = report.by_attribute()
    assert rows["title"].status == ReportStatus.SKIPPED and rows["title"].reason == CHANGED_SINCE_PLANNING
    assert rows["city"].status == ReportStatus.APPLIED
    profile = org.admin.user(change.user_id)["profile"]
    assert (profile["title"], profile["city"], profile["department"]) == ("Set by someone else", "Planned city", "Moved")


def test_a_concurrent_change_to_the_planned_value_is_reported_unchanged(org):
    change = planned(org, 3, title="Planned title")
    with client_for(org) as client, client_for(org) as other:
        report = Rows()
        push_changes(SomeoneElseWritesAfterTheReread(client, other, {"title": "Planned title"}), [change], report,
                     PushOptions(max_concurrency=1))
    (row,) = report.rows
    assert row.status == ReportStatus.UNCHANGED
    assert org.admin.stats()["updates"][change.user_id] == {"POST": 1}


# -- against a scripted server: what an older org or a user that never stops changing gets -------------------------

@pytest.fixture(scope="module")
def pem():
    return keys.pkcs8_pem(keys.rsa_key())


def scripted_client(server, pem) -> OktaClient:
    config = OktaConfig(org_url=server.url, client_id="0oac", private_key=pem, key_id="k", max_attempts=2,
                        max_retry_time=10)
    return OktaClient(config)


def okta_user(title: str) -> dict:
    return {"id": "00u1", "status": "ACTIVE", "profile": {"login": "a@example.com", "title": title}}


def test_an_org_that_sends_no_etag_gets_an_unconditional_update(pem):
    with ScriptedServer() as server:
        server.route("POST", "/oauth2/v1/token", token_reply())
        server.route("GET", f"{USERS}/00u1", Reply(200, okta_user("Old")))
        server.route("POST", f"{USERS}/00u1", Reply(200, okta_user("New")))
        report = Rows()
        with scripted_client(server, pem) as client:
            push_changes(client, [ProfileChange("00u1", "a@example.com", "ACTIVE", {"title": ("Old", "New")})], report,
                         PushOptions())
        (post,) = server.requests_to("POST", f"{USERS}/00u1")
        assert "If-Match" not in post.headers
        assert report.rows[0].status == ReportStatus.APPLIED


def test_a_user_that_changes_under_every_update_is_reread_a_bounded_number_of_times(pem):
    reads = iter(range(100))

    def read(request):
        return Reply(200, okta_user("Old"), headers={"ETag": f'W/"v{next(reads)}"'})

    with ScriptedServer() as server:
        server.route("POST", "/oauth2/v1/token", token_reply())
        server.route("GET", f"{USERS}/00u1", read)
        server.route("POST", f"{USERS}/00u1", Reply(412, {"errorCode": "E0000412", "errorSummary": "Precondition",
                                                           "errorId": "oae1", "errorCauses": []}))
        report = Rows()
        with scripted_client(server, pem) as client:
            push_changes(client, [ProfileChange("00u1", "a@example.com", "ACTIVE", {"title": ("Old", "New")})], report,
                         PushOptions())
        posts = server.requests_to("POST", f"{USERS}/00u1")
        assert [p.headers["If-Match"] for p in posts] == [f'W/"v{i}"' for i in range(MAX_PRECONDITION_REREADS + 1)]
        assert len(server.requests_to("GET", f"{USERS}/00u1")) == MAX_PRECONDITION_REREADS + 1
    (row,) = report.rows
    assert row.status == ReportStatus.FAILED and row.reason == KEPT_CHANGING and row.error_code == "E0000412"


@pytest.mark.parametrize("etag", ['W/"a b"', "not-quoted", 'W/"' + "x" * 5000 + '"'])
def test_an_etag_that_is_not_an_entity_tag_is_never_sent_back(pem, etag):
    with ScriptedServer() as server:
        server.route("POST", "/oauth2/v1/token", token_reply())
        server.route("GET", f"{USERS}/00u1", Reply(200, okta_user("Old"), headers={"ETag": etag}))
        server.route("POST", f"{USERS}/00u1", Reply(200, okta_user("New")))
        with scripted_client(server, pem) as client:
            push_changes(client, [ProfileChange("00u1", "a@example.com", "ACTIVE", {"title": ("Old", "New")})],
                         Rows(), PushOptions())
        (post,) = server.requests_to("POST", f"{USERS}/00u1")
        assert "If-Match" not in post.headers
