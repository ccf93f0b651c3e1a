"""The first unpause writes nothing: runs nobody triggered by hand are dry runs until okta_sync_write_mode=apply."""

from __future__ import annotations

import pytest

from okta_sync.airflow.operators import decide_write_mode
from okta_sync.errors import ConfigurationError

pytestmark = pytest.mark.airflow


@pytest.mark.parametrize(
    ("dry_run", "run_type", "variable", "expected"),
    [
        (False, "scheduled", None, True),          # unpaused, nobody said so: no write
        (False, "scheduled", "dry_run", True),
        (False, "scheduled", " Apply ", False),    # the operator said so
        (True, "scheduled", "apply", True),        # apply never overrides an explicit dry run
        (False, "backfill", None, True),
        (False, "asset_triggered", None, True),
        (False, "manual", None, False),            # a person triggered it with dry_run off: explicit
        (True, "manual", "apply", True),
    ],
)
def test_only_explicit_consent_writes(dry_run, run_type, variable, expected):
    decided, why = decide_write_mode(dry_run, run_type, variable)
    assert decided is expected
    assert run_type in why


def test_the_reason_says_how_to_let_scheduled_runs_write():
    _, why = decide_write_mode(False, "scheduled", None)
    assert "okta_sync_write_mode is unset" in why and "'apply'" in why


def test_an_unknown_mode_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as refused:
        decide_write_mode(False, "scheduled", "yes-please-sk_live_123")
    assert "okta_sync_write_mode" in str(refused.value) and "sk_live" not in str(refused.value)
    assert isinstance(refused.value, ConfigurationError) and refused.value.field == "okta_sync_write_mode"
