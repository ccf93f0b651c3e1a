"""Files named by a trigger's conf or an Asset event are read only under allowed roots (issue 10, point 2)."""

from __future__ import annotations

import os

import pytest

from okta_sync.sync.locations import LocationError, open_local, parse_roots, resolve

SETTING = "okta_sync_feed_roots"


@pytest.fixture
def tree(tmp_path):
    feeds = tmp_path / "feeds"
    (feeds / "team").mkdir(parents=True)
    (feeds / "team" / "changes.csv").write_text("id,title\n00u1,Eng\n")
    (tmp_path / "secret.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "feeds-evil").mkdir()
    (tmp_path / "feeds-evil" / "x.csv").write_text("id\n")
    os.symlink(tmp_path / "secret.pem", feeds / "link.csv")
    os.symlink(tmp_path, feeds / "up")
    os.symlink(feeds / "team" / "changes.csv", feeds / "inside.csv")
    os.mkfifo(feeds / "fifo.csv")
    return tmp_path


def roots_for(tree, *extra):
    return parse_roots([(tree / "feeds").as_uri(), *extra], setting=SETTING)


def check(uri, roots):
    return resolve(uri, roots, what="changes_uri", setting=SETTING)


@pytest.mark.parametrize("relative", ["feeds/team/changes.csv", "feeds/inside.csv"])
def test_a_file_under_a_root_is_opened(tree, relative):
    location = check((tree / relative).as_uri(), roots_for(tree))
    with open_local(location) as file:
        assert file.read() == b"id,title\n00u1,Eng\n"


@pytest.mark.parametrize("uri", [
    "/etc/passwd", "file:///etc/passwd", "/proc/self/environ", "file:///proc/self/environ",
    "{tmp}/secret.pem", "{tmp}/feeds/../secret.pem", "file://{tmp}/feeds/%2e%2e/secret.pem",
    "{tmp}/feeds/link.csv", "{tmp}/feeds/up/secret.pem", "{tmp}/feeds-evil/x.csv", "{tmp}/feeds",
    "file://evil.example{tmp}/feeds/team/changes.csv", "feeds/team/changes.csv", "{tmp}/feeds/\x00.csv",
])
def test_anything_outside_the_roots_is_refused_without_echoing_it(tree, uri):
    uri = uri.format(tmp=tree)
    with pytest.raises(LocationError) as refused:
        location = check(uri, roots_for(tree))
        open_local(location)
    assert "secret" not in str(refused.value) and "passwd" not in str(refused.value)


def test_a_fifo_under_a_root_is_refused_not_waited_on(tree):
    with pytest.raises(LocationError, match="not a regular file"):
        open_local(check((tree / "feeds" / "fifo.csv").as_uri(), roots_for(tree)))


def test_a_file_swapped_for_a_symlink_after_the_check_is_not_followed(tree):
    target = tree / "feeds" / "team" / "changes.csv"
    location = check(target.as_uri(), roots_for(tree))
    target.unlink()
    os.symlink(tree / "secret.pem", target)
    with pytest.raises(LocationError, match="symlink"):
        open_local(location)


def test_a_folder_swapped_for_a_symlink_after_the_check_is_not_followed(tree):
    location = check((tree / "feeds" / "team" / "changes.csv").as_uri(), roots_for(tree))
    os.rename(tree / "feeds" / "team", tree / "feeds" / "team-old")
    (tree / "elsewhere").mkdir()
    (tree / "elsewhere" / "changes.csv").write_text("stolen")
    os.symlink(tree / "elsewhere", tree / "feeds" / "team")
    with pytest.raises(LocationError, match="symlink"):
        open_local(location)


@pytest.mark.parametrize("uri, allowed", [
    ("s3://bucket/feeds/changes.csv", True),
    ("s3://bucket/feeds/team/changes.csv", True),
    ("S3://bucket/feeds/changes.csv", True),
    ("s3://bucket/feeds-evil/changes.csv", False),
    ("s3://bucket/feeds", False),
    ("s3://bucket/feeds/", False),
    ("s3://other/feeds/changes.csv", False),
    ("s3://bucket/feeds/../secrets/key", False),
    ("s3://bucket/feeds/%2E%2E/secrets/key", False),
    ("s3://bucket/feeds/a%2F..%2F..%2Fkey", False),
    ("s3://bucket/feeds//changes.csv", False),
    ("s3://bucket/feeds/a\\..\\key", False),
    ("s3://me:pw@bucket/feeds/changes.csv", False),
    ("s3://bucket/feeds/changes.csv?versionId=1", False),
    ("gs://bucket/feeds/changes.csv", False),
])
def test_remote_feeds_are_compared_as_normalised_prefixes_with_a_trailing_slash(tree, uri, allowed):
    roots = roots_for(tree, "s3://bucket/feeds")
    if allowed:
        assert check(uri, roots).local is None
    else:
        with pytest.raises(LocationError):
            check(uri, roots)


@pytest.mark.parametrize("value", ["", "not json", "[]", '"s3://b/"', "[1]", '["relative/feeds"]', '["s3://b/../x"]',
                                   '["s3://"]'])
def test_bad_roots_are_refused_naming_the_setting(value):
    with pytest.raises(LocationError, match=SETTING):
        parse_roots(value, setting=SETTING)


@pytest.mark.parametrize("uri, allowed", [
    ("s3://aws_default@bucket/runs/okta_user_sync/r-1/users.jsonl.gz", True),   # issue 22: Airflow's conn_id@ form
    ("s3://aws_default@bucket/plain/changes.csv", False),     # the other root names no connection
    ("s3://bucket/plain/changes.csv", True),
    ("s3://bucket/runs/x.csv", False),                        # the default connection, not the root's
    ("s3://other_conn@bucket/runs/x.csv", False),             # another connection
    ("s3://aws_default@other/runs/x.csv", False),             # another bucket
    ("s3://aws_default@bucket/runs-evil/x.csv", False),
    ("s3://aws_default@bucket/runs/../secrets/key", False),
    ("s3://aws_default@bucket/runs/%2e%2e/secrets/key", False),
    ("s3://aws_default:secret@bucket/runs/x.csv", False),     # a password is never part of a location
    ("s3://aws%5Fdefault@bucket/runs/x.csv", False),          # an encoded connection id
    ("s3://aws_default@@bucket/runs/x.csv", False),
    ("s3://a@aws_default@bucket/runs/x.csv", False),
    ("s3://@bucket/runs/x.csv", False),
    ("s3://aws_default@/runs/x.csv", False),
    ("gs://aws_default@bucket/runs/x.csv", False),
])
def test_a_root_in_airflows_conn_id_form_admits_only_locations_naming_the_same_connection(uri, allowed):
    roots = parse_roots(["s3://aws_default@bucket/runs/", "s3://bucket/plain"], setting=SETTING)
    assert [root.conn_id for root in roots] == ["aws_default", None]
    if allowed:
        assert check(uri, roots).local is None
    else:
        with pytest.raises(LocationError) as refused:
            check(uri, roots)
        assert "secret" not in str(refused.value)


@pytest.mark.parametrize("value", ['["s3://me:pw@bucket/feeds/"]', '["s3://@bucket/feeds/"]',
                                   '["s3://conn@/feeds/"]', '["s3://con%2Fn@bucket/feeds/"]'])
def test_a_root_with_a_password_or_a_malformed_connection_id_is_refused_without_echoing_it(value):
    with pytest.raises(LocationError, match=SETTING) as refused:
        parse_roots(value, setting=SETTING)
    assert "pw" not in str(refused.value)


def test_a_hard_link_inside_a_root_to_a_file_outside_it_is_not_read(tree):
    """Issue 20 item 9: a hard link is the same file under two names; its real path lies inside the root."""
    os.link(tree / "secret.pem", tree / "feeds" / "team" / "hard.csv")
    location = check((tree / "feeds" / "team" / "hard.csv").as_uri(), roots_for(tree))
    with pytest.raises(LocationError, match="hard link") as refused:
        open_local(location)
    assert "secret" not in str(refused.value) and "BEGIN" not in str(refused.value)
    with open_local(check((tree / "feeds" / "team" / "changes.csv").as_uri(), roots_for(tree))) as file:
        assert file.read().startswith(b"id,title")  # a file with one link still reads
