"""The main job, on a fresh clone: a user sync against the local dev org, end to end, through Airflow.

    python3.11 scripts/dev.py sync [--users 1000] [--messy-fraction 0.2] [--dry-run] [--keep-org]

It starts the dev org (seeded with messy profiles) on 127.0.0.1:8970, gives Airflow an isolated home in .airflow/,
applies airflow_settings.yaml (the `okta_default` connection), runs the `okta_user_sync` DAG twice (the second
run shows that a clean org gets no update), loads the exports into the `okta_warehouse` tables (a SQLite file under
include/output/), exports the groups and their members (`okta_groups_sync`) and loads them too
(`okta_groups_to_warehouse`), and prints what happened, a few rows, and where the files are.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import os
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = ROOT / ".airflow"
DEVORG_STATE = ROOT / ".devorg"
DEVORG_PORT = 8970
DEVORG_CLIENT_ID = "0oa1devorg2sync3demo"  # the login of okta_default in airflow_settings.yaml
DEVORG_KEY_ID = "okta-sync-dev-key"  # its extra key_id

# Airflow reads its configuration when first imported: set the isolated home before that.
os.environ.setdefault("AIRFLOW_HOME", str(AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
for path in (ROOT, ROOT / "plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000, help="users the dev org is seeded with (default 1000)")
    parser.add_argument("--messy-fraction", type=float, default=0.2, help="share of users with messy profiles")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--dry-run", action="store_true", help="plan and report only; change nothing")
    parser.add_argument("--keep-org", action="store_true", help="leave the dev org running afterwards")
    return parser.parse_args(argv)


@contextlib.contextmanager
def task_output_to(log_path: Path):
    """dag.test() prints every task's log (unmasked: it is a test runner) to the console; keep it in a file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_folder(output_root: Path, run_id: str, dag_id: str = "okta_user_sync") -> Path:
    from okta_sync.airflow.storage import run_folder_uri

    return Path(run_folder_uri(str(output_root), dag_id, run_id))


def summarise_run(folder: Path) -> dict:
    with gzip.open(folder / "users.jsonl.gz", "rt", encoding="utf-8") as export:
        scanned = sum(1 for _ in export)
    with open(folder / "report.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    fixed = {r["user_id"] for r in rows if r["status"] in ("applied", "dry_run")}
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    return {"scanned": scanned, "fixed": len(fixed), "rows": by_status}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)  # airflow_settings.yaml names the dev org key relative to the project root

    from include.okta_dev_org import DevOrgOptions, DevOrgProcess
    from okta_sync.sync.profile_rules import Normalizer

    options = DevOrgOptions(port=DEVORG_PORT, state_dir=DEVORG_STATE, users=args.users, seed=args.seed,
                            messy_fraction=args.messy_fraction, client_id=DEVORG_CLIENT_ID,
                            key_id=DEVORG_KEY_ID)
    print(f"Starting the dev org on 127.0.0.1:{DEVORG_PORT} with {args.users} users ...")
    org = DevOrgProcess(options)
    try:
        org.start()
    except Exception as exc:
        print(f"The dev org did not start: {exc}\n(is port {DEVORG_PORT} in use? stop the other process.)")
        return 1
    try:
        return run_demo(args, org, Normalizer.default())
    finally:
        if args.keep_org:
            print(f"The dev org keeps running at {org.url} (pid {org.pid}); stop it with: kill {org.pid}")
        else:
            org.stop()


def run_demo(args, org, normalizer) -> int:
    from airflow.utils.db import initdb

    from scripts.apply_airflow_settings import apply_settings

    log_path = AIRFLOW_HOME / "logs" / f"demo-{time.strftime('%Y%m%dT%H%M%S')}.log"
    print(f"Preparing Airflow in {AIRFLOW_HOME.relative_to(ROOT)}/ and applying airflow_settings.yaml ...")
    with task_output_to(log_path):
        initdb()
        apply_settings(ROOT / "airflow_settings.yaml")
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        print(f"DAG import errors: {bag.import_errors}")
        return 1

    messy_before = sum(1 for u in org.admin.users() if normalizer.normalize_profile(u["profile"]) != u["profile"])
    output_root = ROOT / "include" / "output"
    results = []
    for attempt in (1, 2):
        conf = {"dry_run": args.dry_run, "full_refresh": True}
        before = org.admin.stats()
        started = time.monotonic()
        print(f"Run {attempt}: okta_user_sync (full refresh{', dry run' if args.dry_run else ''}) ...")
        with task_output_to(log_path):
            dag = DagBag(dag_folder=str(ROOT / "dags" / "okta_user_sync.py")).dags["okta_user_sync"]
            run = dag.test(run_conf=conf)
        after = org.admin.stats()
        if run.state != "success":
            print(f"  the run ended {run.state}; task logs: {log_path}")
            return 1
        summary = summarise_run(run_folder(output_root, run.run_id))
        posts = after["requests"].get("POST /api/v1/users/{id}", 0) - before["requests"].get("POST /api/v1/users/{id}", 0)
        tokens = after["tokens_issued"] - before["tokens_issued"]
        folder = run_folder(output_root, run.run_id)
        print(f"  {summary['scanned']} users scanned, {summary['fixed']} profiles "
              f"{'would be fixed' if args.dry_run else 'fixed'}, {posts} partial updates (POST), "
              f"{tokens} access token(s) minted, {time.monotonic() - started:.1f}s")
        print(f"  report rows by status: {summary['rows'] or 'none'}")
        print(f"  export: {(folder / 'users.jsonl.gz').relative_to(ROOT)}")
        print(f"  report: {(folder / 'report.csv').relative_to(ROOT)}")
        results.append((summary, posts))
        if args.dry_run:
            break

    if show_warehouse(log_path) != 0 or show_groups(log_path, org) != 0:
        return 1
    messy_after = sum(1 for u in org.admin.users() if normalizer.normalize_profile(u["profile"]) != u["profile"])
    print(f"Messy profiles in the org: {messy_before} before, {messy_after} after "
          f"(deprovisioned users are never updated). Task logs: {log_path.relative_to(ROOT)}")
    if not args.dry_run and results[-1][1] != 0:
        print("Unexpected: the second run still made updates.")
        return 1
    return 0


