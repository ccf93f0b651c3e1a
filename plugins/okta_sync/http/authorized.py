"""Okta API calls with an access token, on the one HTTP path (`transport.Transport`): decoding, error mapping and
paging.

A 401 `E0000011` (or `WWW-Authenticate: ... error="invalid_token"`) is retried once after a forced token refresh;
a DPoP 401 carrying a new `DPoP-Nonce` is re-sent once with a proof holding it. Everything else about retries is
`Transport.call`'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from okta_sync.config import OktaConfig
from okta_sync.errors import OktaConnectionError, ResponseLimitError
from okta_sync.http.api_errors import api_error, www_authenticate_params
from okta_sync.http.credentials import Credential, TokenSource
from okta_sync.server_text import server_text
from okta_sync.http.links import cursor_of, next_page_url, parse_link_header
from okta_sync.http.transport import TransientFailure, Transport
from okta_sync.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiResponse:
    """A decoded success response: what callers need, nothing that could carry a secret."""

    status: int
    headers: Mapping[str, str]
    data: Any
    url: str

    @property
    def request_id(self) -> str | None:
        return server_text(self.headers.get("X-Okta-Request-Id"))

    def link(self, rel: str) -> str | None:
        return parse_link_header(self.headers.get("Link")).get(rel)


class AuthorizedSession:
    """API requests to one org authorized by a `TokenSource` (google-auth's `AuthorizedSession`)."""

    def __init__(self, transport: Transport, tokens: TokenSource):
        self.transport = transport
        self.tokens = tokens

    @property
    def config(self) -> OktaConfig:
        return self.transport.config

    @property
    def metrics(self) -> Metrics:
        return self.transport.metrics

    def close(self) -> None:
        self.transport.close()

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        bucket: str,
        scopes: tuple[str, ...],
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        decode: Callable[[bytes], Any] = json.loads,
        headers: Mapping[str, str] | None = None,
        resend: bool | None = None,
    ) -> ApiResponse:
        """`headers` adds request headers (e.g. `If-Match`); Authorization and DPoP are always the token's.
        `resend`: whether a request that may have reached Okta can be sent again (default: GET, HEAD, OPTIONS
        only; an idempotent write such as a membership PUT or DELETE passes True)."""
        url = self.transport.url_for(path_or_url)
        body = json.dumps(json_body, separators=(",", ":")).encode() if json_body is not None else None
        return self.transport.call(
            method, url, lambda: self._send_with_token(method, url, bucket, scopes, params, body, decode, headers),
            resend=resend)

    def _send_with_token(self, method, url, bucket, scopes, params, body, decode, extra_headers) -> ApiResponse:
        token = self.tokens.get(scopes)
        response, content = self._send_once(method, url, bucket, token, params, body, extra_headers)
        if response.status_code == 401 and token.is_dpop and response.headers.get("DPoP-Nonce"):
            # The resource server asks for (a new) nonce: the proof is rebuilt with it once.
            response, content = self._send_once(method, url, bucket, token, params, body, extra_headers)
        if response.status_code == 401 and _is_invalid_token(response, content):
            log.info("%s %s: access token refused (401); refreshing it once", method, urlsplit(url).path)
            self.metrics.incr("token.refreshed_on_401")
            token = self.tokens.get(scopes, force_refresh=True, stale=token)
            response, content = self._send_once(method, url, bucket, token, params, body, extra_headers)
        return self._decode(method, url, response, content, decode, bucket)

    def _send_once(self, method, url, bucket, token: Credential, params, body: bytes | None,
                   extra_headers: Mapping[str, str] | None) -> tuple[requests.Response, bytes]:
        headers = dict(extra_headers or {})
        token.apply(method, url, headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        response, content = self.transport.send(method, url, bucket=bucket, headers=headers, params=params, data=body)
        token.observe(url, response.headers)
        return response, content

    def _decode(self, method: str, url: str, response: requests.Response, content: bytes,
                decode: Callable[[bytes], Any], bucket: str) -> ApiResponse:
        status = response.status_code
        path = urlsplit(url).path
        if status >= 300:
            error = api_error(status=status, method=method, path=path, headers=response.headers, content=content)
            failure = self.transport.transient_status(method, url, status, response.headers, error, bucket)
            raise failure or error
        try:
            data = decode(content) if content else None
        except ValueError:
            reason = f"HTTP {status} with a body that is not valid JSON ({len(content)} bytes)"
            raise TransientFailure(
                reason, error=OktaConnectionError(f"{method} {path}: {reason} after retries"), sent=True
            ) from None
        return ApiResponse(status=status, headers=response.headers, data=data, url=url)

    # -- paging -------------------------------------------------------------------------------------------------
    def iter_pages(
        self, path: str, *, bucket: str, scopes: tuple[str, ...], params: Mapping[str, Any] | None = None,
        decode: Callable[[bytes], Any] = json.loads,
    ) -> Iterator[ApiResponse]:
        """Each page in turn, following `Link: rel="next"`; one page in memory at a time.

        The next URL is rebuilt from the org URL, `path` and the link's cursor (`links.next_page_url`). Paging stops
        with `ResponseLimitError` when a cursor comes back a second time or after `max_pages` pages.
        """
        url: str | None = self.transport.url_for(path)
        page_path = urlsplit(url).path
        cursors = {cursor_of(requests.Request("GET", url, params=params).prepare().url or url)}
        pages = 0
        while url is not None:
            page = self.request("GET", url, bucket=bucket, scopes=scopes, params=params, decode=decode)
            pages += 1
            yield page
            link = page.link("next")
            del page  # the consumer has it: holding it through the next request keeps two pages alive (memory, GC)
            if link is None:
                return
            url, params = next_page_url(link, org_url=self.config.org_url, path=page_path), None
            cursor = cursor_of(url)
            if cursor in cursors:
                raise ResponseLimitError(
                    f"paging loop: the server sent a next link whose cursor was already followed (page {pages} of "
                    f"GET {page_path}); stopping instead of paging forever", setting="max_pages",
                )
            cursors.add(cursor)
            if pages >= self.config.max_pages:
                raise ResponseLimitError(
                    f"GET {page_path}: still a next page after {pages} pages, the max_pages cap; stopping (raise the "
                    f"connection's max_pages if the org really holds that many)", setting="max_pages",
                )


def _is_invalid_token(response: requests.Response, content: bytes) -> bool:
    auth = www_authenticate_params(response.headers)
    if auth.get("error") == "invalid_token":
        return True
    return b"E0000011" in content[:512]
