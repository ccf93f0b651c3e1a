#!/usr/bin/env python3
"""Apply airflow_settings.yaml (the Astro CLI format) to plain Airflow, the way `astro dev object import` would.

    python scripts/apply_airflow_settings.py [airflow_settings.yaml]           # upsert into the metadata DB
    python scripts/apply_airflow_settings.py --print-env [airflow_settings.yaml]  # AIRFLOW_CONN_* lines instead

The metadata DB is whatever the environment configures (AIRFLOW_HOME, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN), so set
those before running it. Applying twice changes nothing the second time.

The format, as the Astro CLI reads it (astronomer/astro-cli settings/types.go):

    airflow:
      connections:   [{conn_id, conn_type, conn_host, conn_schema, conn_login, conn_password, conn_port,
                       conn_uri, conn_extra}]   # conn_extra: a mapping or a JSON string
      pools:         [{pool_name, pool_slot, pool_description}]
      variables:     [{variable_name, variable_value}]

Like the Astro CLI: no `${ENV_VAR}` expansion (values are taken literally); entries without a name are skipped
(the Astro template ships such blank entries); `conn_uri` is used only when no other field is set; a variable
without a value and a pool without slots are skipped. Unlike it: a connection with a name but neither
`conn_type` nor `conn_uri` is an error rather than a printed "Skipping", and non-string `conn_extra` values are
kept as JSON (the Astro CLI silently drops them; quote them to stay portable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS = ROOT / "airflow_settings.yaml"
CONNECTION_FIELDS = ("conn_type", "host", "schema", "login", "password", "port", "extra")


class AirflowSettingsError(ValueError):
    """An entry of the settings file that cannot be applied; names the file, section, entry and field."""

    def __init__(self, path: Path | str, section: str, index: int, field_name: str, problem: str):
        self.path, self.section, self.index, self.field_name = str(path), section, index, field_name
        super().__init__(f"{path}: airflow.{section}[{index}].{field_name}: {problem}")


@dataclass(frozen=True)
class ConnectionEntry:
    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = None
    port: int | None = None
    extra: dict | None = None
    uri: str | None = None

    def fields(self) -> dict[str, Any]:
        """The connection as Airflow's JSON connection format (what AIRFLOW_CONN_<ID> accepts)."""
        return {name: value for name in CONNECTION_FIELDS if (value := getattr(self, name)) not in (None, "", {})}

    def env_value(self) -> str:
        return self.uri if self.uri else json.dumps(self.fields())


@dataclass(frozen=True)
class VariableEntry:
    key: str
    value: str


@dataclass(frozen=True)
class PoolEntry:
    name: str
    slots: int
    description: str = ""


