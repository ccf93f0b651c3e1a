"""`OktaClient`'s groups calls against the dev org: every group and every member once, concurrent member reads paced
within the `group_members` bucket (no 429), membership writes with a token that only then holds manage."""

from __future__ import annotations

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync import OktaClient, OktaConfig
from okta_sync.errors import PermissionDeniedError


def client_for(org, scopes="okta.groups.read okta.groups.manage okta.users.read", **settings) -> OktaClient:
    c = org.connection
    config = OktaConfig(org_url=c["org_url"], client_id=c["client_id"], private_key_path=c["private_key_path"],
                        key_id=c["key_id"], scopes=scopes, max_attempts=3, max_retry_time=30, **settings)
    return OktaClient(config)


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    # Member reads limited to 12 per one-second window: 36 groups cannot be read in one window.
    options = DevOrgOptions(users=400, groups=36, seed=9, rate_limit=0, concurrency_limit=0, latency_ms=20,
                            rate_limits={"group_members": 12}, rate_limit_window=1,
                            state_dir=tmp_path_factory.mktemp("devorg-groups-client"))
    with DevOrg(options) as org:
        yield org


def test_every_group_and_every_member_once_read_concurrently_within_the_bucket(org):
    org.admin.reset_stats()
    with client_for(org, max_concurrency=6) as client:
        groups = list(client.list_groups(limit=10))
        members: dict[str, list[str]] = {}
        for page in client.read_group_members([g["id"] for g in groups], limit=200):
            members.setdefault(page.group_id, []).extend(u["id"] for u in page.users)
    assert [g["id"] for g in groups] == [g["id"] for g in org.admin.groups()]
    assert members == {g["id"]: org.admin.group_members(g["id"]) for g in groups}
    stats = org.admin.stats()
    assert stats["rate_limited"]["by_bucket"].get("group_members", 0) == 0  # paced, never refused
    assert 1 < stats["peak_concurrency"] <= 6 + 1


def test_writes_ask_for_manage_only_when_writing_and_okta_refuses_app_groups(org):
    group = next(g for g in org.admin.groups() if g["type"] == "OKTA_GROUP")
    app_group = next(g for g in org.admin.groups() if g["type"] == "APP_GROUP")
    user = next(u["id"] for u in org.admin.users() if u["id"] not in org.admin.group_members(group["id"]))
    with client_for(org) as client:
        list(client.list_groups(limit=5))
        assert client.get_token(["okta.groups.read"]).scopes == ("okta.groups.read",)
        client.add_group_member(group["id"], user)
        client.add_group_member(group["id"], user)  # idempotent
        assert user in org.admin.group_members(group["id"])
        assert group["id"] in [g["id"] for g in client.list_user_groups(user)]
        client.remove_group_member(group["id"], user)
        client.remove_group_member(group["id"], user)
        assert user not in org.admin.group_members(group["id"])
        with pytest.raises(PermissionDeniedError):
            client.add_group_member(app_group["id"], user)
    assert user not in org.admin.group_members(app_group["id"])
