"""The per-change report: one row per attribute of every change considered, written as it happens.

Columns: user_id, login, attribute, old, new, status, error_code, error_summary, reason, source, line.
Statuses: applied, unchanged, skipped, failed, dry_run, not_attempted.

CSV injection (OWASP): every cell is enclosed in double quotes, so a spreadsheet that honours quotes cannot split
it on another delimiter (`;` locales, tab, `|`), and a single quote goes before every formula trigger (=, +, -,
@, tab, CR, LF, their full-width and small forms, U+2212) that starts the cell or follows a separator (`,;|`, tab,
a line break, full-width `，；｜`), after any whitespace, invisible characters or double quotes: wherever a
spreadsheet that splits the line some other way would start a cell. JSON Lines keeps values as they are: it is
for programs, not spreadsheets.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, fields
from enum import StrEnum
from typing import IO, Any, Union

from okta_sync.sync.change_plan import NoChange, PlanEntry, Skipped
from okta_sync.sync.profile_diff import ProfileChange


class ReportStatus(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"  # Okta already had the new value when we came to update it
    SKIPPED = "skipped"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    NOT_ATTEMPTED = "not_attempted"  # the run stopped before reaching it


@dataclass(frozen=True)
class ReportRow:
    user_id: str | None
    login: str | None
    attribute: str | None
    old: Any
    new: Any
    status: ReportStatus
    error_code: str | None = None
    error_summary: str | None = None
    reason: str | None = None
    source: str | None = None
    line: int | None = None


REPORT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ReportRow))

FORMULA_TRIGGERS = (
    "=", "+", "-", "@", "\t", "\r", "\n",
    "\uff1d", "\uff0b", "\uff0d", "\uff20",  # full-width = + - @
    "\ufe66", "\ufe62", "\ufe63", "\ufe6b",  # small = + - @
    "\u2212",  # minus sign
)
# Separators a spreadsheet or a line-based tool may split a cell on (a guessed delimiter, a locale's list separator).
CELL_SEPARATORS = ",;|\t\r\n\uff0c\uff1b\uff5c"
_SEPARATOR = re.compile("[" + re.escape(CELL_SEPARATORS) + "]")


def neutralize_formula(cell: str) -> str:
    """The cell as a spreadsheet cannot run it: a single quote before a formula trigger at its start, and after
    every separator that a trigger follows (a spreadsheet splitting on that separator would start a cell there)."""
    if not any(char in _TRIGGER_CHARS for char in cell):
        return cell
    out = ["'"] if _starts_with_trigger(cell) else []
    start = 0
    for match in _SEPARATOR.finditer(cell):
        out.append(cell[start:match.end()])
        start = match.end()
        # what follows may itself be a separator that is a trigger (a tab after ';'): guard the rest, not the piece
        if _starts_with_trigger(cell[start:]):
            out.append("'")
    out.append(cell[start:])
    return "".join(out)


_TRIGGER_CHARS = frozenset(FORMULA_TRIGGERS)


def _starts_with_trigger(text: str) -> bool:
    """After whitespace, invisible characters and double quotes (what a spreadsheet skips or strips), a trigger?"""
    for char in text:
        if char in _TRIGGER_CHARS:
            return True
        if not (char == '"' or char.isspace() or unicodedata.category(char) in ("Cf", "Zs", "Zl", "Zp", "Cc")):
            return False
    return False


def rows_for_change(
    change: ProfileChange,
    status: ReportStatus,
    *,
    error_code: str | None = None,
    error_summary: str | None = None,
    reason: str | None = None,
) -> Iterator[ReportRow]:
    """One row per attribute of `change`, all with the outcome of its (single) partial update."""
    for name, (old, new) in change.changes.items():
        yield ReportRow(change.user_id, change.login, name, old, new, ReportStatus(status), error_code,
                        error_summary, reason, change.source, change.line)


def rows_for_plan_entry(entry: PlanEntry, status: ReportStatus = ReportStatus.DRY_RUN) -> Iterator[ReportRow]:
    """Report rows for a plan entry before any push: a change gets `status`, a skip its reasons, no change none.

    A skip yields a row per attribute it would have changed and a row per issue, so every intended change and
    every refused feed row appears in the report.
    """
    if isinstance(entry, ProfileChange):
        yield from rows_for_change(entry, status)
    elif isinstance(entry, Skipped):
        yield from _rows_for_skipped(entry)
    elif not isinstance(entry, NoChange):
        raise TypeError(f"not a plan entry: {entry!r}")


def _rows_for_skipped(entry: Skipped) -> Iterator[ReportRow]:
    flagged = {issue.attribute for issue in entry.issues}
    for name, (old, new) in entry.changes.items():
        if name not in flagged:
            yield ReportRow(entry.user_id, entry.login, name, old, new, ReportStatus.SKIPPED,
                            reason=entry.reason, source=entry.source, line=entry.line)
    for issue in entry.issues:
        old, new = entry.changes.get(issue.attribute or "", (None, None))
        yield ReportRow(entry.user_id, entry.login or _login_key(entry, issue.key), issue.attribute, old, new,
                        ReportStatus.SKIPPED, reason=issue.reason, source=entry.source, line=issue.line or entry.line)
    if not entry.changes and not entry.issues:
        yield ReportRow(entry.user_id, entry.login, None, None, None, ReportStatus.SKIPPED,
                        reason=entry.reason, source=entry.source, line=entry.line)


def _login_key(entry: Skipped, key: str | None) -> str | None:
    return None if entry.user_id is not None and key == entry.user_id else key


class ReportSummary:
    """Counts of report rows by status: what the operator returns as XCom."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, row: ReportRow) -> None:
        self.counts[str(row.status)] += 1

    def as_dict(self) -> dict[str, int]:
        result = {str(status): self.counts.get(str(status), 0) for status in ReportStatus}
        result["total"] = sum(self.counts.values())
        return result


