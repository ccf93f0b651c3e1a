"""The incremental membership export against the dev org: a full first export, then only the groups whose
`lastMembershipUpdated` moved (and a change made while the listing ran is not lost), files that say what was read."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync import OktaClient, OktaConfig
from okta_sync.errors import ConfigurationError
from okta_sync.sync.group_export import GroupExportError, export_groups, read_memberships

MEMBER_ROUTE = "GET /api/v1/groups/{id}/users"


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=250, groups=24, seed=21, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-group-export"))
    with DevOrg(options) as org:
        yield org


def client_for(org) -> OktaClient:
    c = org.connection
    return OktaClient(OktaConfig(org_url=c["org_url"], client_id=c["client_id"], private_key_path=c["private_key_path"],
                                 key_id=c["key_id"], scopes="okta.groups.read", max_attempts=2, max_retry_time=10))


def run(client, watermark=None, **options):
    groups, memberships, read = io.BytesIO(), io.BytesIO(), io.BytesIO()
    result = export_groups(client, groups, memberships, read, watermark=watermark, limit=7, **options)
    assert [json.loads(line)["group_id"] for line in read.getvalue().splitlines()] == result.groups_read
    return result, groups.getvalue(), memberships.getvalue()


def members_by_group(data: bytes) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for group_id, user_id in read_memberships(data.splitlines()):
        found.setdefault(group_id, []).append(user_id)
    return found


def test_first_export_reads_every_group_then_only_those_that_moved(org):
    with client_for(org) as client:
        first, groups, memberships = run(client)
        everything = org.admin.groups()
        assert first.kind == "full" and first.groups == len(everything) == 24
        assert [json.loads(line)["id"] for line in groups.splitlines()] == [g["id"] for g in everything]
        assert members_by_group(memberships) == {g["id"]: org.admin.group_members(g["id"])
                                                 for g in everything if g["_dev"]["members"]}
        assert sorted(first.groups_read) == sorted(g["id"] for g in everything)
        sizes = {g["id"]: g["_dev"]["members"] for g in everything}
        read_order = [sizes[g] for g in first.groups_read]
        assert read_order == sorted(read_order, reverse=True)  # largest first: no single-cursor tail at the end
        assert first.memberships == sum(g["_dev"]["members"] for g in everything)
        digests = {f.name: f for f in first.files}
        assert digests["groups.jsonl.gz"].content_sha256 == hashlib.sha256(groups).hexdigest()
        assert digests["memberships.jsonl.gz"].content_sha256 == hashlib.sha256(memberships).hexdigest()
        assert digests["memberships.jsonl.gz"].content_bytes == len(memberships)
        assert first.watermark is not None

        okta_groups = [g for g in everything if g["type"] == "OKTA_GROUP" and 3 < g["_dev"]["members"] < 200]
        changed = okta_groups[:2]
        users = [u["id"] for u in org.admin.users()]
        org.admin.change_members(changed[0]["id"], add=[u for u in users if u not in
                                                        org.admin.group_members(changed[0]["id"])][:3])
        org.admin.change_members(changed[1]["id"], remove=org.admin.group_members(changed[1]["id"])[:2])
        org.admin.reset_stats()
        second, groups, memberships = run(client, first.watermark)
        stats = org.admin.stats()
    assert second.kind == "incremental" and second.groups == 24  # every group listed: how deleted ones are seen
    assert sorted(second.groups_read) == sorted(g["id"] for g in changed)
    assert members_by_group(memberships) == {g["id"]: org.admin.group_members(g["id"]) for g in changed}
    group_pages = -(-24 // 7)
    member_pages = sum(max(1, -(-len(org.admin.group_members(g["id"])) // 7)) for g in changed)
    assert stats["requests"][MEMBER_ROUTE] == member_pages
    assert sum(stats["requests"].values()) <= group_pages + member_pages + 2
    assert second.watermark >= first.watermark


def test_a_change_made_while_the_listing_ran_is_read_by_the_next_run(org):
    with client_for(org) as client:
        first, _, _ = run(client)
        okta_groups = [g for g in org.admin.groups() if g["type"] == "OKTA_GROUP"]
        early, late = okta_groups[0], okta_groups[-1]  # the first page, and a later one
        users = [u["id"] for u in org.admin.users()]
        listing = client.list_groups

        class ChangingDuringListing:
            def __init__(self, **kwargs):
                self.inner = listing(**kwargs)

            def pages(self):
                for number, page in enumerate(self.inner.pages()):
                    if number == 0:  # `early` is listed with its old value, then changes; `late` changes after
                        for group in (early, late):
                            outsider = next(u for u in users if u not in org.admin.group_members(group["id"]))
                            org.admin.change_members(group["id"], add=[outsider])
                    yield page

        client.list_groups = ChangingDuringListing
        second, _, _ = run(client, first.watermark)
        del client.list_groups
        assert late["id"] in second.groups_read and early["id"] not in second.groups_read
        third, _, memberships = run(client, second.watermark)
    assert early["id"] in third.groups_read  # a watermark at `late`'s change would have hidden it for good
    assert members_by_group(memberships)[early["id"]] == org.admin.group_members(early["id"])


def test_full_refresh_reads_every_group_and_a_stored_watermark_is_checked(org):
    with client_for(org) as client:
        first, _, _ = run(client)
        refreshed, _, _ = run(client, first.watermark, full_refresh=True)
        assert refreshed.kind == "full" and len(refreshed.groups_read) == refreshed.groups
        for bad in ("yesterday", 12, "2026-01-01T00:00:00Z; DROP"):
            with pytest.raises(ConfigurationError, match="watermark") as raised:
                run(client, bad)
            assert str(bad) not in str(raised.value)


def test_a_group_or_member_without_an_okta_id_fails_the_export(org):
    class Listing:
        def __init__(self, pages):
            self._pages = pages

        def pages(self):
            return iter(self._pages)

    class Fake:
        rate_limiter = client_for(org).rate_limiter

        def __init__(self, groups, members):
            self.groups, self.members = groups, members

        def list_groups(self, **_):
            return Listing([self.groups])

        def read_group_members(self, ids, **_):
            from okta_sync.groups.members import MemberPage
            return iter([MemberPage(ids[0], self.members, True)])

    good = {"id": "00g1", "lastMembershipUpdated": "2026-01-01T00:00:00.000Z"}
    with pytest.raises(GroupExportError, match="listed group"):
        run(Fake([{"id": "../x"}], []))
    with pytest.raises(GroupExportError, match="member"):
        run(Fake([good], [{"id": "00u1"}, {"profile": {}}]))
    with pytest.raises(GroupExportError, match="twice"):
        run(Fake([good, good], []))


def test_memberships_lines_read_the_same_however_they_are_spelled():
    lines = [b'{"group_id":"00g1","user_id":"00u1"}\n', b'{"user_id": "00u2", "group_id": "00g1"}\n',
             b'{"group_id":"00g2","user_id":"00u3"}', b'{"group_id":"\\u0030\\u0030g3","user_id":"00u4"}\n']
    assert list(read_memberships(lines)) == [("00g1", "00u1"), ("00g1", "00u2"), ("00g2", "00u3"), ("00g3", "00u4")]


def test_memberships_lines_are_checked_when_read(tmp_path):
    from okta_sync.errors import WarehouseLoadError

    lines = [b'{"group_id":"00g1","user_id":"00u1"}', b'{"group_id":"00g1","user_id":"00u/../x"}']
    with pytest.raises(WarehouseLoadError, match="line 2"):
        list(read_memberships(lines))
    assert gzip  # the DAG writes these gzip-compressed; the reader takes lines


DEEP = b"[" * 100_000 + b"]" * 100_000  # nested beyond any parser's recursion limit


def test_lines_nested_too_deeply_are_refused_naming_the_line():
    from okta_sync.errors import WarehouseLoadError
    from okta_sync.sync.group_export import read_groups_read, read_memberships

    with pytest.raises(WarehouseLoadError, match="memberships line 2: not a"):
        list(read_memberships([b'{"group_id":"00g1","user_id":"00u1"}\n', b'{"group_id":' + DEEP + b"}\n"]))
    with pytest.raises(WarehouseLoadError, match="groups_read line 1: not a"):
        list(read_groups_read([b'{"group_id":' + DEEP + b"}\n"]))
