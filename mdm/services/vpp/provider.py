"""The license provider the app enforcement asks (the `apps` branch's LicenseProvider protocol):
make sure a device serial number holds a license for an App Store app, or give it back.

Device-based assignment: the license goes to the serial number, no Apple ID. The service
assigns asynchronously, so a first request answers "pending" and a later call (or the scheduled
event poll) turns it into "assigned" once the event completes. Each call runs in the caller's
transaction; the service is asked only when the local state cannot answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import SYSTEM, record_event
from mdm.ground.config import Settings
from mdm.ground.models import VppAsset, VppAssignment, VppAssignmentState, VppEvent
from mdm.services.apps.licensing import NOT_CONFIGURED_REASON, LicenseOutcome
from mdm.services.vpp.client import VppClient, VppError
from mdm.services.vpp.sync import poll_event
from mdm.services.vpp.token import active_token, bearer_of

TIMEOUT_SECONDS = 20.0
# Retries of one call are few: enforcement asks again at its next run anyway.
MAX_ATTEMPTS = 3


class VppLicenseProvider:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._sleep = sleep
        self._http: httpx.Client | None = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- the protocol ------------------------------------------------------------------------------

    def ensure_device_license(self, session: Session, *, adam_id: str, serial_number: str) -> LicenseOutcome:
        refusal = self._usable(session)
        if refusal is not None:
            return refusal
        row = _assignment(session, adam_id, serial_number)
        try:
            with self._client(session) as client:
                if row is not None and row.state == VppAssignmentState.PENDING:
                    self._poll(session, client, row)
                if row is not None and row.state in (
                    VppAssignmentState.ASSIGNED,
                    VppAssignmentState.RELEASING,
                ):
                    if row.state == VppAssignmentState.RELEASING:
                        return LicenseOutcome("pending", "a release of this license is in progress")
                    return LicenseOutcome("assigned")
                if row is not None and row.state == VppAssignmentState.PENDING:
                    return LicenseOutcome("pending", "waiting for the service to confirm the assignment")
                return self._associate(session, client, adam_id, serial_number, row)
        except VppError as exc:
            return _refused(session, exc)

    def release_device_license(self, session: Session, *, adam_id: str, serial_number: str) -> LicenseOutcome:
        """ "pending" while the release is confirmed; "unavailable" with reason "not assigned" once
        the serial holds no license (released, or never had one)."""
        refusal = self._usable(session)
        if refusal is not None:
            return refusal
        row = _assignment(session, adam_id, serial_number)
        try:
            with self._client(session) as client:
                if row is not None and row.state == VppAssignmentState.RELEASING:
                    self._poll(session, client, row)
                    if _assignment(session, adam_id, serial_number) is None:
                        return LicenseOutcome("unavailable", "not assigned")
                    return LicenseOutcome("pending", "waiting for the service to confirm the release")
                if row is None or row.state == VppAssignmentState.FAILED:
                    if row is not None:
                        session.delete(row)
                    return LicenseOutcome("unavailable", "not assigned")
                # PENDING or ASSIGNED: either way the service may hold (or soon hold) the license.
                event_id = client.disassociate(
                    [{"adamId": adam_id, "pricingParam": row.pricing_param}], [serial_number]
                )
        except VppError as exc:
            return _refused(session, exc)
        session.add(VppEvent(event_id=event_id[:64], event_type="DISASSOCIATE", status="PENDING"))
        row.state, row.event_id, row.reason, row.updated_at = (
            VppAssignmentState.RELEASING,
            event_id[:64],
            None,
            clock.now(),
        )
        asset = _asset(session, adam_id, row.pricing_param)
        if asset is not None:
            asset.available_count += 1
            asset.assigned_count = max(0, asset.assigned_count - 1)
        record_event(
            session,
            SYSTEM,
            "vpp.license_release_requested",
            "vpp_assignment",
            row.id,
            {"adam_id": adam_id, "serial_number": serial_number, "event_id": event_id},
        )
        return LicenseOutcome("pending", "release requested")

    # -- the steps -----------------------------------------------------------------------------------

    def _usable(self, session: Session) -> LicenseOutcome | None:
        token = active_token(session)
        if token is None:
            return LicenseOutcome("not_configured", NOT_CONFIGURED_REASON)
        if token.expires_at <= clock.now():
            return LicenseOutcome(
                "unavailable", f"the Apps and Books content token expired on {token.expires_at:%Y-%m-%d}"
            )
        return None

    def _client(self, session: Session) -> _ClientScope:
        token = active_token(session)
        if token is None:  # _usable said there was one, in this same transaction
            raise VppError("no Apps and Books content token has been uploaded")
        if self._http is None:
            options: dict[str, Any] = {"timeout": TIMEOUT_SECONDS}
            if self._transport is not None:
                options["transport"] = self._transport
            self._http = httpx.Client(**options)
        # The bearer is read at every call: an uploaded renewal is used at once.
        bearer = bearer_of(token, self._settings)
        return _ClientScope(
            VppClient(
                self._settings.vpp_url, bearer, self._http, sleep=self._sleep, max_attempts=MAX_ATTEMPTS
            )
        )

    def _poll(self, session: Session, client: VppClient, row: VppAssignment) -> None:
        event = session.scalars(select(VppEvent).where(VppEvent.event_id == row.event_id)).first()
        if event is not None and event.status == "PENDING":
            poll_event(session, client, event)
            session.flush()

    def _associate(
        self, session: Session, client: VppClient, adam_id: str, serial_number: str, row: VppAssignment | None
    ) -> LicenseOutcome:
        asset = session.scalars(
            select(VppAsset).where(VppAsset.adam_id == adam_id).order_by(VppAsset.id)
        ).first()
        if asset is None:
            return LicenseOutcome("unavailable", f"app {adam_id} is not among the location's licensed apps")
        if not asset.device_assignable:
            return LicenseOutcome("unavailable", f"app {adam_id} cannot be assigned to a device")
        held = _held_already(client, asset, serial_number)
        if held:
            row = _record(session, row, asset, serial_number, VppAssignmentState.ASSIGNED, None)
            return LicenseOutcome("assigned")
        if asset.available_count <= 0:
            return LicenseOutcome("unavailable", f"no license left for app {adam_id} in the location")
        event_id = client.associate(
            [{"adamId": asset.adam_id, "pricingParam": asset.pricing_param}], [serial_number]
        )
        session.add(VppEvent(event_id=event_id[:64], event_type="ASSOCIATE", status="PENDING"))
        row = _record(session, row, asset, serial_number, VppAssignmentState.PENDING, event_id[:64])
        # Counted as taken now, so a burst of requests never asks for more than the location has.
        asset.available_count -= 1
        asset.assigned_count += 1
        record_event(
            session,
            SYSTEM,
            "vpp.license_requested",
            "vpp_assignment",
            row.id,
            {"adam_id": adam_id, "serial_number": serial_number, "event_id": event_id},
        )
        return LicenseOutcome("pending", "assignment requested")


class _ClientScope:
    """The provider's client for one call; the HTTP connection pool outlives it (making one per
    call loads the CA bundle each time, most of a request's cost)."""

    def __init__(self, client: VppClient) -> None:
        self._client = client

    def __enter__(self) -> VppClient:
        return self._client

    def __exit__(self, *exc: object) -> None:
        return None


