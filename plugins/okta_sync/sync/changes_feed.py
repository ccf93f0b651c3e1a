"""Read a changes feed: desired profile values from a source system, as CSV or JSON Lines, keyed by `id` or `login`.

Report, never guess. A problem with the whole file (bad encoding, no key column, unknown CSV columns, not CSV or
not JSON Lines) raises `ChangesFeedError` from `read_changes_feed`, before a single row is handed out. A problem
with one row (no key, a duplicate key, an unknown attribute, a value Okta refuses) is attached to that row as a
`RowIssue`; a row with any issue must not be applied at all, so nothing is partly written.

Values are normalised here, once, with the given `Normalizer` (the same rules as hygiene), and judged as they would
be sent: a firstName padded to 60 characters that normalises to 40 is fine.

Semantics of a value:
- CSV: an empty cell, or one that normalises to "" (only spaces or zero-width characters), means "no change".
  A CSV feed cannot clear an attribute.
- JSON Lines: a missing member, or a string that is empty after normalisation, means "no change"; null means "no change" too, unless
  `allow_clear=True`, when it clears the attribute. Strings, numbers, booleans and arrays are passed on as they are.

Bounds, and what is never repeated: a line longer than `max_line_bytes` (default 1 MiB) is never held in memory:
in JSON Lines that row is refused by its line number; in CSV (where a line may be part of a quoted cell) the file
is refused at that line, without reading the rest. A feed larger than `max_feed_bytes` (default 1 GiB) is refused
as a whole: before reading when the file's size is known (`os.fstat`), else once that much has been read. A CSV
header of more than `max_attributes` (default 500) columns besides the key refuses the file; a JSON object with more
members than that refuses its row (Okta profiles have far fewer attributes; every check is linear in the line).
A value longer than `max_value_chars` (default 16,384) refuses its row. Errors and row issues name
line numbers and attribute names (a name that does not look like one is named by its position), never a value
or a line of the file; a refused row keeps the names of its attributes but not their values (`values` maps each
name to None), so no refused value reaches a plan or a report.

Files are read twice (the first pass validates and finds duplicate keys, holding only a dict of keys), so a
non-seekable input is spooled to a temporary file first.
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from okta_sync.errors import ChangesFeedError, InputTooLargeError
from okta_sync.sync.profile_attributes import OKTA_BASE_ATTRIBUTES, refusal_reason
from okta_sync.sync.profile_rules import Normalizer
from okta_sync.sync.rewindable import MAX_SPOOL_BYTES, Rewindable

CSV = "csv"
JSON_LINES = "jsonl"
FORMATS = (CSV, JSON_LINES)
KEY_KINDS = ("id", "login")

MAX_LINE_BYTES = 1024 * 1024
MAX_VALUE_CHARS = 16_384
MAX_ATTRIBUTES = 500
MAX_FEED_BYTES = 1024 ** 3
_DRAIN_CHUNK = 64 * 1024
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class RowIssue:
    """Why one row of the feed is not applied: the line it starts on, its key, the attribute (if one) and why."""

    line: int | None
    key: str | None
    attribute: str | None
    reason: str


@dataclass(frozen=True)
class FeedRow:
    """One row of desired values, normalised. `values` holds only attributes to change; `issues` non-empty means
    the row is refused and none of it may be applied."""

    line: int
    key_kind: str
    key: str | None
    values: Mapping[str, Any]
    issues: tuple[RowIssue, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.issues


@dataclass
class ChangesFeed:
    """A validated feed. Iterate it (more than once if needed) for its `FeedRow`s in file order."""

    format: str
    key_kind: str
    columns: tuple[str, ...] | None  # the CSV header, None for JSON Lines
    rows: int = 0
    duplicate_keys: int = 0
    _reread: Callable[[], Iterator[FeedRow]] = field(repr=False, default=lambda: iter(()))

    def __iter__(self) -> Iterator[FeedRow]:
        return self._reread()


def read_changes_feed(
    file: IO[Any],
    *,
    format: str | None = None,
    known_attributes: Iterable[str] | None = None,
    allow_clear: bool = False,
    key: str | None = None,
    delimiter: str = ",",
    normalizer: Normalizer | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_value_chars: int = MAX_VALUE_CHARS,
    max_spool_bytes: int = MAX_SPOOL_BYTES,
    max_attributes: int = MAX_ATTRIBUTES,
    max_feed_bytes: int = MAX_FEED_BYTES,
) -> ChangesFeed:
    """Validate a changes feed read from a text or binary file object and return it, ready to iterate.

    format: "csv" or "jsonl"; None detects JSON Lines by a first non-blank line starting with "{".
    known_attributes: the attribute names the org's profile has; default Okta's base profile.
    normalizer: the rules applied to every value; default `Normalizer.default()`.
    key: "id" or "login" to insist on one key; None finds it (CSV: the first column if it is `id` or `login`,
      else the one column so named; JSON Lines: `id` if the first keyed object has one, else `login`).
    max_line_bytes, max_value_chars, max_attributes, max_feed_bytes: the bounds described in the module docstring.
    max_spool_bytes: how much of a non-seekable input (a pipe) may be copied aside to be read twice.
    """
    if format is not None and format not in FORMATS:
        raise ChangesFeedError(f"unknown format {format!r}; use one of {FORMATS}")
    if key is not None and key not in KEY_KINDS:
        raise ChangesFeedError(f"unknown key {key!r}; use one of {KEY_KINDS}")
    _refuse_a_file_larger_than(file, max_feed_bytes)
    try:
        source = Rewindable(file, max_spool_bytes=min(max_spool_bytes, max_feed_bytes))
    except UnicodeDecodeError as exc:
        raise ChangesFeedError(f"not valid UTF-8 ({exc.reason}); save the file as UTF-8") from None
    except InputTooLargeError as exc:
        if exc.limit == max_feed_bytes:
            raise _too_large(max_feed_bytes) from None
        raise ChangesFeedError(str(exc)) from None
    known = frozenset(OKTA_BASE_ATTRIBUTES if known_attributes is None else known_attributes)
    values = _Values(known, allow_clear, normalizer or Normalizer.default(), max_value_chars)
    bounds = _Bounds(max_line_bytes, max_feed_bytes)
    fmt = format or _detect_format(_lines(source, bounds, drain=False))  # reads up to the first line, no further
    if fmt == CSV:
        parser: _Parser = _CsvParser(values.without_clear(), key, max_attributes, delimiter)
    else:
        parser = _JsonLinesParser(values, key, max_attributes)

    def lines() -> Iterator[str]:
        return _lines(source, bounds, refuse=fmt == CSV)

    duplicates, rows = _find_duplicates(parser.rows(lines()))

    def reread() -> Iterator[FeedRow]:
        for row in parser.rows(lines()):
            yield _with_duplicate_issue(row, duplicates)

    return ChangesFeed(
        format=fmt, key_kind=parser.key_kind or "id", columns=parser.columns, rows=rows,
        duplicate_keys=len(duplicates), _reread=reread,
    )


def duplicate_identity(key_kind: str, key: str) -> str:
    """The identity two keys share when they name the same Okta user: logins are case-insensitive in Okta."""
    return key.lower() if key_kind == "login" else key


def _find_duplicates(rows: Iterator[FeedRow]) -> tuple[dict[str, list[int]], int]:
    first_line: dict[str, int] = {}
    duplicates: dict[str, list[int]] = {}
    count = 0
    for row in rows:
        count += 1
        if row.key is None:
            continue
        identity = duplicate_identity(row.key_kind, row.key)
        if identity in first_line:
            duplicates.setdefault(identity, [first_line[identity]]).append(row.line)
        else:
            first_line[identity] = row.line
    return duplicates, count


def _with_duplicate_issue(row: FeedRow, duplicates: Mapping[str, list[int]]) -> FeedRow:
    if row.key is None:
        return row
    lines = duplicates.get(duplicate_identity(row.key_kind, row.key))
    if lines is None:
        return row
    issue = RowIssue(row.line, row.key, None,
                     f"duplicate key: {row.key_kind} {row.key!r} is on lines {lines}; none of them is applied")
    return FeedRow(row.line, row.key_kind, row.key, _withheld(row.values), row.issues + (issue,))


def _withheld(values: Mapping[str, Any]) -> dict[str, Any]:
    """A refused row's attribute names without their values: what was refused is reported, never repeated."""
    return dict.fromkeys(values)


