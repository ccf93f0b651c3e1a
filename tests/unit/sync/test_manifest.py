"""Manifests (okta_sync.sync.manifest): written and read back, strict and bounded, and a file checked against its
manifest in the pass that reads it."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from okta_sync.errors import ManifestError
from okta_sync.sync.manifest import (
    MAX_MANIFEST_BYTES,
    DigestReader,
    DigestWriter,
    FileDigest,
    Manifest,
    Producer,
    check_times,
    manifest_name,
    manifest_uri,
    parse_manifest,
    read_manifest,
)

CONTENT = b'{"id":"00u1"}\n{"id":"00u2"}\n'


def manifest(**changes) -> Manifest:
    sink = DigestWriter(io.BytesIO())
    sink.write(CONTENT)
    fields = dict(dataset="users", producer=Producer("okta_user_sync", "scheduled__2026-01-01T10:00:00+00:00",
                                                     "export_users", 1),
                  kind="incremental", exported_at="2026-01-01T10:00:00.000Z", finished_at="2026-01-01T10:00:04.000Z",
                  files=(sink.digest("users.jsonl.gz"),), counts={"users": 2, "pages": 1},
                  search='lastUpdated gt "2026-01-01T08:50:00.000Z"', watermark="2026-01-01T09:58:31.000Z",
                  by_status={"ACTIVE": 2})
    return Manifest(**{**fields, **changes})


def document(**changes) -> dict:
    return {**json.loads(manifest().to_json()), **changes}


def test_a_manifest_reads_back_as_written():
    written = manifest()
    assert read_manifest(io.BytesIO(written.to_json())) == written
    assert written.file("users.jsonl.gz").content_bytes == len(CONTENT)
    assert manifest_name("users.jsonl.gz") == "users.manifest.json" == manifest_name("users")
    assert manifest_uri("s3://aws_default@b/okta/run-1/users.jsonl.gz") == "s3://aws_default@b/okta/run-1/users.manifest.json"


@pytest.mark.parametrize("changes, named", [
    ({"kind": "full; DROP SECRET"}, "kind"),
    ({"producer": {"dag_id": "okta_user_sync", "run_id": "r", "task_id": "export_users"}}, "producer"),
    ({"producer": {"dag_id": "x SECRET", "run_id": "r", "task_id": "t", "try_number": 1}}, "producer.dag_id"),
    ({"producer": {"dag_id": "d", "run_id": "a\nSECRET", "task_id": "t", "try_number": 1}}, "producer.run_id"),
    ({"exported_at": "9999-99-99T00:00:00.000Z"}, "exported_at"),
    ({"exported_at": "SECRET"}, "exported_at"),
    ({"finished_at": "2025-01-01T00:00:00.000Z"}, "finished_at"),
    ({"watermark": 5}, "watermark"),
    ({"search": "x" * 70_000}, "search"),
    ({"counts": {"users": -1}}, "counts.users"),
    ({"counts": {"users": True}}, "counts.users"),
    ({"counts": {f"c{n}": 1 for n in range(40)}}, "counts"),
    ({"by_status": {"SECRET value": 1}}, "by_status"),
    ({"files": []}, "files"),
    ({"files": [{"name": "../SECRET", "content_sha256": "0" * 64, "content_bytes": 1}]}, "files[0].name"),
    ({"files": [{"name": "a", "content_sha256": "SECRET", "content_bytes": 1}]}, "files[0].content_sha256"),
    ({"files": [{"name": "a", "content_sha256": "0" * 64, "content_bytes": 1.5}]}, "files[0].content_bytes"),
    ({"version": 2}, "version"),
    ({"format": "SECRET"}, "format"),
    ({"extra_member": "SECRET"}, "member(s) not in version 1"),
])
def test_a_bad_member_is_refused_by_name_without_echo(changes, named):
    with pytest.raises(ManifestError) as caught:
        parse_manifest(json.dumps(document(**changes)).encode())
    assert named in str(caught.value) and "SECRET" not in str(caught.value)


@pytest.mark.parametrize("data", [
    b"[" * 200_000,  # deep nesting: RecursionError inside json, refused as not JSON
    b'{"kind": NaN}', b"\xff\xfe", b'"a string"', b'{"kind": "a", "kind": "b"}',
])
def test_what_is_not_a_manifest_is_refused(data):
    with pytest.raises(ManifestError, match="manifest: "):
        parse_manifest(data)


def test_a_manifest_is_read_within_its_cap():
    huge = io.BytesIO(b" " * (10 * MAX_MANIFEST_BYTES))
    with pytest.raises(ManifestError, match="larger than"):
        read_manifest(huge)
    assert huge.tell() == MAX_MANIFEST_BYTES + 1  # never read to the end


def test_times_later_than_the_event_or_now_are_refused():
    moment = datetime(2026, 1, 1, 10, 1, tzinfo=timezone.utc)
    check_times(manifest(), not_after=moment, skew=timedelta(minutes=5), what="the event")
    with pytest.raises(ManifestError, match="exported_at is later than the event"):
        check_times(manifest(), not_after=moment - timedelta(hours=1), skew=timedelta(minutes=5), what="the event")
    future = manifest(watermark="9999-12-31T23:59:59.000Z")
    with pytest.raises(ManifestError, match="watermark is later than now"):
        check_times(future, not_after=moment, skew=timedelta(minutes=5), what="now")


def lines(reader):
    return b"".join(reader)


def test_a_file_that_matches_its_manifest_verifies():
    reader = DigestReader(io.BytesIO(CONTENT), manifest().files[0])
    assert lines(reader) == CONTENT
    reader.verify()


@pytest.mark.parametrize("content, message", [
    (CONTENT.replace(b"00u2", b"00u3"), "SHA-256"),
    (CONTENT[:-5], "shorter"),
    (CONTENT + b'{"id":"00u4"}\n', "longer"),
])
def test_a_file_that_differs_from_its_manifest_is_refused(content, message):
    reader = DigestReader(io.BytesIO(content), manifest().files[0])
    with pytest.raises(ManifestError, match=message):
        lines(reader)
        reader.verify()


def test_a_longer_file_is_refused_at_the_first_byte_too_many():
    expected = FileDigest("users.jsonl", "0" * 64, 10)
    endless = io.BytesIO(b"x" * 10_000_000)  # one line, far longer than declared
    with pytest.raises(ManifestError, match="longer"):
        lines(DigestReader(endless, expected))
    assert endless.tell() == 11


def test_a_reader_not_read_to_its_end_does_not_verify():
    reader = DigestReader(io.BytesIO(CONTENT), manifest().files[0])
    next(iter(reader))
    with pytest.raises(ManifestError, match="not read to its end"):
        reader.verify()


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 64, 1 << 20])
def test_lines_are_the_same_whatever_the_block_size(block_size):
    content = b'{"id":"00u1"}\n\n{"id":"00u2"}\r\n' + b"x" * 100 + b"\n" + b'{"id":"00u3"}'  # the last without \n
    digest = FileDigest("users.jsonl", hashlib.sha256(content).hexdigest(), len(content))
    reader = DigestReader(io.BytesIO(content), digest, block_size=block_size)
    assert list(reader) == io.BytesIO(content).readlines()
    reader.verify()
