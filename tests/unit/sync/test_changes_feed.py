"""Reading changes feeds: what is accepted, what is refused as a whole, what is reported per row."""

from __future__ import annotations

import csv
import io
import json
import sys
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okta_sync.sync.changes_feed import ChangesFeedError, FeedRow, read_changes_feed
from okta_sync.sync.profile_rules import Normalizer

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rows(data, **kwargs):
    file = io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data)
    return list(read_changes_feed(file, **kwargs))


def issues(row: FeedRow):
    return [(issue.attribute, issue.reason) for issue in row.issues]


class NonSeekable(io.RawIOBase):
    """A pipe-like binary stream: read once, cannot seek."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


# --- accepted -----------------------------------------------------------------------------------------------

def test_csv_keyed_by_login_with_bom_and_crlf():
    feed = read_changes_feed(io.BytesIO("\ufefflogin,firstName,city\r\nann@x.com, Ann ,Zürich\r\n".encode()))
    assert (feed.format, feed.key_kind, feed.columns) == ("csv", "login", ("login", "firstName", "city"))
    row, = feed
    assert (row.line, row.key, row.values, row.issues) == (2, "ann@x.com", {"firstName": "Ann", "city": "Zürich"}, ())


def test_empty_cell_means_no_change():
    row, = rows("id,firstName,title,city\n00u1,,Eng,   \n")
    assert row.values == {"title": "Eng"}


def test_a_cell_of_only_zero_width_characters_means_no_change():
    row, = rows("id,title\n00u1,\u200b\u200b\n")
    assert row.values == {}


def test_first_column_is_the_key_and_login_can_then_be_changed():
    row, = rows("id,login,firstName\n00u1,new.login@x.com,Ann\n")
    assert (row.key_kind, row.values["login"]) == ("id", "new.login@x.com")


def test_values_are_normalised_with_the_given_rules():
    normalizer = Normalizer.from_config({"attributes": {"email": ["clean", "lowercase"]}})
    row, = rows("id,email\n00u1, Ann@X.com \n", normalizer=normalizer)
    assert row.values == {"email": "ann@x.com"}


def test_jsonl_keyed_by_id_keeps_json_types():
    row, = rows('{"id": "00u1", "firstName": "Ann", "title": null, "costCenter": "", "locale": "en_US"}\n')
    assert (row.key_kind, row.values) == ("id", {"firstName": "Ann", "locale": "en_US"})
    custom, = rows('{"login": "a@x.com", "badges": ["a", "b"], "level": 3}\n', known_attributes={"badges", "level"})
    assert custom.values == {"badges": ["a", "b"], "level": 3} and custom.key_kind == "login"


def test_jsonl_null_clears_only_when_allowed():
    row, = rows('{"id": "00u1", "title": null}\n', allow_clear=True)
    assert row.values == {"title": None} and row.ok


def test_custom_attributes_are_accepted_when_known():
    row, = rows("id,favouriteColour\n00u1,blue\n", known_attributes={"favouriteColour"})
    assert row.values == {"favouriteColour": "blue"}


def test_non_seekable_input_is_read_twice_through_a_spool():
    feed = read_changes_feed(NonSeekable(b"id,firstName\n00u1,Ann\n00u1,Bo\n00u2,Cy\n"))
    assert feed.duplicate_keys == 1
    assert [row.ok for row in feed] == [False, False, True]
    assert [row.ok for row in feed] == [False, False, True]  # iterating again works


# --- refused as a whole -------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, words", [
    ("firstName,lastName\nAnn,Lee\n", "no key column: the header needs a column named 'id' or 'login'"),
    ("id;firstName\n00u1;Ann\n", "is the file delimited by ';' rather than ','"),
    ("firstName,id,login\nAnn,00u1,a@x.com\n", "both 'id' and 'login' columns and neither is first"),
    ("id,fristName\n00u1,Ann\n", "unknown attributes in the header: ['fristName']"),
    ("login,id\na@x.com,00u1\n", "column 'id' cannot be changed in a feed keyed by login"),
    ("id,firstName,firstName\n00u1,a,b\n", "header repeats columns ['firstName']"),
    ("id,,city\n00u1,a,b\n", "header column 2 has no name"),
    ("", "the file is empty"),
    ("\n\n", "the file is empty"),
    ('id,firstName\n00u1,"Ann\n', "not valid CSV"),
    ('{"id": "00u1"}\n{"id": "00u2", \n', "line 2: not valid JSON Lines"),
    ('{"id": "00u1"}\n[1, 2]\n', "line 2: each line must be a JSON object"),
    ('{"firstName": "Ann"}\n', "no key: no object has an 'id' or a 'login' member"),
    ('{"id": "00u1", "n": NaN}\n', "NaN is not a JSON value"),
])
def test_whole_file_problems_raise_a_typed_error(data, words):
    with pytest.raises(ChangesFeedError) as caught:
        read_changes_feed(io.StringIO(data))
    assert words in str(caught.value)


def test_unknown_header_error_names_the_column():
    with pytest.raises(ChangesFeedError) as caught:
        read_changes_feed(io.StringIO("id,firstName,dept\n00u1,a,b\n"))
    assert caught.value.column == "dept" and caught.value.line == 1


def test_bad_encoding_names_line_and_byte():
    data = "id,firstName\n00u1,Ann\n00u2,".encode() + "Zoë".encode("latin-1") + b"\n"
    with pytest.raises(ChangesFeedError) as caught:
        read_changes_feed(io.BytesIO(data))
    error = caught.value
    assert (error.line, error.byte_offset) == (3, data.index(b"\xeb"))
    assert str(error) == ("changes feed: line 3: not valid UTF-8: byte 0xeb at offset 29 of the file "
                          "(invalid continuation byte); save the file as UTF-8")


def test_bad_encoding_in_a_text_stream_is_typed_too():
    text = io.TextIOWrapper(io.BytesIO(b"id,firstName\n00u1,\xff\n"), encoding="utf-8")
    with pytest.raises(ChangesFeedError, match="not valid UTF-8"):
        read_changes_feed(text)


def test_utf16_gets_a_hint():
    with pytest.raises(ChangesFeedError, match="UTF-16; save it as UTF-8"):
        read_changes_feed(io.BytesIO("id,firstName\n".encode("utf-16")))


def test_a_bad_line_late_in_the_file_refuses_the_file_before_any_row():
    data = "id,firstName\n" + "".join(f"00u{n},A\n" for n in range(50)) + '00u99,"x\n'
    with pytest.raises(ChangesFeedError):
        read_changes_feed(io.StringIO(data))


# --- reported per row ---------------------------------------------------------------------------------------

def test_duplicate_keys_report_every_row_and_apply_none():
    feed = read_changes_feed(io.StringIO("login,title\nann@x.com,A\nbo@x.com,B\nANN@x.com,C\n"))
    first, other, second = feed
    assert feed.duplicate_keys == 1
    assert not first.ok and not second.ok and other.ok
    assert issues(first) == [(None, "duplicate key: login 'ann@x.com' is on lines [2, 4]; none of them is applied")]
    assert second.issues[0].line == 4


def test_ids_are_case_sensitive_logins_are_not():
    feed = read_changes_feed(io.StringIO("id,title\n00uA,x\n00ua,y\n"))
    assert feed.duplicate_keys == 0


def test_values_okta_refuses_are_flagged_with_the_attribute():
    row, = rows("id,firstName,lastName,email,countryCode\n00u1,%s,Lee,not-an-email,USA\n" % ("A" * 51))
    assert issues(row) == [
        ("firstName", "firstName is 51 characters; Okta allows at most 50"),
        ("email", "email is not an email address"),
        ("countryCode", "countryCode must be an ISO 3166-1 alpha-2 code such as 'US'"),
    ]


def test_length_is_judged_after_normalisation():
    row, = rows("id,firstName\n00u1,%s\n" % ("   " + "A" * 50 + "\u200b  "))
    assert row.ok and row.values == {"firstName": "A" * 50}


def test_rows_without_key_or_with_wrong_cell_count_are_reported():
    no_key, short = rows("id,firstName,title\n,Ann,\n00u2,Bo\n")
    assert issues(no_key) == [(None, "no id in this row")] and no_key.key is None
    assert issues(short) == [(None, "row has 2 cells; the header has 3")] and short.key == "00u2"


def test_jsonl_row_issues():
    lines = "\n".join([
        '{"id": "00u1", "nickname": "A"}',
        '{"id": "00u2", "firstName": "A", "firstName": "B"}',
        '{"id": 3, "firstName": "A"}',
        '{"login": "x@y.z", "firstName": "A"}',
        '{"id": "00u5", "firstName": {"given": "A"}}',
        '{"id": "00u6", "lastName": null}',
    ]) + "\n"
    unknown, repeated, numeric, wrong_kind, nested, cleared = rows(lines, allow_clear=True)
    assert issues(unknown) == [("nickname", "unknown attribute 'nickname'")]
    assert issues(repeated) == [("firstName", "firstName appears more than once in the object")]
    assert issues(numeric) == [("id", "id must be a string")]
    assert issues(wrong_kind) == [(None, "no id in this object")]  # the feed is keyed by id: its first object
    assert issues(nested) == [("firstName", "firstName: an object is not a profile value")]
    assert issues(cleared) == [("lastName", "lastName is required and cannot be cleared")]


def test_reading_is_lazy_after_validation():
    feed = read_changes_feed(io.StringIO("id,title\n" + "".join(f"00u{n},T\n" for n in range(1000))))
    assert feed.rows == 1000
    iterator = iter(feed)
    assert next(iterator).key == "00u0"


# --- hostile feeds (issue 10): nothing read is repeated, nothing unbounded is held -------------------------------

SECRET = "AKIAhunter2SECRET"


@pytest.mark.parametrize("data", [
    f"AWS_SECRET_ACCESS_KEY={SECRET};HOME=/root\n",          # an environment dump: one column, ';' inside
    f"AWS_SECRET_ACCESS_KEY={SECRET}\tHOME=/root\n",
    f"login,AWS_SECRET_ACCESS_KEY={SECRET}\nann@x.com,1\n",  # an unknown column whose name is a secret
    f"login,k={SECRET},k={SECRET}\nann@x.com,1,2\n",        # repeated columns
    f"root:x:0:0:{SECRET}:/root:/bin/bash\n",                # /etc/passwd
])
def test_a_refused_file_is_never_quoted_in_the_error(data):
    with pytest.raises(ChangesFeedError) as caught:
        read_changes_feed(io.StringIO(data))
    assert SECRET not in str(caught.value) and "HOME" not in str(caught.value)
    assert caught.value.line == 1


def test_the_one_column_hint_names_the_separator_not_the_line():
    with pytest.raises(ChangesFeedError) as caught:
        read_changes_feed(io.StringIO(f"id;secret={SECRET}\n00u1;x\n"))
    assert "delimited by ';' rather than ','" in str(caught.value) and SECRET not in str(caught.value)


def test_unknown_members_and_refused_rows_never_carry_their_values_into_the_plan_or_report():
    lines = "\n".join([
        json.dumps({"id": "00u1", "password": "hunter2", "title": "Eng"}),          # unknown member
        json.dumps({"id": "00u2", f"pw={SECRET}": 1, "title": "Eng"}),              # a name that is not a name
        json.dumps({"id": "00u3", "firstName": SECRET * 4, "title": "Eng2"}),       # firstName over 50
    ]) + "\n"
    unknown, odd, long_name = rows(lines)
    assert issues(unknown) == [("password", "unknown attribute 'password'")]
    assert issues(odd) == [(None, "unknown attribute member 1 (not an attribute name)")]
    assert unknown.values == {"title": None} and odd.values == {"title": None}
    assert long_name.values == {"firstName": None, "title": None}

    from okta_sync.sync.change_plan import plan_changes_feed
    from okta_sync.sync.plan_file import write_plan
    from okta_sync.sync.reports import CsvReportWriter, rows_for_plan_entry

    feed = read_changes_feed(io.StringIO(lines))
    plan_text, report_text = io.StringIO(), io.StringIO()
    entries = list(plan_changes_feed(feed, lambda kind, key: None))
    write_plan(entries, plan_text)
    writer = CsvReportWriter(report_text)
    for entry in entries:
        writer.write_all(rows_for_plan_entry(entry))
    for text in (plan_text.getvalue(), report_text.getvalue()):
        assert "hunter2" not in text and SECRET not in text and "Eng" not in text
    report = list(csv.DictReader(io.StringIO(report_text.getvalue())))
    assert {(r["line"], r["attribute"]) for r in report} >= {("1", "password"), ("2", ""), ("3", "firstName")}


def test_a_csv_refused_row_keeps_its_attribute_names_not_its_values():
    row, = rows("login,firstName,department\nann@x.com," + "A" * 51 + ",Finance\n")
    assert row.values == {"firstName": None, "department": None} and not row.ok


def _peak_bytes(read) -> int:
    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_oversized_json_line_is_refused_by_line_number_without_being_held():
    huge = b'{"id": "00u2", "title": "' + b"x" * (24 * 1024 * 1024) + b'"}\n'
    data = io.BytesIO(b'{"id": "00u1", "title": "A"}\n' + huge + b'{"id": "00u3", "title": "C"}\n')
    found = {}
    peak = _peak_bytes(lambda: found.update(rows=list(read_changes_feed(data))))
    first, oversized, last = found["rows"]
    assert (first.ok, last.ok, last.values) == (True, True, {"title": "C"})
    assert (oversized.line, oversized.ok, oversized.values) == (2, False, {})
    assert oversized.issues[0].reason == "the line is longer than 1048576 bytes; the row is not read"
    assert peak < 6 * 1024 * 1024, f"{peak / 2**20:.1f} MiB held for a 24 MiB line"


def test_an_oversized_csv_line_refuses_the_file_by_line_number():
    data = io.BytesIO(b"id,title\n00u1,A\n00u2," + b"x" * (2 * 1024 * 1024) + b"\n")
    with pytest.raises(ChangesFeedError) as caught:
        read_changes_feed(data)
    assert caught.value.line == 3 and "longer than" in str(caught.value)


def test_an_oversized_line_in_a_text_stream_is_refused_too():
    data = io.StringIO('{"id": "00u1", "title": "' + "y" * 100_000 + '"}\n{"id": "00u2", "title": "B"}\n')
    first, second = read_changes_feed(data, max_line_bytes=50_000)
    assert (first.ok, second.ok) == (False, True)


def test_an_endless_pipe_is_not_copied_aside_without_bound():
    class Endless(NonSeekable):
        def readinto(self, buffer):
            buffer[:] = b"\n" * len(buffer)
            return len(buffer)

    with pytest.raises(ChangesFeedError, match="longer than 1000000 bytes"):
        read_changes_feed(io.BufferedReader(Endless(b"")), max_spool_bytes=1_000_000)


@pytest.mark.parametrize("fmt, data", [
    ("jsonl", json.dumps({"id": "00u1", "title": "t" * 20_000, "department": "D"}) + "\n"),
    ("jsonl", json.dumps({"id": "00u1", "title": ["t" * 100] * 200}) + "\n"),
    ("csv", "id,title,department\n00u1," + "t" * 20_000 + ",D\n"),
])
def test_an_oversized_value_refuses_its_row_naming_the_attribute(fmt, data):
    row, = rows(data, format=fmt, known_attributes=["title", "department"])
    assert not row.ok and issues(row) == [("title", "title: the value is longer than 16384 characters")]
    assert "t" * 100 not in json.dumps(row.values)


# --- never an untyped exception -----------------------------------------------------------------------------

_feedish = st.lists(
    st.sampled_from([b"id", b"login", b"firstName", b"title", b",", b"\n", b"\r\n", b'"', b"{", b"}", b":",
                     b'"id"', b"null", b"\xef\xbb\xbf", b"\xff", b"\x00", b"\xc3\xa9", b" ", b"A" * 60, b"\\ud800"])
    | st.binary(max_size=8),
    max_size=30,
).map(b"".join)


@FAST
@given(st.one_of(st.binary(max_size=200), _feedish), st.sampled_from([None, "csv", "jsonl"]))
def test_arbitrary_bytes_give_rows_or_a_typed_error(data, fmt):
    try:
        feed = read_changes_feed(io.BytesIO(data), format=fmt, allow_clear=True)
        for row in feed:
            assert isinstance(row, FeedRow)
            assert row.key is None or isinstance(row.key, str)
            json.dumps(row.values, default=list)
    except ChangesFeedError:
        pass


# --- bounded work: attributes per row, bytes per feed (issue 20, items 3 and 5) --------------------------------

def _calls_to_list_scans(read) -> int:
    """How many times `read()` calls list.count or list.index: each scans the whole list (n² over a header)."""
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        if event == "c_call" and getattr(arg, "__name__", "") in ("count", "index") \
                and isinstance(getattr(arg, "__self__", None), list):
            calls += 1

    sys.setprofile(profile)
    try:
        read()
    finally:
        sys.setprofile(None)
    return calls


def test_a_16000_member_object_is_refused_by_its_row_naming_the_limit_not_each_member():
    members = {"id": "00u1", **{f"custom{i}": "x" for i in range(16_000)}}
    data = json.dumps(members) + "\n" + json.dumps({"id": "00u2", "title": "B"}) + "\n"
    huge, fine = rows(data)
    assert not huge.ok and huge.values == {}
    assert [issue.reason for issue in huge.issues] == [
        "the object has 16001 members, more than max_attributes (500) and the key; the row is not read"]
    assert (fine.ok, fine.values) == (True, {"title": "B"})


def test_a_16000_column_header_refuses_the_file_naming_the_limit():
    header = "id," + ",".join(f"custom{i}" for i in range(16_000))
    with pytest.raises(ChangesFeedError) as refused:
        read_changes_feed(io.StringIO(header + "\n00u1" + "," * 16_000 + "\n"))
    assert str(refused.value) == ("changes feed: line 1: the header has 16001 columns, more than max_attributes (500) "
                                  "and the key; Okta profiles have fewer attributes")
    assert "custom1" not in str(refused.value)


def test_repeated_names_are_found_in_one_pass_over_the_header_and_the_object():
    names = [f"custom{i % 200}" for i in range(400)]  # within the cap: every name twice
    known = [f"custom{i}" for i in range(200)]
    csv_feed = "id," + ",".join(names) + "\n00u1" + ",x" * 400 + "\n"
    scans = _calls_to_list_scans(lambda: pytest.raises(ChangesFeedError, read_changes_feed, io.StringIO(csv_feed),
                                                       known_attributes=known))
    assert scans <= 2, f"{scans} list scans for a 401-column header"
    line = '{"id": "00u1", ' + ", ".join(f'"{name}": "x"' for name in names) + "}\n"
    found = {}
    scans = _calls_to_list_scans(lambda: found.update(rows=rows(line, known_attributes=known)))
    row, = found["rows"]
    assert len(row.issues) == 200 and row.issues[0].reason == "custom0 appears more than once in the object"
    assert scans <= 2, f"{scans} list scans for an object of 401 members"


class _CountingBytes(io.BytesIO):
    """A seekable file that counts the bytes handed out."""

    handed_out = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.handed_out += len(chunk)
        return chunk

    def readline(self, size=-1):
        line = super().readline(size)
        self.handed_out += len(line)
        return line


def test_an_oversized_first_csv_line_is_refused_without_reading_the_rest_of_the_file():
    data = _CountingBytes(b"id,title" + b"x" * (40 * 1024 * 1024))  # no newline: one 40 MiB line
    with pytest.raises(ChangesFeedError) as refused:
        read_changes_feed(data, max_line_bytes=1024 * 1024)
    assert refused.value.line == 1 and "longer than 1048576 bytes" in str(refused.value)
    assert data.handed_out <= 3 * 1024 * 1024, f"read {data.handed_out / 2**20:.0f} MiB of a refused file"


def test_a_file_larger_than_max_feed_bytes_on_disk_is_refused_before_any_read(tmp_path):
    sparse = tmp_path / "sparse.csv"
    with open(sparse, "wb") as file:
        file.truncate(2 * 1024 ** 3)  # 2 GiB of holes: nothing on disk, a lot to read
    with open(sparse, "rb") as file:
        with pytest.raises(ChangesFeedError) as refused:
            read_changes_feed(file)
        assert file.tell() == 0
    assert str(refused.value) == ("changes feed: the feed is larger than max_feed_bytes (1073741824 bytes); it is "
                                  "not read (split it, or raise max_feed_bytes)")


@pytest.mark.parametrize("make", [
    lambda data: io.BytesIO(data),  # no descriptor: counted as it is read
    lambda data: io.BufferedReader(NonSeekable(data)),  # a pipe: the spool stops at the cap
    lambda data: io.StringIO(data.decode()),
], ids=["bytes", "pipe", "text"])
def test_reading_stops_at_max_feed_bytes(make):
    data = b"id,title\n" + b"".join(b"00u%d,T\n" % i for i in range(5_000))
    with pytest.raises(ChangesFeedError, match=r"larger than max_feed_bytes \(20000 bytes\)"):
        read_changes_feed(make(data), max_feed_bytes=20_000)
    assert len(list(read_changes_feed(make(data), max_feed_bytes=len(data)))) == 5_000


def test_an_oversized_json_line_is_drained_only_up_to_max_feed_bytes():
    data = _CountingBytes(b'{"id": "00u1", "title": "' + b"x" * (8 * 1024 * 1024))
    with pytest.raises(ChangesFeedError, match="max_feed_bytes"):
        read_changes_feed(data, max_line_bytes=1024, max_feed_bytes=2 * 1024 * 1024)
    assert data.handed_out <= 3 * 1024 * 1024


def test_a_remote_file_that_reports_its_size_is_refused_before_any_read():
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")  # an fsspec file, as ObjectStoragePath opens s3:// or gs://
    memory.pipe("/feeds/big.csv", b"id,title\n" + b"00u1,A\n" * 5_000)
    with memory.open("/feeds/big.csv", "rb") as file:
        with pytest.raises(ChangesFeedError, match=r"larger than max_feed_bytes \(20000 bytes\)"):
            read_changes_feed(file, max_feed_bytes=20_000)
        assert file.tell() == 0
    memory.rm("/feeds/big.csv")
