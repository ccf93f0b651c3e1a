"""Manifests: what a task wrote, written by the task itself beside its files, and what readers believe about them.

An Asset event, an XCom value or an Asset state value can be written by people (the REST API, the UI) as well as by
our tasks; a run folder only by the tasks of that run. So the facts of an export (the task that wrote it, the kind
of listing, when it began and ended, its watermark and counts, each file's SHA-256 and length) live in a small JSON
file beside the export (`users.jsonl.gz` -> `users.manifest.json`), written after the export file is complete, and
a reader checks each file against it in the same pass that reads it (`DigestReader`).

Generic: any export (users, groups, ...) uses the same shape; `dataset` says which, `counts` holds its counts.

    {"format": "okta-sync-manifest", "version": 1, "dataset": "users",
     "producer": {"dag_id": "okta_user_sync", "run_id": "scheduled__...", "task_id": "export_users", "try_number": 1},
     "kind": "incremental", "search": "lastUpdated gt \\"...\\"",
     "exported_at": "2026-01-01T10:00:00.000Z", "finished_at": "2026-01-01T10:00:04.000Z",
     "watermark": "2026-01-01T09:58:31.000Z", "counts": {"users": 200, "pages": 1}, "by_status": {"ACTIVE": 200},
     "files": [{"name": "users.jsonl.gz", "content_sha256": "<64 hex>", "content_bytes": 123456}]}

`content_sha256` and `content_bytes` describe a file's content as a reader reads it: after gzip decompression for a
`.gz` name (gzip's own CRC guards the compressed bytes), so `gunzip -c users.jsonl.gz | sha256sum` shows it.
Parsing is strict and bounded: at most `MAX_MANIFEST_BYTES`, no unknown or duplicate member, every member typed and
bounded; errors name the member, never its value.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from okta_sync.errors import ManifestError
from okta_sync.timestamps import parse_okta_timestamp

FORMAT, VERSION = "okta-sync-manifest", 1
MAX_MANIFEST_BYTES = 256 * 1024  # a search of 1,000 user ids is about 25 KB
MAX_SEARCH_LENGTH = 64 * 1024
MAX_FILES = 16
MAX_COUNT_NAMES = 32
MAX_COUNT = 10**12
MANIFEST_SUFFIX = ".manifest.json"
_OKTA_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_AIRFLOW_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")  # Airflow's dag_id / task_id characters
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_STATUS = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MEMBERS = {"format", "version", "dataset", "producer", "kind", "search", "exported_at", "finished_at", "watermark",
            "counts", "by_status", "files"}
_REQUIRED = _MEMBERS - {"search", "watermark", "by_status"}


def manifest_name(file_name: str) -> str:
    """The manifest's file name beside an export: everything from the first dot replaced (`users.jsonl.gz` ->
    `users.manifest.json`)."""
    return file_name.split(".", 1)[0] + MANIFEST_SUFFIX


def manifest_uri(file_uri: str) -> str:
    """The manifest's location beside a file's URI (same folder)."""
    folder, _, name = file_uri.rpartition("/")
    return f"{folder}/{manifest_name(name)}"


@dataclass(frozen=True)
class Producer:
    """The Airflow task instance that wrote a manifest."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id,
                "try_number": self.try_number}


@dataclass(frozen=True)
class FileDigest:
    """One file of a manifest: its plain name (in the manifest's folder) and its content's SHA-256 and length."""

    name: str
    content_sha256: str
    content_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "content_sha256": self.content_sha256, "content_bytes": self.content_bytes}


