"""The plan file: how the plan task hands its entries to the push task (JSON Lines, one record a line).

    {"record": "header", "format": "okta_sync.plan", "version": 1, "plan_id": "<uuid4 hex>", "metadata": {...}}
    {"record": "change", "user_id": ..., "login": ..., "status": ..., "source": ..., "line": ...,
     "changes": {"firstName": {"old": " Ann", "new": "Ann"}}}
    {"record": "skipped", "reason": ..., "user_id": ..., "login": ..., "status": ..., "source": ..., "line": ...,
     "changes": {...}, "issues": [{"line": ..., "key": ..., "attribute": ..., "reason": ...}]}
    {"record": "unchanged", ...}                       (only with include_unchanged=True)
    {"record": "end", "counts": {"change": 3, "skipped": 1, "unchanged": 96},
     "records": {"change": 3, "skipped": 1, "unchanged": 0}}

`counts` are the entries planned; `records` those written to the file (unchanged users are counted, not written,
unless asked).

Every plan file is unique (`plan_id`), so its SHA-256 (`Plan.sha256`) names exactly one plan: the push journal is
tied to it and never replays progress made on another plan, even one with the same entries.

The end record is written only when the plan completed, and `read_plan` validates the whole file (header, every
record, end record, counts) before handing out the first entry, so a truncated plan is refused, never half-pushed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any, Callable

from okta_sync.errors import PlanFileError
from okta_sync.sync.change_plan import NoChange, PlanEntry, Skipped, entry_kind
from okta_sync.sync.changes_feed import RowIssue
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.rewindable import Rewindable

PLAN_FORMAT = "okta_sync.plan"
PLAN_VERSION = 1


class PlanWriter:
    """Writes plan entries as they come. Use as a context manager: the end record is written on a clean exit only."""

    def __init__(self, file: IO[str], *, metadata: Mapping[str, Any] | None = None, include_unchanged: bool = False):
        self.file = file
        self.metadata = dict(metadata or {})
        self.include_unchanged = include_unchanged
        self.counts: Counter[str] = Counter()
        self._written: Counter[str] = Counter()
        self._started = False

    def __enter__(self) -> PlanWriter:
        self._write({"record": "header", "format": PLAN_FORMAT, "version": PLAN_VERSION, "plan_id": uuid.uuid4().hex,
                     "metadata": self.metadata})
        self._started = True
        return self

    def write(self, entry: PlanEntry) -> None:
        if not self._started:
            raise RuntimeError("PlanWriter.write outside its `with` block")
        kind = entry_kind(entry)
        self.counts[kind] += 1
        if kind != "unchanged" or self.include_unchanged:
            self._write(_encode_entry(entry))
            self._written[kind] += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self._write({"record": "end", "counts": _all_counts(self.counts), "records": _all_counts(self._written)})

    def _write(self, record: Mapping[str, Any]) -> None:
        self.file.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")


def write_plan(entries: Iterable[PlanEntry], file: IO[str], *, metadata: Mapping[str, Any] | None = None,
               include_unchanged: bool = False) -> dict[str, int]:
    """Write a whole plan; returns the counts by kind (change, skipped, unchanged) for XCom."""
    with PlanWriter(file, metadata=metadata, include_unchanged=include_unchanged) as writer:
        for entry in entries:
            writer.write(entry)
    return _all_counts(writer.counts)


@dataclass
class Plan:
    """A validated plan file. Iterate it for its entries in file order. `sha256` is the hex digest of the file."""

    metadata: dict[str, Any]
    counts: dict[str, int]
    sha256: str = ""
    _reread: Callable[[], Iterator[PlanEntry]] = field(repr=False, default=lambda: iter(()))

    def __iter__(self) -> Iterator[PlanEntry]:
        return self._reread()

    def changes(self) -> Iterator[ProfileChange]:
        return (entry for entry in self if isinstance(entry, ProfileChange))


def read_plan(file: IO[Any]) -> Plan:
    """Validate a plan file (text or binary file object) and return it; raises PlanFileError if it is not whole."""
    source = Rewindable(file)
    header: dict[str, Any] = {}
    end: dict[str, Any] | None = None
    seen: Counter[str] = Counter()
    digest = hashlib.sha256()
    for line, record in _records(source, digest):
        if end is not None:
            raise PlanFileError("a record after the end record", line=line)
        kind = record.get("record")
        if line == 1:
            header = _check_header(record)
        elif kind == "end":
            end = record
        elif kind in _DECODERS:
            _decode_entry(record, line)
            seen[kind] += 1
        else:
            raise PlanFileError(f"unknown record {kind!r}", line=line)
    if end is None:
        raise PlanFileError("no end record: the plan is truncated (was the planning task interrupted?)")
    counts, records = end.get("counts"), end.get("records")
    if not isinstance(counts, dict) or not isinstance(records, dict):
        raise PlanFileError("the end record has no counts")
    if records != _all_counts(seen):
        raise PlanFileError(f"the end record lists {records} records but the file holds {_all_counts(seen)}")

    def reread() -> Iterator[PlanEntry]:
        for line, record in _records(source):
            if line > 1 and record.get("record") in _DECODERS:
                yield _decode_entry(record, line)

    return Plan(metadata=dict(header.get("metadata") or {}), counts=dict(counts), sha256=digest.hexdigest(),
                _reread=reread)


def _records(source: Rewindable, digest: Any = None) -> Iterator[tuple[int, dict[str, Any]]]:
    file = source.rewind()
    for line, raw in enumerate(file, start=1):
        if digest is not None:
            digest.update(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            record = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise PlanFileError(f"not a JSON record: {exc}", line=line) from None
        if not isinstance(record, dict):
            raise PlanFileError("not a JSON object", line=line)
        yield line, record


def _check_header(record: Mapping[str, Any]) -> dict[str, Any]:
    if record.get("record") != "header" or record.get("format") != PLAN_FORMAT:
        raise PlanFileError("not a plan file: the first line is not its header", line=1)
    if record.get("version") != PLAN_VERSION:
        raise PlanFileError(f"plan version {record.get('version')!r}; this code reads version {PLAN_VERSION}", line=1)
    return dict(record)


def _all_counts(counts: Counter[str]) -> dict[str, int]:
    return {kind: counts.get(kind, 0) for kind in ("change", "skipped", "unchanged")}


# --- entries <-> records -------------------------------------------------------------------------------------

def _encode_entry(entry: PlanEntry) -> dict[str, Any]:
    record: dict[str, Any] = {"record": entry_kind(entry)}
    if isinstance(entry, Skipped):
        record["reason"] = entry.reason
    record.update(user_id=entry.user_id, login=entry.login, status=entry.status, source=entry.source,
                  line=entry.line)
    if isinstance(entry, (ProfileChange, Skipped)):
        record["changes"] = {name: {"old": old, "new": new} for name, (old, new) in entry.changes.items()}
    if isinstance(entry, Skipped):
        record["issues"] = [
            {"line": i.line, "key": i.key, "attribute": i.attribute, "reason": i.reason} for i in entry.issues
        ]
    return record


def _decode_entry(record: Mapping[str, Any], line: int) -> PlanEntry:
    try:
        return _DECODERS[record["record"]](record)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlanFileError(f"malformed {record.get('record')} record: {exc!r}", line=line) from None


def _common(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "user_id": _optional(record, "user_id", str), "login": _optional(record, "login", str),
        "status": _optional(record, "status", str), "source": _required(record, "source", str),
        "line": _optional(record, "line", int),
    }


def _changes(record: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {str(name): (pair["old"], pair["new"]) for name, pair in _required(record, "changes", dict).items()}


def _decode_change(record: Mapping[str, Any]) -> ProfileChange:
    common = _common(record)
    if common["user_id"] is None:
        raise ValueError("a change without user_id")
    return ProfileChange(changes=_changes(record), **common)


def _decode_skipped(record: Mapping[str, Any]) -> Skipped:
    issues = tuple(
        RowIssue(_optional(i, "line", int), _optional(i, "key", str), _optional(i, "attribute", str),
                 _required(i, "reason", str))
        for i in _required(record, "issues", list)
    )
    return Skipped(_required(record, "reason", str), changes=_changes(record), issues=issues, **_common(record))


def _decode_unchanged(record: Mapping[str, Any]) -> NoChange:
    return NoChange(**_common(record))


_DECODERS: dict[str, Callable[[Mapping[str, Any]], PlanEntry]] = {
    "change": _decode_change, "skipped": _decode_skipped, "unchanged": _decode_unchanged,
}


def _required(record: Mapping[str, Any], name: str, kind: type) -> Any:
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise TypeError(f"{name} must be {kind.__name__}")
    return value


def _optional(record: Mapping[str, Any], name: str, kind: type) -> Any:
    return None if record.get(name) is None else _required(record, name, kind)
