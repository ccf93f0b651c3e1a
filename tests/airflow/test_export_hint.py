"""The export's `created` hint in its Asset's state: read when it matches, dropped when it does not, and a state
store that fails never fails the export (the hint only balances the first lanes)."""
from __future__ import annotations

import logging

import pytest

pytestmark = pytest.mark.airflow

HINT = {"quantiles": [1_600_000_000_000, 1_650_000_000_000, 1_700_000_000_000], "users": 90_000}


class Store:
    def __init__(self, value=None, fail=False):
        self.value, self.fail, self.written = value, fail, []

    def get(self, key, default=None):
        if self.fail:
            raise RuntimeError("state store unavailable: SECRET-ISH DETAIL")
        return self.value if key == "created_hint" else default

    def set(self, key, value):
        if self.fail:
            raise RuntimeError("state store unavailable")
        self.written.append((key, value))


@pytest.fixture
def operator():
    from airflow.sdk import Asset

    from okta_sync import OktaExportUsersOperator

    return OktaExportUsersOperator(task_id="export", output_uri="file:///tmp/x.jsonl", partitions="auto",
                                   outlets=[Asset(name="users", uri="okta://users/x")])


def test_a_matching_hint_is_used_and_others_are_not(operator):
    assert operator._read_hint(Store({"search": "s", "hint": HINT}), "s") == HINT
    assert operator._read_hint(Store({"search": "other", "hint": HINT}), "s") is None  # another search's users
    assert operator._read_hint(Store(None), "s") is None
    assert operator._read_hint(None, "s") is None  # no outlet Asset: nowhere to keep one


def test_a_bad_or_unreadable_hint_is_dropped_with_a_warning(operator, caplog, capfd):
    caplog.set_level(logging.WARNING)
    assert operator._read_hint(Store({"search": "s", "hint": {"quantiles": [3, 1], "users": 5}}), "s") is None
    assert operator._read_hint(Store(fail=True), "s") is None
    operator._write_hint(Store(fail=True), "s", HINT)  # does not raise
    captured = capfd.readouterr()
    text = caplog.text + captured.out + captured.err
    assert "not a created hint" in text and "Could not read" in text and "Could not write" in text
    assert "SECRET-ISH" not in text and "[3, 1]" not in text


def test_the_new_hint_is_kept_with_its_search(operator):
    store = Store()
    operator._write_hint(store, None, HINT)
    operator._write_hint(store, "s", None)  # an incomplete listing leaves none
    assert store.written == [("created_hint", {"search": "", "hint": HINT})]
    assert operator._hint_store({"asset_state_store": {}}) is None
