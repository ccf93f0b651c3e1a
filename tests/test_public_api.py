"""`okta_sync` is the public API: every name in `__all__` resolves, what a user of the core needs is there, and
the core's part resolves with Airflow blocked (the Airflow layer is re-exported lazily)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import okta_sync
from okta_sync.errors import OktaSyncError

PLUGINS = Path(okta_sync.__file__).resolve().parents[1]
AIRFLOW_LAYER = set(okta_sync._AIRFLOW_LAYER)
# OktaSyncError subclasses that never reach a caller: the transport's retry signal, caught inside the HTTP layer.
INTERNAL_SIGNALS = {"TransientFailure"}


def test_every_name_in_all_resolves_and_all_has_no_duplicates():
    assert len(okta_sync.__all__) == len(set(okta_sync.__all__))
    unresolved = [name for name in okta_sync.__all__ if getattr(okta_sync, name, None) is None]
    assert unresolved == []
    namespace: dict = {}
    exec("from okta_sync import *", namespace)
    assert set(okta_sync.__all__) <= set(namespace)


def test_what_a_user_of_the_core_needs_is_exported():
    needed = {"OktaClient", "OktaConfig", "UserListing", "PartitionedUserListing", "Clock", "RetryPolicy",
              "TokenProvider", "Metrics", "AccessToken", "MissingScopeError", "ScopeNotConfiguredError",
              "OktaHook", "OktaExportUsersOperator", "OktaPushProfileChangesOperator"}
    assert needed <= set(okta_sync.__all__)
    assert okta_sync.UserListing is importlib.import_module("okta_sync.users.api").UserListing
    assert okta_sync.OktaHook is importlib.import_module("okta_sync.airflow.hooks").OktaHook


def test_every_error_a_caller_can_meet_is_in_the_tree_and_exported():
    found = {}
    for info in pkgutil.walk_packages(okta_sync.__path__, prefix="okta_sync."):
        if info.name.startswith("okta_sync.airflow"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, OktaSyncError) and not name.startswith("_"):
                found[name] = value
    assert "UnsortedListingError" in found and "PartitionTooLargeError" in found
    outside_errors_module = sorted(name for name, cls in found.items()
                                   if cls.__module__ != "okta_sync.errors" and name not in INTERNAL_SIGNALS)
    assert outside_errors_module == [], "declare errors in okta_sync.errors"
    unexported = sorted(name for name, cls in found.items()
                        if name not in INTERNAL_SIGNALS and getattr(okta_sync, name, None) is not cls)
    assert unexported == []


def test_the_core_names_resolve_with_airflow_blocked():
    core = sorted(set(okta_sync.__all__) - AIRFLOW_LAYER)
    script = textwrap.dedent(
        f"""
        import sys
        class BlockAirflow:
            def find_spec(self, name, path=None, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, BlockAirflow())
        import okta_sync
        missing = [name for name in {core!r} if getattr(okta_sync, name, None) is None]
        assert not missing, missing
        try:
            okta_sync.OktaHook
        except ImportError as error:
            assert "blocked" in str(error)
        else:
            raise AssertionError("OktaHook resolved without Airflow")
        assert not any(m == "airflow" or m.startswith("airflow.") for m in sys.modules)
        print("ok", len({core!r}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=PLUGINS, capture_output=True, text=True,
                            env={"PYTHONPATH": str(PLUGINS), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")
