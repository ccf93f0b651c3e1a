"""The per-change report (CSV and JSON Lines), its summary, and the plan file handed between tasks."""

from __future__ import annotations

import csv
import io
import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from okta_sync.sync.change_plan import NoChange, Skipped, plan_hygiene
from okta_sync.sync.changes_feed import RowIssue
from okta_sync.sync.plan_file import PlanFileError, PlanWriter, read_plan, write_plan
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.reports import (
    FORMULA_TRIGGERS, REPORT_COLUMNS, CsvReportWriter, JsonLinesReportWriter, ReportRow, ReportStatus,
    neutralize_formula, report_writer, rows_for_change, rows_for_plan_entry,
)

FAST = settings(max_examples=150, deadline=None)

CHANGE = ProfileChange("00u1", "ann@x.com", "ACTIVE", {"firstName": (" Ann", "Ann"), "title": ("=cmd", "=HYPERLINK()")})
SKIP = Skipped("no Okta user with login 'zed@x.com'", login="zed@x.com", changes={"firstName": (None, "Zed")},
               source="changes_feed", line=4)
REFUSED = Skipped("row refused: firstName is 51 characters; Okta allows at most 50", user_id="00u2",
                  changes={"firstName": (None, "A" * 51), "title": (None, "Eng")},
                  issues=(RowIssue(3, "00u2", "firstName", "firstName is 51 characters; Okta allows at most 50"),),
                  source="changes_feed", line=3)


def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


# --- report -------------------------------------------------------------------------------------------------

def test_csv_report_has_one_row_per_attribute_change_with_the_okta_error():
    out = io.StringIO()
    writer = CsvReportWriter(out)
    writer.write_all(rows_for_change(CHANGE, ReportStatus.FAILED, error_code="E0000001",
                                     error_summary="Api validation failed: firstName"))
    header, *_ = out.getvalue().splitlines()
    assert tuple(next(csv.reader([header]))) == REPORT_COLUMNS
    first, second = csv_rows(out.getvalue())
    assert first == {"user_id": "00u1", "login": "ann@x.com", "attribute": "firstName", "old": " Ann", "new": "Ann",
                     "status": "failed", "error_code": "E0000001", "error_summary": "Api validation failed: firstName",
                     "reason": "", "source": "hygiene", "line": ""}
    assert (second["old"], second["new"]) == ("'=cmd", "'=HYPERLINK()")
    assert writer.summary.as_dict()["failed"] == 2


def test_skips_account_for_every_intended_change_and_every_issue():
    out = io.StringIO()
    writer = CsvReportWriter(out)
    for entry in (CHANGE, SKIP, REFUSED, NoChange("00u9", "n@x.com", "ACTIVE")):
        writer.write_all(rows_for_plan_entry(entry))
    got = [(r["user_id"], r["login"], r["attribute"], r["new"], r["status"], r["reason"], r["line"])
           for r in csv_rows(out.getvalue())]
    assert got == [
        ("00u1", "ann@x.com", "firstName", "Ann", "dry_run", "", ""),
        ("00u1", "ann@x.com", "title", "'=HYPERLINK()", "dry_run", "", ""),
        ("", "zed@x.com", "firstName", "Zed", "skipped", "no Okta user with login 'zed@x.com'", "4"),
        ("00u2", "", "title", "Eng", "skipped", REFUSED.reason, "3"),
        ("00u2", "", "firstName", "A" * 51, "skipped", "firstName is 51 characters; Okta allows at most 50", "3"),
    ]
    assert writer.summary.as_dict() == {"applied": 0, "unchanged": 0, "skipped": 3, "failed": 0, "dry_run": 2,
                                        "not_attempted": 0, "total": 5}


def test_a_skip_with_nothing_to_change_still_gets_one_row():
    rows = list(rows_for_plan_entry(Skipped("duplicate key", login="a@x.com", source="changes_feed", line=2)))
    assert [(r.attribute, r.status, r.reason) for r in rows] == [(None, ReportStatus.SKIPPED, "duplicate key")]