def show_warehouse(log_path: Path) -> int:
    """okta_users_to_warehouse loads the runs' exports into okta_warehouse (a SQLite file by default); a few rows."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.connection import Connection

    print("okta_users_to_warehouse: loading every export not loaded yet into the okta_warehouse connection ...")
    with task_output_to(log_path):
        dag = DagBag(dag_folder=str(ROOT / "dags" / "okta_users_to_warehouse.py")).dags["okta_users_to_warehouse"]
        run = dag.test()
    if run.state != "success":
        print(f"  the run ended {run.state}; task logs: {log_path}")
        return 1
    conn = Connection.get_connection_from_secrets("okta_warehouse")  # outside a task: from the metadata DB
    if conn.conn_type != "sqlite":
        print(f"  loaded into the {conn.conn_type} database of okta_warehouse; README: Data-team tables")
        return 0
    with contextlib.closing(sqlite3.connect(ROOT / conn.host)) as db:
        loads = db.execute("SELECT kind, users_read, inserted, changed, deleted FROM okta_sync_loads "
                           "ORDER BY exported_at DESC LIMIT 3").fetchall()
        users, deleted = db.execute("SELECT COUNT(*), COUNT(deleted_at) FROM okta_users").fetchone()
        versions = db.execute("SELECT COUNT(*) FROM okta_user_history").fetchone()[0]
        rows = db.execute("SELECT id, status, login, department, title, last_updated FROM okta_users "
                          "WHERE deleted_at IS NULL ORDER BY last_updated DESC, id LIMIT 5").fetchall()
    print(f"  okta_users: {users} users ({deleted} deleted), okta_user_history: {versions} versions; "
          f"latest loads (kind, read, new, changed, deleted): {loads}")
    for row in rows:
        print("   ", " | ".join(str(value) for value in row))
    print(f"  query it: sqlite3 {conn.host} 'SELECT status, COUNT(*) FROM okta_users GROUP BY 1'"
          " (README: Data-team tables)")
    return 0


def show_groups(log_path: Path, org) -> int:
    """okta_groups_sync (full refresh) then okta_groups_to_warehouse; a few rows of okta_groups and memberships."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.connection import Connection

    before = org.admin.stats()["requests"]
    print("okta_groups_sync (full refresh): every group, and the members of each ...")
    for dag_id, conf in (("okta_groups_sync", {"full_refresh": True}), ("okta_groups_to_warehouse", None)):
        with task_output_to(log_path):
            run = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).dags[dag_id].test(run_conf=conf)
        if run.state != "success":
            print(f"  {dag_id} ended {run.state}; task logs: {log_path}")
            return 1
        if dag_id == "okta_groups_sync":
            folder = run_folder(ROOT / "include" / "output", run.run_id, dag_id)
            after = org.admin.stats()["requests"]
            reads = after.get("GET /api/v1/groups/{id}/users", 0) - before.get("GET /api/v1/groups/{id}/users", 0)
            print(f"  {reads} member pages read; files: {(folder / 'groups.jsonl.gz').relative_to(ROOT)}, "
                  f"memberships.jsonl.gz, groups_read.jsonl.gz, groups.manifest.json")
    conn = Connection.get_connection_from_secrets("okta_warehouse")
    if conn.conn_type != "sqlite":
        print(f"  loaded into the {conn.conn_type} database of okta_warehouse; README: Groups")
        return 0
    with contextlib.closing(sqlite3.connect(ROOT / conn.host)) as db:
        rows = db.execute(
            "SELECT g.name, g.type, COUNT(m.user_id) FROM okta_groups g LEFT JOIN okta_group_members m "
            "ON m.group_id = g.id AND m.valid_to IS NULL WHERE g.deleted_at IS NULL GROUP BY g.id, g.name, g.type "
            "ORDER BY COUNT(m.user_id) DESC LIMIT 5").fetchall()
        groups, memberships = db.execute(
            "SELECT (SELECT COUNT(*) FROM okta_groups), (SELECT COUNT(*) FROM okta_group_members "
            "WHERE valid_to IS NULL)").fetchone()
    print(f"  okta_groups: {groups} groups, okta_group_members: {memberships} open memberships; the largest:")
    for row in rows:
        print("   ", " | ".join(str(value) for value in row))
    print("  members of a group on a date, groups per user: README, Groups")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