def _assignment(session: Session, adam_id: str, serial_number: str) -> VppAssignment | None:
    return session.scalars(
        select(VppAssignment).where(
            VppAssignment.adam_id == adam_id, VppAssignment.serial_number == serial_number
        )
    ).first()


def _asset(session: Session, adam_id: str, pricing_param: str) -> VppAsset | None:
    return session.scalars(
        select(VppAsset).where(VppAsset.adam_id == adam_id, VppAsset.pricing_param == pricing_param)
    ).first()


def _held_already(client: VppClient, asset: VppAsset, serial_number: str) -> bool:
    """Whether the service already has this license on this serial (assigned by hand in ABM, or
    by a run whose answer was lost): asking again would spend nothing but would wait on an event."""
    answer = client.assignments(adam_id=asset.adam_id, serial_number=serial_number)
    for item in answer.get("assignments") or []:
        if isinstance(item, dict) and item.get("serialNumber") == serial_number:
            return True
    return False


def _record(
    session: Session,
    row: VppAssignment | None,
    asset: VppAsset,
    serial_number: str,
    state: str,
    event_id: str | None,
) -> VppAssignment:
    now = clock.now()
    if row is None:
        # Another process may record the same (app, serial) at the same moment: the unique key
        # refuses the second row, which then updates the one that won instead of failing the caller.
        candidate = VppAssignment(
            adam_id=asset.adam_id,
            serial_number=serial_number[:64],
            pricing_param=asset.pricing_param,
            state=state,
            event_id=event_id,
            requested_at=now,
            updated_at=now,
        )
        try:
            with session.begin_nested():
                session.add(candidate)
            row = candidate
        except IntegrityError:
            row = session.scalars(
                select(VppAssignment).where(
                    VppAssignment.adam_id == asset.adam_id,
                    VppAssignment.serial_number == serial_number[:64],
                )
            ).one()
    row.pricing_param = asset.pricing_param
    row.state, row.event_id, row.reason, row.updated_at = state, event_id, None, now
    session.flush()
    return row


def _refused(session: Session, exc: VppError) -> LicenseOutcome:
    if exc.token_unusable:
        token = active_token(session)
        if token is not None:  # shown by the console, doctor and `hikeshi vpp status`
            token.last_error, token.last_error_at = str(exc)[:512], clock.now()
        return LicenseOutcome("unavailable", f"the Apps and Books content token cannot be used: {exc}")
    if exc.transient:
        return LicenseOutcome(
            "unavailable", f"the Apps and Books service is not answering now, retried later: {exc}"
        )
    return LicenseOutcome("unavailable", str(exc))
