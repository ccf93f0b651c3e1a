"""The client against a real HTTP server on loopback whose answers each test scripts."""

from __future__ import annotations

import threading
import time
from email.utils import formatdate

import jwt
import pytest

from okta_sync import (
    OktaApiError,
    OktaClient,
    OktaConfig,
    OktaConnectionError,
    RateLimitError,
    TokenRequestError,
    UnsafeUrlError,
)
from okta_sync.errors import LinkHeaderError
from tests import keys
from tests.fake_clock import FakeClock
from tests.scripted_server import Reply, ScriptedServer, token_reply

TOKEN = "/oauth2/v1/token"
USERS = "/api/v1/users"


def make_client(server, rsa_pem, **overrides) -> OktaClient:
    settings = dict(org_url=server.url, client_id="0oaclient", private_key=rsa_pem, key_id="kid-1",
                    max_attempts=4, max_retry_time=30, read_timeout=5)
    settings.update(overrides)
    return OktaClient(OktaConfig(**settings), clock=FakeClock())  # retries are counted, not waited, in unit tests


def user(i: int) -> dict:
    return {"id": f"00u{i:017d}", "status": "ACTIVE", "profile": {"login": f"u{i}@example.com"}}


def test_token_request_is_a_client_credentials_form_with_a_verifiable_assertion(server, rsa_pem):
    server.route("GET", USERS, Reply(200, [user(1)]))
    client = make_client(server, rsa_pem, scopes="okta.users.read okta.users.manage")
    assert [u["id"] for u in client.iter_users()] == [user(1)["id"]]
    (token_request,) = server.requests_to("POST", TOKEN)
    form = token_request.form()
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "okta.users.read"  # least privilege: listing asks only for the read scope
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    public_key = keys.rsa_key().public_key()
    claims = jwt.decode(form["client_assertion"], public_key, algorithms=["RS256"], audience=server.url + TOKEN)
    assert claims["iss"] == claims["sub"] == "0oaclient"
    assert jwt.get_unverified_header(form["client_assertion"])["kid"] == "kid-1"
    (listing,) = server.requests_to("GET", USERS)
    assert listing.headers["Authorization"] == "Bearer tok-1"
    assert listing.query["limit"] == ["200"]
    assert listing.headers["User-Agent"].startswith("okta-sync-airflow/")


def test_paging_follows_next_links_and_one_token_serves_all_pages(server, rsa_pem):
    pages = {None: ([user(1), user(2)], "a1"), "a1": ([user(3)], "a2"), "a2": ([user(4)], None)}

    def listing(request):
        after = request.query.get("after", [None])[0]
        items, next_cursor = pages[after]
        links = [f'<{server.url}{USERS}?limit=2>; rel="self"']
        if next_cursor:
            links.append(f'<{server.url}{USERS}?after={next_cursor}&limit=2>; rel="next"')
        return Reply(200, items, headers={"Link": links})

    server.route("GET", USERS, listing)
    client = make_client(server, rsa_pem)
    pages_seen = list(client.iter_user_pages(limit=2))
    assert [len(p) for p in pages_seen] == [2, 1, 1]
    assert len(server.requests_to("POST", TOKEN)) == 1


def test_next_link_to_another_host_is_refused_and_gets_no_token(server, rsa_pem):
    with ScriptedServer() as elsewhere:
        elsewhere.route("GET", USERS, Reply(200, []))
        server.route("GET", USERS, Reply(200, [user(1)], headers={"Link": f'<{elsewhere.url}{USERS}?after=x>; rel="next"'}))
        client = make_client(server, rsa_pem)
        with pytest.raises(UnsafeUrlError, match="refusing"):
            list(client.iter_users())
        assert elsewhere.requests == []


def test_unparseable_link_header_raises_instead_of_ending_early(server, rsa_pem):
    server.route("GET", USERS, Reply(200, [user(1)], headers={"Link": "after=000u; next"}))
    with pytest.raises(LinkHeaderError):
        list(make_client(server, rsa_pem).iter_users())


