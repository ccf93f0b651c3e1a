"""Run folders, the push journal, file modes, retention and Asset-event paths (issue 10, points 2, 5 and 10)."""

from __future__ import annotations

import io
import json
import os
import stat
import time
from pathlib import Path

import pytest

from okta_sync.sync.plan_file import read_plan, write_plan
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.reports import ReportRow, ReportStatus

pytestmark = pytest.mark.airflow

COLLIDING_RUN_IDS = ["manual__2026-01-01T00:00:00+00:00", "manual__2026-01-01T00-00-00_00-00",
                     "manual__2026-01-01T00_00_00_00_00", "manual__2026-01-01T00:00:00_00:00"]


def test_run_ids_differing_only_in_punctuation_get_different_folders_from_the_dag_template(tmp_path, monkeypatch):
    """Rendered through okta_user_sync's own templates, as Airflow renders them for each task."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", tmp_path.as_uri())
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "okta_user_sync.py")).dags[
        "okta_user_sync"]
    task = dag.get_task("plan_changes")
    env = dag.get_template_env()
    folders = []
    for run_id in COLLIDING_RUN_IDS:
        context = {"run_id": run_id, "dag": dag, "var": {"value": _Vars()}, "params": {}, "ti": None}
        rendered = env.from_string(task.plan_uri).render(**context, **(dag.user_defined_macros or {}))
        assert rendered.startswith(tmp_path.as_uri() + "/okta_user_sync/") and rendered.endswith("/plan.jsonl")
        folders.append(rendered.rsplit("/", 1)[0])
    assert len(set(folders)) == len(COLLIDING_RUN_IDS), folders


class _Vars:
    def get(self, name, default=None):
        return os.environ.get(f"AIRFLOW_VAR_{name.upper()}", default)


def test_run_folder_names_are_one_to_one_readable_and_safe():
    from okta_sync.airflow.storage import run_folder_name, run_folder_uri

    names = {run_folder_name("okta_user_sync", run_id) for run_id in COLLIDING_RUN_IDS}
    assert len(names) == len(COLLIDING_RUN_IDS)
    assert run_folder_name("a", "x") != run_folder_name("b", "x")  # the dag id is part of the identity
    assert run_folder_name("okta_user_sync", COLLIDING_RUN_IDS[0]).startswith("manual__2026-01-01T00-00-00-00-00-")
    for hostile in ("..", ".", "../../etc", "a/b", "", "%2e%2e", "x" * 500):
        name = run_folder_name("d", hostile)
        assert "/" not in name and not name.startswith(".") and len(name) <= 97
    assert run_folder_uri("s3://b/out/", "d", "r").startswith("s3://b/out/d/r-")


# ---- the push journal is tied to its plan -------------------------------------------------------------------------

def _plan_bytes(department: str, run_id: str) -> bytes:
    text = io.StringIO()
    write_plan([ProfileChange("00u1", "ann@x.com", "ACTIVE", {"department": ("Old", department)})], text,
               metadata={"dag_id": "okta_user_sync", "run_id": run_id})
    return text.getvalue().encode()


def test_a_journal_from_another_plan_is_never_replayed(tmp_path):
    from airflow.sdk import ObjectStoragePath

    from okta_sync.airflow.push_journal import PushJournal

    report = (tmp_path / "report.csv").as_uri()
    first = read_plan(io.BytesIO(_plan_bytes("Sales", COLLIDING_RUN_IDS[0])))
    again = read_plan(io.BytesIO(_plan_bytes("Sales", COLLIDING_RUN_IDS[0])))  # same entries, same run: a new plan
    assert first.sha256 != again.sha256

    journal = PushJournal.for_report(report, first.sha256)
    journal.record("00u1", [ReportRow("00u1", "ann@x.com", "department", "Old", "Sales", ReportStatus.APPLIED)])
    journal.close()

    assert PushJournal.for_report(report, first.sha256).done("00u1") is not None  # a retry of the same plan
    assert PushJournal.for_report(report, again.sha256).done("00u1") is None
    # a segment renamed to look like this plan's, but written for another: its header gives it away
    (segment,) = (tmp_path / "report.csv.journal").iterdir()
    os.rename(segment, segment.with_name(again.sha256[:16] + segment.name[16:]))
    assert PushJournal.for_report(report, again.sha256).done("00u1") is None
    # a journal of the old format (no plan at all) is never replayed either
    legacy = ObjectStoragePath(report + ".journal") / "000000-1.jsonl"
    legacy.write_text(json.dumps({"user_id": "00u1", "rows": []}) + "\n")
    assert PushJournal.for_report(report, again.sha256).done("00u1") is None


def test_the_journal_is_private(tmp_path):
    from okta_sync.airflow.push_journal import PushJournal

    plan = read_plan(io.BytesIO(_plan_bytes("Sales", "r")))
    journal = PushJournal.for_report((tmp_path / "run" / "report.csv").as_uri(), plan.sha256)
    journal.record("00u1", [ReportRow("00u1", "ann@x.com", "department", "Old", "Sales", ReportStatus.APPLIED)])
    journal.close()
    folder = tmp_path / "run" / "report.csv.journal"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()] == [0o600]


# ---- file modes ----------------------------------------------------------------------------------------------------

def test_outputs_are_0600_in_new_0700_folders_whatever_the_umask(tmp_path):
    from okta_sync.airflow.storage import open_for_write, open_text_for_write

    old = os.umask(0o022)
    try:
        with open_for_write((tmp_path / "a" / "b" / "users.jsonl.gz").as_uri()) as file:
            file.write(b"{}\n")
        with open_text_for_write((tmp_path / "a" / "b" / "report.csv").as_uri(), keep_on_error=True) as text:
            text.write("x\n")
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["report.csv", "users.jsonl.gz"]
    for path in (tmp_path / "a" / "b").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---- retention -----------------------------------------------------------------------------------------------------

def _run_folder(root: Path, dag_id: str, run_id: str, age_days: float) -> Path:
    from okta_sync.airflow.storage import run_folder_uri

    folder = Path(run_folder_uri(str(root), dag_id, run_id))
    folder.mkdir(parents=True)
    (folder / "report.csv").write_text("x")
    old = time.time() - age_days * 86400
    for path in (folder / "report.csv", folder):
        os.utime(path, (old, old))
    return folder


def test_retention_removes_only_old_run_folders_of_this_dag_inside_the_root(tmp_path):
    from okta_sync.airflow.storage import remove_expired_run_folders

    root = tmp_path / "output"
    old = [_run_folder(root, "okta_user_sync", f"scheduled__2026-01-0{n}T00:00:00+00:00", 40) for n in range(1, 4)]
    recent = _run_folder(root, "okta_user_sync", "scheduled__2026-02-01T00:00:00+00:00", 2)
    current = _run_folder(root, "okta_user_sync", "manual__now", 99)  # this run's folder: never removed
    other_dag = _run_folder(root, "another_dag", "scheduled__2026-01-01T00:00:00+00:00", 40)
    hand_made = root / "okta_user_sync" / "keep-me"
    hand_made.mkdir()
    outside = tmp_path / "outside-0123456789abcdef"
    outside.mkdir()
    (outside / "precious").write_text("x")
    os.symlink(outside, root / "okta_user_sync" / "link-0123456789abcdef")

    result = remove_expired_run_folders("okta_user_sync", "manual__now", root=root.as_uri(), days=30, limit=2)
    assert result == {"retention_days": 30.0, "removed": 2, "left_for_later": 1}  # bounded per call
    assert remove_expired_run_folders("okta_user_sync", "manual__now", root=root.as_uri(), days="30")["removed"] == 1
    assert not any(path.exists() for path in old)
    assert recent.exists() and current.exists() and other_dag.exists() and hand_made.exists()
    assert (outside / "precious").exists()  # a symlink is never followed


def test_retention_is_off_unless_set_and_refuses_nonsense(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from okta_sync.airflow.storage import remove_expired_run_folders

    root = tmp_path / "output"
    old = _run_folder(root, "okta_user_sync", "scheduled__2026-01-01T00:00:00+00:00", 400)
    monkeypatch.delenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_RETENTION_DAYS", raising=False)
    assert remove_expired_run_folders("okta_user_sync", "x", root=root.as_uri())["removed"] == 0
    assert old.exists()
    for bad in ("0", "-1", "soon", "nan"):
        with pytest.raises(AirflowFailException, match="okta_sync_output_retention_days"):
            remove_expired_run_folders("okta_user_sync", "x", root=root.as_uri(), days=bad)
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_RETENTION_DAYS", "7")
    assert remove_expired_run_folders("okta_user_sync", "x", root=root.as_uri())["removed"] == 1


# ---- Asset-event paths and plans of another run ------------------------------------------------------------------

def test_an_asset_event_path_is_read_only_under_the_output_root(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from okta_sync.airflow.storage import open_output_for_read

    root = tmp_path / "output"
    (root / "okta_user_sync" / "run").mkdir(parents=True)
    (root / "okta_user_sync" / "run" / "users.jsonl").write_text('{"id": "00u1"}\n')
    (tmp_path / "secret").write_text("AKIA-secret")
    os.symlink(tmp_path / "secret", root / "okta_user_sync" / "run" / "link.jsonl")
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", root.as_uri())
    what = 'extra["path"]'
    with open_output_for_read((root / "okta_user_sync" / "run" / "users.jsonl").as_uri(), what=what) as file:
        assert file.read() == b'{"id": "00u1"}\n'
    for hostile in ["/etc/passwd", "/proc/self/environ", (tmp_path / "secret").as_uri(),
                    (root / "okta_user_sync" / "run" / "link.jsonl").as_uri(), f"{root}/../secret", None, 42]:
        with pytest.raises(AirflowFailException) as refused:
            with open_output_for_read(hostile, what=what):
                pass
        assert "secret" not in str(refused.value) and "passwd" not in str(refused.value)
        assert "okta_sync_output_uri" in str(refused.value) or "not text" in str(refused.value)
