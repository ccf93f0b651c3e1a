"""Where runs read and write: private files (0600 under 0700 folders) through ObjectStoragePath, one folder per
DAG run named one-to-one from its ids, retention of old run folders, and the roots that files named by a trigger,
an Asset event or an XCom must lie under. Airflow layer: reads Airflow Variables and Airflow's configuration.

Every URI may be local (a path, `file://`) or on object storage, `s3://[conn_id@]bucket/prefix/` (and `gs://`,
`abfs://` through the same code; only S3 is tested): `storage_path` is the one way a URI becomes an
ObjectStoragePath, and fails the task at once, naming the package, when no filesystem serves its scheme."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from airflow.sdk import ObjectStoragePath, Variable

from okta_sync.airflow.hooks import fail_now
from okta_sync.errors import ConfigurationError, LocationError
from okta_sync.sync.locations import Root, open_local, parse_roots, resolve

_S3 = "apache-airflow-providers-amazon[s3fs] (pip install 'okta-sync-airflow[s3]')"
_GCS = "apache-airflow-providers-google (it brings gcsfs)"
_AZURE = "apache-airflow-providers-microsoft-azure (it brings adlfs)"
FILESYSTEM_PACKAGES = {"s3": _S3, "s3a": _S3, "s3n": _S3, "gs": _GCS, "gcs": _GCS,
                       "abfs": _AZURE, "abfss": _AZURE, "az": _AZURE, "adl": _AZURE}
# The block of remote reads and writes held in memory: s3fs uploads each full block as one part of a multipart
# upload and reads ahead one block (its default, 50 MiB, is more than a whole 100,000-user export; S3 parts are
# 5 MiB at least).
REMOTE_BLOCK_SIZE = 8 * 2**20
_REMOTE_CHUNK = 2**20  # what a remote file is handed per call (see _RemotePartial.open)


def _is_local(path: ObjectStoragePath) -> bool:
    return path.protocol in ("file", "local", "")


def storage_path(uri: str) -> ObjectStoragePath:
    """`uri` as an ObjectStoragePath (`s3://conn_id@bucket/key` picks the connection), its filesystem loaded now:
    a scheme no installed package serves fails the task at once (no retry installs a package), naming the package."""
    path = ObjectStoragePath(uri)
    if not _is_local(path):
        try:
            path.fs  # noqa: B018 (loads the provider's filesystem: s3fs, gcsfs, adlfs)
        except (ImportError, ValueError) as error:
            from airflow.sdk.io import has_fs

            if isinstance(error, ValueError) and has_fs(path.protocol):
                raise
            package = FILESYSTEM_PACKAGES.get(path.protocol,
                                              f"the Airflow provider with a {path.protocol}:// filesystem")
            raise fail_now(ConfigurationError(
                f"{path.protocol}://", f"no filesystem for this scheme is installed; install {package} on every "
                f"Airflow worker (retrying cannot install it)")) from error
    return path


def make_private_folders(folder: str) -> None:
    """Create the missing folders of a local path with mode 0700 (existing folders are left as they are)."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)


class _LocalPartial:
    """A local temporary sibling created 0600 (exports, plans and reports hold PII), moved into place by rename."""

    def __init__(self, path: ObjectStoragePath):
        make_private_folders(os.path.dirname(path.path))
        self.target = path.path
        self.path = os.path.join(os.path.dirname(path.path), f".{path.name}.{uuid.uuid4().hex[:8]}.partial")

    def open(self) -> IO[bytes]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        return os.fdopen(os.open(self.path, flags, 0o600), "wb")

    def commit(self) -> None:
        os.replace(self.path, self.target)

    def discard(self) -> None:
        os.unlink(self.path)


