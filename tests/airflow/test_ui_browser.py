"""What a new user sees, in a real browser: `scripts/dev.py airflow` (the dev org + Airflow) driven by Debian's
Chromium through Playwright. The DAGs list, the `okta` connection's Test turning green, the trigger form with its
params, a dry run's graph and its push log; then SIGTERM stops every process the command started.

Screenshots go to a temporary folder; UPDATE_UI_SCREENSHOTS=1 writes them to docs/ui/ (the README shows them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from scripts.airflow_stack import marked_processes

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler, pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DAG_ID = "okta_user_sync"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _settings_for(tmp: Path, devorg_state: Path, devorg_port: int) -> Path:
    """airflow_settings.yaml with the dev org on a free port and its key in this test's state dir."""
    document = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    conn = next(c for c in document["airflow"]["connections"] if c["conn_id"] == "okta_default")
    conn["conn_host"] = f"http://127.0.0.1:{devorg_port}"
    conn["conn_extra"]["private_key_path"] = str(devorg_state / "client_private_key.pem")
    path = tmp / "airflow_settings.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


class Api:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.token = self._call("GET", "/auth/token")["access_token"]

    def _call(self, method: str, path: str, params: dict | None = None):
        url = self.base_url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        request = urllib.request.Request(url, method=method, headers={"Accept": "application/json"})
        if getattr(self, "token", None):
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.loads(response.read())

    def runs(self) -> list[dict]:
        return self._call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]

    def xcom(self, run_id: str, task_id: str):
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/return_value"
        return self._call("GET", path)["value"]


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install -y chromium; .ci/run installs it)")
    return CHROMIUM


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory):
    """`scripts/dev.py airflow` as a user runs it (same module, same flags), on free ports in a temporary home."""
    tmp = tmp_path_factory.mktemp("airflow-ui")
    devorg_state, home = tmp / "devorg", tmp / "home"
    port = _free_port()
    settings = _settings_for(tmp, devorg_state, _free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    output = open(tmp / "dev-airflow.out", "w+")
    command = subprocess.Popen(
        [sys.executable, "-m", "scripts.airflow_ui", "--port", str(port), "--users", "200", "--home", str(home),
         "--devorg-state", str(devorg_state), "--settings", str(settings)],
        cwd=tmp, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while "Airflow UI:" not in (tmp / "dev-airflow.out").read_text():
        if command.poll() is not None or time.monotonic() > deadline:
            command.kill()
            pytest.fail(f"scripts/dev.py airflow did not start:\n{(tmp / 'dev-airflow.out').read_text()[-4000:]}")
        time.sleep(0.5)
    base_url = f"http://127.0.0.1:{port}"
    try:
        yield {"base_url": base_url, "api": Api(base_url), "command": command, "home": home, "tmp": tmp}
    finally:
        if command.poll() is None:
            command.send_signal(signal.SIGTERM)
            try:
                command.wait(60)
            except subprocess.TimeoutExpired:
                command.kill()
        output.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    if os.environ.get("UPDATE_UI_SCREENSHOTS") == "1":
        folder = ROOT / "docs" / "ui"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("ui-screenshots")


def _wait_for_runs(api: Api, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = api.runs()
        if any(r["run_type"] == "manual" for r in runs) and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        time.sleep(1)
    raise AssertionError(f"runs did not finish within {timeout}s: {[(r['run_type'], r['state']) for r in runs]}")


def test_a_new_user_sees_the_dags_a_green_test_the_trigger_form_and_a_dry_run(airflow_ui, screenshots, chromium):
    from playwright.sync_api import expect, sync_playwright

    base_url, api = airflow_ui["base_url"], airflow_ui["api"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)

        page.goto(f"{base_url}/dags")  # no login page: the all-admins simple auth manager
        expect(page.get_by_text(DAG_ID).first).to_be_visible()
        expect(page.get_by_text("okta_users_summary").first).to_be_visible()
        page.screenshot(path=screenshots / "dags.png")

        page.goto(f"{base_url}/connections")
        okta_row = page.locator("tr", has_text="okta_default")
        okta_row.get_by_role("button", name="Test Connection").click()
        toast = page.get_by_text("Token issued with scopes: okta.users.read")
        expect(toast).to_be_visible()
        expect(page.get_by_text("Test Connection Successful")).to_be_visible()
        expect(page.get_by_text("okta.users.manage can be minted").first).to_be_visible()
        page.screenshot(path=screenshots / "connection-test.png")

        okta_row.get_by_role("button", name="Edit Connection").click()
        expect(page.get_by_text("Org URL")).to_be_visible()
        expect(page.get_by_text("Private key (PEM or JWK)")).to_be_visible()
        page.screenshot(path=screenshots / "connection-form.png")
        page.keyboard.press("Escape")

        page.goto(f"{base_url}/dags/{DAG_ID}")
        page.get_by_role("button", name="Trigger Dag").click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("Run Parameters")).to_be_visible()
        for param in ("dry_run", "full_refresh", "changes_uri", "user_ids"):
            expect(dialog.get_by_text(re.compile(rf"^{param}")).first).to_be_visible()
        dry_run = dialog.get_by_role("checkbox", name="dry_run")
        dry_run.locator("xpath=ancestor::label[1]").click()  # the switch: its input is visually hidden
        expect(dry_run).to_be_checked()
        page.screenshot(path=screenshots / "trigger-form.png")
        # "Unpause on trigger" stays ticked, as a new user leaves it: the scheduled run it starts must not write.
        dialog.get_by_role("button", name="Trigger", exact=True).click()

        runs = _wait_for_runs(api, timeout=150)
        manual = next(r for r in runs if r["run_type"] == "manual")
        assert manual["conf"].get("dry_run") is True and manual["state"] == "success", manual
        assert {r["run_type"] for r in runs} <= {"manual", "scheduled"}
        for run in runs:  # the first unpause started a scheduled run: a dry run too (okta_sync_write_mode unset)
            assert run["state"] == "success", run
            assert api.xcom(run["dag_run_id"], "push_changes")["dry_run"] is True, run

        run_path = f"{base_url}/dags/{DAG_ID}/runs/{urllib.parse.quote(manual['dag_run_id'], safe='')}"
        page.goto(run_path)
        page.get_by_role("button", name="Show Graph (Press g)").click()
        expect(page.get_by_text("push_changes").first).to_be_visible()
        page.wait_for_timeout(1500)  # the graph lays itself out
        page.screenshot(path=screenshots / "dry-run-graph.png")

        page.goto(f"{run_path}/tasks/push_changes")
        expect(page.get_by_text("Mode: DRY RUN").first).to_be_visible()
        expect(page.get_by_text("manual run with dry_run=True").first).to_be_visible()
        page.get_by_role("button", name="Press f for fullscreen").click()  # whole log lines
        expect(page.get_by_text("Push dry run").first).to_be_visible()
        page.screenshot(path=screenshots / "dry-run-log.png")
        browser.close()

    # No noise in any task: no masking warning for a short non-secret, no missing-kid warning.
    task_logs = "".join(p.read_text() for p in (airflow_ui["home"] / "logs").rglob("*.log"))
    assert "Mode: DRY RUN" in task_logs
    assert "Skipping masking" not in task_logs and "No key_id" not in task_logs


def test_the_test_button_request_passes_and_sigterm_leaves_no_process(airflow_ui):
    """Without a browser too: the body Airflow 3.3.2's Test button sends (port 0, masked extras) is green, and
    SIGTERM to the command ends every process it started (components, executor workers, task processes)."""
    api = airflow_ui["api"]
    stored = api._call("GET", "/api/v2/connections/okta_default")
    body = {key: stored[key] for key in ("connection_id", "conn_type", "host", "login", "extra")}
    body.update({"port": 0, "password": "", "schema": "", "description": ""})  # Number(null) is 0
    request = urllib.request.Request(f"{api.base_url}/api/v2/connections/test", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {api.token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        result = json.loads(response.read())
    assert result["status"] is True, result

    command, home = airflow_ui["command"], airflow_ui["home"]
    command.send_signal(signal.SIGTERM)
    assert command.wait(60) == 0
    out = (airflow_ui["tmp"] / "dev-airflow.out").read_text()
    assert "Stopped; no process left." in out, out[-2000:]
    assert not marked_processes("no-marker", home), "a process of the deployment outlived SIGTERM"