def test_get_user_encodes_logins(server, rsa_pem):
    login = "ada+love lace@example.com"
    server.route("GET", f"{USERS}/ada%2Blove%20lace%40example.com", Reply(200, user(7)))
    client = make_client(server, rsa_pem)
    assert client.get_user(login)["id"] == user(7)["id"]
    with pytest.raises(ValueError, match="find_user"):  # Okta fetches a login holding '/' only by id
        client.get_user("ada/lovelace@example.com")
    assert [r.path for r in server.requests if r.path.startswith(USERS)] == [f"{USERS}/ada%2Blove%20lace%40example.com"]


def test_update_profile_is_a_partial_post_with_the_manage_scope(server, rsa_pem):
    server.route("POST", f"{USERS}/00u1", Reply(200, user(1)))
    client = make_client(server, rsa_pem)
    client.update_profile("00u1", {"firstName": "Ada"})
    (update,) = server.requests_to("POST", f"{USERS}/00u1")
    assert update.json() == {"profile": {"firstName": "Ada"}}
    assert update.headers["Content-Type"] == "application/json"
    assert server.requests_to("POST", TOKEN)[0].form()["scope"] == "okta.users.manage"


@pytest.mark.parametrize(
    "status, headers, body, hint_fragment, code",
    [
        (403, {"WWW-Authenticate": 'Bearer authorization_uri="x", realm="IdpRealm", scope="okta.users.read", '
                                   'error="insufficient_scope", error_description="The access token provided does not '
                                   'contain the required scopes."'},
         {"errorCode": "E0000006", "errorSummary": "You do not have permission to perform the requested action"},
         "does not carry okta.users.read", "E0000006"),
        (403, {}, {"errorCode": "E0000006", "errorSummary": "You do not have permission to perform the requested action",
                   "errorId": "oae1"}, "admin role", "E0000006"),
        (404, {}, {"errorCode": "E0000007", "errorSummary": "Not found: Resource not found: 00u1 (User)"}, "No such user", "E0000007"),
        (400, {}, {"errorCode": "E0000003", "errorSummary": "The request body was not well-formed."}, '{"profile"', "E0000003"),
    ],
    ids=["missing-scope", "no-admin-role", "not-found", "bad-body"],
)
def test_api_errors_carry_okta_fields_and_a_hint(server, rsa_pem, status, headers, body, hint_fragment, code):
    server.route("GET", f"{USERS}/00u1", Reply(status, {**body, "errorLink": code, "errorCauses": []},
                                             headers={"X-Okta-Request-Id": "req-42", **headers}))
    with pytest.raises(OktaApiError) as raised:
        make_client(server, rsa_pem).get_user("00u1")
    error = raised.value
    assert (error.status, error.error_code, error.request_id, error.method, error.path) == (
        status, code, "req-42", "GET", f"{USERS}/00u1")
    assert hint_fragment in error.hint
    assert "tok-1" not in str(error) and "Bearer" not in str(error)
    assert len(server.requests_to("GET", f"{USERS}/00u1")) == 1  # 4xx is never retried


def test_validation_error_lists_its_causes(server, rsa_pem):
    server.route("POST", f"{USERS}/00u1", Reply(400, {
        "errorCode": "E0000001", "errorSummary": "Api validation failed: firstName", "errorId": "oae9",
        "errorCauses": [{"errorSummary": "firstName: The field cannot exceed 50 characters"}]}))
    with pytest.raises(OktaApiError) as raised:
        make_client(server, rsa_pem).update_profile("00u1", {"firstName": "x" * 51})
    assert raised.value.error_causes == ["firstName: The field cannot exceed 50 characters"]
    assert "cannot exceed 50" in str(raised.value)


def test_a_proxy_html_error_page_still_gives_a_clear_error(server, rsa_pem):
    server.route("GET", f"{USERS}/00u1", Reply(403, "<html><body>Forbidden by proxy</body></html>",
                                             headers={"Content-Type": "text/html"}))
    with pytest.raises(OktaApiError, match="not an Okta error \\(text/html"):
        make_client(server, rsa_pem).get_user("00u1")


def test_5xx_and_truncated_bodies_are_retried_then_succeed(server, rsa_pem):
    server.route("GET", f"{USERS}/00u1", Reply(503, {"errorCode": "E0000009", "errorSummary": "Internal Server Error"}),
                 Reply(200, user(1), truncate=True), Reply(200, "{not json"), Reply(200, user(1)))
    client = make_client(server, rsa_pem, max_attempts=5)
    assert client.get_user("00u1")["id"] == user(1)["id"]
    assert client.metrics.count("api.retries") == 3


