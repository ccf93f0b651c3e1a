"""okta_groups_sync end to end with `dag.test()` against the dev org, asserted from the dev org's side and the files.

One story, in order: a first (full) run, memberships changed by an admin, a second run that reads only the changed
groups, a run whose member read fails part-way (watermark and files untouched), and a damaged watermark.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from tests.conftest import dev_org_airflow_env, forget_asset_history

pytestmark = pytest.mark.airflow

DAG_ID = "okta_groups_sync"
MEMBER_ROUTE = "GET /api/v1/groups/{id}/users"


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=300, groups=25, seed=17, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-groups-e2e"))
    with DevOrg(options) as org:
        yield org


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("groups-output")


@pytest.fixture(scope="module")
def dagbag(org, output_dir, airflow_db):
    forget_asset_history()
    with dev_org_airflow_env(org.connection, output_dir):
        from airflow.dag_processing.dagbag import DagBag

        yield DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "okta_groups_sync.py"))


def fresh_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "okta_groups_sync.py")).dags[DAG_ID]


def watermark(value=None):
    """The export Asset's stored watermark (replaced first when `value` is given)."""
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (session.query(AssetStateStoreModel).join(AssetModel, AssetModel.id == AssetStateStoreModel.asset_id)
               .filter(AssetModel.name == "okta_groups_export", AssetStateStoreModel.key == "watermark")
               .one_or_none())
        if row is not None and value is not None:
            row.value = json.dumps(value)
        return None if row is None else json.loads(row.value)


def last_event_extra() -> dict:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        event = (session.query(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                 .filter(AssetModel.name == "okta_groups_export").order_by(AssetEvent.id.desc()).first())
        return dict(event.extra)


def run_dag(org, conf=None):
    before = org.admin.stats()["requests"]
    run = fresh_dag().test(run_conf=conf or {})
    after = org.admin.stats()["requests"]
    return run, {route: after[route] - before.get(route, 0) for route in after if after[route] != before.get(route, 0)}


def folders(output_dir: Path) -> set[Path]:
    return {p for p in (output_dir / DAG_ID).glob("*") if p.is_dir()} if (output_dir / DAG_ID).exists() else set()


def lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def test_dag_parses(dagbag):
    assert dagbag.import_errors == {}
    dag = dagbag.dags[DAG_ID]
    dag.params.validate()
    assert {o.name for t in dag.tasks for o in t.outlets} == {"okta_groups_export"}


def test_first_run_exports_every_group_and_every_membership(dagbag, org, output_dir):
    run, requests = run_dag(org)
    assert run.state == "success"
    (folder,) = folders(output_dir)
    groups = org.admin.groups()
    assert [g["id"] for g in lines(folder / "groups.jsonl.gz")] == [g["id"] for g in groups]
    memberships = lines(folder / "memberships.jsonl.gz")
    assert len(memberships) == sum(g["_dev"]["members"] for g in groups)
    manifest = json.loads((folder / "groups.manifest.json").read_text())
    assert manifest["dataset"] == "groups" and manifest["kind"] == "full" and manifest["counts"]["groups_read"] == 25
    assert manifest["producer"]["dag_id"] == DAG_ID and manifest["producer"]["task_id"] == "export_groups"
    files = {f["name"]: f for f in manifest["files"]}
    raw = gzip.open(folder / "memberships.jsonl.gz").read()
    assert files["memberships.jsonl.gz"]["content_sha256"] == hashlib.sha256(raw).hexdigest()
    assert len(lines(folder / "groups_read.jsonl.gz")) == 25
    extra = last_event_extra()
    assert extra["kind"] == "full" and extra["groups"] == 25 and extra["memberships"] == len(memberships)
    assert extra["paths"]["manifest"].endswith("/groups.manifest.json")
    assert watermark() == extra["watermark"] and watermark() is not None
    assert requests[MEMBER_ROUTE] == sum(max(1, -(-g["_dev"]["members"] // 200)) for g in groups)  # page_size 200
    assert requests.get("PUT /api/v1/groups/{id}/users/{userId}", 0) == 0


def test_second_run_reads_only_the_groups_that_changed(dagbag, org, output_dir):
    before = folders(output_dir)
    changed = [g for g in org.admin.groups() if g["type"] == "OKTA_GROUP" and g["_dev"]["members"] > 2][:2]
    org.admin.change_members(changed[0]["id"], remove=org.admin.group_members(changed[0]["id"])[:1])
    org.admin.change_members(changed[1]["id"], remove=org.admin.group_members(changed[1]["id"])[:2])
    old = watermark()
    run, requests = run_dag(org)
    assert run.state == "success"
    (folder,) = folders(output_dir) - before
    memberships = lines(folder / "memberships.jsonl.gz")
    assert {m["group_id"] for m in memberships} == {g["id"] for g in changed}
    for group in changed:
        assert [m["user_id"] for m in memberships if m["group_id"] == group["id"]] == \
            org.admin.group_members(group["id"])
    assert requests[MEMBER_ROUTE] == 2 and requests["GET /api/v1/groups"] == 1
    assert last_event_extra()["kind"] == "incremental"
    assert watermark() >= old


def test_a_member_read_that_fails_part_way_leaves_the_watermark_and_no_files(dagbag, org, output_dir, monkeypatch):
    from okta_sync.groups.api import GroupsClient

    kept, before = watermark(), folders(output_dir)
    victim = [g for g in org.admin.groups() if g["type"] == "OKTA_GROUP"][-1]
    org.admin.change_members(victim["id"], add=[u["id"] for u in org.admin.users()
                                                if u["id"] not in org.admin.group_members(victim["id"])][:1])
    listing = GroupsClient.list_group_members

    def deleted_before_its_members_are_read(self, group_id, **kwargs):
        if group_id == victim["id"]:
            org.admin.delete_group(group_id)  # Okta now answers 404 for its members
        return listing(self, group_id, **kwargs)

    monkeypatch.setattr(GroupsClient, "list_group_members", deleted_before_its_members_are_read)
    run, _ = run_dag(org)
    assert run.state == "failed"
    assert watermark() == kept
    for folder in folders(output_dir) - before:
        assert not list(folder.glob("*.gz")) and not (folder / "groups.manifest.json").exists()


def test_a_damaged_or_future_watermark_is_refused_and_every_group_is_read(dagbag, org):
    for damaged in ("2026-01-01 or 1", "2999-01-01T00:00:00.000Z"):
        watermark(damaged)
        run, requests = run_dag(org)
        assert run.state == "success"
        assert requests[MEMBER_ROUTE] >= len(org.admin.groups())  # a full read: safe, slower
        assert last_event_extra()["kind"] == "full"
        assert watermark() != damaged and watermark() < "2999"