def test_jsonl_report_keeps_values_as_json():
    out = io.StringIO()
    writer = report_writer(out, "jsonl")
    assert isinstance(writer, JsonLinesReportWriter)
    writer.write(ReportRow("00u1", "a@x.com", "badges", ["x"], ["=y"], ReportStatus.APPLIED, line=None))
    record = json.loads(out.getvalue())
    assert record["new"] == ["=y"] and record["status"] == "applied" and list(record) == list(REPORT_COLUMNS)


def test_report_is_written_as_it_goes():
    out = io.StringIO()
    writer = CsvReportWriter(out)
    writer.write(next(rows_for_change(CHANGE, ReportStatus.APPLIED)))
    assert len(out.getvalue().splitlines()) == 2


def test_unknown_report_format_is_refused():
    with pytest.raises(ValueError, match="unknown report format 'xlsx'"):
        report_writer(io.StringIO(), "xlsx")


def test_unpaired_surrogates_do_not_break_the_report():
    out = io.StringIO()
    CsvReportWriter(out).write(ReportRow("00u1", None, "title", None, "a\ud800b", ReportStatus.SKIPPED))
    out.getvalue().encode("utf-8")


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\uff1dcmd",
                                  # issue 10: after whitespace, U+3000, invisible characters; after a separator
                                  " =1+2", "\u3000=1+2", "\u00a0@SUM(A1)", "\u200b=1", "\ufeff+1", "\ufe66cmd",
                                  "\u2212" + "1", '"=1+2"'])
def test_formula_triggers_are_quoted(cell):
    assert neutralize_formula(cell) == "'" + cell


@pytest.mark.parametrize("cell, safe", [("x;=1+2", "x;'=1+2"), ("x; =1+2", "x;' =1+2"), ("x,=1+2", "x,'=1+2"),
                                        ("x|@A1", "x|'@A1"), ("x\uff1b=1", "x\uff1b'=1"), ("a\n=1", "a\n'=1"),
                                        ("=a;-b", "'=a;'-b"), ('x;"=1"', "x;'\"=1\"")])
def test_a_trigger_after_a_separator_is_quoted_where_a_split_cell_would_start(cell, safe):
    assert neutralize_formula(cell) == safe


@pytest.mark.parametrize("cell", ["Ann", "", "'=1", "a=b", "Smith; Jones", "R&D, Data", "a - b"])
def test_ordinary_cells_are_left_alone(cell):
    assert neutralize_formula(cell) == cell


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_a_report_opened_with_another_delimiter_has_no_formula_cell(delimiter):
    """A spreadsheet in a `;` locale (or guessing tab or `|`) splits an unquoted `x;=1+2` into `x` and `=1+2`."""
    out = io.StringIO()
    writer = CsvReportWriter(out)
    for value in ("x;=1+2", "x\t=1+2", "x|=1+2", "x,=1+2", " =1+2", "\u3000=1+2"):
        writer.write(ReportRow("00u1", "a@x.com", "title", "Old", value, ReportStatus.APPLIED))
    assert out.getvalue().startswith('"user_id","login",')  # every cell in double quotes
    for record in csv.reader(io.StringIO(out.getvalue(), newline=""), delimiter=delimiter):
        for cell in record:
            assert not cell[_skip_blank(cell):].startswith(FORMULA_TRIGGERS), (delimiter, cell)


_cell = st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.text(max_size=5), max_size=3),
                  st.text(st.sampled_from(list("=+-@\t\r\n ,;|\"'aZ\uff1d\u3000\u200b")) | st.characters(),
                          max_size=12))


def _skip_blank(cell: str) -> int:
    """Where a spreadsheet starts reading a cell: after whitespace and invisible characters."""
    index = 0
    while index < len(cell) and cell[index] not in "\t\r\n" and (
            cell[index] == '"' or cell[index].isspace() or unicodedata.category(cell[index]) in ("Cf", "Zs", "Cc")):
        index += 1
    return index