@dataclass(frozen=True)
class Manifest:
    dataset: str
    producer: Producer
    kind: str
    exported_at: str  # when the export began: the moment its snapshot describes
    finished_at: str
    files: tuple[FileDigest, ...]
    counts: Mapping[str, int] = field(default_factory=dict)
    search: str | None = None
    watermark: str | None = None  # the newest lastUpdated exported (or the dataset's equivalent)
    by_status: Mapping[str, int] | None = None

    def file(self, name: str) -> FileDigest:
        """The digest of the file `name`; ManifestError when the manifest does not list it."""
        for digest in self.files:
            if digest.name == name:
                return digest
        raise ManifestError("manifest: files does not list the export file")

    def to_json(self) -> bytes:
        document = {"format": FORMAT, "version": VERSION, "dataset": self.dataset, "producer": self.producer.as_dict(),
                    "kind": self.kind, "search": self.search, "exported_at": self.exported_at,
                    "finished_at": self.finished_at, "watermark": self.watermark, "counts": dict(self.counts),
                    "by_status": None if self.by_status is None else dict(self.by_status),
                    "files": [digest.as_dict() for digest in self.files]}
        data = (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
        parse_manifest(data)  # what we write must be what we accept
        return data


def read_manifest(file: IO[bytes]) -> Manifest:
    """A manifest from a binary file, read up to `MAX_MANIFEST_BYTES` (one byte more is refused, unread)."""
    return parse_manifest(file.read(MAX_MANIFEST_BYTES + 1))


def parse_manifest(data: bytes) -> Manifest:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest: larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ManifestError("manifest: not a JSON document") from None
    if not isinstance(document, dict):
        raise ManifestError("manifest: not a JSON object")
    unknown = set(document) - _MEMBERS
    if unknown:
        raise ManifestError(f"manifest: {len(unknown)} member(s) not in version {VERSION} of the format")
    missing = sorted(_REQUIRED - set(document))
    if missing:
        raise ManifestError(f"manifest: {missing[0]} is missing")
    if document["format"] != FORMAT or type(document["version"]) is not int:
        raise ManifestError(f"manifest: format is not {FORMAT}")
    if document["version"] != VERSION:
        raise ManifestError(f"manifest: version is not {VERSION} (written by another release?)")
    exported_at = _timestamp(document, "exported_at")
    finished_at = _timestamp(document, "finished_at")
    if finished_at < exported_at:
        raise ManifestError("manifest: finished_at is before exported_at")
    watermark = document.get("watermark")
    if watermark is not None:
        _timestamp(document, "watermark")
    search = document.get("search")
    if search is not None and (not isinstance(search, str) or len(search) > MAX_SEARCH_LENGTH
                               or _CONTROL.search(search)):
        raise ManifestError(f"manifest: search is not text of at most {MAX_SEARCH_LENGTH} characters")
    by_status = document.get("by_status")
    return Manifest(
        dataset=_matching(document, "dataset", _NAME), producer=_producer(document["producer"]),
        kind=_matching(document, "kind", _NAME), exported_at=document["exported_at"],
        finished_at=document["finished_at"], files=_files(document["files"]),
        counts=_counts(document["counts"], "counts", _NAME), search=search,
        watermark=watermark,
        by_status=None if by_status is None else _counts(by_status, "by_status", _STATUS))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ManifestError("manifest: a member appears twice")
    return document


def _no_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _matching(document: Mapping[str, Any], name: str, pattern: re.Pattern[str], where: str = "") -> str:
    value = document.get(name)
    if not isinstance(value, str) or not pattern.match(value):
        raise ManifestError(f"manifest: {where}{name} is missing or not a valid value")
    return value


def _timestamp(document: Mapping[str, Any], name: str) -> datetime:
    value = document.get(name)
    if not isinstance(value, str) or not _OKTA_TIMESTAMP.match(value):
        raise ManifestError(f"manifest: {name} is not an Okta timestamp (like 2026-01-01T00:00:00.000Z)")
    try:
        return parse_okta_timestamp(value)
    except ValueError:  # 2026-02-30
        raise ManifestError(f"manifest: {name} is not a date that exists") from None


def _producer(value: Any) -> Producer:
    if not isinstance(value, dict) or set(value) != {"dag_id", "run_id", "task_id", "try_number"}:
        raise ManifestError("manifest: producer is not {dag_id, run_id, task_id, try_number}")
    run_id = value["run_id"]
    if not isinstance(run_id, str) or not 0 < len(run_id) <= 250 or _CONTROL.search(run_id):
        raise ManifestError("manifest: producer.run_id is not a run id")
    try_number = value["try_number"]
    if type(try_number) is not int or not 0 <= try_number <= 10_000:
        raise ManifestError("manifest: producer.try_number is not a try number")
    return Producer(dag_id=_matching(value, "dag_id", _AIRFLOW_ID, "producer."), run_id=run_id,
                    task_id=_matching(value, "task_id", _AIRFLOW_ID, "producer."), try_number=try_number)


def _files(value: Any) -> tuple[FileDigest, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_FILES:
        raise ManifestError(f"manifest: files is not a list of 1 to {MAX_FILES} files")
    files = []
    for position, item in enumerate(value):
        where = f"files[{position}]."
        if not isinstance(item, dict) or set(item) != {"name", "content_sha256", "content_bytes"}:
            raise ManifestError(f"manifest: files[{position}] is not {{name, content_sha256, content_bytes}}")
        size = item["content_bytes"]
        if type(size) is not int or not 0 <= size < 2**50:
            raise ManifestError(f"manifest: {where}content_bytes is not a length")
        files.append(FileDigest(_matching(item, "name", _FILE_NAME, where),
                                _matching(item, "content_sha256", _SHA256, where), size))
    if len({f.name for f in files}) != len(files):
        raise ManifestError("manifest: files names a file twice")
    return tuple(files)


def _counts(value: Any, name: str, key: re.Pattern[str]) -> dict[str, int]:
    if not isinstance(value, dict) or len(value) > MAX_COUNT_NAMES:
        raise ManifestError(f"manifest: {name} is not an object of at most {MAX_COUNT_NAMES} counts")
    for item_name, count in value.items():
        if not key.match(item_name):
            raise ManifestError(f"manifest: {name} has a name that is not one")
        if type(count) is not int or not 0 <= count < MAX_COUNT:
            raise ManifestError(f"manifest: {name}.{item_name} is not a count")
    return dict(value)


def check_times(manifest: Manifest, *, not_after: datetime, skew: timedelta, what: str) -> None:
    """Refuse a manifest whose times lie after `not_after` (plus `skew`): an export cannot end after the event
    that announces it, nor after now. `what` names the moment in the error."""
    limit = not_after + skew
    for name in ("exported_at", "finished_at", "watermark"):
        value = getattr(manifest, name)
        if value is not None and parse_okta_timestamp(value) > limit:
            raise ManifestError(f"manifest: {name} is later than {what}")


READ_BLOCK = 1 << 20  # bytes a DigestReader reads at once


class DigestWriter:
    """A binary file that hashes (SHA-256) and counts what is written through it."""

    def __init__(self, file: IO[bytes]):
        self._file = file
        self._sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self._sha256.update(data)
        self.bytes += len(data)
        return self._file.write(data)

    def digest(self, name: str) -> FileDigest:
        return FileDigest(name=name, content_sha256=self._sha256.hexdigest(), content_bytes=self.bytes)


class DigestReader:
    """Lines of a binary file, hashed while they are read and never more bytes than the manifest says it holds
    (a longer file is refused at the first byte too many). `verify()` after the last line: ManifestError unless
    the whole content was read and its SHA-256 and length are the manifest's.

    Read in blocks of `block_size` bytes and split on newlines (each line keeps its `\\n`, as `readline` would):
    a million-line export costs one hash update and one read per block, not per line."""

    def __init__(self, file: IO[bytes], expected: FileDigest, block_size: int = READ_BLOCK):
        self._file = file
        self.expected = expected
        self._block_size = block_size
        self._sha256 = hashlib.sha256()
        self.bytes = 0
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        partial: list[bytes] = []  # the line being read, while it spans blocks (joined once, when it ends)
        while True:
            block = self._file.read(min(self._block_size, self.expected.content_bytes - self.bytes + 1))
            if not block:
                self._ended = True
                if partial:
                    yield b"".join(partial)
                return
            self.bytes += len(block)
            if self.bytes > self.expected.content_bytes:
                raise ManifestError(f"{self.expected.name}: longer than its manifest says (content_bytes)")
            self._sha256.update(block)
            lines = block.split(b"\n")
            if len(lines) == 1:
                partial.append(block)
                continue
            if partial:
                partial.append(lines[0])
                lines[0] = b"".join(partial)
            last = lines.pop()
            partial = [last] if last else []
            for line in lines:
                yield line + b"\n"

    def verify(self) -> None:
        if not self._ended:
            raise ManifestError(f"{self.expected.name}: not read to its end")
        if self.bytes != self.expected.content_bytes:
            raise ManifestError(f"{self.expected.name}: shorter than its manifest says (content_bytes)")
        if self._sha256.hexdigest() != self.expected.content_sha256:
            raise ManifestError(f"{self.expected.name}: its SHA-256 is not the manifest's (content_sha256)")