@dataclass
class AirflowSettings:
    connections: list[ConnectionEntry] = field(default_factory=list)
    variables: list[VariableEntry] = field(default_factory=list)
    pools: list[PoolEntry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _connection(path: Path, index: int, raw: dict) -> ConnectionEntry | None:
    conn_id = _text(raw.get("conn_id"))
    if conn_id is None:
        return None
    extra = raw.get("conn_extra")
    if isinstance(extra, str) and extra.strip():
        try:
            extra = json.loads(extra)
        except ValueError as error:
            raise AirflowSettingsError(path, "connections", index, "conn_extra", f"not JSON: {error}") from None
    if extra not in (None, "") and not isinstance(extra, dict):
        raise AirflowSettingsError(path, "connections", index, "conn_extra", "must be a mapping or a JSON object")
    port = raw.get("conn_port")
    # An explicit 0 is kept: Airflow 3.3.2's Test button sends port 0 for a connection without one (README).
    if port not in (None, ""):
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise AirflowSettingsError(path, "connections", index, "conn_port", f"not a number: {port!r}") from None
    else:
        port = None
    entry = ConnectionEntry(
        conn_id=conn_id,
        conn_type=_text(raw.get("conn_type")),
        host=_text(raw.get("conn_host")),
        schema=_text(raw.get("conn_schema")),
        login=_text(raw.get("conn_login")),
        password=_text(raw.get("conn_password")),
        port=port,
        extra=extra or None,
    )
    uri = _text(raw.get("conn_uri"))
    if uri and not any(entry.fields().values()):
        return ConnectionEntry(conn_id=conn_id, uri=uri)
    if entry.conn_type is None:
        raise AirflowSettingsError(path, "connections", index, "conn_type", f"{conn_id}: needs conn_type or conn_uri")
    return entry


def _variable_value(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def load_settings(path: str | Path) -> AirflowSettings:
    """Parse and check the file; nothing touches Airflow yet."""
    path = Path(path)
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict):
        raise AirflowSettingsError(path, "", 0, "airflow", "the file must be a mapping with an `airflow` key")
    airflow_section = document.get("airflow") or {}
    settings = AirflowSettings()
    for index, raw in enumerate(airflow_section.get("connections") or []):
        entry = _connection(path, index, raw or {})
        if entry is None:
            settings.skipped.append(f"connections[{index}]: no conn_id")
        else:
            settings.connections.append(entry)
    for index, raw in enumerate(airflow_section.get("variables") or []):
        raw = raw or {}
        key, value = _text(raw.get("variable_name")), _variable_value(raw.get("variable_value"))
        if key is None or value is None:
            settings.skipped.append(f"variables[{index}]: {'no variable_value' if key else 'no variable_name'}")
        else:
            settings.variables.append(VariableEntry(key, value))
    for index, raw in enumerate(airflow_section.get("pools") or []):
        raw = raw or {}
        name, slots = _text(raw.get("pool_name")), raw.get("pool_slot")
        if name is None or slots in (None, "", 0):
            settings.skipped.append(f"pools[{index}]: {'no pool_slot' if name else 'no pool_name'}")
            continue
        try:
            slots = int(slots)
        except (TypeError, ValueError):
            raise AirflowSettingsError(path, "pools", index, "pool_slot", f"not a number: {slots!r}") from None
        settings.pools.append(PoolEntry(name, slots, _text(raw.get("pool_description")) or ""))
    ids = [entry.conn_id for entry in settings.connections]
    for index, conn_id in enumerate(ids):
        if conn_id in ids[:index]:
            raise AirflowSettingsError(path, "connections", index, "conn_id", f"{conn_id!r} appears twice")
    return settings


PATH_EXTRAS = ("private_key_path", "ca_bundle")


def with_paths_resolved(settings: AirflowSettings, project_dir: str | Path) -> AirflowSettings:
    """Relative file paths in connection extras (and a sqlite connection's host, its database file) made absolute
    against the project directory: Astro runs Airflow from its project directory, plain Airflow from anywhere."""
    base = Path(project_dir).resolve()
    for index, entry in enumerate(settings.connections):
        extra = dict(entry.extra or {})
        changed = {name: str(base / extra[name]) for name in PATH_EXTRAS
                   if isinstance(extra.get(name), str) and extra[name] and not Path(extra[name]).is_absolute()}
        if changed:
            entry = settings.connections[index] = dataclasses.replace(entry, extra={**extra, **changed})
        if entry.conn_type == "sqlite" and entry.host and not Path(entry.host).is_absolute():  # host = the DB file
            settings.connections[index] = dataclasses.replace(entry, host=str(base / entry.host))
    return settings


def connection_env(path: str | Path) -> dict[str, str]:
    """{"AIRFLOW_CONN_OKTA_DEFAULT": "<JSON>"} for every connection: for tests and deployments without a DB."""
    return {f"AIRFLOW_CONN_{entry.conn_id.upper()}": entry.env_value() for entry in load_settings(path).connections}


@dataclass
class ApplySummary:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def record(self, kind: str, outcome: str, name: str) -> None:
        getattr(self, outcome).append(f"{kind} {name}")

    def __str__(self) -> str:
        parts = [f"{len(getattr(self, name))} {name}" for name in ("created", "updated", "unchanged", "skipped")]
        lines = [", ".join(parts)]
        lines += [f"  {name}: {item}" for name in ("created", "updated", "skipped") for item in getattr(self, name)]
        return "\n".join(lines)


def _upsert_connection(session, entry: ConnectionEntry) -> str:
    from sqlalchemy import select

    from airflow.models import Connection

    wanted = Connection(conn_id=entry.conn_id, uri=entry.uri) if entry.uri else Connection(
        conn_id=entry.conn_id, **{**entry.fields(), "extra": json.dumps(entry.extra) if entry.extra else None}
    )
    existing = session.scalar(select(Connection).where(Connection.conn_id == entry.conn_id))
    if existing is None:
        session.add(wanted)
        return "created"
    names = ("conn_type", "host", "schema", "login", "password", "port")
    same = all(getattr(existing, name) == getattr(wanted, name) for name in names)
    if same and existing.extra_dejson == wanted.extra_dejson:
        return "unchanged"
    for name in names:
        setattr(existing, name, getattr(wanted, name))
    existing.extra = wanted.extra
    return "updated"


def _upsert_variable(session, entry: VariableEntry) -> str:
    from sqlalchemy import select

    from airflow.models import Variable

    existing = session.scalar(select(Variable).where(Variable.key == entry.key))
    if existing is None:
        session.add(Variable(key=entry.key, val=entry.value))
        return "created"
    if existing.val == entry.value:
        return "unchanged"
    existing.set_val(entry.value)
    return "updated"


def _upsert_pool(session, entry: PoolEntry) -> str:
    from sqlalchemy import select

    from airflow.models import Pool

    existing = session.scalar(select(Pool).where(Pool.pool == entry.name))
    if existing is None:
        session.add(Pool(pool=entry.name, slots=entry.slots, description=entry.description, include_deferred=False))
        return "created"
    if (existing.slots, existing.description or "") == (entry.slots, entry.description):
        return "unchanged"
    existing.slots, existing.description = entry.slots, entry.description
    return "updated"


def apply_settings(path: str | Path = DEFAULT_SETTINGS, project_dir: str | Path | None = None) -> ApplySummary:
    """Upsert the file's connections, variables and pools into the configured metadata DB, in one transaction.
    With `project_dir`, relative paths in connection extras are resolved against it."""
    settings = load_settings(path)
    if project_dir is not None:
        settings = with_paths_resolved(settings, project_dir)
    from airflow.utils.session import create_session

    summary = ApplySummary(skipped=list(settings.skipped))
    with create_session() as session:
        for conn in settings.connections:
            summary.record("connection", _upsert_connection(session, conn), conn.conn_id)
        for variable in settings.variables:
            summary.record("variable", _upsert_variable(session, variable), variable.key)
        for pool in settings.pools:
            summary.record("pool", _upsert_pool(session, pool), pool.name)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_SETTINGS), help="default: %(default)s")
    parser.add_argument(
        "--print-env", action="store_true", help="print `export AIRFLOW_CONN_<ID>=...` lines instead of applying"
    )
    parser.add_argument("--project-dir", help="resolve relative paths in connection extras (private_key_path, "
                        "ca_bundle) against this directory, as Astro's project directory")
    args = parser.parse_args(argv)
    try:
        if args.print_env:
            for name, value in connection_env(args.path).items():
                print(f"export {name}={shlex.quote(value)}")
            return 0
        print(f"{args.path}: {apply_settings(args.path, args.project_dir)}")
    except (AirflowSettingsError, FileNotFoundError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