@FAST
@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8), _cell, _cell, st.text(max_size=8)), max_size=5))
def test_no_csv_cell_ever_starts_with_a_formula_trigger(rows):
    out = io.StringIO()
    writer = CsvReportWriter(out)
    for user_id, login, old, new, reason in rows:
        writer.write(ReportRow(user_id, login, "title", old, new, ReportStatus.FAILED, error_summary=reason))
    for delimiter in (",", ";", "\t", "|"):
        for record in csv.reader(io.StringIO(out.getvalue(), newline=""), delimiter=delimiter):
            assert not any(cell[_skip_blank(cell):].startswith(FORMULA_TRIGGERS) for cell in record)
    assert writer.summary.as_dict()["total"] == len(rows)


# --- plan file ----------------------------------------------------------------------------------------------

def test_plan_file_round_trips_and_counts_unchanged_users_without_writing_them():
    users = [
        {"id": "00u1", "status": "ACTIVE", "profile": {"login": "a@x.com", "firstName": " Ann ", "lastName": "Lee"}},
        {"id": "00u2", "status": "ACTIVE", "profile": {"login": "b@x.com", "firstName": "Bo", "lastName": "Lee"}},
        {"id": "00u3", "status": "DEPROVISIONED", "profile": {"login": "c@x.com", "firstName": "Cy ", "lastName": "L"}},
    ]
    out = io.StringIO()
    counts = write_plan(plan_hygiene(users), out, metadata={"run_id": "manual__1"})
    assert counts == {"change": 1, "skipped": 1, "unchanged": 1}
    plan = read_plan(io.BytesIO(out.getvalue().encode()))
    assert plan.metadata == {"run_id": "manual__1"} and plan.counts == counts
    assert [e.user_id for e in plan] == ["00u1", "00u3"]
    assert [c.update_body() for c in plan.changes()] == [{"profile": {"firstName": "Ann"}}]


def test_a_truncated_plan_is_refused_before_any_entry():
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with PlanWriter(out) as writer:
            writer.write(CHANGE)
            raise RuntimeError("planning task killed")
    with pytest.raises(PlanFileError, match="no end record: the plan is truncated"):
        read_plan(io.StringIO(out.getvalue()))


def test_a_plan_cut_mid_line_or_edited_is_refused():
    out = io.StringIO()
    write_plan([CHANGE, SKIP], out)
    text = out.getvalue()
    with pytest.raises(PlanFileError, match="line 3: not a JSON record"):
        read_plan(io.StringIO(text[: text.index("\n", text.index("skipped")) - 5]))
    header, change, skip, end = text.splitlines(keepends=True)
    with pytest.raises(PlanFileError, match="lists .* records but the file holds"):
        read_plan(io.StringIO(header + change + end))
    with pytest.raises(PlanFileError, match="line 1: not a plan file"):
        read_plan(io.StringIO(change + end))
    with pytest.raises(PlanFileError, match="malformed change record"):
        read_plan(io.StringIO(header + change.replace('"changes"', '"chainges"') + skip + end))
    with pytest.raises(PlanFileError, match="version 2"):
        read_plan(io.StringIO(header.replace('"version":1', '"version":2') + change + skip + end))


_value = st.one_of(st.none(), st.text(max_size=10), st.integers(), st.booleans(), st.lists(st.text(max_size=4), max_size=3))
_changes = st.dictionaries(st.text(min_size=1, max_size=8), st.tuples(_value, _value), max_size=4)
_opt_text = st.none() | st.text(max_size=8)
_line = st.none() | st.integers(min_value=1, max_value=10**6)
_entry = st.one_of(
    st.builds(ProfileChange, st.text(min_size=1, max_size=8), _opt_text, _opt_text, _changes,
              st.sampled_from(["hygiene", "changes_feed"]), _line),
    st.builds(Skipped, st.text(max_size=20), _opt_text, _opt_text, _opt_text, _changes,
              st.lists(st.builds(RowIssue, _line, _opt_text, _opt_text, st.text(max_size=10)), max_size=2).map(tuple),
              st.sampled_from(["hygiene", "changes_feed"]), _line),
    st.builds(NoChange, st.text(min_size=1, max_size=8), _opt_text, _opt_text, st.just("hygiene"), _line),
)


@FAST
@given(st.lists(_entry, max_size=6))
def test_plan_file_round_trip(entries):
    out = io.StringIO()
    write_plan(entries, out, include_unchanged=True)
    assert list(read_plan(io.StringIO(out.getvalue()))) == entries
