"""Membership loads against a real PostgreSQL server through the postgres provider's hook: okta_groups_sync runs
against the dev org, okta_groups_to_warehouse loads its exports, and the README's queries answer from the tables."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from tests.airflow.test_warehouse_postgres import postgres, warehouse  # noqa: F401 (fixtures)
from tests.conftest import dev_org_airflow_env, forget_asset_history

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]

MEMBERS_ON = """
SELECT m.user_id
FROM okta_group_members m JOIN okta_groups g ON g.id = m.group_id
WHERE g.name = %s AND m.valid_from <= %s AND (m.valid_to IS NULL OR m.valid_to > %s)
ORDER BY m.user_id
"""
GROUPS_PER_USER = """
SELECT m.user_id, COUNT(*) AS groups
FROM okta_group_members m JOIN okta_groups g ON g.id = m.group_id
WHERE m.valid_to IS NULL AND g.deleted_at IS NULL
GROUP BY m.user_id
"""


def run(dag_id, **conf):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).dags[dag_id]
    result = dag.test(run_conf=conf or None)
    assert result.state == "success", f"{dag_id} ended {result.state}"
    return result


def test_the_dags_keep_membership_periods_that_answer_the_readme_queries(warehouse, tmp_path_factory,  # noqa: F811
                                                                          airflow_db):
    options = DevOrgOptions(users=120, groups=15, seed=8, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-group-warehouse"))
    output = tmp_path_factory.mktemp("group-warehouse-output")
    forget_asset_history()
    with DevOrg(options) as org, dev_org_airflow_env(org.connection, output):
        run("okta_groups_sync")
        run("okta_groups_to_warehouse")
        groups = org.admin.groups()
        stored = warehouse("SELECT id, type, deleted_at FROM okta_groups ORDER BY id")
        assert stored == [(g["id"], g["type"], None) for g in groups]
        open_rows = warehouse("SELECT group_id, user_id FROM okta_group_members WHERE valid_to IS NULL")
        assert sorted(open_rows) == sorted((g["id"], u) for g in groups for u in org.admin.group_members(g["id"]))
        assert warehouse("SELECT data_type FROM information_schema.columns WHERE table_name = 'okta_group_members' "
                         "AND column_name = 'valid_from'") == [("timestamp with time zone",)]

        target = next(g for g in groups if g["type"] == "OKTA_GROUP" and g["_dev"]["members"] >= 2)
        leaver = org.admin.group_members(target["id"])[0]
        joiner = next(u["id"] for u in org.admin.users() if u["id"] not in org.admin.group_members(target["id"]))
        before_change = datetime.now().astimezone()
        changed = org.admin.change_members(target["id"], add=[joiner], remove=[leaver])
        gone = next(g for g in groups if g["type"] == "APP_GROUP")
        org.admin.delete_group(gone["id"])
        run("okta_groups_sync")
        run("okta_groups_to_warehouse")

        now = datetime.now().astimezone()
        name = target["profile"]["name"]
        assert [u for (u,) in warehouse(MEMBERS_ON, name, before_change, before_change)] == \
            sorted(u for u in [*org.admin.group_members(target["id"]), leaver] if u != joiner)
        assert [u for (u,) in warehouse(MEMBERS_ON, name, now, now)] == org.admin.group_members(target["id"])
        moved = datetime.fromisoformat(changed["lastMembershipUpdated"].replace("Z", "+00:00"))
        assert warehouse("SELECT valid_to FROM okta_group_members WHERE group_id = %s AND user_id = %s",
                         target["id"], leaver) == [(moved,)]
        assert warehouse("SELECT deleted_at IS NOT NULL FROM okta_groups WHERE id = %s", gone["id"]) == [(True,)]
        per_user = dict(warehouse(GROUPS_PER_USER))
        live = [g for g in org.admin.groups()]
        for user in org.admin.users()[:20]:
            expected = sum(user["id"] in org.admin.group_members(g["id"]) for g in live)
            assert per_user.get(user["id"], 0) == expected
        assert warehouse("SELECT kind FROM okta_group_loads ORDER BY exported_at") == [("full",), ("incremental",)]

        before = warehouse("SELECT * FROM okta_group_members ORDER BY 1, 2, 3")
        run("okta_groups_to_warehouse")  # nothing new: exactly once
        assert warehouse("SELECT * FROM okta_group_members ORDER BY 1, 2, 3") == before
        assert warehouse("SELECT COUNT(*) FROM okta_group_loads") == [(2,)]


def test_a_manifest_outside_the_output_root_is_refused_by_id(warehouse, tmp_path_factory, caplog):  # noqa: F811
    from collections import namedtuple

    from okta_sync.airflow.group_warehouse import load_new_group_exports

    Event = namedtuple("Event", "id extra timestamp")
    elsewhere = tmp_path_factory.mktemp("not-the-output-root") / "groups.manifest.json"
    elsewhere.write_text(json.dumps({"version": 1}))
    events = [Event(5, {"paths": {"manifest": elsewhere.as_uri()}, "exported_at": "2026-01-01T00:00:00.000Z"}, None)]
    summary = load_new_group_exports("okta_warehouse", events)
    assert (summary["loaded"], summary["refused_events"]) == (0, [5])
    assert "not-the-output-root" not in caplog.text


def test_the_first_load_rebuilds_the_user_index_and_a_rolled_back_one_keeps_it(warehouse, tmp_path,  # noqa: F811
                                                                                 monkeypatch):
    """The first load into the empty members table drops the user index and builds it after the rows, in the load's
    own transaction: whether the load commits or fails after the drop, the index is there."""
    import psycopg

    from okta_sync.airflow.group_warehouse import load_new_group_exports
    from okta_sync.sync import group_warehouse
    from tests.airflow.test_group_warehouse_events import event, write_export

    index = "SELECT indexdef FROM pg_indexes WHERE indexname = 'okta_group_members_user'"
    first = write_export(tmp_path, "scheduled__1")
    real_ensure, statement = group_warehouse.ensure_group_schema, group_warehouse.USER_INDEX_STATEMENT

    def ensure(connection, flavour):  # the schema (and the session's temporary tables) as every run makes them
        with monkeypatch.context() as inner:
            inner.setattr(group_warehouse, "USER_INDEX_STATEMENT", statement)
            real_ensure(connection, flavour)

    with monkeypatch.context() as patch:  # the load fails after its DROP INDEX, at the rebuild
        patch.setattr("okta_sync.airflow.group_warehouse.ensure_group_schema", ensure)
        patch.setattr(group_warehouse, "USER_INDEX_STATEMENT", "CREATE INDEX broken ON no_such_table (x)")
        with pytest.raises(psycopg.errors.UndefinedTable):
            load_new_group_exports("okta_warehouse", [event(1, first, "scheduled__1")])
    assert warehouse("SELECT COUNT(*) FROM okta_group_members") == [(0,)]
    assert len(warehouse(index)) == 1  # the DROP INDEX was rolled back with the load
    assert load_new_group_exports("okta_warehouse", [event(1, first, "scheduled__1")])["loaded"] == 1
    assert warehouse("SELECT group_id, user_id FROM okta_group_members") == [("00g1", "00u1")]
    assert warehouse(index) == [("CREATE INDEX okta_group_members_user ON public.okta_group_members USING btree "
                                 "(user_id, valid_from)",)]