class _RemotePartial:
    """A temporary sibling object; its permissions are the store's (bucket policy, ACLs). Object stores have no
    folders to make: no mkdir, which on S3 would create a missing bucket (without the organisation's policies)."""

    def __init__(self, path: ObjectStoragePath):
        self.target = path
        self.path = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.partial"

    def open(self) -> IO[bytes]:
        # Each write to an ObjectStoragePath's file goes through Airflow's lineage wrapper (~50 us a call), and
        # Python 3.11's GzipFile writes once per line: 1 MiB chunks make it a few calls per part.
        return io.BufferedWriter(self.path.open("wb", block_size=REMOTE_BLOCK_SIZE), buffer_size=_REMOTE_CHUNK)

    def commit(self) -> None:
        self.path.rename(self.target)

    def discard(self) -> None:
        self.path.unlink()


@contextlib.contextmanager
def open_for_write(uri: str, *, keep_on_error: bool = False) -> Iterator[IO[bytes]]:
    """Write to a sibling temporary object, then move it into place: readers never see half a file.

    `.gz` names are gzip-compressed on the fly. With `keep_on_error` (reports), what was written is moved into place
    even when the work failed, since it says what happened. Local files are created 0600 and missing folders 0700.
    """
    path = storage_path(uri)
    partial = _LocalPartial(path) if _is_local(path) else _RemotePartial(path)
    try:
        with partial.open() as raw:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=5) as compressed:
                    yield compressed
            else:
                yield raw
        partial.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            if keep_on_error:
                partial.commit()
            else:
                partial.discard()
        raise


@contextlib.contextmanager
def open_text_for_write(uri: str, *, keep_on_error: bool = False) -> Iterator[IO[str]]:
    with open_for_write(uri, keep_on_error=keep_on_error) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            yield text
        finally:
            text.flush()
            text.detach()  # the binary file is closed (and moved into place) by open_for_write


def _open_binary(path: ObjectStoragePath) -> IO[bytes]:
    if _is_local(path):
        return path.open("rb")
    # fsspec's remote files read ahead a whole block (s3fs: 50 MiB) and their readline() takes no size: a standard
    # buffered reader over smaller blocks reads like a local file (bounded `readline(limit)`, as feeds are read).
    return io.BufferedReader(path.open("rb", block_size=REMOTE_BLOCK_SIZE), buffer_size=_REMOTE_CHUNK)


@contextlib.contextmanager
def open_for_read(uri: str) -> Iterator[IO[bytes]]:
    """Read a local or remote file (`.gz` decompressed on the fly) as a standard buffered binary file."""
    path = storage_path(uri)
    with _open_binary(path) as raw:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as decompressed:
                yield decompressed
        else:
            yield raw


OUTPUT_ROOT_VARIABLE = "okta_sync_output_uri"
# plugins/okta_sync/airflow/operators.py -> the project folder (Astro layout: include/ beside plugins/)
PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUTPUT_ROOT = (PROJECT_ROOT / "include" / "output").as_uri()
RETENTION_VARIABLE = "okta_sync_output_retention_days"
RETENTION_MAX_FOLDERS = 200  # removed per run at most: a backlog is worked off over several runs
_RUN_FOLDER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}-[0-9a-f]{16}")


WORKERS_SHARE_DISK_VARIABLE = "okta_sync_workers_share_disk"
# Executors whose tasks all run on the scheduler's machine; any other ([core] executor) may run each task elsewhere.
_SAME_MACHINE_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})


def output_root() -> str:
    """Where runs write (the Airflow Variable `okta_sync_output_uri`, else the project's include/output); a local
    root where tasks may run on other machines fails the task at once (`require_shared_output_root`)."""
    root = str(Variable.get(OUTPUT_ROOT_VARIABLE, default=None) or DEFAULT_OUTPUT_ROOT).rstrip("/")
    require_shared_output_root(root=root)
    return root


def remote_executors() -> list[str]:
    """The executors of Airflow's `[core] executor` (one, or a multi-executor list of names, module paths or
    `alias:module.Class`) that may run a task on another machine: Celery, Kubernetes, Edge, ECS, ..."""
    from airflow.sdk.configuration import conf

    names = [part.strip().rsplit(":", 1)[-1].rsplit(".", 1)[-1]
             for part in str(conf.get("core", "executor", fallback="") or "").split(",") if part.strip()]
    return [name for name in names if name not in _SAME_MACHINE_EXECUTORS]


