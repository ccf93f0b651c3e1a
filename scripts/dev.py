#!/usr/bin/env python3
"""One entry point for a fresh machine with only Python 3.11: builds .venv from the pinned files, then runs a job.

    python3.11 scripts/dev.py sync      # the main job: a user sync against the local dev org
    python3.11 scripts/dev.py test      # the test suite (two processes; with arguments: pytest's, as given)
    python3.11 scripts/dev.py bench     # the benchmarks (not part of the tests)
    python3.11 scripts/dev.py airflow   # the Airflow UI with the dev org on http://127.0.0.1:8080 (--help)

The virtualenv is rebuilt only when a requirements file changed (a stamp holds their hash).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
REQUIREMENTS = (ROOT / "requirements.txt", ROOT / "requirements-dev.txt", ROOT / "pyproject.toml")
STAMP = VENV / ".requirements.sha256"
UV_VERSION = "0.13.8"


def _requirements_hash() -> str:
    digest = hashlib.sha256()
    for path in REQUIREMENTS:
        digest.update(path.read_bytes())
    digest.update(UV_VERSION.encode())
    return digest.hexdigest()


def _run(*cmd: object, **kwargs) -> None:
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def ensure_venv() -> Path:
    """Create or refresh .venv; uv does the install (seconds, not minutes), pip installs uv."""
    wanted = _requirements_hash()
    if STAMP.exists() and STAMP.read_text().strip() == wanted and PYTHON.exists():
        return PYTHON
    if sys.version_info[:2] != (3, 11):
        print(f"note: building .venv with Python {sys.version.split()[0]}; the project is tested on 3.11", file=sys.stderr)
    if not PYTHON.exists():
        print(f"creating {VENV.relative_to(ROOT)} ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing pinned requirements ...", file=sys.stderr)
    _run(PYTHON, "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}")
    _run(PYTHON, "-m", "uv", "pip", "install", "--quiet", "--python", PYTHON, "-r", ROOT / "requirements-dev.txt")
    # The project itself, as the Airflow provider that puts the `okta` connection type in the UI.
    _run(PYTHON, "-m", "uv", "pip", "install", "--quiet", "--python", PYTHON, "--no-deps", "-e", ROOT)
    STAMP.write_text(wanted + "\n")
    return PYTHON


def _venv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # the browser test uses the system's Chromium
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH")]))
    return env


def _exec_in_venv(args: list[str]) -> int:
    python = ensure_venv()
    return subprocess.call([str(python), *args], cwd=ROOT, env=_venv_env())


def _replace_with_venv(args: list[str]) -> int:
    """Become the venv's Python (same pid): Ctrl+C and SIGTERM reach the job itself, which stops what it started."""
    python = ensure_venv()
    os.chdir(ROOT)
    os.execve(str(python), [str(python), *args], _venv_env())
    return 1  # not reached


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "test":  # the whole suite in two processes, a test file each at a time (pytest-xdist)
        return _exec_in_venv(["-m", "pytest", *(rest or ["-n", "2", "--dist", "loadfile"])])
    if command == "sync":
        return _exec_in_venv(["-m", "scripts.demo_sync", *rest])
    if command == "bench":
        return _exec_in_venv(["-m", "benchmarks", *rest])
    if command == "devorg":
        return _exec_in_venv(["-m", "include.okta_dev_org", *rest])
    if command == "airflow":
        return _replace_with_venv(["-m", "scripts.airflow_ui", *rest])
    if command == "python":
        return _exec_in_venv(rest)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
