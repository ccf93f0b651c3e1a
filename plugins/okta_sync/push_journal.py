"""Durable per-change progress of a push, so a task killed mid-push and retried by Airflow does not redo work.

Every finished change is appended to `<report>.journal.jsonl` (one JSON line with its report rows) and flushed to
disk before the next one is reported. A retry of the same task in the same run replays those rows into the new
report and pushes only what remains. On object storage, which cannot append, the journal is written as numbered
segments of up to `segment_size` changes: a kill redoes at most that many partial updates, which are idempotent.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from typing import Any

from airflow.sdk import ObjectStoragePath

from okta_sync.reports import ReportRow, ReportStatus


def _encode(user_id: str, rows: list[ReportRow]) -> str:
    return json.dumps({"user_id": user_id, "rows": [{**asdict(r), "status": str(r.status)} for r in rows]},
                      ensure_ascii=True, default=str) + "\n"


def _decode(line: str) -> tuple[str, list[ReportRow]]:
    record = json.loads(line)
    rows = [ReportRow(**{**r, "status": ReportStatus(r["status"])}) for r in record["rows"]]
    return record["user_id"], rows


class PushJournal:
    def __init__(self, base: ObjectStoragePath, *, segment_size: int = 100):
        self.base = base
        self.local = base.protocol in ("file", "local", "")
        self.segment_size = segment_size
        self._done: dict[str, list[ReportRow]] = {}
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._file = None
        self._load()

    @classmethod
    def for_report(cls, report_uri: str, context: Any = None) -> "PushJournal":
        return cls(ObjectStoragePath(report_uri + ".journal"))

    def _segments(self) -> list[ObjectStoragePath]:
        if not self.base.exists():
            return []
        return sorted(p for p in self.base.iterdir() if p.name.endswith(".jsonl"))

    def _load(self) -> None:
        for segment in self._segments():
            with segment.open("r", encoding="utf-8") as file:
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
                    self.base.mkdir(parents=True, exist_ok=True)
                    self._file = open((self.base / f"{len(self._segments()):06d}-{os.getpid()}.jsonl").path, "a", encoding="utf-8")
                self._file.write(line)
                self._file.flush()
                os.fsync(self._file.fileno())
            else:
                self._pending.append(line)
                if len(self._pending) >= self.segment_size:
                    self._flush_segment()

    def _flush_segment(self) -> None:
        if not self._pending:
            return
        self.base.mkdir(parents=True, exist_ok=True)
        segment = self.base / f"{len(self._segments()):06d}-{os.getpid()}.jsonl"
        with segment.open("w", encoding="utf-8") as file:
            file.write("".join(self._pending))
        self._pending.clear()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._flush_segment()