def test_retries_are_bounded(server, rsa_pem):
    server.route("GET", f"{USERS}/00u1", Reply(502, "bad gateway", headers={"Content-Type": "text/plain"}))
    client = make_client(server, rsa_pem, max_attempts=3)
    with pytest.raises(OktaApiError) as raised:
        client.get_user("00u1")
    assert raised.value.status == 502
    assert len(server.requests_to("GET", f"{USERS}/00u1")) == 3


def test_connection_failures_are_retried_and_then_reported(rsa_pem):
    with ScriptedServer() as server:
        server.route("POST", TOKEN, token_reply())
        client = make_client(server, rsa_pem, max_attempts=2, connect_timeout=0.5)
    # the server is gone now: every attempt is refused
    client.tokens.put(client.tokens.peek(()) or _fake_token(), ("okta.users.read",))
    with pytest.raises(OktaConnectionError, match="after retries"):
        client.get_user("00u1")


def _fake_token():
    from okta_sync import AccessToken

    return AccessToken("tok-x", "Bearer", time.time() + 3600, ("okta.users.read",))


def test_429_waits_for_the_reset_on_the_servers_clock(server, rsa_pem):
    # The server's clock runs 1000 s ahead of ours: the wait must be measured against its Date, not our clock.
    server_now = int(time.time()) + 1000
    rate_headers = {"Date": formatdate(server_now, usegmt=True), "X-Rate-Limit-Limit": "600",
                    "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(server_now + 7)}
    server.route("GET", f"{USERS}/00u1",
                 Reply(429, {"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to too many requests."},
                       headers=rate_headers),
                 Reply(200, user(1)))
    client = make_client(server, rsa_pem)
    slept = client.clock.slept  # a slept wait counts as passed: the window has ended when the retry goes out
    client.rate_limiter._jitter = lambda: 0.25
    assert client.get_user("00u1")["id"] == user(1)["id"]
    assert len(slept) == 1 and 6.0 <= slept[0] <= 7.5  # ~7 s on the server's clock (+ jitter), not 1007 s


def test_429_exhausting_retries_raises_rate_limit_error(server, rsa_pem):
    server.route("GET", f"{USERS}/00u1", Reply(429, {"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit"},
                                             headers={"X-Rate-Limit-Reset": str(int(time.time()) + 1),
                                                      "X-Rate-Limit-Limit": "10", "X-Rate-Limit-Remaining": "0"}))
    with pytest.raises(RateLimitError) as raised:
        make_client(server, rsa_pem, max_attempts=2).get_user("00u1")
    assert raised.value.error_code == "E0000047"


def test_pacing_waits_for_the_next_window_before_the_bucket_runs_dry(server, rsa_pem):
    reset = int(time.time()) + 30
    server.route("GET", f"{USERS}/00u1", Reply(200, user(1), headers={
        "X-Rate-Limit-Limit": "10", "X-Rate-Limit-Remaining": "5", "X-Rate-Limit-Reset": str(reset)}))
    client = make_client(server, rsa_pem, rate_limit_fraction=0.5)  # keep half the bucket (5) for other apps
    slept = client.clock.slept
    client.get_user("00u1")  # learns Remaining 5 of 10: its share is spent
    assert slept == []
    client.get_user("00u1")
    assert len(slept) == 1 and 25 < slept[0] <= 31


def test_401_invalid_token_refreshes_once_then_succeeds(server, rsa_pem):
    server.route("POST", TOKEN, token_reply("old"), token_reply("new"))

    def users(request):
        if request.headers["Authorization"] == "Bearer old":
            return Reply(401, {"errorCode": "E0000011", "errorSummary": "Invalid token provided"},
                         headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return Reply(200, user(1))

    server.route("GET", f"{USERS}/00u1", users)
    client = make_client(server, rsa_pem)
    assert client.get_user("00u1")["id"] == user(1)["id"]
    assert len(server.requests_to("POST", TOKEN)) == 2


def test_401_twice_is_not_a_loop(server, rsa_pem):
    server.route("GET", f"{USERS}/00u1", Reply(401, {"errorCode": "E0000011", "errorSummary": "Invalid token provided"}))
    with pytest.raises(OktaApiError) as raised:
        make_client(server, rsa_pem).get_user("00u1")
    assert raised.value.status == 401 and "refused" in raised.value.hint
    assert len(server.requests_to("POST", TOKEN)) == 2
    assert len(server.requests_to("GET", f"{USERS}/00u1")) == 2


@pytest.mark.parametrize(
    "description, hint_fragment",
    [
        ("The client_assertion token has already been used.", "single-use"),
        ("The audience claim for client_assertion must be the endpoint invoked for the request.", "aud must be exactly"),
        ("The client_assertion signature is invalid.", "kid"),
        ("The 'kid' is not found", "kid"),
        ("The issuer and subject claims in the client_assertion are not the client_id", "iss and sub"),
    ],
)
def test_invalid_client_hints(server, rsa_pem, description, hint_fragment):
    server.route("POST", TOKEN, Reply(401, {"error": "invalid_client", "error_description": description}))
    with pytest.raises(TokenRequestError) as raised:
        make_client(server, rsa_pem).get_token()
    assert raised.value.error == "invalid_client" and hint_fragment in raised.value.hint
    assert len(server.requests_to("POST", TOKEN)) == 1  # a refused client is not retried


def test_invalid_scope_hint(server, rsa_pem):
    server.route("POST", TOKEN, Reply(400, {"error": "invalid_scope", "error_description":
                                            "The following scopes are not allowed: [okta.users.manage]"}))
    with pytest.raises(TokenRequestError, match="Okta API Scopes"):
        make_client(server, rsa_pem).get_token()


def test_token_endpoint_outage_is_retried(server, rsa_pem):
    server.route("POST", TOKEN, Reply(503, "down", headers={"Content-Type": "text/plain"}), token_reply())
    assert make_client(server, rsa_pem).get_token().value == "tok-1"


def test_n_threads_cause_one_token_request(server, rsa_pem):
    def slow_token(request):
        time.sleep(0.3)
        return token_reply()

    server.route("POST", TOKEN, slow_token)
    client = make_client(server, rsa_pem)
    barrier = threading.Barrier(16)
    results = []

    def worker():
        barrier.wait()
        results.append(client.get_token(("okta.users.read",)).value)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["tok-1"] * 16
    assert len(server.requests_to("POST", TOKEN)) == 1


def test_token_is_refreshed_inside_the_margin_and_cached_outside_it(server, rsa_pem):
    server.route("POST", TOKEN, token_reply("first", expires_in=3600), token_reply("second", expires_in=3600))
    clock = FakeClock(start=1000.0, frozen=True)
    client = OktaClient(OktaConfig(org_url=server.url, client_id="0oaclient", private_key=rsa_pem, key_id="kid-1"),
                        clock=clock)
    assert client.get_token().value == "first"
    clock.advance(3600 - 301)  # 301 s left: still outside the 300 s margin
    assert client.get_token().value == "first"
    clock.advance(2)  # 299 s left
    assert client.get_token().value == "second"
    assert client.metrics.count("token.cache_miss") == 2


def test_new_tokens_reach_the_masking_callback_and_never_print(server, rsa_pem):
    seen = []
    settings = dict(org_url=server.url, client_id="0oaclient", private_key=rsa_pem, key_id="kid-1")
    client = OktaClient(OktaConfig(**settings), on_new_token=lambda token: seen.append(token.value))
    token = client.get_token()
    assert seen == ["tok-1"]
    assert "tok-1" not in repr(token) and "tok-1" not in str(token) and "tok-1" not in repr(client.tokens)
    assert rsa_pem.splitlines()[1] not in repr(client)


def test_explicit_ca_bundle_wins_over_the_environment(monkeypatch, tmp_path):
    from okta_sync.http.transport import verify_setting

    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert verify_setting(str(bundle)) == str(bundle)
    assert verify_setting(None) == "/etc/ssl/certs/ca-certificates.crt"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert verify_setting(None) is True


def test_a_redirect_to_another_host_is_not_followed(server, rsa_pem):
    server.route("GET", f"{USERS}/00u1", Reply(302, "", headers={"Location": "https://evil.example.com/steal"}))
    with pytest.raises(UnsafeUrlError):
        make_client(server, rsa_pem).get_user("00u1")


def test_the_token_endpoint_follows_the_named_retry_policy_not_a_hidden_floor(server, rsa_pem):
    from okta_sync.http.transport import RetryPolicy

    server.route("POST", TOKEN, Reply(503, "down", headers={"Content-Type": "text/plain"}))
    settings = dict(org_url=server.url, client_id="0oaclient", private_key=rsa_pem, key_id="kid-1", max_attempts=2)
    client = OktaClient(OktaConfig(**settings), token_retry=RetryPolicy(max_attempts=3, max_retry_time=30),
                        clock=FakeClock())
    with pytest.raises(TokenRequestError) as raised:
        client.get_token()
    assert raised.value.status == 503
    assert len(server.requests_to("POST", TOKEN)) == 3  # the policy's 3, not max(max_attempts, 20)


def test_a_429_from_the_token_endpoint_waits_for_the_reset_like_any_api_call(server, rsa_pem):
    server_now = int(time.time()) + 1000  # the server's clock runs ahead: the wait is measured on it
    server.route("POST", TOKEN, Reply(429, {"error": "too_many_requests"}, headers={
        "Date": formatdate(server_now, usegmt=True), "X-Rate-Limit-Limit": "10", "X-Rate-Limit-Remaining": "0",
        "X-Rate-Limit-Reset": str(server_now + 7)}), token_reply())
    client = make_client(server, rsa_pem)
    slept = client.clock.slept
    client.rate_limiter._jitter = lambda: 0.25
    assert client.get_token().value == "tok-1"
    assert len(slept) == 1 and 6.0 <= slept[0] <= 7.5
    assert all("Authorization" not in r.headers for r in server.requests_to("POST", TOKEN))


def test_a_token_provider_given_at_construction_serves_misses_and_a_refused_token_is_minted_anew(server, rsa_pem):
    from okta_sync import AccessToken

    shared = AccessToken("shared", "Bearer", time.time() + 3600, ("okta.users.read",))
    asked = []

    def provider(scopes, mint):
        asked.append(scopes)
        return shared

    def users(request):
        if request.headers["Authorization"] == "Bearer shared":  # Okta revoked the run's shared token
            return Reply(401, {"errorCode": "E0000011", "errorSummary": "Invalid token provided"},
                         headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return Reply(200, user(1))

    server.route("GET", f"{USERS}/00u1", users)
    settings = dict(org_url=server.url, client_id="0oaclient", private_key=rsa_pem, key_id="kid-1")
    client = OktaClient(OktaConfig(**settings), token_provider=provider)
    assert client.get_user("00u1")["id"] == user(1)["id"]
    assert asked == [("okta.users.read",)]  # the provider is not asked again for the token Okta refused
    assert len(server.requests_to("POST", TOKEN)) == 1  # the refresh minted
    assert client.get_token(("okta.users.read",)).value == "tok-1"


def test_refusals_of_concurrency_do_not_spend_the_attempts_a_request_has(server, rsa_pem):
    """Okta's concurrent-request limit is shared by the org: a request can lose the race more times than
    `max_attempts` while others get through. The request never ran, so it is retried (within `max_retry_time` and
    MAX_THROTTLED_RETRIES); a 5xx still spends an attempt."""
    from okta_sync.http.transport import MAX_THROTTLED_RETRIES

    def refused() -> Reply:
        return Reply(429, {"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to concurrent requests"},
                     headers={"X-Rate-Limit-Reset": str(int(time.time()) + 1), "X-Rate-Limit-Limit": "2",
                              "X-Rate-Limit-Remaining": "0"})

    server.route("GET", f"{USERS}/00u1", *[refused() for _ in range(5)], Reply(503, {}), Reply(200, user(1)))
    assert make_client(server, rsa_pem, max_attempts=3).get_user("00u1")["id"] == user(1)["id"]
    assert len(server.requests_to("GET", f"{USERS}/00u1")) == 7

    server.route("GET", f"{USERS}/00u2", refused())  # refused for ever: bounded all the same
    with pytest.raises(RateLimitError):
        make_client(server, rsa_pem, max_attempts=3).get_user("00u2")
    assert len(server.requests_to("GET", f"{USERS}/00u2")) == MAX_THROTTLED_RETRIES + 1
