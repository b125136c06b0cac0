"""A client of Google's Android Management API (AMAPI) and of the Pub/Sub pull subscription its
notifications arrive on, authenticated as the enterprise's service account.

OAuth2 is google-auth's service-account flow (an RS256 JWT assertion exchanged at the key's
`token_uri` for a bearer token); google-auth talks HTTP through a small transport `Request` over
httpx (`HttpxAuthRequest`), so no second HTTP library is needed. An access token that the API
refuses (401: revoked, or expired early) is refreshed once and the call repeated; a 429 or 5xx
is retried a bounded number of times after the `Retry-After` Google asks for
(mdm.ground.service_client). Neither the key nor a token ever goes into an error, a log line or
an exception chain: errors carry the HTTP status, Google's status word and its message only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

import google.auth.exceptions
import google.auth.transport
import httpx
from google.oauth2 import service_account

from mdm.ground.service_client import RetryingClient, ServiceError

DEFAULT_API_URL = "https://androidmanagement.googleapis.com/v1"
DEFAULT_PUBSUB_URL = "https://pubsub.googleapis.com/v1"
AMAPI_SCOPE = "https://www.googleapis.com/auth/androidmanagement"
PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"
SCOPES = (AMAPI_SCOPE, PUBSUB_SCOPE)
# Google's answers are small; a larger one is a fault of whoever answers, not data to keep.
MAX_ANSWER_BYTES = 8 * 1024 * 1024


class AmapiError(ServiceError):
    """A refusal of AMAPI or Pub/Sub (`status` its HTTP status, None when it could not be
    reached; `code` Google's status word such as NOT_FOUND), or a credential that cannot sign in."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message, status=status)
        self.code = code
        self.detail = message

    @property
    def transient(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def not_found(self) -> bool:
        return self.status == 404


class _AuthResponse(google.auth.transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class HttpxAuthRequest(google.auth.transport.Request):
    """google-auth's transport seam over an httpx client: how it reaches the token endpoint."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        try:
            response = self._http.request(
                method, url, content=body, headers=dict(headers or {}), timeout=timeout or self._http.timeout
            )
        except httpx.HTTPError as exc:
            # The request (with its signed assertion) is not part of the message.
            raise google.auth.exceptions.TransportError(
                f"token endpoint unreachable ({type(exc).__name__})"
            ) from None
        return _AuthResponse(response)


def credentials_from_info(info: Mapping[str, Any]) -> service_account.Credentials:
    """The service account's credentials with AMAPI's and Pub/Sub's scopes; ValueError when the
    key file is not one (the caller words it for the field)."""
    return service_account.Credentials.from_service_account_info(dict(info), scopes=list(SCOPES))


class AmapiClient:
    """One enterprise's service account talking to AMAPI and Pub/Sub. Thread-safe: the token is
    refreshed under a lock, httpx's client is shared."""

    def __init__(
        self,
        service_account_info: dict[str, Any],
        *,
        api_url: str,
        pubsub_url: str,
        timeout: float = 10,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        try:
            self._credentials = credentials_from_info(service_account_info)
        except (ValueError, KeyError) as exc:
            raise AmapiError(
                None, "INVALID_CREDENTIAL", f"not a service account key ({type(exc).__name__})"
            ) from None
        self.project_id: str | None = service_account_info.get("project_id")
        self.api_url = api_url.rstrip("/")
        self.pubsub_url = pubsub_url.rstrip("/")
        self._http = http or httpx.Client(timeout=timeout)
        self._auth_request = HttpxAuthRequest(self._http)
        self._lock = threading.Lock()
        self.retrying = RetryingClient() if sleep is None else RetryingClient(sleep=sleep)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AmapiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the two APIs ------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An AMAPI call; `path` is relative to the API URL (`enterprises/LC1/policies/p1`)."""
        return self._send(method, f"{self.api_url}/{path.lstrip('/')}", path, params, body)

    def pubsub(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A Pub/Sub call; `path` is relative to the Pub/Sub URL
        (`projects/p/subscriptions/s:pull`)."""
        return self._send(method, f"{self.pubsub_url}/{path.lstrip('/')}", path, None, body)

    # -- plumbing ----------------------------------------------------------------------------------

    def _token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or not self._credentials.valid:
                try:
                    self._credentials.refresh(self._auth_request)
                except google.auth.exceptions.RefreshError as exc:
                    raise AmapiError(401, "UNAUTHENTICATED", _refusal_text(exc)) from None
                except google.auth.exceptions.TransportError as exc:
                    raise AmapiError(None, "UNAVAILABLE", str(exc)) from None
            token = self._credentials.token
        if not isinstance(token, str) or not token:
            raise AmapiError(401, "UNAUTHENTICATED", "the token endpoint gave no access token")
        return token

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        label = f"{method} {what}"
        response = self._send_retried(method, url, params, body, self._token(), label)
        if response.status_code == 401:
            # Revoked or expired before its time: one fresh token, then the answer stands.
            response = self._send_retried(method, url, params, body, self._token(renew=True), label)
        if response.status_code >= 400:
            raise _error(label, response)
        if len(response.content) > MAX_ANSWER_BYTES:
            raise AmapiError(response.status_code, "ANSWER_TOO_LARGE", f"{label}: answer too large")
        if not response.content.strip():
            return {}
        try:
            value = response.json()
        except ValueError:
            raise AmapiError(response.status_code, "BAD_ANSWER", f"{label}: the answer is not JSON") from None
        if not isinstance(value, dict):
            raise AmapiError(response.status_code, "BAD_ANSWER", f"{label}: the answer is not a JSON object")
        return value

    def _send_retried(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        token: str,
        label: str,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        content = None if body is None else json.dumps(body).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            return self.retrying.send_retried(
                lambda: self._http.request(
                    method, url, params=dict(params) if params else None, content=content, headers=headers
                )
            )
        except httpx.TransportError as exc:
            raise AmapiError(None, "UNAVAILABLE", f"{label}: unreachable ({type(exc).__name__})") from None


def _refusal_text(exc: Exception) -> str:
    # google-auth's RefreshError carries the endpoint's answer (an error word and description),
    # never the assertion; keep it short.
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return f"the token endpoint refused the service account: {text[:200]}"


def _error(label: str, response: httpx.Response) -> AmapiError:
    code = ""
    message = ""
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            code = str(error.get("status") or "")[:64]
            message = str(error.get("message") or "")[:500]
    except (ValueError, AttributeError):
        pass
    return AmapiError(
        response.status_code, code or f"HTTP_{response.status_code}", f"{label}: {message or 'refused'}"
    )