class _ReportWriter:
    def __init__(self, file: IO[str]):
        self.file = file
        self.summary = ReportSummary()

    def write(self, row: ReportRow) -> None:
        self.summary.add(row)
        self._write(row)

    def write_all(self, rows: Iterable[ReportRow]) -> None:
        for row in rows:
            self.write(row)

    def _write(self, row: ReportRow) -> None:
        raise NotImplementedError


class CsvReportWriter(_ReportWriter):
    """CSV with a header row; formula triggers neutralised in every cell."""

    def __init__(self, file: IO[str]):
        super().__init__(file)
        self._csv = csv.writer(file, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self._csv.writerow(REPORT_COLUMNS)

    def _write(self, row: ReportRow) -> None:
        self._csv.writerow([_csv_cell(value) for value in astuple(row)])


class JsonLinesReportWriter(_ReportWriter):
    """One JSON object per row, values kept as JSON values."""

    def _write(self, row: ReportRow) -> None:
        record = {name: _json_value(value) for name, value in zip(REPORT_COLUMNS, astuple(row))}
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")


ReportWriter = Union[CsvReportWriter, JsonLinesReportWriter]
REPORT_FORMATS = ("csv", "jsonl")


def report_writer(file: IO[str], format: str) -> ReportWriter:
    """A report writer for "csv" or "jsonl"."""
    if format == "csv":
        return CsvReportWriter(file)
    if format == "jsonl":
        return JsonLinesReportWriter(file)
    raise ValueError(f"unknown report format {format!r}; use one of {REPORT_FORMATS}")


def _csv_cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, int, float)):
        text = str(value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return neutralize_formula(_printable(text))


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return _printable(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {_printable(str(k)): _json_value(v) for k, v in value.items()}
    return value


def _printable(text: str) -> str:
    # An unpaired surrogate (from a "\udXXX" JSON escape) cannot be written as UTF-8; keep the row, mark the spot.
    return text.encode("utf-8", "replace").decode("utf-8") if _has_surrogate(text) else text


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)
