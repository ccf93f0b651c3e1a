"""Durable per-change progress of a push, so a task killed mid-push and retried by Airflow does not redo work.

Every finished change is appended to a segment in `<report>.journal/` (one JSON line with its report rows) and
flushed to disk before the next one is reported. A retry of the same task in the same run replays those rows into the new
report and pushes only what remains. On object storage, which cannot append, the journal is written as numbered
segments of up to `segment_size` changes: a kill redoes at most that many partial updates, which are idempotent.

A journal belongs to one plan: each segment is named after the plan file's SHA-256 and starts with a header
holding the whole digest. Segments of any other plan (another run that shared the folder, a re-planned run, a
journal from an older version) are never replayed: their changes are pushed again, re-read first as always.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import asdict

from airflow.sdk import ObjectStoragePath

from okta_sync.errors import PlanFileError
from okta_sync.sync.reports import ReportRow, ReportStatus

log = logging.getLogger(__name__)
JOURNAL_FORMAT = "okta_sync.push_journal"  # a file format name, not a module path: unchanged by the move


def _encode(user_id: str, rows: list[ReportRow]) -> str:
    return json.dumps({"user_id": user_id, "rows": [{**asdict(r), "status": str(r.status)} for r in rows]},
                      ensure_ascii=True, default=str) + "\n"


def _decode(line: str) -> tuple[str, list[ReportRow]]:
    record = json.loads(line)
    rows = [ReportRow(**{**r, "status": ReportStatus(r["status"])}) for r in record["rows"]]
    return record["user_id"], rows


class PushJournal:
    def __init__(self, base: ObjectStoragePath, plan_sha256: str, *, segment_size: int = 100):
        if len(plan_sha256) != 64 or any(c not in "0123456789abcdef" for c in plan_sha256):
            raise PlanFileError("a push journal needs the plan file's SHA-256 (hex)")
        self.base = base
        self.plan_sha256 = plan_sha256
        self.prefix = plan_sha256[:16] + "-"
        self.local = base.protocol in ("file", "local", "")
        self.segment_size = segment_size
        self._done: dict[str, list[ReportRow]] = {}
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._file = None
        self._load()

    @classmethod
    def for_report(cls, report_uri: str, plan_sha256: str) -> "PushJournal":
        from okta_sync.airflow.storage import storage_path

        return cls(storage_path(report_uri + ".journal"), plan_sha256)

    def _all_segments(self) -> list[ObjectStoragePath]:
        if not self.base.exists():
            return []
        return sorted(p for p in self.base.iterdir() if p.name.endswith(".jsonl"))

    def _segments(self) -> list[ObjectStoragePath]:
        return [p for p in self._all_segments() if p.name.startswith(self.prefix)]

    def _header(self) -> str:
        return json.dumps({"record": "header", "format": JOURNAL_FORMAT, "plan_sha256": self.plan_sha256}) + "\n"

    def _load(self) -> None:
        others = len(self._all_segments()) - len(self._segments())
        if others:
            log.warning("The push journal %s holds %d segment(s) of another plan: not replayed (those changes are "
                        "re-read and pushed again)", self.base, others)
        for segment in self._segments():
            with segment.open("r", encoding="utf-8") as file:
                if file.readline() != self._header():  # another plan's (or a damaged) segment: never replayed
                    log.warning("Push journal segment %s is not for this plan: not replayed", segment.name)
                    continue
                for line in file:
                    if line.endswith("\n"):  # a line cut by a kill is not a finished change
                        user_id, rows = _decode(line)
                        self._done[user_id] = rows

    @property
    def replayable(self) -> int:
        return len(self._done)

    def done(self, user_id: str) -> list[ReportRow] | None:
        return self._done.get(user_id)

    def record(self, user_id: str, rows: list[ReportRow]) -> None:
        line = _encode(user_id, rows)
        with self._lock:
            if self.local:
                if self._file is None:
                    self._file = self._open_local_segment()
                self._file.write(line)
                self._file.flush()
                os.fsync(self._file.fileno())
            else:
                self._pending.append(line)
                if len(self._pending) >= self.segment_size:
                    self._flush_segment()

    def _segment_name(self) -> str:
        return f"{self.prefix}{len(self._segments()):06d}-{os.getpid()}.jsonl"

    def _open_local_segment(self):
        """A new segment, 0600 in a 0700 folder (the rows hold profile values), its header on disk first."""
        folder = self.base.path
        if not os.path.isdir(folder):
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o700)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        file = os.fdopen(os.open(os.path.join(folder, self._segment_name()), flags, 0o600), "a", encoding="utf-8")
        file.write(self._header())
        file.flush()
        os.fsync(file.fileno())
        return file

    def _flush_segment(self) -> None:
        if not self._pending:
            return
        segment = self.base / self._segment_name()  # no mkdir: object stores have no folders (S3's creates buckets)
        with segment.open("w", encoding="utf-8") as file:
            file.write(self._header() + "".join(self._pending))
        self._pending.clear()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._flush_segment()
