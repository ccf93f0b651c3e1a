"""Print the AIRFLOW_CONN_OKTA_DEFAULT value for the settings of Okta's Spring Boot service-app sample.

    OKTA_DOMAIN=dev-123.okta.com OKTA_CLIENT_ID=0oa... OKTA_SCOPE="okta.users.read okta.users.manage" \\
    OKTA_JWT_AUDIENCE=https://dev-123.okta.com/oauth2/v1/token OKTA_JWT_KID=my-kid \\
    OKTA_JWT_PEM_PATH=/secrets/okta.pem  python3.11 scripts/conn_from_spring_boot.py

The settings are read from the environment (or `--env-file`, a `KEY=value` file such as the sample's `.env`), checked
the way the connector will check them, and printed as an `export` line. No secret is printed: the key stays a path.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins"))

SPRING_SETTINGS = ("OKTA_DOMAIN", "OKTA_CLIENT_ID", "OKTA_SCOPE", "OKTA_JWT_AUDIENCE", "OKTA_JWT_KID", "OKTA_JWT_PEM_PATH")


def connection_from_spring(settings: Mapping[str, str]) -> dict:
    """The okta connection (Airflow JSON form) equivalent to the sample's settings."""
    from okta_sync.airflow.connection_fields import config_from_connection

    missing = [name for name in ("OKTA_DOMAIN", "OKTA_CLIENT_ID", "OKTA_JWT_PEM_PATH") if not settings.get(name)]
    if missing:
        raise SystemExit(f"missing setting(s): {', '.join(missing)}")
    domain = settings["OKTA_DOMAIN"].strip().rstrip("/")
    host = domain if "://" in domain else f"https://{domain}"
    extra: dict[str, str] = {"private_key_path": settings["OKTA_JWT_PEM_PATH"]}
    if settings.get("OKTA_JWT_KID"):
        extra["key_id"] = settings["OKTA_JWT_KID"]
    if settings.get("OKTA_SCOPE"):
        extra["scopes"] = " ".join(settings["OKTA_SCOPE"].replace(",", " ").split())
    audience = (settings.get("OKTA_JWT_AUDIENCE") or "").strip()
    if audience and audience != f"{host}/oauth2/v1/token":
        extra["token_url"] = audience  # the sample's audience is the token URL the assertion is made for
    connection = {"conn_type": "okta", "host": host, "login": settings["OKTA_CLIENT_ID"].strip(), "extra": extra}
    # Check it as the hook will (the key file is read only when the hook first runs, so it may live elsewhere).
    config_from_connection(host=host, login=connection["login"], extra=extra)
    return connection


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            values[name.strip()] = value.strip().strip("'\"")
    return values


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-file", type=Path, help="read the settings from this KEY=value file")
    parser.add_argument("--conn-id", default="okta_default")
    args = parser.parse_args(argv)
    settings = read_env_file(args.env_file) if args.env_file else {k: os.environ[k] for k in SPRING_SETTINGS if k in os.environ}
    connection = connection_from_spring(settings)
    print(f"export AIRFLOW_CONN_{args.conn_id.upper()}={shlex.quote(json.dumps(connection))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
