"""Starting the dev org: in this process (DevOrg, a background thread) or in a child process (DevOrgProcess)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .admin import AdminClient
from .app import DevOrgApp
from .keys import CONNECTION_FILE, READY_FILE, ensure_client, write_json_atomically
from .options import DevOrgOptions
from .population import b62, mix, random62
from .server import DevOrgHTTPServer, serve_in_thread
from .tls import ensure_certificates, server_context

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_client_id(seed: int) -> str:
    return "0oa" + random62(seed ^ 0xC11E47, 14) + b62(mix(seed ^ 0x5EED) >> 20, 3)


class OrgServer:
    """Builds state dir, keys, certificates and the listening server; writes connection.json and ready.json."""

    def __init__(self, options: DevOrgOptions):
        self.options = options
        self.state_dir = Path(options.state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / READY_FILE).unlink(missing_ok=True)
        client = ensure_client(self.state_dir, options.client_id or default_client_id(options.seed))
        if options.client_id and options.client_id != client["client_id"]:
            client["client_id"] = options.client_id
        if options.key_id:  # as in Okta, where a key added to an app may carry the kid you choose
            client["kid"] = options.key_id
            client["jwk"] = {**client["jwk"], "kid": options.key_id}
        self.client = client
        tls_context, self.ca_bundle = None, None
        if options.tls:
            ca, cert, key = ensure_certificates(self.state_dir, options.host)
            tls_context, self.ca_bundle = server_context(cert, key), str(ca)
        host_in_url = f"[{options.host}]" if ":" in options.host else options.host

        def app_factory(server: DevOrgHTTPServer) -> DevOrgApp:
            return DevOrgApp(options, f"{server.scheme}://{host_in_url}:{server.port}", client)

        self.httpd = DevOrgHTTPServer((options.host, options.port), app_factory, tls_context)
        self.app = self.httpd.app
        self.url = self.app.org_url
        self.port = self.httpd.port
        self.connection = {
            "org_url": self.url, "client_id": client["client_id"], "key_id": client["kid"],
            "private_key_path": client["private_key_path"], "scopes": list(options.granted_scopes),
            "ca_bundle": self.ca_bundle,
        }
        write_json_atomically(self.state_dir / CONNECTION_FILE, self.connection)
        self._stop = threading.Event()

    def start_warmup(self) -> None:
        threading.Thread(target=self.app.store.warm, args=(self._stop,), name="okta-dev-org-warmup",
                         daemon=True).start()

    def mark_ready(self) -> None:
        write_json_atomically(self.state_dir / READY_FILE, {"port": self.port, "pid": os.getpid(),
                                                            "org_url": self.url})

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        (self.state_dir / READY_FILE).unlink(missing_ok=True)


class DevOrg:
    """The dev org in a background thread of this process: `with DevOrg(options) as org: org.url, org.admin`."""

    def __init__(self, options: DevOrgOptions | None = None):
        self.options = options or DevOrgOptions()
        self._server: OrgServer | None = None
        self.admin: AdminClient | None = None

    def start(self) -> "DevOrg":
        self._server = OrgServer(self.options)
        serve_in_thread(self._server.httpd)
        self._server.mark_ready()
        self._server.start_warmup()
        self.admin = AdminClient(self.url, self.ca_bundle)
        return self

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def connection(self) -> dict:
        return dict(self._server.connection)

    @property
    def ca_bundle(self) -> str | None:
        return self._server.ca_bundle

    @property
    def state_dir(self) -> Path:
        return self._server.state_dir

    @property
    def app(self) -> DevOrgApp:
        """The live server state (in-process only): store, auth, stats."""
        return self._server.app

    def stop(self) -> None:
        if self.admin:
            self.admin.close()
        if self._server:
            self._server.close()
            self._server = None

    def __enter__(self) -> "DevOrg":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class DevOrgProcess:
    """The dev org as `python -m include.okta_dev_org` in a child process (no shared GIL); same surface as DevOrg."""

    def __init__(self, options: DevOrgOptions | None = None, startup_timeout: float = 120.0, python: str | None = None):
        self.options = options or DevOrgOptions()
        self.startup_timeout = startup_timeout
        self.python = python or sys.executable
        self.process: subprocess.Popen | None = None
        self.admin: AdminClient | None = None
        self.connection: dict = {}
        self.ready: dict = {}

    @property
    def state_dir(self) -> Path:
        return Path(self.options.state_dir).resolve()

    def start(self) -> "DevOrgProcess":
        ready_path = self.state_dir / READY_FILE
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ready_path.unlink(missing_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        self._log = open(self.state_dir / "devorg.log", "wb")
        self.process = subprocess.Popen([self.python, "-m", "include.okta_dev_org", *self.options.to_argv()],
                                        cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while not ready_path.exists():
            if self.process.poll() is not None:
                self._log.close()
                log = (self.state_dir / "devorg.log").read_text(errors="replace")
                raise RuntimeError(f"dev org exited with {self.process.returncode}: {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"dev org not ready within {self.startup_timeout} s")
            time.sleep(0.05)
        self.ready = json.loads(ready_path.read_text())
        self.connection = json.loads((self.state_dir / CONNECTION_FILE).read_text())
        self.admin = AdminClient(self.url, self.ca_bundle)
        return self

    @property
    def url(self) -> str:
        return self.ready["org_url"]

    @property
    def port(self) -> int:
        return self.ready["port"]

    @property
    def pid(self) -> int:
        return self.ready["pid"]

    @property
    def ca_bundle(self) -> str | None:
        return self.connection.get("ca_bundle")

    def stop(self, timeout: float = 10.0) -> None:
        if self.admin:
            self.admin.close()
            self.admin = None
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if getattr(self, "_log", None):
            self._log.close()
        self.process = None

    def __enter__(self) -> "DevOrgProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
