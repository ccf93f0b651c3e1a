"""`python -m include.okta_dev_org`: flags, state files, key reuse, clean stop (via DevOrgProcess)."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OrgClient

from include.okta_dev_org import DevOrgOptions, DevOrgProcess

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_flag():
    result = subprocess.run([sys.executable, "-m", "include.okta_dev_org", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0
    for flag in ("--port", "--host", "--state-dir", "--users", "--seed", "--messy-fraction", "--deprovisioned-fraction",
                 "--latency-ms", "--rate-limit", "--rate-limit-users-list", "--rate-limit-token",
                 "--rate-limit-user-read", "--rate-limit-user-update", "--concurrency-limit", "--fail-rate", "--dpop",
                 "--tls", "--search-cap", "--granted-scopes"):
        assert flag in result.stdout


def test_process_writes_state_files_reuses_its_key_and_stops_on_sigterm(tmp_path):
    options = DevOrgOptions(users=30, state_dir=tmp_path / "state", rate_limit=0)
    with DevOrgProcess(options) as org:
        ready = json.loads((tmp_path / "state" / "ready.json").read_text())
        assert ready == {"port": org.port, "pid": org.process.pid, "org_url": org.url}
        connection = json.loads((tmp_path / "state" / "connection.json").read_text())
        assert set(connection) == {"org_url", "client_id", "key_id", "private_key_path", "scopes", "ca_bundle"}
        assert connection["ca_bundle"] is None
        key_path = Path(connection["private_key_path"])
        assert key_path.is_absolute()
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert OrgClient(org).api().get(f"{org.url}/api/v1/users?limit=5").status_code == 200
        first_key = key_path.read_bytes()
        process = org.process
    assert process.returncode == 0  # SIGTERM stops it cleanly
    assert not (tmp_path / "state" / "ready.json").exists()
    with DevOrgProcess(options) as again:
        assert Path(again.connection["private_key_path"]).read_bytes() == first_key
        assert again.connection["key_id"] == connection["key_id"]


def test_process_with_tls_and_required_dpop(tmp_path):
    options = DevOrgOptions(users=10, state_dir=tmp_path / "tls", tls=True, dpop="required", rate_limit=0)
    with DevOrgProcess(options) as org:
        assert org.url.startswith("https://")
        assert Path(org.connection["ca_bundle"]).is_file()
        response = OrgClient(org).request_token()
        assert response.json()["error"] == "invalid_dpop_proof"


def test_a_port_in_use_fails_fast_with_the_reason(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="Address already in use"):
            DevOrgProcess(DevOrgOptions(state_dir=tmp_path / "bad", port=taken.getsockname()[1]),
                          startup_timeout=30).start()
