"""okta_group_memberships end to end with `dag.test()` against the dev org: each feed row decided and reported, only
OKTA_GROUP memberships changed, a dry run that changes nothing, and a killed push that a retry finishes without
sending anything twice."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from tests.conftest import dev_org_airflow_env

pytestmark = pytest.mark.airflow

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "okta_group_memberships.py"


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=80, groups=12, seed=31, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-memberships"))
    with DevOrg(options) as org:
        yield org


@pytest.fixture(scope="module")
def dirs(org, tmp_path_factory, airflow_db):
    output, feeds = tmp_path_factory.mktemp("memberships-output"), tmp_path_factory.mktemp("memberships-feeds")
    with dev_org_airflow_env(org.connection, output):
        os.environ["AIRFLOW_VAR_OKTA_SYNC_FEED_ROOTS"] = json.dumps([feeds.as_uri()])
        try:
            yield output, feeds
        finally:
            os.environ.pop("AIRFLOW_VAR_OKTA_SYNC_FEED_ROOTS", None)


def run_dag(conf):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAG_FILE)).dags["okta_group_memberships"].test(run_conf=conf)


def report(output: Path, run) -> list[dict]:
    from okta_sync.airflow.storage import run_folder_name

    path = output / "okta_group_memberships" / run_folder_name("okta_group_memberships", run.run_id) / \
        "membership_report.csv"
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def changes(org) -> int:
    return sum(sum(c.values()) for c in org.admin.stats()["membership_changes"].values())


def test_each_row_is_decided_pushed_and_reported(org, dirs):
    output, feeds = dirs
    groups, users = org.admin.groups(), org.admin.users()
    okta = [g for g in groups if g["type"] == "OKTA_GROUP" and 1 < g["_dev"]["members"] < 70]
    target, other = okta[0], okta[1]
    members = org.admin.group_members(target["id"])
    joiner = next(u for u in users if u["id"] not in members)
    leaver = members[0]
    app_group = next(g for g in groups if g["type"] == "APP_GROUP")
    everyone = next(g for g in groups if g["type"] == "BUILT_IN")
    org.admin.create_group("Twins", "one of two")
    org.admin.create_group("Twins", "the other")
    already = org.admin.group_members(other["id"])[0]
    rows = [
        ("group", "user", "action"),
        (target["profile"]["name"], joiner["profile"]["login"].upper(), "add"),  # by name and login (any case)
        (target["id"], leaver, "remove"),
        (other["id"], already, "ADD"),  # already a member
        (app_group["id"], joiner["id"], "add"),
        (everyone["profile"]["name"], joiner["id"], "remove"),
        ("No Such Group", joiner["id"], "add"),
        (target["id"], "nobody@example.com", "add"),
        ("Twins", joiner["id"], "add"),
        (target["id"], joiner["id"], "promote"),
        (target["id"], joiner["id"], "remove"),  # the same group and user as the first row
    ]
    feed = feeds / "memberships.csv"
    with open(feed, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(rows)
    before = changes(org)
    run = run_dag({"changes_uri": feed.as_uri()})
    assert run.state == "success"
    assert changes(org) - before == 2
    assert joiner["id"] in org.admin.group_members(target["id"])
    assert leaver not in org.admin.group_members(target["id"])
    assert joiner["id"] not in org.admin.group_members(app_group["id"])
    by_line = {int(r["line"]): r for r in report(output, run)}
    assert [by_line[n]["status"] for n in range(2, 12)] == [
        "applied", "applied", "unchanged", "skipped", "skipped", "skipped", "skipped", "skipped", "skipped",
        "skipped"]
    reasons = [by_line[n]["reason"] for n in range(5, 12)]
    assert reasons[0].startswith("APP_GROUP group") and reasons[1].startswith("BUILT_IN group")
    assert reasons[2:5] == ["unknown group", "unknown user", "ambiguous group name: 2 groups have it; use the group id"]
    assert reasons[5] == "action must be add or remove" and reasons[6] == "line 2 already names this group and user"
    assert by_line[2]["group_id"] == target["id"] and by_line[2]["user_id"] == joiner["id"]


def test_a_dry_run_changes_nothing_and_says_what_it_would_do(org, dirs):
    output, feeds = dirs
    target = next(g for g in org.admin.groups() if g["type"] == "OKTA_GROUP" and g["_dev"]["members"] > 1)
    user = org.admin.group_members(target["id"])[0]
    feed = feeds / "dry.jsonl"
    feed.write_text(json.dumps({"group": target["id"], "user": user, "action": "remove"}) + "\n")
    before = changes(org)
    run = run_dag({"changes_uri": feed.as_uri(), "dry_run": True})
    assert run.state == "success" and changes(org) == before
    assert [r["status"] for r in report(output, run)] == ["dry_run"]


def test_a_feed_outside_the_feed_roots_or_none_at_all_is_refused(org, dirs, tmp_path):
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("group,user,action\n")
    assert run_dag({"changes_uri": outside.as_uri()}).state == "failed"
    assert run_dag({}).state == "failed"


def test_a_push_killed_part_way_is_finished_by_a_retry_that_sends_nothing_twice(org, dirs, monkeypatch):
    from okta_sync.airflow.group_operators import OktaPushMembershipChangesOperator
    from okta_sync.groups.api import GroupsClient
    from okta_sync.sync.membership_changes import MembershipEntry

    output, _ = dirs
    target = next(g for g in org.admin.groups() if g["type"] == "OKTA_GROUP" and g["_dev"]["members"] < 60)
    joiners = [u["id"] for u in org.admin.users() if u["id"] not in org.admin.group_members(target["id"])][:3]
    folder = output / "okta_group_memberships" / "killed-0123456789abcdef"
    folder.mkdir(parents=True)
    plan = folder / "membership_plan.jsonl"
    plan.write_text("".join(MembershipEntry(line=n + 2, group=target["id"], user=u, action="add", status="planned",
                                            group_id=target["id"], user_id=u).to_json() + "\n"
                            for n, u in enumerate(joiners)))
    operator = OktaPushMembershipChangesOperator(task_id="push", token_task_id=None, plan_uri=plan.as_uri(),
                                                 report_uri=(folder / "membership_report.csv").as_uri())
    sent = []
    real = GroupsClient.add_group_member

    def killed_after_two(self, group_id, user_id):
        if len(sent) == 2:
            raise KeyboardInterrupt("the worker was killed")
        real(self, group_id, user_id)
        sent.append(user_id)

    monkeypatch.setattr(GroupsClient, "add_group_member", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        operator.execute({})
    monkeypatch.setattr(GroupsClient, "add_group_member", lambda self, g, u: (real(self, g, u), sent.append(u)))
    before = changes(org)
    result = operator.execute({})
    assert result["applied"] == 3
    assert sent == [*joiners[:2], joiners[2]]  # the retry sent only the third
    assert changes(org) - before == 1
    assert set(joiners) <= set(org.admin.group_members(target["id"]))
