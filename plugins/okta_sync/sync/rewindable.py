"""A file object that can be read twice: validate everything first, then stream, never holding it all in memory.

Seekable files are rewound in place; anything else (a pipe, a remote stream) is copied once to a spooled
temporary file that stays in memory while small and moves to disk when large, up to `max_spool_bytes` (an endless
stream must not fill the worker's disk).
"""

from __future__ import annotations

import tempfile
from typing import IO, Any

from okta_sync.errors import InputTooLargeError

_SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024
MAX_SPOOL_BYTES = 4 * 1024 ** 3
_COPY_CHUNK = 64 * 1024


class Rewindable:
    """Wraps a text or binary file object; `rewind()` returns it to where reading started."""

    def __init__(self, file: IO[Any], *, max_spool_bytes: int = MAX_SPOOL_BYTES):
        self.max_spool_bytes = max_spool_bytes
        self.is_binary = isinstance(file.read(0), bytes)
        if _seekable(file):
            self.file = file
            self._start = file.tell()
        else:
            self.file = self._spool(file)
            self._start = 0

    def rewind(self) -> IO[Any]:
        self.file.seek(self._start)
        return self.file

    def _spool(self, file: IO[Any]) -> IO[Any]:
        if self.is_binary:
            spool: IO[Any] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY_BYTES, mode="w+b")
        else:
            spool = tempfile.SpooledTemporaryFile(
                max_size=_SPOOL_IN_MEMORY_BYTES, mode="w+", encoding="utf-8", errors="surrogatepass", newline=""
            )
        copied = 0
        while chunk := file.read(_COPY_CHUNK):
            copied += len(chunk)
            if copied > self.max_spool_bytes:
                spool.close()
                raise InputTooLargeError(self.max_spool_bytes)
            spool.write(chunk)
        return spool


def _seekable(file: IO[Any]) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, ValueError, OSError):
        return False
