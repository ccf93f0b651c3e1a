"""The README's code cannot drift from the package: its samples compile, name only what exists, and the core sample
runs as printed against the dev org (its placeholders swapped for the org's connection values)."""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest

import okta_sync
from include.okta_dev_org import DevOrg, DevOrgOptions

README = Path(__file__).resolve().parents[1] / "README.md"
CORE_SECTION = "## The core from plain Python"
# Classes the README names that belong to others: the Spring Boot sample's clients and Airflow's SQL hook.
FOREIGN = {"TokenClient", "UsersClient", "DbApiHook"}


def _python_blocks(text: str) -> list[tuple[str, str]]:
    """(the section heading above it, the code) for every ```python block."""
    blocks, heading = [], ""
    for match in re.finditer(r"^(## [^\n]*)$|^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL):
        if match.group(1):
            heading = match.group(1)
        else:
            blocks.append((heading, match.group(2)))
    return blocks


BLOCKS = _python_blocks(README.read_text())


def test_the_readme_has_its_samples():
    assert CORE_SECTION in [heading for heading, _ in BLOCKS]
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("heading,code", BLOCKS, ids=[heading for heading, _ in BLOCKS])
def test_every_sample_compiles_and_imports_only_what_exists(heading, code):
    tree = ast.parse(compile(code, f"README.md {heading}", "exec", ast.PyCF_ONLY_AST))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "okta_sync":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{heading}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "okta_sync":
                    importlib.import_module(alias.name)


def test_every_class_the_prose_names_is_exported():
    named = set(re.findall(r"`(?:okta_sync\.)?([A-Z][A-Za-z]+(?:Error|Listing|Operator|Hook|Client|Config|Policy))\b",
                           README.read_text()))
    assert {"OktaClient", "OktaConfig", "OktaSyncError", "UserListing", "OktaHook"} <= named
    missing = sorted(named - FOREIGN - set(dir(builtins)) - set(okta_sync.__all__))
    assert not missing, f"the README names classes okta_sync does not export: {missing}"


def test_the_hook_sample_calls_only_methods_the_hook_has():
    from okta_sync import OktaHook

    (code,) = [code for heading, code in BLOCKS if heading == "## OktaHook in your own tasks"]
    calls = {node.func.attr for node in ast.walk(ast.parse(code))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, (ast.Name, ast.Call))}
    assert {"join_run", "iter_users"} <= calls
    assert all(hasattr(OktaHook, name) for name in calls), calls
    # and the methods the prose says the hook offers (up to where it hands over to `hook.client`)
    offers = README.read_text().split("The hook builds the core client", 1)[1].split("`hook.client`", 1)[0]
    offered = set(re.findall(r"`([a-z_]+)`", offers))
    assert {"list_users", "get_user", "update_profile"} <= offered
    assert not sorted(name for name in offered if not hasattr(OktaHook, name))


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=40, seed=7, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("readme-org"))
    with DevOrg(options) as running:
        yield running


def test_the_core_sample_runs_as_printed_against_the_dev_org(org):
    (code,) = [code for heading, code in BLOCKS if heading == CORE_SECTION]
    connection = org.connection
    users = org.admin.users()
    target = next(u for u in users if u["status"] == "ACTIVE" and u["profile"].get("firstName") != "Ada")
    placeholders = {  # the sample's values -> the dev org's; each must still be in the sample
        "https://dev-123.okta.com": connection["org_url"],
        "0oa1b2c3d4e5f6g7h8i9": connection["client_id"],
        "/secrets/okta_service_app.pem": connection["private_key_path"],
        "my-kid": connection["key_id"],
        "00u1abcd...": target["id"],
    }
    for placeholder, value in placeholders.items():
        assert f'"{placeholder}"' in code, f"the core sample no longer uses {placeholder!r}; update this test"
        code = code.replace(f'"{placeholder}"', repr(value))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md core sample", "exec"), {"__name__": "readme_sample"})

    active = [u for u in users if u["status"] == "ACTIVE"]
    lines = printed.getvalue().splitlines()
    user_lines = [line for line in lines if not line.endswith(" users")]
    assert sorted(user_lines) == sorted(f'{u["id"]} {u["profile"]["login"]}' for u in active)
    assert sum(int(line.split()[0]) for line in lines if line.endswith(" users")) == len(active)
    assert org.admin.user(target["id"])["profile"]["firstName"] == "Ada"