def require_shared_output_root(context: Any = None, *, root: str | None = None) -> None:
    """Fail the task at once when runs would write to a local folder while tasks may run on other machines (a plan
    written on one worker's disk is not on the disk of the worker that pushes it), unless the Airflow Variable
    `okta_sync_workers_share_disk` says the workers share that disk. A DAG's `pre_execute` (default_args), so the
    first task fails; `root` defaults to the Variable `okta_sync_output_uri`."""
    if root is None:
        root = str(Variable.get(OUTPUT_ROOT_VARIABLE, default=None) or DEFAULT_OUTPUT_ROOT)
    try:  # the checks every root gets (no password in the URI, no `..`, an absolute local path), never echoing it
        parse_roots([root.rstrip("/") + "/"], setting=OUTPUT_ROOT_VARIABLE)
    except LocationError as refused:
        raise fail_now(refused) from None
    if not _is_local(ObjectStoragePath(root)):
        return
    remote = remote_executors()
    if not remote:
        return
    shared = str(Variable.get(WORKERS_SHARE_DISK_VARIABLE, default="") or "").strip().lower()
    if shared in ("true", "yes", "1", "on"):
        return
    raise fail_now(ConfigurationError(
        OUTPUT_ROOT_VARIABLE,
        f"run files go to a local folder, but the executor ({', '.join(remote)}) runs tasks on machines that may not "
        f"share it: a file one task writes would be missing for the next. Set the Airflow Variable "
        f"{OUTPUT_ROOT_VARIABLE} to object storage (e.g. s3://aws_default@bucket/okta/), or, if every worker mounts "
        f"the same disk at that path, set the Airflow Variable {WORKERS_SHARE_DISK_VARIABLE} to true"))


