"""A client of Apple's device assignment service (mdmenrollment.apple.com), over httpx.

A session starts with `GET /session` signed by OAuth 1.0a (mdm.services.ade.oauth); the service
answers an `auth_session_token`, sent on every later request as `X-ADM-Auth-Session` and
replaced whenever a response carries a new one. A 401 means the session ended: the client gets
a new one and repeats the request once. A 429 or 5xx is retried after the `Retry-After` the
service asks for (seconds or an HTTP date), else after an exponential backoff, a bounded number
of times. Errors carry the service's own code (`EXPIRED_CURSOR`, `T_C_NOT_SIGNED`...).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from mdm.ground.service_client import RetryingClient, ServiceError, json_object
from mdm.services.ade.oauth import authorization_header
from mdm.services.ade.server_token import OAuthCredentials

PROTOCOL_VERSION = "3"
SESSION_HEADER = "X-ADM-Auth-Session"
# Apple allows at most 1000 serials a request and answers pages of up to 1000 devices.
PAGE_LIMIT = 1000


class DepError(ServiceError):
    """`code` is Apple's error word when it said one."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message, status=status)
        self.code = code


@dataclass
class DepClient(RetryingClient):
    base_url: str
    credentials: OAuthCredentials
    http: httpx.Client
    session_token: str | None = None

    # -- session -----------------------------------------------------------------------------

    def new_session(self) -> str:
        url = self.base_url.rstrip("/") + "/session"
        creds = self.credentials
        response = self._send_with_backoff(
            lambda: self.http.get(
                url,
                headers={
                    "Authorization": authorization_header(
                        "GET",
                        url,
                        consumer_key=creds.consumer_key,
                        consumer_secret=creds.consumer_secret,
                        token=creds.access_token,
                        token_secret=creds.access_secret,
                    ),
                    "X-Server-Protocol-Version": PROTOCOL_VERSION,
                },
            )
        )
        if response.status_code != 200:
            raise _error("GET /session", response)
        token = json_object(response, "GET /session", DepError).get("auth_session_token")
        if not isinstance(token, str) or not token:
            raise DepError("GET /session: no auth_session_token in the answer", status=200)
        self.session_token = token
        return token

    # -- requests ------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One call, with a session; a 401 gets one new session and one more try."""
        if self.session_token is None:
            self.new_session()
        response = self._send_with_backoff(lambda: self._send(method, path, body))
        if response.status_code == 401:
            self.new_session()
            response = self._send_with_backoff(lambda: self._send(method, path, body))
        if response.status_code != 200:
            raise _error(f"{method} {path}", response)
        return json_object(response, f"{method} {path}", DepError)

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        headers = {
            SESSION_HEADER: self.session_token or "",
            "X-Server-Protocol-Version": PROTOCOL_VERSION,
            "Content-Type": "application/json;charset=UTF8",
        }
        content = json.dumps(body).encode() if body is not None else None
        response = self.http.request(
            method, self.base_url.rstrip("/") + path, headers=headers, content=content
        )
        renewed = response.headers.get(SESSION_HEADER)
        if renewed:
            self.session_token = renewed
        return response

    def _send_with_backoff(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        try:
            return self.send_retried(send)
        except httpx.TransportError as exc:
            raise DepError(f"device assignment service unreachable: {exc}") from exc

    # -- the service's endpoints ---------------------------------------------------------------

    def account(self) -> dict[str, Any]:
        return self.request("GET", "/account")

    def fetch_devices(self, cursor: str | None = None, limit: int = PAGE_LIMIT) -> dict[str, Any]:
        body: dict[str, Any] = {"limit": limit}
        if cursor:
            body["cursor"] = cursor
        return self.request("POST", "/server/devices", body)

    def sync_devices(self, cursor: str, limit: int = PAGE_LIMIT) -> dict[str, Any]:
        return self.request("POST", "/devices/sync", {"cursor": cursor, "limit": limit})

    def define_profile(self, profile: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/profile", profile)

    def assign_profile(self, profile_uuid: str, serials: list[str]) -> dict[str, Any]:
        return self.request("PUT", "/profile/devices", {"profile_uuid": profile_uuid, "devices": serials})


def _error(what: str, response: httpx.Response) -> DepError:
    text = response.text.strip()[:200]
    code = None
    try:
        body = response.json()
        if isinstance(body, dict):
            code = str(body.get("code") or body.get("error") or "") or None
    except ValueError:
        # Apple answers most errors as a bare word (EXPIRED_CURSOR, T_C_NOT_SIGNED...).
        if text and text.replace("_", "").isalnum():
            code = text
    return DepError(
        f"{what}: HTTP {response.status_code} {code or text}", status=response.status_code, code=code
    )
