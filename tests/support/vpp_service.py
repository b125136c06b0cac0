"""Apple's Apps and Books for Organizations service (device management API v2) on loopback, for
tests. Written from Apple's documentation of the service, independently of Hikeshi's client:

- Every endpoint wants `Authorization: Bearer <sToken>`: a missing or unknown token is refused
  with 401 and errorNumber 9622, an expired one with 9621, a revoked one with 9625.
- `GET /client/config`: location name, uId, country, token expiration, and `mdmInfo` once an
  MDM named itself with `POST /client/config`.
- `GET /assets?pageIndex=`: pages of `page_size` assets with `currentPageIndex`,
  `nextPageIndex` (absent on the last page), `totalPages`, `size`.
- `POST /assets/associate` / `/assets/disassociate` with `assets` (adamId, pricingParam) and
  `serialNumbers`: answers an `eventId` at once; the work happens when the event completes
  (after `event_delay` status polls, or `complete_events()`), license by license: a serial for
  which no license is left fails with errorNumber 9709.
- `GET /status?eventId=`: PENDING, then COMPLETE with numCompleted / numRequested / failures.
- `GET /assignments?adamId=&serialNumber=&pageIndex=`.
- Throttling: the next N requests answer 429 with Retry-After (or 503).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback_http import LoopbackService, QuietHandler

NOT_ENOUGH_LICENSES = 9709


def token_file(
    org: str = "横浜市消防局", exp: str = "2027-11-08T14:33:22-0800", secret: str | None = None
) -> str:
    """A `.vpptoken` as ABM gives it: base64 of {token, expDate, orgName}."""
    body = {
        "token": secret or base64.b64encode(uuid.uuid4().bytes * 3).decode(),
        "expDate": exp,
        "orgName": org,
    }
    return base64.b64encode(json.dumps(body, ensure_ascii=False).encode()).decode()


@dataclass
class SimAsset:
    adam_id: str
    total: int
    pricing_param: str = "STDQ"
    device_assignable: bool = True
    revocable: bool = True
    product_type: str = "App"


@dataclass
class SimEvent:
    event_id: str
    event_type: str
    assets: list[dict[str, str]]
    serials: list[str]
    polls_left: int
    status: str = "PENDING"
    failures: list[dict[str, Any]] = field(default_factory=list)
    completed: int = 0


@dataclass
class VolumePurchaseService:
    token: str
    location_name: str = "本部"
    uid: str = "2049025000431439"
    token_state: str = "valid"  # valid, expired, revoked
    page_size: int = 2
    event_delay: int = 1  # status polls that still answer PENDING
    assets: dict[str, SimAsset] = field(default_factory=dict)
    assigned: set[tuple[str, str]] = field(default_factory=set)  # (adamId, serial)
    events: dict[str, SimEvent] = field(default_factory=dict)
    throttle: list[tuple[int, str | None]] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    # The MDM named in the client config (POST /client/config), None until one claims the token.
    mdm_info: dict[str, str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_asset(self, adam_id: str, total: int, **values: Any) -> SimAsset:
        asset = SimAsset(adam_id, total, **values)
        self.assets[adam_id] = asset
        return asset

    def throttle_next(self, count: int, status: int = 429, retry_after: str | None = "0") -> None:
        self.throttle.extend([(status, retry_after)] * count)

    def assigned_count(self, adam_id: str) -> int:
        return sum(1 for a, _ in self.assigned if a == adam_id)

    def complete_events(self) -> None:
        with self.lock:
            for event in self.events.values():
                if event.status == "PENDING":
                    self._complete(event)

    def _complete(self, event: SimEvent) -> None:
        for asset_ref in event.assets:
            adam = asset_ref.get("adamId", "")
            asset = self.assets.get(adam)
            for serial in event.serials:
                failure = None
                if asset is None:
                    failure = (9610, "License not found")
                elif event.event_type == "ASSOCIATE":
                    if (adam, serial) not in self.assigned:
                        if self.assigned_count(adam) >= asset.total:
                            failure = (NOT_ENOUGH_LICENSES, "Not enough licenses")
                        else:
                            self.assigned.add((adam, serial))
                else:
                    self.assigned.discard((adam, serial))
                if failure is None:
                    event.completed += 1
                else:
                    event.failures.append(
                        {
                            "adamId": adam,
                            "pricingParam": asset_ref.get("pricingParam", "STDQ"),
                            "serialNumber": serial,
                            "errorNumber": failure[0],
                            "errorMessage": failure[1],
                        }
                    )
        event.status = "COMPLETE"


class _Handler(QuietHandler):
    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        # Logged before the answer is written: a client that has read the answer may look at the log at once.
        self.server.service.log.append(
            (self.command, urlsplit(self.path).path.removeprefix("/mdm/v2"), status)
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, number: int, message: str) -> None:
        self._answer(status, {"errorNumber": number, "errorMessage": message})

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        service = self.server.service
        parts = urlsplit(self.path)
        path = parts.path.removeprefix("/mdm/v2")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with service.lock:
            if service.throttle:
                status, retry = service.throttle.pop(0)
                self._answer(
                    status,
                    {"errorNumber": 9603 if status >= 500 else 9646, "errorMessage": "Try later"},
                    {"Retry-After": retry} if retry is not None else None,
                )
                return
            header = self.headers.get("Authorization") or ""
            service.authorizations.append(header)
            if not header.startswith("Bearer ") or header[7:] != service.token:
                self._error(401, 9622, "Invalid authentication token")
                return
            if service.token_state == "expired":
                self._error(401, 9621, "Token has expired")
                return
            if service.token_state == "revoked":
                self._error(401, 9625, "The server token has been revoked")
                return
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                self._error(400, 9602, "Invalid argument")
                return
            self._route(service, path, query, body)

    def _route(self, service: VolumePurchaseService, path: str, query: dict[str, str], body: Any) -> None:
        expiry = {"tokenExpirationDate": "2027-11-08T22:33:22+0000", "uId": service.uid}
        if path == "/client/config" and self.command in ("GET", "POST"):
            if self.command == "POST":
                info = body.get("mdmInfo") if isinstance(body, dict) else None
                if info is not None and (not isinstance(info, dict) or not info.get("id")):
                    self._error(400, 9602, "Invalid argument: mdmInfo")
                    return
                if info is not None:
                    service.mdm_info = {k: str(v) for k, v in info.items()}
            config: dict[str, Any] = {
                "locationName": service.location_name,
                "countryISO2ACode": "JP",
                "defaultPlatform": "volumestore",
                **expiry,
            }
            if service.mdm_info is not None:
                config["mdmInfo"] = service.mdm_info
            self._answer(200, config)
        elif path == "/assets" and self.command == "GET":
            items = sorted(service.assets.values(), key=lambda a: a.adam_id)
            try:
                page = int(query.get("pageIndex", "0"))
            except ValueError:
                self._error(400, 9602, "Invalid argument: pageIndex")
                return
            size = service.page_size
            total_pages = max(1, -(-len(items) // size))
            chunk = items[page * size : (page + 1) * size]
            answer: dict[str, Any] = {
                "assets": [self._asset(service, a) for a in chunk],
                "currentPageIndex": page,
                "size": size,
                "totalPages": total_pages,
                **expiry,
            }
            if page + 1 < total_pages:
                answer["nextPageIndex"] = page + 1
            self._answer(200, answer)
        elif path in ("/assets/associate", "/assets/disassociate") and self.command == "POST":
            assets = body.get("assets") if isinstance(body, dict) else None
            serials = body.get("serialNumbers") if isinstance(body, dict) else None
            if not isinstance(assets, list) or not assets or not isinstance(serials, list) or not serials:
                self._error(400, 9600, "Missing required argument")
                return
            if len(serials) > 1000 or not all(isinstance(s, str) and s for s in serials):
                self._error(400, 9602, "Invalid argument: serialNumbers")
                return
            event = SimEvent(
                str(uuid.uuid4()),
                "ASSOCIATE" if path.endswith("/associate") else "DISASSOCIATE",
                assets,
                serials,
                service.event_delay,
            )
            service.events[event.event_id] = event
            self._answer(200, {"eventId": event.event_id, **expiry})
        elif path == "/status" and self.command == "GET":
            event = service.events.get(query.get("eventId", ""))
            if event is None:
                self._error(400, 9602, "Invalid argument: eventId")
                return
            if event.status == "PENDING":
                if event.polls_left <= 0:
                    service._complete(event)
                else:
                    event.polls_left -= 1
            answer = {
                "eventStatus": event.status,
                "eventType": event.event_type,
                "numRequested": len(event.serials) * len(event.assets),
                **expiry,
            }
            if event.status == "COMPLETE":
                answer["numCompleted"] = event.completed
                if event.failures:
                    answer["failures"] = event.failures
            self._answer(200, answer)
        elif path == "/assignments" and self.command == "GET":
            rows = sorted(
                (a, s)
                for a, s in service.assigned
                if (not query.get("adamId") or a == query["adamId"])
                and (not query.get("serialNumber") or s == query["serialNumber"])
            )
            self._answer(
                200,
                {
                    "assignments": [
                        {
                            "adamId": a,
                            "pricingParam": service.assets[a].pricing_param
                            if a in service.assets
                            else "STDQ",
                            "serialNumber": s,
                        }
                        for a, s in rows
                    ],
                    "currentPageIndex": 0,
                    "size": len(rows),
                    "totalPages": 1,
                    **expiry,
                },
            )
        else:
            self._error(404, 9602, "Invalid argument: no such endpoint")

    @staticmethod
    def _asset(service: VolumePurchaseService, asset: SimAsset) -> dict[str, Any]:
        used = service.assigned_count(asset.adam_id)
        return {
            "adamId": asset.adam_id,
            "pricingParam": asset.pricing_param,
            "productType": asset.product_type,
            "deviceAssignable": asset.device_assignable,
            "revocable": asset.revocable,
            "supportedPlatforms": ["iOS"],
            "totalCount": asset.total,
            "assignedCount": used,
            "availableCount": asset.total - used,
            "retiredCount": 0,
        }


class RunningVppService(LoopbackService):
    """The simulator serving on 127.0.0.1 (a free port) in a thread until stop()."""

    service: VolumePurchaseService

    def __init__(self, service: VolumePurchaseService) -> None:
        super().__init__(service, _Handler, "/mdm/v2")
