"""The Airflow UI with the dev org, in one command (no Docker, no login):

    python3.11 scripts/dev.py airflow [--port 8080] [--users 1000] [--messy-fraction 0.2]
    python3.11 scripts/dev.py airflow --executor celery [--workers 2]   # a local Celery cluster, runs on S3

Starts the dev org (port, client id and kid from the `okta_default` connection in airflow_settings.yaml) and
Airflow's api-server, scheduler (LocalExecutor), dag-processor and triggerer on 127.0.0.1 only, with the simple
auth manager's all-admins mode (as local Astro development has), the connection Test button enabled, and
airflow_settings.yaml applied after `airflow db migrate`. Airflow's home is .airflow/ui/ (kept between starts:
runs, connections and the Fernet key that encrypts them). DAGs start paused; scheduled runs of okta_user_sync
are dry runs until the Variable okta_sync_write_mode is `apply`.

With `--executor celery` it is the deployment users run instead (scripts/airflow_cluster.py): PostgreSQL as the
metadata DB, Redis as the Celery broker, moto's server standing in for S3 (run folders in
s3://aws_default@okta-runs/okta/, feeds under s3://aws_default@okta-feeds/), the api-server, scheduler
(CeleryExecutor), dag-processor, triggerer and `--workers` Celery workers, each in its own mount namespace with a
private /tmp, /var/tmp and include/output (as root; otherwise it refuses unless --no-isolation, and then says what
is shared). Its home is .airflow/cluster/; the metadata DB is new at each start.

Ctrl+C (or SIGTERM) stops every process it started: each component runs in its own process group, and the
stop sweeps every process whose working directory is the Airflow home (executor workers, task supervisors);
a worker's whole namespace ends with it.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".airflow" / "ui"
CLUSTER_HOME = ROOT / ".airflow" / "cluster"
SETTINGS = ROOT / "airflow_settings.yaml"
DEVORG_CONN_ID = "okta_default"


class Stop(Exception):
    """SIGTERM or SIGINT (Ctrl+C), turned into an exception so one clean-up runs."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080, help="the UI and API port on 127.0.0.1 (default 8080)")
    parser.add_argument("--users", type=int, default=1000, help="users the dev org is seeded with (default 1000)")
    parser.add_argument("--messy-fraction", type=float, default=0.2, help="share of users with messy profiles")
    parser.add_argument("--settings", type=Path, default=SETTINGS, help="default: %(default)s")
    parser.add_argument("--home", type=Path, default=None,
                        help=f"AIRFLOW_HOME (default: {HOME}, with celery {CLUSTER_HOME})")
    parser.add_argument("--devorg-state", type=Path, default=ROOT / ".devorg", help="the dev org's key and state")
    parser.add_argument("--executor", choices=("local", "celery"), default="local",
                        help="local: LocalExecutor and SQLite (default); celery: the local Celery cluster")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (with --executor celery; default 2)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="task slots per Celery worker (default 2)")
    parser.add_argument("--no-isolation", action="store_true",
                        help="with --executor celery when not root: run the workers without private folders")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.home is None:
        args.home = CLUSTER_HOME if args.executor == "celery" else HOME
    return args


def dev_org_identity(settings_path: Path, conn_id: str = DEVORG_CONN_ID) -> dict:
    """Port, client id and kid of the dev org, as the connection in the settings file names them."""
    from scripts.apply_airflow_settings import load_settings

    entry = next((c for c in load_settings(settings_path).connections if c.conn_id == conn_id), None)
    if entry is None or not entry.host or not entry.login:
        raise SystemExit(f"{settings_path}: needs connection {conn_id!r} with conn_host and conn_login")
    url = urllib.parse.urlsplit(entry.host)
    if url.hostname not in ("127.0.0.1", "localhost") or not url.port:
        raise SystemExit(f"{settings_path}: {conn_id}.conn_host must be http://127.0.0.1:<port> for the dev org")
    return {"port": url.port, "client_id": entry.login, "key_id": (entry.extra or {}).get("key_id")}


def fernet_key(home: Path) -> str:
    """One key per Airflow home (mode 0600): connections stored at the last start must still decrypt."""
    path = home / "fernet.key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.urlsafe_b64encode(os.urandom(32)).decode())
    return path.read_text().strip()


