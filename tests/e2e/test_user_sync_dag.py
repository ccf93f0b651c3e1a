"""okta_user_sync end to end with `dag.test()` against the dev org, asserted from the dev org's side.

The tests of this module run in order, as one story: a dry run, the first real run, a second run, a changes feed,
two runs whose ids differ only in punctuation.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import stat
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync.sync.profile_rules import Normalizer
from tests.conftest import dev_org_airflow_env, forget_asset_history

pytestmark = pytest.mark.airflow

DAG_ID = "okta_user_sync"


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=400, messy_fraction=0.25, seed=11, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-e2e"))
    with DevOrg(options) as org:
        yield org


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sync-output")


@pytest.fixture(scope="module")
def feeds_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feeds")


@pytest.fixture(scope="module")
def dagbag(org, output_dir, feeds_dir, airflow_db):
    forget_asset_history()  # a first run: no watermark from DAG runs of other modules
    with dev_org_airflow_env(org.connection, output_dir):
        os.environ["AIRFLOW_VAR_OKTA_SYNC_FEED_ROOTS"] = json.dumps([feeds_dir.as_uri()])
        from airflow.dag_processing.dagbag import DagBag

        try:
            yield DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
        finally:
            os.environ.pop("AIRFLOW_VAR_OKTA_SYNC_FEED_ROOTS", None)


def fresh_dag():
    """A newly parsed DAG: `dag.test(run_conf=...)` leaves the conf in the DAG object's params."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "okta_user_sync.py")).dags[DAG_ID]


def run_dag(dagbag, org, conf=None):
    """Run the DAG once; return (dag run, stats delta from the dev org's side)."""
    before = org.admin.stats()
    run = fresh_dag().test(run_conf=conf or {})
    after = org.admin.stats()
    delta = {
        "tokens": after["tokens_issued"] - before["tokens_issued"],
        "posts": {uid: n["POST"] - before["updates"].get(uid, {}).get("POST", 0)
                  for uid, n in after["updates"].items()
                  if n.get("POST", 0) != before["updates"].get(uid, {}).get("POST", 0)},
        "puts": after["requests"].get("PUT /api/v1/users/{id}", 0) - before["requests"].get("PUT /api/v1/users/{id}", 0),
    }
    return run, delta


def run_folder(output_dir: Path, run) -> Path:
    """The run's folder, found by the plan header's exact run id (not by re-deriving the folder name)."""
    matches = []
    for plan in (output_dir / DAG_ID).glob("*/plan.jsonl"):
        with open(plan, encoding="utf-8") as file:
            if json.loads(file.readline())["metadata"]["run_id"] == run.run_id:
                matches.append(plan.parent)
    (match,) = matches
    return match


