"""The layers are physical: the core imports without Airflow, and imports point one way only.

Dependencies point down: config and errors <- http <- auth <- users <- groups <- sync <- airflow; never up
(groups reuses the users' paging pool and page decoder; users knows nothing of groups).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "plugins" / "okta_sync"

# layer -> the layers it must not import (its own layer and those below it are fine)
FORBIDDEN = {
    "http": {"auth", "users", "groups", "sync", "airflow", "client"},
    "auth": {"users", "groups", "sync", "airflow", "client"},
    "users": {"groups", "sync", "airflow", "client"},
    "groups": {"sync", "airflow", "client"},
    "sync": {"airflow", "client"},
    "": {"auth", "http", "users", "groups", "sync", "airflow"},  # errors, config, metrics, timestamps, version
}


def _core_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "airflow" in parts[1:2]:
            continue
        names.append(".".join(p for p in parts if p != "__init__"))
    return names


def test_every_core_module_imports_with_airflow_blocked():
    modules = _core_modules()
    assert len(modules) > 20, modules  # the walk found the package
    script = textwrap.dedent(
        f"""
        import importlib, sys
        class BlockAirflow:
            def find_spec(self, name, path=None, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ImportError("blocked: the core must not import " + name)
        sys.meta_path.insert(0, BlockAirflow())
        for name in {modules!r}:
            importlib.import_module(name)
        assert not any(m == "airflow" or m.startswith("airflow.") for m in sys.modules), "airflow got imported"
        print("ok", len({modules!r}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=PACKAGE.parent, capture_output=True, text=True,
                            env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


def _imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "okta_sync" and len(parts) > 1:
                layers.add(parts[1])
            elif parts[0] == "airflow":
                layers.add("airflow")
    return layers


def test_imports_point_one_way():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        layer = relative.parts[0] if len(relative.parts) > 1 else ""
        if layer == "airflow" or relative.name == "__init__.py" and layer == "":
            continue  # the Airflow layer and the public API may import anything
        if relative == Path("client.py"):
            continue  # wiring: the client assembles auth, http and users
        bad = _imported_layers(path) & FORBIDDEN[layer]
        if bad:
            offenders.append(f"{relative} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)
