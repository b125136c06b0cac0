"""A client of Apple's Apps and Books for Organizations service (device management API v2), over
httpx.

Every request carries the location token as `Authorization: Bearer <sToken>`. Answers are JSON;
a refusal is `{"errorNumber": N, "errorMessage": "..."}`. Asset management (associate,
disassociate) is asynchronous: the service answers an `eventId`, polled with `GET /status`
until it is COMPLETE or FAILED. A 429 or 5xx is retried after the `Retry-After` the service asks
for (seconds or an HTTP date), else after an exponential backoff, a bounded number of times.
The token never goes into an error message or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from mdm.ground.service_client import RetryingClient, ServiceError, json_object

DEFAULT_URL = "https://vpp.itunes.apple.com/mdm/v2"
# Apple's limit on serial numbers in one associate / disassociate request.
MAX_SERIALS = 1000

# Apple's error numbers for a token that can no longer be used (its docs' error code list).
TOKEN_EXPIRED = 9621
TOKEN_INVALID = 9622
TOKEN_REVOKED = 9625
TOKEN_ERRORS = {
    TOKEN_EXPIRED: "the content token has expired",
    TOKEN_INVALID: "the content token is not valid",
    TOKEN_REVOKED: "the content token was revoked (a newer one was downloaded in ABM)",
}
# Failure of an assignment for want of licenses (in an event's `failures`).
NOT_ENOUGH_LICENSES = 9709


class VppError(ServiceError):
    """`error_number` is Apple's when it said one."""

    def __init__(self, message: str, *, status: int | None = None, error_number: int | None = None) -> None:
        super().__init__(message, status=status)
        self.error_number = error_number

    @property
    def token_unusable(self) -> bool:
        return self.error_number in TOKEN_ERRORS or self.status == 401

    @property
    def transient(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


@dataclass
class VppClient(RetryingClient):
    base_url: str
    bearer: str
    http: httpx.Client

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        what = f"{method} {path}"
        url = self.base_url.rstrip("/") + path
        headers = {"Authorization": f"Bearer {self.bearer}", "Accept": "application/json"}
        try:
            response = self.send_retried(
                lambda: self.http.request(method, url, params=params, json=body, headers=headers)
            )
        except httpx.TransportError as exc:
            raise VppError(f"{what}: Apps and Books service unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise _error(what, response)
        return json_object(response, what, VppError)

    # -- the service's endpoints -----------------------------------------------------------------

    def client_config(self) -> dict[str, Any]:
        return self.request("GET", "/client/config")

    def claim(self, mdm_id: str, name: str, metadata: str) -> dict[str, Any]:
        """Name this server as the token's MDM (`mdmInfo`): another MDM reading the client config
        then sees the token is in use, as Apple asks of every MDM that uses one."""
        return self.request(
            "POST", "/client/config", body={"mdmInfo": {"id": mdm_id, "name": name, "metadata": metadata}}
        )

    def assets(self, page_index: int = 0) -> dict[str, Any]:
        return self.request("GET", "/assets", params={"pageIndex": page_index})

    def assignments(
        self, *, adam_id: str, serial_number: str | None = None, page_index: int = 0
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"adamId": adam_id, "pageIndex": page_index}
        if serial_number:
            params["serialNumber"] = serial_number
        return self.request("GET", "/assignments", params=params)

    def associate(self, assets: list[dict[str, str]], serial_numbers: list[str]) -> str:
        return self._manage("/assets/associate", assets, serial_numbers)

    def disassociate(self, assets: list[dict[str, str]], serial_numbers: list[str]) -> str:
        return self._manage("/assets/disassociate", assets, serial_numbers)

    def _manage(self, path: str, assets: list[dict[str, str]], serial_numbers: list[str]) -> str:
        if not serial_numbers or len(serial_numbers) > MAX_SERIALS:
            raise ValueError(f"serial_numbers: 1 to {MAX_SERIALS} a request")
        answer = self.request("POST", path, body={"assets": assets, "serialNumbers": serial_numbers})
        event_id = answer.get("eventId")
        if not isinstance(event_id, str) or not event_id:
            raise VppError(f"POST {path}: no eventId in the answer", status=200)
        return event_id

    def event_status(self, event_id: str) -> dict[str, Any]:
        return self.request("GET", "/status", params={"eventId": event_id})


def _error(what: str, response: httpx.Response) -> VppError:
    number: int | None = None
    message = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            raw = body.get("errorNumber")
            number = raw if isinstance(raw, int) else None
            message = str(body.get("errorMessage") or "")[:200]
    except ValueError:
        message = response.text.strip()[:200]
    if number in TOKEN_ERRORS:
        message = TOKEN_ERRORS[number]
    elif response.status_code == 429:
        message = message or "rate limited (too many requests), retries exhausted"
    label = f" {number}" if number is not None else ""
    return VppError(
        f"{what}: HTTP {response.status_code}{label} {message}".rstrip(),
        status=response.status_code,
        error_number=number,
    )