def report_rows(folder: Path) -> list[dict]:
    with open(folder / "report.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def needs_hygiene(user: dict, normalizer: Normalizer) -> bool:
    profile = user["profile"]
    return normalizer.normalize_profile(profile) != profile


def test_dagbag_has_no_import_errors_and_params_validate(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dags
    for dag in dagbag.dags.values():
        dag.params.validate()


@pytest.mark.parametrize(
    "conf",
    [{"dry_run": "yes"}, {"full_refresh": 1}, {"user_ids": "00u1"}, {"user_ids": ['00u1" or id gt "0']},
     {"changes_uri": 42}],
    ids=["dry_run-not-bool", "full_refresh-not-bool", "user_ids-not-list", "user_ids-injection", "changes_uri-not-str"],
)
def test_bad_params_are_refused(dagbag, conf):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        fresh_dag().test(run_conf=conf)


def test_dry_run_plans_everything_and_changes_nothing(dagbag, org, output_dir):
    normalizer = Normalizer.default()
    messy_before = [u for u in org.admin.users() if needs_hygiene(u, normalizer)]
    assert len(messy_before) > 20
    run, delta = run_dag(dagbag, org, {"dry_run": True})
    assert run.state == "success"
    assert delta["posts"] == {} and delta["puts"] == 0
    rows = report_rows(run_folder(output_dir, run))
    dry = {r["user_id"] for r in rows if r["status"] == "dry_run"}
    active_messy = {u["id"] for u in messy_before if u["status"] != "DEPROVISIONED"}
    assert dry == active_messy
    assert delta["tokens"] == 1  # read scope only: a dry run never holds a token that can write


def test_first_run_fixes_every_messy_profile_and_leaves_clean_users_alone(dagbag, org, output_dir):
    normalizer = Normalizer.default()
    users_before = {u["id"]: u for u in org.admin.users()}
    messy = {uid for uid, u in users_before.items() if needs_hygiene(u, normalizer)}
    run, delta = run_dag(dagbag, org)
    assert run.state == "success"
    users_after = {u["id"]: u for u in org.admin.users()}
    folder = run_folder(output_dir, run)
    rows = report_rows(folder)
    for uid, user in users_after.items():
        if user["status"] == "DEPROVISIONED":
            assert uid not in delta["posts"], "a DEPROVISIONED user was updated"
            continue
        assert not needs_hygiene(user, normalizer), f"{uid} still messy: {user['profile']} {[r for r in rows if r['user_id'] == uid]}"
    active_messy = {uid for uid in messy if users_before[uid]["status"] != "DEPROVISIONED"}
    assert set(delta["posts"]) == active_messy  # clean users got no POST
    assert all(n == 1 for n in delta["posts"].values())  # one partial update per user
    assert delta["puts"] == 0
    assert delta["tokens"] == 2  # one per scope set: read, then manage for the push
    # only the attributes that needed it were touched
    for uid in active_messy:
        before, after = users_before[uid]["profile"], users_after[uid]["profile"]
        assert after == normalizer.normalize_profile(before)
    assert {r["user_id"] for r in rows if r["status"] == "applied"} == active_messy
    assert {r["user_id"] for r in rows if r["status"] == "skipped"} == {
        uid for uid in messy if users_before[uid]["status"] == "DEPROVISIONED"}
    with gzip.open(folder / "users.jsonl.gz", "rt", encoding="utf-8") as export:
        exported = [json.loads(line) for line in export]
    assert {u["id"] for u in exported} == set(users_before)  # first run: every user of every status


def test_second_run_is_incremental_and_makes_no_post(dagbag, org):
    run, delta = run_dag(dagbag, org)
    assert run.state == "success"
    assert delta["posts"] == {}
    assert delta["tokens"] == 1


def _export_state(key: str, value=None):
    """The users export Asset's state under `key` (JSON); replaced first when `value` is given."""
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (session.query(AssetStateStoreModel).join(AssetModel, AssetModel.id == AssetStateStoreModel.asset_id)
               .filter(AssetModel.name == "okta_users_export", AssetStateStoreModel.key == key).one_or_none())
        if row is not None and value is not None:
            row.value = json.dumps(value)
        return None if row is None else json.loads(row.value)


def test_a_full_export_leaves_a_created_hint_and_a_bad_one_is_dropped(dagbag, org):
    from okta_sync.sync.sync_window import ALL_USERS_SEARCH
    from okta_sync.timestamps import parse_okta_time

    created = sorted(parse_okta_time(u["created"]) for u in org.admin.users())
    stored = _export_state("created_hint")  # left by the first (full) run
    assert stored["search"] == ALL_USERS_SEARCH
    assert stored["hint"]["users"] == len(created)
    quantiles = stored["hint"]["quantiles"]
    assert quantiles[0] == created[0] and quantiles[-1] == created[-1] and quantiles == sorted(quantiles)

    _export_state("created_hint", {"search": ALL_USERS_SEARCH, "hint": {"quantiles": [5, 1], "users": "many"}})
    run, _ = run_dag(dagbag, org, {"full_refresh": True, "dry_run": True})
    assert run.state == "success"  # a bad hint is dropped (the org is probed), never a failed export
    assert _export_state("created_hint") == stored


def test_a_changes_feed_is_applied_and_unknown_rows_are_reported(dagbag, org, output_dir, feeds_dir):
    users = [u for u in org.admin.users() if u["status"] == "ACTIVE"][:3]
    feed = feeds_dir / "changes.csv"
    with open(feed, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["login", "department", "title"])
        writer.writerow([users[0]["profile"]["login"], "  Platform   Engineering ", ""])
        writer.writerow([users[1]["profile"]["login"], "Data", "Staff Engineer"])
        writer.writerow([users[2]["profile"]["login"], users[2]["profile"].get("department") or "", ""])
        writer.writerow(["nobody@example.com", "Ghosts", ""])
    run, delta = run_dag(dagbag, org, {"changes_uri": feed.as_uri()})
    assert run.state == "success"
    after = {u["id"]: u["profile"] for u in org.admin.users()}
    assert after[users[0]["id"]]["department"] == "Platform Engineering"
    assert after[users[0]["id"]]["title"] == users[0]["profile"]["title"]  # empty cell = no change
    assert (after[users[1]["id"]]["department"], after[users[1]["id"]]["title"]) == ("Data", "Staff Engineer")
    assert set(delta["posts"]) == {users[0]["id"], users[1]["id"]}  # the third row changes nothing
    rows = report_rows(run_folder(output_dir, run))
    ghost = [r for r in rows if r["login"] == "nobody@example.com"]
    assert ghost and all(r["status"] == "skipped" for r in ghost)


def test_outputs_are_private_to_the_airflow_user(dagbag, org, output_dir):
    """Exports, plans, reports and journals hold PII: 0600 files in 0700 folders (issue 10, point 10)."""
    run, _ = run_dag(dagbag, org, {"dry_run": True})
    folder = run_folder(output_dir, run)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"users.jsonl.gz", "plan.jsonl", "report.csv"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o600" for p in files}


def test_run_ids_differing_only_in_punctuation_get_their_own_folders_and_changes(dagbag, org, output_dir,
                                                                                 feeds_dir, monkeypatch):
    """Airflow accepts both spellings; they once shared a folder and the second run replayed the first run's
    journal: its change was never sent and reported "applied" (issue 10, point 5)."""
    from airflow.models.dagrun import DagRun

    run_ids = iter(["manual__2026-01-01T00:00:00+00:00", "manual__2026-01-01T00-00-00_00-00"])
    monkeypatch.setattr(DagRun, "generate_run_id", staticmethod(lambda **_: next(run_ids)))
    target = next(u for u in org.admin.users() if u["status"] == "ACTIVE")
    login, wanted = target["profile"]["login"], ("Punctuation One", "Punctuation Two")
    runs = []
    for department in wanted:
        feed = feeds_dir / f"{department.replace(' ', '-')}.csv"
        feed.write_text(f"login,department\n{login},{department}\n", encoding="utf-8")
        run, delta = run_dag(dagbag, org, {"changes_uri": feed.as_uri()})
        assert run.state == "success"
        assert delta["posts"] == {target["id"]: 1}, "the change was not sent"
        assert {u["id"]: u for u in org.admin.users()}[target["id"]]["profile"]["department"] == department
        runs.append(run)
    first, second = (run_folder(output_dir, run) for run in runs)
    assert first != second
    (row,) = [r for r in report_rows(second) if r["user_id"] == target["id"]]
    assert (row["new"], row["status"]) == ("Punctuation Two", "applied")


def test_user_ids_restrict_the_run(dagbag, org, output_dir):
    target = next(u for u in org.admin.users() if u["status"] == "ACTIVE")
    org.admin.configure()  # no-op: state is changed only through the API below
    run, delta = run_dag(dagbag, org, {"user_ids": [target["id"]], "full_refresh": True})
    assert run.state == "success"
    folder = run_folder(output_dir, run)
    with gzip.open(folder / "users.jsonl.gz", "rt", encoding="utf-8") as export:
        assert [json.loads(line)["id"] for line in export] == [target["id"]]


def test_a_snapshot_feed_is_planned_from_one_listing_not_one_read_per_row(dagbag, org, output_dir, feeds_dir):
    everyone = org.admin.users()
    changed = [u for u in everyone if u["status"] == "ACTIVE"][-3:]
    feed = feeds_dir / "snapshot.csv"
    with open(feed, "w", newline="", encoding="utf-8") as file:  # every user, and 100 hires not yet in Okta
        writer = csv.writer(file)
        writer.writerow(["id", "title"])
        for user in everyone:
            writer.writerow([user["id"], "Snapshot title" if user in changed else ""])
        for n in range(100):
            writer.writerow([f"00uNOTYET{n:011d}", "New hire"])
    before = org.admin.stats()["requests"].get("GET /api/v1/users/{id}", 0)
    run, delta = run_dag(dagbag, org, {"changes_uri": feed.as_uri()})
    assert run.state == "success"
    reads = org.admin.stats()["requests"].get("GET /api/v1/users/{id}", 0) - before
    assert reads == len(changed)  # only the push's re-read of each change, none at plan time
    assert set(delta["posts"]) == {u["id"] for u in changed}
    rows = report_rows(run_folder(output_dir, run))
    assert sum(r["status"] == "skipped" and r["user_id"].startswith("00uNOTYET") for r in rows) == 100