def build_stack(args: argparse.Namespace):
    from scripts.airflow_stack import ALL_COMPONENTS, AirflowStack

    home = args.home.resolve()
    apply = [sys.executable, ROOT / "scripts" / "apply_airflow_settings.py", "--project-dir", ROOT, args.settings.resolve()]
    return AirflowStack(
        ROOT / "dags",
        ROOT / "plugins",
        home=home,
        port=args.port,
        components=ALL_COMPONENTS,
        use_job_schedule=True,
        python_path=[ROOT],
        after_migrate=[apply],
        startup_timeout=180,
        env={"AIRFLOW__CORE__FERNET_KEY": fernet_key(home), **UI_ENV},
    )


UI_ENV = {
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
}


def build_cluster(args: argparse.Namespace):
    """The local Celery cluster: airflow_settings.yaml first, then the cluster's S3, warehouse and Variables."""
    from scripts.airflow_cluster import NOT_ISOLATED, LocalCeleryCluster, can_isolate
    from scripts.airflow_stack import ALL_COMPONENTS

    if not can_isolate() and not args.no_isolation:
        raise SystemExit(f"error: --executor celery isolates each worker in a mount namespace, which needs root: "
                         f"{NOT_ISOLATED}. Run as root, or pass --no-isolation to accept that.")
    home = args.home.resolve()
    return LocalCeleryCluster(
        home, ROOT / "dags", ROOT / "plugins", workers=args.workers, worker_concurrency=args.worker_concurrency,
        isolate=can_isolate(), port=args.port, settings_files=[args.settings], components=ALL_COMPONENTS,
        startup_timeout=240, use_job_schedule=True, env={"AIRFLOW__CORE__FERNET_KEY": fernet_key(home), **UI_ENV},
    )


def describe_cluster(cluster) -> str:
    from scripts.airflow_cluster import FEED_ROOT, OUTPUT_URI

    stack = cluster.stack
    workers = ", ".join(f"{name} (pid {stack.worker_process(name).pid})" for name in stack.workers)
    isolation = ("each in its own mount namespace: private /tmp, /var/tmp and include/output" if cluster.isolate
                 else "NOT isolated: they share /tmp, /var/tmp and include/output")
    return (f"PostgreSQL (metadata DB `airflow`, warehouse `okta_warehouse`): 127.0.0.1:{cluster.postgres.port}\n"
            f"Redis (Celery broker): {cluster.redis.url}\n"
            f"moto's server standing in for S3: {cluster.s3.endpoint_url} (connection aws_default; "
            f"okta_sync_output_uri={OUTPUT_URI}, okta_sync_feed_roots=[\"{FEED_ROOT}\"])\n"
            f"Celery workers: {workers}; {isolation}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from include.okta_dev_org import DevOrgOptions, DevOrgProcess

    identity = dev_org_identity(args.settings)
    options = DevOrgOptions(port=identity["port"], state_dir=args.devorg_state, users=args.users,
                            messy_fraction=args.messy_fraction, client_id=identity["client_id"],
                            key_id=identity["key_id"])

    def on_sigterm(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)  # Ctrl+C, even when started with SIGINT ignored (e.g. from a script's `&`)
    org = DevOrgProcess(options)
    cluster = build_cluster(args) if args.executor == "celery" else None
    stack = None if cluster else build_stack(args)
    try:
        print(f"Starting the dev org on 127.0.0.1:{identity['port']} ({args.users} users) ...", flush=True)
        org.start()
        if cluster:
            print(f"Starting PostgreSQL, Redis, moto's S3, then Airflow (api-server, scheduler with the "
                  f"CeleryExecutor, dag-processor, triggerer, {args.workers} Celery workers) in {cluster.home} ...",
                  flush=True)
            cluster.start()
            stack = cluster.stack
        else:
            print(f"Starting Airflow (api-server, scheduler, dag-processor, triggerer) in {stack.home} ...", flush=True)
            stack.start()
        print(stack.setup_output.strip(), flush=True)
        if cluster:
            print(describe_cluster(cluster), flush=True)
        stack.wait_for_dag("okta_user_sync", timeout=120)
        print(f"\nAirflow UI: {stack.base_url}/  (no login; dev org at {org.url})\n"
              f"Component logs: {stack.home}/<component>.out. Ctrl+C stops everything.", flush=True)
        while (exited := stack.exited_component()) is None:
            time.sleep(1)
        name, code = exited
        print(f"{name} exited with {code}:\n{stack.component_output(name)}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Stop):
        print("\nStopping ...", flush=True)
        return 0
    except Exception as error:  # a component that did not start: its output is in the message
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not interrupt the clean-up
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if cluster:
            cluster.stop()
        elif stack:
            stack.stop()
        org.stop()
        left = cluster.processes() if cluster else stack.processes() if stack else []
        print("Stopped; no process left." if not left else f"Still running: {[p.pid for p in left]}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