def attribute_label(name: str, position: int, what: str = "column") -> str:
    """How an error names a column or member: quoted if it looks like an attribute name, else by position only
    (a file that is not a feed must not have its first line repeated in a log)."""
    return name if _ATTRIBUTE_NAME.fullmatch(name) else f"{what} {position} (not an attribute name)"


class _TooLong(str):
    """A line longer than the limit, never read whole: it carries only a few characters for format detection."""

    limit: int = MAX_LINE_BYTES


def _too_large(max_feed_bytes: int) -> ChangesFeedError:
    return ChangesFeedError(f"the feed is larger than max_feed_bytes ({max_feed_bytes} bytes); it is not read "
                            f"(split it, or raise max_feed_bytes)")


def _refuse_a_file_larger_than(file: IO[Any], max_feed_bytes: int) -> None:
    """Refuse a file whose size is known and over the cap before reading a byte of it: a regular file's `fstat`,
    or the object size an fsspec file (S3, GCS) reports."""
    try:
        status = os.fstat(file.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (io.BytesIO, a remote file): counted as read
        size = getattr(file, "size", None)
        if isinstance(size, int) and size > max_feed_bytes:
            raise _too_large(max_feed_bytes) from None
        return
    if stat.S_ISREG(status.st_mode) and status.st_size > max_feed_bytes:
        raise _too_large(max_feed_bytes)


# --- lines: decoding with the position of any bad byte -------------------------------------------------------

@dataclass(frozen=True)
class _Bounds:
    max_line: int
    max_total: int


def _lines(source: Rewindable, bounds: _Bounds, *, drain: bool = True, refuse: bool = False) -> Iterator[str]:
    """The file's lines, decoded. An over-long line is a `_TooLong`, drained in chunks first when `drain` (JSON
    Lines: that row is refused, the next one is read). With `refuse` it ends the reading at once: the file is
    refused at that line (CSV, where a line may be half a quoted cell), the rest of it never read."""
    file = source.rewind()
    raw = _bounded_lines(file, bounds, drain=drain and not refuse)
    lines = _decoded_lines(raw) if source.is_binary else _text_lines(raw)
    for number, text in enumerate(lines, start=1):
        if refuse and isinstance(text, _TooLong):
            raise ChangesFeedError(f"the line is longer than {bounds.max_line} bytes; the file is not read",
                                   line=number)
        yield text


def _bounded_lines(file: IO[Any], bounds: _Bounds, *, drain: bool) -> Iterator[Any]:
    """Lines of at most `max_line` (+ newline); a longer one is yielded as a `_TooLong`, drained in chunks first
    when `drain`. More than `max_total` bytes (characters, for a text stream) in all refuse the feed."""
    total = 0
    while True:
        line = file.readline(bounds.max_line + 1)
        if not line:
            return
        total += len(line)
        if total > bounds.max_total:
            raise _too_large(bounds.max_total)
        newline = b"\n" if isinstance(line, bytes) else "\n"
        if len(line) <= bounds.max_line or line.endswith(newline):
            yield line
            continue
        if drain:
            while rest := file.readline(_DRAIN_CHUNK):
                total += len(rest)
                if total > bounds.max_total:
                    raise _too_large(bounds.max_total)
                if rest.endswith(newline):
                    break
        too_long = _TooLong(line[:8].decode("utf-8", "ignore") if isinstance(line, bytes) else line[:8])
        too_long.limit = bounds.max_line
        yield too_long


def _decoded_lines(raw_lines: Iterator[Any]) -> Iterator[str]:
    offset = 0
    for number, raw in enumerate(raw_lines, start=1):
        if isinstance(raw, _TooLong):
            offset = -1  # byte offsets past an oversized line are not tracked
            yield raw
            continue
        if number == 1:
            if raw.startswith(_UTF16_BOMS):
                raise ChangesFeedError("the file is UTF-16; save it as UTF-8", line=1, byte_offset=0)
            if raw.startswith(_UTF8_BOM):
                raw, offset = raw[len(_UTF8_BOM):], len(_UTF8_BOM)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            position = offset + exc.start if offset >= 0 else None
            at = f" at offset {position} of the file" if position is not None else ""
            raise ChangesFeedError(
                f"not valid UTF-8: byte 0x{raw[exc.start]:02x}{at} ({exc.reason}); save the file as UTF-8",
                line=number, byte_offset=position,
            ) from None
        if offset >= 0:
            offset += len(raw)
        yield text


def _text_lines(raw_lines: Iterator[Any]) -> Iterator[str]:
    number = 0
    try:
        for number, text in enumerate(raw_lines, start=1):
            yield text.removeprefix("\ufeff") if number == 1 and not isinstance(text, _TooLong) else text
    except UnicodeDecodeError as exc:
        raise ChangesFeedError(
            f"not valid UTF-8 after line {number} ({exc.reason}); save the file as UTF-8", line=number + 1
        ) from None


def _detect_format(lines: Iterator[str]) -> str:
    for text in lines:
        if text.strip():
            return JSON_LINES if text.lstrip().startswith("{") else CSV
    raise ChangesFeedError("the file is empty")


# --- parsers: lines -> FeedRow -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Values:
    """Turns one row's (attribute, raw value) pairs into normalised values to change, and the issues with them."""

    known: frozenset[str]
    allow_clear: bool
    normalizer: Normalizer
    max_value_chars: int = MAX_VALUE_CHARS

    def without_clear(self) -> _Values:
        return _Values(self.known, False, self.normalizer, self.max_value_chars)

    def collect(self, line: int, key_kind: str, key: str | None,
                pairs: Iterable[tuple[str, Any]], what: str = "column") -> tuple[dict[str, Any], list[RowIssue]]:
        """The row's values to change and its issues; a row with any issue keeps only its attribute names."""
        values: dict[str, Any] = {}
        issues: list[RowIssue] = []
        for position, (name, raw) in enumerate(pairs, start=1):
            if name not in self.known:  # never kept, not even its name unless it looks like one
                named = _column(name)
                label = repr(name) if named else attribute_label(name, position, what)
                issues.append(RowIssue(line, key, named, f"unknown attribute {label}"))
                continue
            if self._too_long(raw):
                values[name] = None
                issues.append(RowIssue(line, key, name, f"{name}: the value is longer than {self.max_value_chars} "
                                                        f"characters"))
                continue
            value = self.normalizer.normalize_value(name, raw)
            if self._means_no_change(value):
                continue
            values[name] = value
            reason = self._issue(key_kind, name, value)
            if reason:
                issues.append(RowIssue(line, key, name, reason))
        return (_withheld(values) if issues else values), issues

    def _too_long(self, raw: Any) -> bool:
        if isinstance(raw, str):
            return len(raw) > self.max_value_chars
        if isinstance(raw, list):
            return len(json.dumps(raw, default=str)) > self.max_value_chars
        return False

    def _means_no_change(self, value: Any) -> bool:
        if value is None:
            return not self.allow_clear
        return isinstance(value, str) and not value.strip()

    def _issue(self, key_kind: str, name: str, value: Any) -> str | None:
        if name == "id" or (name == "login" and key_kind == "login"):
            return f"{name} is the key and cannot be changed"
        if isinstance(value, _Members):
            return f"{name}: an object is not a profile value"
        if isinstance(value, str) and _has_lone_surrogate(value):
            return f"{name}: contains an unpaired surrogate escape, which is not text"
        return refusal_reason(name, value)


class _Parser:
    key_kind: str | None = None
    columns: tuple[str, ...] | None = None

    def __init__(self, values: _Values, key: str | None, max_attributes: int = MAX_ATTRIBUTES):
        self.values = values
        self.known = values.known
        self.key_kind = key
        self.max_attributes = max_attributes

    def rows(self, lines: Iterator[str]) -> Iterator[FeedRow]:
        raise NotImplementedError


class _CsvParser(_Parser):
    def __init__(self, values: _Values, key: str | None, max_attributes: int, delimiter: str):
        super().__init__(values, key, max_attributes)
        self.delimiter = delimiter

    def rows(self, lines: Iterator[str]) -> Iterator[FeedRow]:
        reader = csv.reader(lines, delimiter=self.delimiter, strict=True)
        records = self._records(reader)
        header_line, header = next(records, (0, None))
        if header is None:
            raise ChangesFeedError("the file is empty")
        self._read_header(header, header_line)
        for line, cells in records:
            yield self._row(line, cells)

    def _records(self, reader: Any) -> Iterator[tuple[int, list[str]]]:
        line = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ChangesFeedError(f"not valid CSV: {exc}", line=reader.line_num) from None
            start, line = line + 1, reader.line_num
            if cells:  # a blank line
                yield start, cells

    def _read_header(self, header: list[str], line: int) -> None:
        if len(header) > self.max_attributes + 1:
            raise ChangesFeedError(f"the header has {len(header)} columns, more than max_attributes "
                                   f"({self.max_attributes}) and the key; Okta profiles have fewer attributes",
                                   line=line)
        names = [name.strip() for name in header]
        for position, name in enumerate(names, start=1):
            if not name:
                raise ChangesFeedError(f"header column {position} has no name", line=line)
        repeated = _repeated_positions(names)
        if repeated:
            labels = [attribute_label(names[p - 1], p) for p in repeated]
            raise ChangesFeedError(f"header repeats columns {labels}", line=line, column=_column(names[repeated[0] - 1]))
        self.key_kind = self._key_column(names, line)
        self.columns = tuple(names)
        self.key_index = names.index(self.key_kind)
        self._check_attributes([name for name in names if name != self.key_kind], line)

    def _key_column(self, names: list[str], line: int) -> str:
        if self.key_kind is not None:
            if self.key_kind not in names:
                raise ChangesFeedError(f"no key column {self.key_kind!r} in the header ({len(names)} columns)",
                                       line=line)
            return self.key_kind
        if names[0] in KEY_KINDS:
            return names[0]
        present = [name for name in names if name in KEY_KINDS]
        if len(present) == 1:
            return present[0]
        if present:
            raise ChangesFeedError(
                "both 'id' and 'login' columns and neither is first: put the key column first", line=line
            )
        hint = ""
        found = [sep for sep in ";\t|," if sep != self.delimiter and sep in names[0]]
        if len(names) == 1 and found:  # name the separator seen, never the line itself
            hint = f"; the header is one column containing {found[0]!r}: is the file delimited by {found[0]!r} " \
                   f"rather than {self.delimiter!r}?"
        raise ChangesFeedError(f"no key column: the header needs a column named 'id' or 'login'{hint}", line=line)

    def _check_attributes(self, attributes: list[str], line: int) -> None:
        if self.key_kind == "login" and "id" in attributes:
            raise ChangesFeedError("column 'id' cannot be changed in a feed keyed by login", line=line, column="id")
        unknown = [(position, name) for position, name in enumerate(self.columns or (), start=1)
                   if name != self.key_kind and name not in self.known]
        if unknown:
            raise ChangesFeedError(
                f"unknown attributes in the header: {[attribute_label(name, p) for p, name in unknown]} (not in the "
                f"profile; pass known_attributes for custom attributes)", line=line, column=_column(unknown[0][1]),
            )

    def _row(self, line: int, cells: list[str]) -> FeedRow:
        assert self.columns is not None and self.key_kind is not None
        raw_key = cells[self.key_index].strip() if self.key_index < len(cells) else ""
        key = raw_key or None
        if len(cells) != len(self.columns):
            issue = RowIssue(line, key, None, f"row has {len(cells)} cells; the header has {len(self.columns)}")
            return FeedRow(line, self.key_kind, key, {}, (issue,))
        pairs = [(name, cell) for name, cell in zip(self.columns, cells) if name != self.key_kind]
        values, value_issues = self.values.collect(line, self.key_kind, key, pairs)
        issues = [RowIssue(line, None, None, f"no {self.key_kind} in this row")] if key is None else []
        issues += value_issues
        return FeedRow(line, self.key_kind, key, _withheld(values) if issues else values, tuple(issues))


class _JsonLinesParser(_Parser):
    def rows(self, lines: Iterator[str]) -> Iterator[FeedRow]:
        for line, text in enumerate(lines, start=1):
            if isinstance(text, _TooLong):
                issue = RowIssue(line, None, None, f"the line is longer than {text.limit} bytes; the row is not read")
                yield FeedRow(line, self.key_kind or "id", None, {}, (issue,))
                continue
            if not text.strip():
                continue
            members = _json_object(text, line)
            if self.key_kind is None:
                self.key_kind = next((kind for kind in KEY_KINDS for name, _ in members if name == kind), None)
            yield self._row(line, members)
        if self.key_kind is None:
            raise ChangesFeedError("no key: no object has an 'id' or a 'login' member")

    def _row(self, line: int, members: list[tuple[str, Any]]) -> FeedRow:
        kind = self.key_kind or "id"
        if len(members) > self.max_attributes + 1:
            issue = RowIssue(line, None, None, f"the object has {len(members)} members, more than max_attributes "
                                               f"({self.max_attributes}) and the key; the row is not read")
            return FeedRow(line, kind, None, {}, (issue,))
        names = [name for name, _ in members]
        raw_key = dict(members).get(kind)
        key = (raw_key.strip() or None) if isinstance(raw_key, str) else None
        issues: list[RowIssue] = []
        if key is not None and _has_lone_surrogate(key):
            key = None
            issues.append(RowIssue(line, None, kind, f"{kind} contains an unpaired surrogate escape"))
        elif raw_key is not None and not isinstance(raw_key, str):
            issues.append(RowIssue(line, None, kind, f"{kind} must be a string"))
        elif key is None:
            issues.append(RowIssue(line, None, None, f"no {kind} in this object"))
        first_positions = {}
        for position, name in enumerate(names, start=1):
            first_positions.setdefault(name, position)
        repeated = sorted({names[position - 1] for position in _repeated_positions(names)})
        issues += [RowIssue(line, key, _column(name), f"{attribute_label(name, first_positions[name], 'member')} "
                                                      f"appears more than once in the object") for name in repeated]
        pairs = [(name, value) for name, value in members if name != kind]
        values, value_issues = self.values.collect(line, kind, key, pairs, what="member")
        issues += value_issues
        return FeedRow(line, kind, key, _withheld(values) if issues else values, tuple(issues))


def _repeated_positions(names: list[str]) -> list[int]:
    """The 1-based positions of names seen before in the list, in one pass (a long header must not cost n²)."""
    seen: set[str] = set()
    repeated = []
    for position, name in enumerate(names, start=1):
        if name in seen:
            repeated.append(position)
        seen.add(name)
    return repeated


def _column(name: str) -> str | None:
    return name if _ATTRIBUTE_NAME.fullmatch(name) else None


def _json_object(text: str, line: int) -> list[tuple[str, Any]]:
    try:
        value = json.loads(text, object_pairs_hook=_Members, parse_constant=_refuse_constant)
    except RecursionError:
        raise ChangesFeedError("JSON nested too deeply", line=line) from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers over Python's digit limit
        raise ChangesFeedError(f"not valid JSON Lines: {exc}", line=line) from None
    if not isinstance(value, _Members):
        raise ChangesFeedError(f"each line must be a JSON object, found {type(value).__name__}", line=line)
    return list(value)


class _Members(list):
    """A JSON object as its (name, value) pairs, so a repeated name is seen, not silently overwritten."""


def _has_lone_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
