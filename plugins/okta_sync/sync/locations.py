"""Where a task may read a file named by someone else (a DAG param, an Asset event): only under allowed roots.

A root is a URI prefix: `file:///srv/feeds/`, an absolute path, or `s3://bucket/feeds/` (any scheme), optionally
with the Airflow connection that reaches it in Airflow's own form, `s3://aws_default@bucket/feeds/` (how
ObjectStoragePath picks its connection). A location is allowed when it lies under one of the roots:
- local files: the real path (every symlink and `..` resolved) must lie inside a root's real path, and the file is
  then opened component by component from the root's directory with O_NOFOLLOW, so a symlink swapped in after the
  check is refused, not followed; only a regular file with one link is opened (no FIFO, device or /proc entry, no
  hard link, which may name a file outside the root).
- remote URIs: same scheme, same connection id (none when the root names none: the connection is part of a root's
  identity, since another connection may hold other credentials or another endpoint), same bucket, and the path
  starts with the root's path plus "/" (`s3://b/feeds-evil/x` is not under `s3://b/feeds`); `.`/`..`/empty
  segments, backslashes, queries, fragments, passwords (`user:pw@`), a connection id that is not plain letters,
  digits, `_`, `.`, `-`, and control characters are refused, encoded or not.

Errors name the setting to change and never repeat the refused location or anything read from it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, NamedTuple
from urllib.parse import unquote, urlsplit

from okta_sync.errors import LocationError


@dataclass(frozen=True)
class Root:
    """One allowed prefix: a local directory (`local` set, real path) or a remote prefix ending in "/"."""

    uri: str
    local: str | None = None

    @property
    def conn_id(self) -> str | None:
        """The Airflow connection a remote root names (`s3://conn_id@bucket/...`), else None."""
        return None if self.local is not None else _remote_parts(self.uri, "root").conn_id


class RemoteParts(NamedTuple):
    """A remote URI split the way ObjectStoragePath reads it: `scheme://[conn_id@]bucket/path`."""

    scheme: str
    conn_id: str | None
    bucket: str
    path: str


@dataclass(frozen=True)
class Location:
    """An allowed location: `local` is the real path of a local file (open it with `open_local`), else None."""

    uri: str
    root: Root
    local: str | None = None


def parse_roots(value: Any, *, setting: str) -> tuple[Root, ...]:
    """Roots from a JSON list (text or list) of URI prefixes or absolute paths; `setting` names it in errors."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise LocationError(f"{setting} must be a JSON list of URI prefixes, e.g. [\"s3://bucket/feeds/\"]") from None
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise LocationError(f"{setting} must be a non-empty JSON list of URI prefixes, e.g. [\"s3://bucket/feeds/\"]")
    return tuple(_root(text, setting, position) for position, text in enumerate(value))


def _root(text: str, setting: str, position: int) -> Root:
    where = f"{setting}[{position}]"
    local = _local_path(text, where)
    if local is not None:
        if not os.path.isabs(local):
            raise LocationError(f"{where}: a local root must be an absolute path or a file:// URI")
        return Root(uri=text, local=os.path.realpath(local))
    parts = _remote_parts(text, where)
    if not parts.path.endswith("/"):
        text += "/"
    return Root(uri=text)


def resolve(uri: str, roots: tuple[Root, ...], *, what: str, setting: str, advice: str | None = None) -> Location:
    """The allowed location of `uri` (named `what` in errors), or LocationError naming `setting` (or saying
    `advice`, when adding a root is not the fix)."""
    if not isinstance(uri, str) or not uri:
        raise LocationError(f"{what} is empty or not text")
    local = _local_path(uri, what)
    refused = LocationError(
        f"{what} is not under the allowed roots {[root.uri for root in roots]}; "
        + (advice or f"an administrator adds its folder to the Airflow Variable {setting}"))
    if local is not None:
        if not os.path.isabs(local):
            raise LocationError(f"{what} must be an absolute path or a file:// URI")
        real = os.path.realpath(local)
        for root in roots:
            if root.local is not None and _inside(real, root.local):
                return Location(uri=uri, root=root, local=real)
        raise refused
    parts = _remote_parts(uri, what)
    for root in roots:
        if root.local is not None:
            continue
        under = _remote_parts(root.uri, setting)
        if parts[:3] == under[:3] and parts.path.startswith(under.path) and len(parts.path) > len(under.path):
            return Location(uri=uri, root=root)
    raise refused


def open_local(location: Location) -> IO[bytes]:
    """Open a local location for reading without following any symlink below its root; regular files only."""
    assert location.local is not None and location.root.local is not None
    relative = PurePosixPath(os.path.relpath(location.local, location.root.local)).parts
    flags = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    directory = os.open(location.root.local, flags | getattr(os, "O_DIRECTORY", 0))
    try:
        for name in relative[:-1]:
            child = os.open(name, flags | getattr(os, "O_DIRECTORY", 0), dir_fd=directory)
            os.close(directory)
            directory = child
        fd = os.open(relative[-1], flags | os.O_NONBLOCK, dir_fd=directory)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LocationError("a symlink (or a file where a folder should be) on the way: not followed, not read") from None
        raise
    finally:
        os.close(directory)
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        raise LocationError("not a regular file; only regular files are read")
    if status.st_nlink > 1:  # a hard link names a file that may live outside the root: it is not told apart
        os.close(fd)
        raise LocationError("a file with more than one hard link is not read (a hard link can reach a file outside "
                            "the allowed roots); copy the file into the folder instead")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _inside(path: str, root: str) -> bool:
    return path != root and os.path.commonpath([path, root]) == root


def _local_path(text: str, where: str) -> str | None:
    """The path of a file:// URI or a plain path; None for other schemes."""
    _refuse_control_characters(text, where)
    if text.startswith("/"):
        return text
    parts = urlsplit(text)
    if parts.scheme.lower() in ("file", "local"):
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise LocationError(f"{where}: a file:// URI has no host, query or fragment")
        return unquote(parts.path)
    if not parts.scheme or len(parts.scheme) == 1:  # a relative path, or a Windows drive letter
        return text
    return None


# Airflow's connection ids, less what a URI's user info cannot hold plainly (`:` would be a password, `/` a path)
_CONN_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}")


def _remote_parts(text: str, where: str) -> RemoteParts:
    _refuse_control_characters(text, where)
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc:
        raise LocationError(f"{where}: not a URI with a scheme and a bucket or host")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise LocationError(f"{where}: queries and fragments are not allowed")
    conn_id, at, bucket = parts.netloc.rpartition("@")
    if at and not _CONN_ID.fullmatch(conn_id):
        raise LocationError(f"{where}: before `@` only an Airflow connection id (letters, digits, `_`, `.`, `-`) is "
                            f"allowed, never a password: s3://conn_id@bucket/prefix/")
    if not bucket or "@" in bucket:
        raise LocationError(f"{where}: not a URI with a scheme and a bucket or host")
    if "\\" in text or "\\" in unquote(text):
        raise LocationError(f"{where}: backslashes are not allowed")
    path = parts.path or "/"
    segments = path.split("/")[1:]
    for segment in segments[:-1] if path.endswith("/") else segments:  # a trailing "/" is the only empty one
        decoded = unquote(segment)
        if not segment or decoded in (".", "..") or "/" in decoded:
            raise LocationError(f"{where}: `.`, `..`, empty and encoded-slash path segments are not allowed")
    return RemoteParts(parts.scheme.lower(), conn_id or None, bucket, path)


def _refuse_control_characters(text: str, where: str) -> None:
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text) or "\x00" in unquote(text):
        raise LocationError(f"{where}: control characters are not allowed")