def run_folder_name(dag_id: str, run_id: str) -> str:
    """A folder name for one DAG run: a readable slug of the run id and 16 hex digits of SHA-256 over the exact
    dag id and run id, so run ids that differ only in `:`/`-`/`+`/`_` (or anything) never share a folder."""
    slug = re.sub(r"[^A-Za-z0-9._-]", "-", run_id)[:80].lstrip(".") or "run"
    digest = hashlib.sha256(f"{dag_id}\n{run_id}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{slug}-{digest}"


def run_folder_uri(root: str, dag_id: str, run_id: str) -> str:
    """`<root>/<dag id>/<run_folder_name>`: the one place run folders are named (a DAG's `user_defined_macros`)."""
    dag_folder = dag_id if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", dag_id) else run_folder_name("", dag_id)
    return f"{str(root).rstrip('/')}/{dag_folder}/{run_folder_name(dag_id, run_id)}"


def remove_expired_run_folders(dag_id: str, current_run_id: str, *, root: str | None = None,
                               days: Any = None, now: float | None = None,
                               limit: int = RETENTION_MAX_FOLDERS) -> dict[str, Any]:
    """Remove this DAG's run folders not written to for `days` (default: the Airflow Variable
    `okta_sync_output_retention_days`; unset keeps everything). Only folders named by `run_folder_name`, directly
    under `<output root>/<dag id>/`, never the current run's, never through a symlink, at most `limit` per call."""
    days = Variable.get(RETENTION_VARIABLE, default=None) if days is None else days
    if days in (None, ""):
        return {"retention_days": None, "removed": 0}
    try:
        days = float(days)
    except ValueError:
        raise fail_now(ConfigurationError(RETENTION_VARIABLE, "must be a number of days")) from None
    if not days > 0:
        raise fail_now(ConfigurationError(RETENTION_VARIABLE, "must be a positive number of days"))
    folder = storage_path(run_folder_uri(root or output_root(), dag_id, current_run_id)).parent
    keep = run_folder_name(dag_id, current_run_id)
    cutoff = (time.time() if now is None else now) - days * 86400
    expired = _expired_local(folder.path, keep, cutoff) if _is_local(folder) else _expired_remote(folder, keep, cutoff)
    removed = 0
    for remove in expired[:limit]:
        remove()
        removed += 1
    return {"retention_days": days, "removed": removed, "left_for_later": max(0, len(expired) - limit)}


def _expired_local(folder: str, keep: str, cutoff: float) -> list[Any]:
    if not os.path.isdir(folder) or os.path.islink(folder):
        return []
    expired = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name == keep or not _RUN_FOLDER_NAME.fullmatch(entry.name) \
                    or not entry.is_dir(follow_symlinks=False):
                continue
            with os.scandir(entry.path) as children:
                newest = max([entry.stat(follow_symlinks=False).st_mtime]
                             + [child.stat(follow_symlinks=False).st_mtime for child in children])
            if newest < cutoff:
                expired.append(lambda path=entry.path: shutil.rmtree(path))  # rmtree does not follow symlinks
    return expired


def _expired_remote(folder: ObjectStoragePath, keep: str, cutoff: float) -> list[Any]:
    if not folder.exists():
        return []
    expired = []
    for entry in folder.iterdir():
        if entry.name == keep or not _RUN_FOLDER_NAME.fullmatch(entry.name) or not entry.is_dir():
            continue
        try:
            newest = max(child.stat().st_mtime for child in entry.iterdir())
        except (ValueError, OSError, AttributeError, TypeError):
            continue  # an empty folder or a store without modification times: never removed by guess
        if newest < cutoff:
            expired.append(lambda path=entry: path.fs.rm(path.path, recursive=True))
    return expired


FEED_ROOTS_VARIABLE = "okta_sync_feed_roots"
DEFAULT_FEED_ROOT = (PROJECT_ROOT / "include" / "feeds").as_uri() + "/"


def feed_roots(configured: Any = None) -> tuple[Root, ...]:
    """The URI prefixes changes feeds may be read from: `configured`, else the Airflow Variable
    `okta_sync_feed_roots` (a JSON list), else the project's include/feeds/."""
    if configured is None:
        configured = Variable.get(FEED_ROOTS_VARIABLE, default=None)
    return parse_roots([DEFAULT_FEED_ROOT] if configured is None else configured, setting=FEED_ROOTS_VARIABLE)


@contextlib.contextmanager
def open_within(uri: str, roots: tuple[Root, ...], *, what: str, setting: str,
                advice: str | None = None) -> Iterator[IO[bytes]]:
    """`open_for_read`, only for a location under `roots` (see `okta_sync.sync.locations`); LocationError otherwise."""
    location = resolve(uri, roots, what=what, setting=setting, advice=advice)
    if location.local is None:
        with open_for_read(uri) as file:
            yield file
        return
    with open_local(location) as raw:
        if location.local.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as decompressed:
                yield decompressed
        else:
            yield raw


@contextlib.contextmanager
def open_output_for_read(uri: Any, *, what: str) -> Iterator[IO[bytes]]:
    """Read a file named by someone else (an Asset event's `extra["path"]`) only under the output root."""
    try:
        with open_within(uri, parse_roots([output_root() + "/"], setting=OUTPUT_ROOT_VARIABLE), what=what,
                         setting=OUTPUT_ROOT_VARIABLE) as file:
            yield file
    except LocationError as refused:
        raise fail_now(refused) from None


@contextlib.contextmanager
def open_run_file(uri: Any, run_folder: str, *, what: str) -> Iterator[IO[bytes]]:
    """Read a file that an earlier task of this run wrote, named by its XCom (which people with the right role can
    edit), only inside the run's own folder (`run_folder_uri(output root, dag_id, run_id)`): an edited XCom cannot
    make a task read another run's or any other file. Refusals fail the task at once."""
    setting = f"{what} (XCom)"
    try:
        roots = parse_roots([str(run_folder).rstrip("/") + "/"], setting="run folder")
        with open_within(uri, roots, what=what, setting=setting,
                         advice="a task reads only files of its own run's folder (was the XCom edited?)") as file:
            yield file
    except LocationError as refused:
        raise fail_now(refused) from None
