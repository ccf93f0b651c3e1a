"""A hostile or broken server (issue 10, points 1, 3, 8 and 9) against the client, over real loopback sockets.

Each test names the input a server or a setting sent and asserts what a user would notice: nothing reaches another
host, nothing waits for days or reads forever, nothing unbounded is held, and no error repeats a token or a body.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import itertools
import json
import logging
import os
import pickle
import threading
import time

import pytest

from okta_sync import AccessToken, ConfigurationError, OktaClient, OktaConfig, TokenRequestError, UnsafeUrlError
from okta_sync.airflow.connection_fields import config_from_connection
from okta_sync.errors import (
    MissingScopeError,
    OktaSyncError,
    RateLimitError,
    RequestDeadlineError,
    ResponseLimitError,
)
from okta_sync.http.links import next_page_url
from tests.fake_clock import FakeClock
from tests.scripted_server import Reply, ScriptedServer, token_reply

TOKEN = "/oauth2/v1/token"
USERS = "/api/v1/users"
DAYS_30 = 30 * 24 * 3600


class _Slept(Exception):
    """A test's sleep was called: the client decided to wait (for days, on today's main)."""


def make_client(server, rsa_pem, **overrides) -> OktaClient:
    settings = dict(org_url=server.url, client_id="0oaclient", private_key=rsa_pem, key_id="kid-1",
                    max_attempts=2, max_retry_time=30, read_timeout=5)
    settings.update(overrides)
    return OktaClient(OktaConfig(**settings), clock=FakeClock())  # retries are counted, not waited


def user(i: int) -> dict:
    return {"id": f"00u{i:017d}", "status": "ACTIVE", "profile": {"login": f"u{i}@example.com", "title": "SECRET-BODY"}}


def error_chain(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


# -- 1. the token never goes to another host ---------------------------------------------------------------------
@pytest.mark.parametrize("shape", [
    "{b}\\@{a}",          # urlsplit reads host a, urllib3 connects to b
    "{b}/\\@{a}",
    "{b}@{a}",            # userinfo
    "user:pw@{a}",
])
def test_a_next_link_that_parsers_read_differently_sends_nothing_to_the_other_port(server, rsa_pem, shape):
    with ScriptedServer() as other:
        other.route("GET", USERS, Reply(200, []))
        a, b = server.url.removeprefix("http://"), other.url.removeprefix("http://")
        link = f"http://{shape.format(a=a, b=b)}{USERS}?after=00u2"
        server.route("GET", USERS, Reply(200, [user(1)], headers={"Link": f'<{link}>; rel="next"'}))
        with pytest.raises(UnsafeUrlError) as refused:
            list(make_client(server, rsa_pem).iter_users())
        assert other.requests == []  # port B received nothing, so no Authorization header either
        assert len(server.requests_to("GET", USERS)) == 1
        assert b not in str(refused.value)  # the error does not repeat the link


@pytest.mark.parametrize("link", [
    "https://attacker.example\\@acme.okta.com/api/v1/users?after=1",
    "https://attacker.example/\\@acme.okta.com/api/v1/users?after=1",
    "https://user:pw@acme.okta.com/api/v1/users?after=1",
    "https://acme.okta.com@attacker.example/api/v1/users?after=1",
    "//attacker.example/api/v1/users?after=1",
    "https://acme.okta.com/api/v1/users?after=1 ",
    "https://acme.okta.com/api/v1/users?after=\u00e9",
    "https://acme.okta.com/api/v1/users/00u1/lifecycle/deactivate?after=1",
    "https://acme.okta.com/api/v1/users?after=1#frag",
    "https://acme.okta.com:8443/api/v1/users?after=1",
    "http://acme.okta.com/api/v1/users?after=1",
])
def test_only_the_orgs_own_listing_is_a_next_page(link):
    with pytest.raises(UnsafeUrlError):
        next_page_url(link, org_url="https://acme.okta.com", path=USERS)


def test_the_next_url_is_rebuilt_from_the_org_url_keeping_only_the_cursor():
    org = "https://acme.okta.com"
    assert next_page_url("https://ACME.okta.com:443/api/v1/users?after=00u9&limit=200", org_url=org, path=USERS) == \
        "https://acme.okta.com/api/v1/users?after=00u9&limit=200"
    assert next_page_url("/api/v1/users?after=00u9", org_url=org, path=USERS) == org + USERS + "?after=00u9"


# -- 3. a hostile server cannot stall or exhaust a task ---------------------------------------------------------
def test_a_rate_limit_reset_30_days_ahead_is_an_error_naming_the_bucket_not_a_30_day_sleep(server, rsa_pem):
    reset = int(time.time()) + DAYS_30
    server.route("GET", USERS, Reply(200, [user(1)], headers={
        "X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(reset)}))
    client = make_client(server, rsa_pem)
    slept = client.clock.slept
    client.clock.on_sleep = lambda seconds: (_ for _ in ()).throw(_Slept())
    list(client.iter_users())
    with pytest.raises(RateLimitError) as raised:
        list(client.iter_users())
    assert "users_list" in str(raised.value) and "max_rate_limit_wait" in str(raised.value)
    assert slept == [] and len(server.requests_to("GET", USERS)) == 1


def test_a_429_with_a_reset_30_days_ahead_is_not_retried_after_30_days(server, rsa_pem):
    server.route("GET", f"{USERS}/00u1", Reply(429, {"errorCode": "E0000047", "errorSummary": "rate limit"}, headers={
        "X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(time.time()) + DAYS_30)}))
    client = make_client(server, rsa_pem, max_attempts=3)
    waits = client.clock.slept
    client.clock.on_sleep = lambda seconds: (_ for _ in ()).throw(_Slept())
    with pytest.raises(RateLimitError) as raised:
        client.get_user("00u1")
    assert "user_read" in str(raised.value) and raised.value.error_code == "E0000047"
    assert waits == [] and len(server.requests_to("GET", f"{USERS}/00u1")) == 1


def test_a_body_trickled_a_byte_at_a_time_hits_the_request_deadline(server, rsa_pem):
    # Each byte arrives well within read_timeout, so only a deadline on the whole request stops it.
    server.route("GET", f"{USERS}/00u1", Reply(200, json.dumps(user(1)).encode()[:60], trickle=0.2))
    client = make_client(server, rsa_pem, max_attempts=1, read_timeout=5, request_deadline=1.0)
    with pytest.raises(RequestDeadlineError, match="request_deadline"):
        client.get_user("00u1")


def _endless_users() -> bytes:
    yield b"["
    for i in itertools.count():
        yield (b"," if i else b"") + json.dumps(user(i)).encode() * 1
        if i > 400_000:  # ~80 MB: a bounded client stops long before
            break
    yield b"]"


def test_an_80_mb_page_is_refused_at_the_size_cap_without_reading_it_all(server, rsa_pem):
    sent = []

    def stream():
        for chunk in _endless_users():
            sent.append(len(chunk))
            yield chunk

    server.route("GET", USERS, Reply(200, stream=stream))
    client = make_client(server, rsa_pem, max_attempts=1, max_response_bytes=1024 * 1024)
    with pytest.raises(ResponseLimitError) as raised:
        list(client.iter_users())
    assert raised.value.setting == "max_response_bytes"
    assert "SECRET-BODY" not in str(raised.value) and "u1@example.com" not in str(raised.value)
    time.sleep(0.2)
    assert sum(sent) < 20 * 1024 * 1024  # the server could not push 80 MB: the client hung up


def test_a_declared_content_length_above_the_cap_is_refused_before_reading(server, rsa_pem):
    server.route("GET", f"{USERS}/00u1", Reply(200, b"x" * (200 * 1024)))
    client = make_client(server, rsa_pem, max_response_bytes=64 * 1024)
    with pytest.raises(ResponseLimitError, match="max_response_bytes"):
        client.get_user("00u1")


def test_a_gzip_bomb_is_stopped_as_it_inflates(server, rsa_pem):
    bomb = gzip.compress(b"[" + b" " * (50 * 1024 * 1024) + b"]")  # 50 KB on the wire, 50 MB inflated
    server.route("GET", USERS, Reply(200, bomb, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(ResponseLimitError, match="max_response_bytes"):
        list(make_client(server, rsa_pem, max_attempts=1).iter_users())


def test_more_users_than_the_limit_asked_for_is_an_error_naming_limit(server, rsa_pem):
    server.route("GET", USERS, Reply(200, [user(i) for i in range(3)]))
    with pytest.raises(ResponseLimitError) as raised:
        list(make_client(server, rsa_pem).iter_users(limit=2))
    assert raised.value.setting == "limit" and "limit=2" in str(raised.value)
    assert "SECRET-BODY" not in str(raised.value)


def test_an_endless_chain_of_fresh_cursors_stops_at_the_page_cap(server, rsa_pem):
    def listing(request):
        after = int(request.query.get("after", ["0"])[0])
        return Reply(200, [user(after)], headers={"Link": f'<{server.url}{USERS}?after={after + 1}>; rel="next"'})

    server.route("GET", USERS, listing)
    client = make_client(server, rsa_pem, max_pages=5)
    seen = []
    with pytest.raises(ResponseLimitError, match="max_pages") as raised:
        for page in client.iter_user_pages():
            seen.append(page)
    assert raised.value.setting == "max_pages"
    assert len(seen) == 5 and len(server.requests_to("GET", USERS)) == 5


def test_a_cursor_that_comes_back_stops_paging(server, rsa_pem):
    cycle = {None: "a", "a": "b", "b": "a"}

    def listing(request):
        after = request.query.get("after", [None])[0]
        return Reply(200, [user(1)], headers={"Link": f'<{server.url}{USERS}?after={cycle[after]}>; rel="next"'})

    server.route("GET", USERS, listing)
    with pytest.raises(ResponseLimitError, match="already followed"):
        list(make_client(server, rsa_pem).iter_users())
    assert len(server.requests_to("GET", USERS)) == 3


# -- 8. token responses are untrusted input ---------------------------------------------------------------------
@pytest.mark.parametrize("expires_in", [float("inf"), float("nan"), -60, 0, "soon", True])
def test_an_expires_in_that_is_not_a_positive_finite_number_is_refused(server, rsa_pem, expires_in):
    body = {"token_type": "Bearer", "expires_in": expires_in, "access_token": "tok-1", "scope": "okta.users.read"}
    server.route("POST", TOKEN, Reply(200, json.dumps(body)))
    with pytest.raises(TokenRequestError, match="expires_in") as raised:
        make_client(server, rsa_pem).get_token()
    assert "tok-1" not in str(raised.value)


def test_an_expires_in_of_1e12_is_clamped_to_an_hour(server, rsa_pem):
    server.route("POST", TOKEN, token_reply(expires_in=10**12))
    before = time.time()
    token = make_client(server, rsa_pem).get_token()
    assert token.expires_at <= time.time() + 3600 and token.expires_at >= before + 3599


def test_a_short_lived_token_is_not_minted_again_on_every_call(server, rsa_pem):
    server.route("POST", TOKEN, token_reply("short", expires_in=120))  # shorter than the 300 s refresh margin
    server.route("GET", f"{USERS}/00u1", Reply(200, user(1)))
    client = make_client(server, rsa_pem)
    for _ in range(3):
        client.get_user("00u1")
    assert len(server.requests_to("POST", TOKEN)) == 1


@pytest.mark.parametrize("value", ["SECRETTOKEN\r\nX-Injected: 1", "SECRETTOKEN\n", "SECRET TOKEN", "SECRETT\u00f6KEN",
                                   "SECRETTOKEN\x00"])
def test_a_token_that_could_split_a_header_is_refused_without_repeating_it(server, rsa_pem, value):
    server.route("POST", TOKEN, token_reply(value))
    server.route("GET", f"{USERS}/00u1", Reply(200, user(1)))
    with pytest.raises(TokenRequestError) as raised:
        make_client(server, rsa_pem).get_user("00u1")
    assert all("SECRET" not in str(e) and "SECRET" not in repr(e) for e in error_chain(raised.value))
    assert server.requests_to("GET", f"{USERS}/00u1") == []


def test_no_exception_carries_the_authorization_value(server, rsa_pem):
    # A token adopted from elsewhere (not from our token endpoint) with a CR/LF: requests' InvalidHeader would quote it.
    server.route("GET", f"{USERS}/00u1", Reply(200, user(1)))
    client = make_client(server, rsa_pem)
    client.tokens.put(AccessToken("SECRETTOKEN\r\nX-Injected: 1", "Bearer", time.time() + 3600, ("okta.users.read",)))
    with pytest.raises(OktaSyncError) as raised:
        client.get_user("00u1")
    assert all("SECRET" not in str(e) and "SECRET" not in repr(e) for e in error_chain(raised.value))
    assert server.requests_to("GET", f"{USERS}/00u1") == []


# -- 9. a missing scope is named --------------------------------------------------------------------------------
def test_an_operation_outside_the_connections_scopes_fails_before_any_request_naming_scope_and_fix(server, rsa_pem):
    server.route("POST", f"{USERS}/00u1", Reply(200, user(1)))
    client = make_client(server, rsa_pem, scopes="okta.users.read")
    with pytest.raises(MissingScopeError) as raised:
        client.update_profile("00u1", {"title": "x"})
    message = str(raised.value)
    assert raised.value.field == "scopes" and raised.value.scope == "okta.users.manage"
    assert "update_profile" in message and "Okta API Scopes" in message and "`scopes`" in message
    assert server.requests == []  # not even a token request


def test_a_push_without_the_manage_scope_stops_at_the_first_user_and_sends_nothing(server, rsa_pem):
    from okta_sync.sync.profile_diff import ProfileChange
    from okta_sync.sync.push import PushOptions, push_changes
    from okta_sync.sync.reports import ReportStatus

    rows = []
    changes = [ProfileChange(f"00u{n}", f"u{n}@example.com", "ACTIVE", {"title": ("Old", "New")}) for n in (1, 2, 3)]
    with make_client(server, rsa_pem, scopes="okta.users.read") as client:
        with pytest.raises(MissingScopeError) as raised:
            push_changes(client, changes, type("Report", (), {"write": staticmethod(rows.append)})(),
                         PushOptions(max_concurrency=1, reread=False))
    assert isinstance(raised.value, ConfigurationError) and raised.value.scope == "okta.users.manage"
    assert ReportStatus.FAILED not in {row.status for row in rows}  # a setting to fix, not three failed users
    assert server.requests == []


def test_invalid_scope_from_okta_names_the_scopes_requested(server, rsa_pem):
    server.route("POST", TOKEN, Reply(400, {"error": "invalid_scope",
                                            "error_description": "The authorization server resource does not have any configured default scopes, 'scope' must be provided."}))
    with pytest.raises(TokenRequestError) as raised:
        make_client(server, rsa_pem, scopes="okta.users.read").get_token()
    assert "scopes requested: okta.users.read" in str(raised.value)


# -- 10. smaller holes ------------------------------------------------------------------------------------------
def _token() -> AccessToken:
    return AccessToken("SECRETTOKEN", "Bearer", time.time() + 3600, ("okta.users.read",))


def test_an_access_token_refuses_pickle_json_and_dataclass_serialisation():
    token = _token()
    for attempt in (lambda: pickle.dumps(token), lambda: json.dumps(token), lambda: dataclasses.asdict(token),
                    lambda: vars(token)):
        with pytest.raises(TypeError) as raised:
            attempt()
        assert "SECRET" not in str(raised.value)
    assert "SECRET" not in json.dumps({"t": token}, default=str) and "SECRET" not in repr(token)
    assert copy.deepcopy(token) is token and copy.copy(token) is token  # immutable: copying is safe and cheap
    with pytest.raises(AttributeError):
        token.value = "other"


def test_an_access_token_refuses_airflow_serde_so_a_task_cannot_put_it_in_xcom():
    serde = pytest.importorskip("airflow.sdk.serde")
    with pytest.raises(TypeError, match="never serialised") as raised:
        serde.serialize({"token": _token()})  # what XCom does with a @task's return value
    assert "SECRET" not in str(raised.value)


@pytest.mark.parametrize("host", ["https://admin:hunter2@acme.okta.com", "https://hunter2@acme.okta.com",
                                  "https://acme.okta.com\\@evil.example"])
def test_an_org_url_with_userinfo_is_refused_without_repeating_it(host):
    with pytest.raises(ConfigurationError) as raised:
        config_from_connection(host=host, login="0oa1", password="pem")
    assert raised.value.field == "org_url" and "hunter2" not in str(raised.value)


def test_a_token_url_on_another_host_is_refused():
    with pytest.raises(ConfigurationError) as raised:
        OktaConfig(org_url="https://acme.okta.com", client_id="c", private_key="k",
                   token_url="https://collector.example/oauth2/v1/token")
    assert raised.value.field == "token_url"


@pytest.mark.parametrize("scopes", ["okta.*", "okta.users.*", "okta.users.read *", "okta.users.read,'x'", "okta.users.read\u200b"])
def test_scopes_that_are_not_plain_scope_names_are_refused(scopes):
    with pytest.raises(ConfigurationError) as raised:
        OktaConfig(org_url="https://acme.okta.com", client_id="c", private_key="k", scopes=scopes)
    assert raised.value.field == "scopes"


# -- issue 20, item 7: server text never forges a log line -------------------------------------------------------
_FORGING = "\n2026-12-07 INFO okta_sync FORGED \x1b[31mred\x1b[0m \u202eevil\r"


def _assert_one_line_each(texts) -> None:
    for text in texts:
        first, _, hint = text.partition("\nHint: ")  # our own hint is the message's second line
        for line in (first, hint):
            assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u202e" not in line, repr(text)
        assert "FORGED" not in hint


def test_okta_error_fields_with_newlines_and_ansi_escapes_stay_on_one_escaped_line(server, rsa_pem, caplog):
    server.route("GET", f"{USERS}/00u1", Reply(403, {
        "errorCode": "E0000006" + _FORGING, "errorSummary": "You do not have permission" + _FORGING,
        "errorId": "oae1" + _FORGING, "errorCauses": [{"errorSummary": "cause" + _FORGING}] * 50,
    }, headers={"X-Okta-Request-Id": "req-9\x1b[2K\x1b[1Gforged"}))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(OktaSyncError) as raised:
            make_client(server, rsa_pem).get_user("00u1")
    error = raised.value
    _assert_one_line_each([str(error), *(record.getMessage() for record in caplog.records)])
    assert "You do not have permission\\n2026-12-07 INFO okta_sync FORGED \\x1b[31mred" in str(error)
    assert error.error_summary.endswith("\\u202eevil\\r") and error.request_id == "req-9\\x1b[2K\\x1b[1Gforged"
    assert len(error.error_causes) == 21 and error.error_causes[-1] == "... and 30 more"
    assert any("Okta API failure" in record.getMessage() and "FORGED" in record.getMessage()
               for record in caplog.records)


def test_token_endpoint_error_fields_and_a_link_parse_error_are_escaped_too(server, rsa_pem, caplog):
    server.route("POST", TOKEN, Reply(400, {"error": "invalid_client" + _FORGING,
                                            "error_description": "bad assertion" + _FORGING * 2000}))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(TokenRequestError) as raised:
            make_client(server, rsa_pem).get_user("00u1")
    assert len(raised.value.error_description) < 1100  # a 140 KB description is cut
    server.route("POST", TOKEN, token_reply())
    server.route("GET", USERS, Reply(200, [user(1)], headers={"Link": "<bad>; rel=\x1b[31m\"next\" FORGED"}))
    with pytest.raises(OktaSyncError) as link_error:
        list(make_client(server, rsa_pem).iter_users())
    _assert_one_line_each([str(raised.value), str(link_error.value), *(r.getMessage() for r in caplog.records)])
    assert "\x1b" not in repr(link_error.value).encode().decode("unicode_escape")


# -- issue 20, item 6: request_deadline holds while the status line and headers trickle in -----------------------
def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _deadline_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "okta-sync-request-deadline"]


def _eventually(condition, seconds: float = 15.0) -> bool:
    ends = time.monotonic() + seconds
    while not condition() and time.monotonic() < ends:
        time.sleep(0.05)
    return condition()


def test_a_status_line_and_headers_trickled_a_byte_at_a_time_hit_the_request_deadline(rsa_pem):
    # 400 bytes of head, one every 0.1 s (each read well inside read_timeout): 40 s on main, ~2 s now.
    padding = {f"X-Pad-{i}": "p" * 20 for i in range(12)}
    descriptors = _open_descriptors()
    with ScriptedServer() as server:
        server.route("POST", TOKEN, token_reply())
        server.route("GET", f"{USERS}/00u1", Reply(200, user(1), headers=padding, trickle_head=0.1))
        with make_client(server, rsa_pem, max_attempts=1, read_timeout=1, request_deadline=2) as client:
            client.get_token()
            started = time.monotonic()
            with pytest.raises(RequestDeadlineError, match=r"request_deadline \(2 s\)"):
                client.get_user("00u1")
            elapsed = time.monotonic() - started
    assert elapsed < 10, f"the call took {elapsed:.1f} s with request_deadline=2"
    assert _eventually(lambda: not _deadline_threads()), "the watchdog thread outlived its work"
    assert _eventually(lambda: _open_descriptors() <= descriptors), "a socket was left open"


def test_a_prompt_server_is_not_cut_and_the_connection_is_kept_alive(server, rsa_pem):
    server.route("GET", f"{USERS}/00u1", Reply(200, user(1)))
    with make_client(server, rsa_pem, request_deadline=0.5) as client:
        for _ in range(3):
            assert client.get_user("00u1")["id"] == user(1)["id"]
        time.sleep(1.0)  # past the deadline of every earlier request: nothing fires on a pooled connection
        assert client.get_user("00u1")["id"] == user(1)["id"]


def test_a_forked_child_gets_its_own_watchdog(rsa_pem):
    import multiprocessing

    with ScriptedServer() as server:
        server.route("POST", TOKEN, token_reply())
        padding = {f"X-Pad-{i}": "p" * 20 for i in range(12)}  # a 40 s head
        server.route("GET", f"{USERS}/00u1", Reply(200, user(1), headers=padding, trickle_head=0.1))
        with make_client(server, rsa_pem, max_attempts=1, read_timeout=1, request_deadline=1) as client:
            with pytest.raises(RequestDeadlineError):  # the parent's watchdog thread is running when it forks
                client.get_user("00u1")
            child = multiprocessing.get_context("fork").Process(target=_trickled_call_in_child,
                                                                 args=(server.url, rsa_pem))
            child.start()
            child.join(timeout=30)
            exit_code = child.exitcode
            if child.is_alive():
                child.kill()
    assert exit_code == 0, "the forked child's request was not cut at its deadline"


def _trickled_call_in_child(url: str, rsa_pem: str) -> None:
    config = OktaConfig(org_url=url, client_id="0oaclient", private_key=rsa_pem, key_id="kid-1", max_attempts=1,
                        read_timeout=1, request_deadline=1)
    started = time.monotonic()
    try:
        OktaClient(config).get_user("00u1")
    except RequestDeadlineError:
        os._exit(0 if time.monotonic() - started < 10 else 2)
    os._exit(3)
