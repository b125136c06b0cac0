"""The loss and theft hotline: open an incident, lock now, two-person wipe, recovery.

Every function takes the caller's Session and never commits; each step is written to the
incident's timeline and to the audit log in the same transaction. Pushes leave after commit
(enqueue_command asks for them). Who may call what (operator, approver, admin) is checked by the
caller; the rules of the domain (two different people, reasons) are checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.command_type import CommandParamsError, Priority
from commands.context import NO_CONTEXT, CommandContext
from commands.incidents.approvers import settle_approver_alerts, tell_approvers
from commands.incidents.errors import (
    BreakGlassNotAllowed,
    IncidentInputError,
    IncidentStateError,
    PersonRequired,
    ReasonRequired,
    RequesterUnknown,
    SamePersonError,
)
from commands.incidents.lock_text import LockText, lock_text_for
from commands.incidents.steps import ERASE_PURPOSE, LOCK_PURPOSE, record_step
from commands.incidents.wipe_identity import approved_identities
from commands.lock_screen import phone_field
from commands.queue import cancel_command, enqueue_command
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Command, CommandStatus, Device
from mdm.ground.models.incident import Incident, IncidentCommand, IncidentStatus, LossKind
from mdm.ground.push import request_push
from mdm.services.devices import bound_identities
from mdm.services.wifi_certificates import revoke_held

DEFAULT_FOOTNOTE = "消防本部 情報システム担当"
MAX_REASON = 2000


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class IncidentReportSchema(Schema):
    """What the hotline operator types while on the phone (the API and the page load this)."""

    caller_name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    caller_unit = fields.String(load_default="", validate=validate.Length(max=100))
    callback_number = phone_field(optional_blank=True, load_default="")
    lost_at = fields.AwareDateTime(load_default=None, allow_none=True)
    lost_place = fields.String(load_default="", validate=validate.Length(max=255))
    kind = fields.String(load_default=LossKind.LOST, validate=validate.OneOf(LossKind.ALL))
    notes = fields.String(load_default="", validate=validate.Length(max=4000))

    @pre_load
    def _strip_strings(self, data: Mapping[str, Any], **_kwargs: Any) -> dict[str, Any]:
        return {key: _strip(value) for key, value in dict(data).items()}


# The lock form's fields (console, API, CLI) and the command keys they fill. They are checked once,
# by the command's own schema (commands.lock_screen), and a refusal names the form's field.
LOCK_TEXT_KEYS = {"message": "Message", "phone_number": "PhoneNumber", "footnote": "Footnote"}
_FORM_FIELD = {key: field for field, key in LOCK_TEXT_KEYS.items()}


def _lock_params(text: Mapping[str, Any] | None, station: LockText, *, lost_mode: bool) -> dict[str, Any]:
    """The command's text: what the operator gave, else the station's (set on its org unit). A
    field the operator emptied is left out: the tablet shows no message, or no number."""
    given = dict(text or {})
    unknown = sorted(set(given) - set(LOCK_TEXT_KEYS))
    if unknown:
        raise IncidentInputError({key: ["Unknown field."] for key in unknown})
    params: dict[str, Any] = {}
    message = given.get("message", station.message)
    if message is not None and message != "":
        params["Message"] = message
    phone = given["phone_number"] if "phone_number" in given else station.phone_number
    if phone is not None and phone != "":
        params["PhoneNumber"] = phone
    if lost_mode:
        params["Footnote"] = given.get("footnote", DEFAULT_FOOTNOTE)
    return params


@dataclass(frozen=True)
class LockOutcome:
    command: Command
    lost_mode: bool
    # Said to the operator: whether lost mode or only a plain lock was possible, and why.
    notice_ja: str
    notice_en: str


def _load(schema: Schema, data: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return dict(schema.load(dict(data or {})))
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"report": exc.messages}
        raise IncidentInputError(messages) from exc


def same_person(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


def person_of(actor: Actor, action: str) -> int:
    """The user id of the person acting (DESIGN.md invariant 2: people, not tokens or sessions)."""
    if actor.user_id is None:
        raise PersonRequired(action)
    return actor.user_id


def _check_second_person(incident: Incident, actor: Actor, person: int) -> None:
    if person == incident.wipe_requested_by_user_id or same_person(actor.name, incident.wipe_requested_by):
        raise SamePersonError(incident.wipe_requested_by or "")


def send_incident_command(
    session: Session,
    incident: Incident,
    request_type: str,
    params: Mapping[str, Any] | None,
    *,
    actor: Actor,
    purpose: str,
    priority: int | None = None,
    wipe_approved: bool = False,
    context: CommandContext = NO_CONTEXT,
) -> Command:
    """Queue a command for the incident's device and link it to the incident's timeline."""
    command = enqueue_command(
        session,
        incident.device,
        request_type,
        params,
        actor=actor,
        priority=priority,
        wipe_approved=wipe_approved,
        context=context,
    )
    linked = session.scalars(select(IncidentCommand).where(IncidentCommand.command_id == command.id)).first()
    if linked is None:  # a coalesced inventory command may already be linked
        incident.commands.append(IncidentCommand(command=command, purpose=purpose))
        session.flush()
    return command


def _require_status(incident: Incident, allowed: tuple[str, ...], action: str) -> None:
    if incident.status not in allowed:
        raise IncidentStateError(f"cannot {action}: incident {incident.id} is {incident.status}")


def _reason(reason: str | None, action: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise ReasonRequired(action)
    if len(text) > MAX_REASON:
        raise IncidentInputError({"reason": [f"longer than {MAX_REASON} characters"]})
    return text


# -- opening and reading ---------------------------------------------------------------------------


def open_incident(session: Session, device: Device, report: Mapping[str, Any], *, actor: Actor) -> Incident:
    """Record a hotline call about `device`; the actor is the operator who took the call."""
    clean = _load(IncidentReportSchema(), report)
    incident = Incident(
        device_id=device.id,
        org_unit_id=device.org_unit_id,
        status=IncidentStatus.OPEN,
        operator=actor.name,
        opened_at=clock.now(),
        **clean,
    )
    incident.device = device
    session.add(incident)
    session.flush()
    record_step(
        session,
        incident,
        actor,
        "opened",
        {
            "kind": incident.kind,
            "caller_name": incident.caller_name,
            "caller_unit": incident.caller_unit,
            "lost_place": incident.lost_place,
            "lost_at": incident.lost_at.isoformat() if incident.lost_at else None,
        },
    )
    return incident


def get_incident(session: Session, incident_id: int) -> Incident | None:
    return session.get(Incident, incident_id)


def active_incident_for_device(session: Session, device: Device) -> Incident | None:
    return session.scalars(
        select(Incident)
        .where(Incident.device_id == device.id, Incident.status.in_(IncidentStatus.ACTIVE))
        .order_by(Incident.id.desc())
        .limit(1)
    ).first()


def list_incidents(session: Session, *, active_only: bool = False, limit: int = 100) -> list[Incident]:
    stmt = select(Incident).order_by(Incident.opened_at.desc(), Incident.id.desc()).limit(limit)
    if active_only:
        stmt = stmt.where(Incident.status.in_(IncidentStatus.ACTIVE))
    return list(session.scalars(stmt))


# -- lock now --------------------------------------------------------------------------------------


def _pending_lock(incident: Incident) -> Command | None:
    for link in incident.commands:
        if link.purpose == LOCK_PURPOSE and link.command.status in (CommandStatus.QUEUED, CommandStatus.SENT):
            return link.command
    return None


def lock_now(
    session: Session,
    incident: Incident,
    *,
    actor: Actor,
    message: Mapping[str, Any] | None = None,
    context: CommandContext = NO_CONTEXT,
) -> LockOutcome:
    """Lost mode for a supervised device, a plain DeviceLock otherwise; top priority, pushed at once.

    Pressing the button twice while the first lock is still waiting re-pushes that one instead of
    queueing a second.
    """
    _require_status(incident, IncidentStatus.ACTIVE, "lock")
    device = incident.device
    # Lost mode only on a device that reported itself supervised; EnableLostMode fails on any
    # other. Unknown (never reported) gets DeviceLock, which every device runs, and a
    # DeviceInformation request so that the next lock can use lost mode if it is supervised.
    lost_mode = device.is_supervised is True
    supervision_unknown = device.is_supervised is None
    if lost_mode:
        notice = ("紛失モードを送信しました。", "Lost mode sent.")
    elif supervision_unknown:
        notice = (
            "監視対象(supervised)かどうか端末から報告がないため、画面ロックを送信しました。"
            "端末情報も要求しました。監視対象と報告されれば、次のロックで紛失モードを使えます。",
            "The device never reported whether it is supervised, so a device lock was sent; device"
            " information was requested too, and the next lock uses lost mode if it reports supervised.",
        )
    else:
        notice = (
            "監視対象(supervised)でない端末のため、紛失モードは使えません。画面ロックを送信しました。",
            "The device is not supervised, so lost mode is unavailable; a device lock was sent instead.",
        )
    pending = _pending_lock(incident)
    if pending is not None:
        request_push(session, device.id)
        record_step(session, incident, actor, "lock_repushed", {"command_uuid": pending.uuid})
        return LockOutcome(pending, pending.request_type == "EnableLostMode", *notice)
    request_type = "EnableLostMode" if lost_mode else "DeviceLock"
    params = _lock_params(message, lock_text_for(session, device.org_unit), lost_mode=lost_mode)
    try:
        command = send_incident_command(
            session,
            incident,
            request_type,
            params,
            actor=actor,
            purpose=LOCK_PURPOSE,
            priority=Priority.URGENT,
            context=context,
        )
    except CommandParamsError as exc:
        raise IncidentInputError(
            {_FORM_FIELD.get(key, key): value for key, value in exc.fields.items()}
        ) from exc
    if lost_mode:
        incident.lost_mode = True
    elif supervision_unknown and device.platform == "apple":
        send_incident_command(
            session, incident, "DeviceInformation", None, actor=actor, purpose="supervision", context=context
        )
    record_step(
        session,
        incident,
        actor,
        "lock_sent",
        {
            "command_uuid": command.uuid,
            "request_type": request_type,
            "lost_mode": lost_mode,
            "supervised": device.is_supervised,
            "notice": notice[1],
        },
    )
    return LockOutcome(command, lost_mode, *notice)


# -- wipe, two people -----------------------------------------------------------------------------

_WIPE_REQUESTABLE = (IncidentStatus.OPEN, IncidentStatus.LOCKED)


def request_wipe(
    session: Session, incident: Incident, *, actor: Actor, reason: str | None = None
) -> Incident:
    """An operator asks for a wipe; nothing is sent until a different person approves."""
    _require_status(incident, _WIPE_REQUESTABLE, "request a wipe")
    person = person_of(actor, "request a wipe")
    incident.status = IncidentStatus.WIPE_REQUESTED
    incident.wipe_requested_by = actor.name
    incident.wipe_requested_by_user_id = person
    incident.wipe_requested_at = clock.now()
    incident.wipe_request_reason = (reason or "").strip() or None
    details = {"reason": incident.wipe_request_reason, "user_id": person}
    record_step(session, incident, actor, "wipe_requested", details)
    tell_approvers(session, incident, actor)
    return incident


def _send_erase(session: Session, incident: Incident, actor: Actor, context: CommandContext) -> Command:
    command = send_incident_command(
        session,
        incident,
        "EraseDevice",
        {},
        actor=actor,
        purpose=ERASE_PURPOSE,
        wipe_approved=True,
        context=context,
    )
    incident.erase_command_id = command.id
    incident.erase_command = command
    certificates = [row.fingerprint_sha256 for row in bound_identities(session, incident.device)]
    incident.wipe_identities = approved_identities(session, incident.device, certificates)
    incident.status = IncidentStatus.WIPE_APPROVED
    # The tablet is lost or stolen: its Wi-Fi certificates stop opening the station's network now,
    # not when (or whether) the erase reaches it.
    revoked = revoke_held(session, incident.device)
    if revoked:
        record_event(
            session,
            actor,
            "device.wifi_certificates_revoked",
            "device",
            incident.device.id,
            {"incident_id": incident.id, "certificates": revoked, "reason": "wipe"},
        )
    return command


def approve_wipe(
    session: Session, incident: Incident, *, actor: Actor, context: CommandContext = NO_CONTEXT
) -> Command:
    """A second person approves: EraseDevice is queued and pushed. The caller checks the role."""
    _require_status(incident, (IncidentStatus.WIPE_REQUESTED,), "approve a wipe")
    person = person_of(actor, "approve a wipe")
    _check_second_person(incident, actor, person)
    if incident.wipe_requested_by_user_id is None:
        raise RequesterUnknown()
    incident.wipe_approved_by = actor.name
    incident.wipe_approved_by_user_id = person
    incident.wipe_approved_at = clock.now()
    command = _send_erase(session, incident, actor, context)
    settle_approver_alerts(session, incident, actor, "消去を承認 / wipe approved")
    record_step(
        session,
        incident,
        actor,
        "wipe_approved",
        {
            "requested_by": incident.wipe_requested_by,
            "requested_by_user_id": incident.wipe_requested_by_user_id,
            "user_id": person,
            "command_uuid": command.uuid,
        },
    )
    return command


def reject_wipe(session: Session, incident: Incident, *, actor: Actor, reason: str | None) -> Incident:
    """A second person refuses the wipe, with a reason; the incident goes back to where it was."""
    _require_status(incident, (IncidentStatus.WIPE_REQUESTED,), "reject a wipe")
    text = _reason(reason, "reject a wipe")
    person = person_of(actor, "reject a wipe")
    _check_second_person(incident, actor, person)
    requested_by = incident.wipe_requested_by
    incident.status = IncidentStatus.LOCKED if incident.locked_at else IncidentStatus.OPEN
    incident.wipe_requested_by = None
    incident.wipe_requested_by_user_id = None
    incident.wipe_requested_at = None
    incident.wipe_request_reason = None
    settle_approver_alerts(session, incident, actor, f"消去を却下 / wipe rejected: {text}")
    record_step(
        session,
        incident,
        actor,
        "wipe_rejected",
        {"reason": text, "requested_by": requested_by, "user_id": person},
    )
    return incident


def break_glass_wipe(
    session: Session,
    incident: Incident,
    *,
    actor: Actor,
    reason: str | None,
    context: CommandContext = NO_CONTEXT,
) -> Command:
    """An administrator wipes alone, with a mandatory reason; flagged on the timeline and audit."""
    _require_status(incident, (*_WIPE_REQUESTABLE, IncidentStatus.WIPE_REQUESTED), "break glass")
    if actor.role != "admin":
        raise BreakGlassNotAllowed(actor.role)
    person = person_of(actor, "break glass")
    text = _reason(reason, "break glass")
    now = clock.now()
    if incident.wipe_requested_by is None:
        incident.wipe_requested_by = actor.name
        incident.wipe_requested_by_user_id = person
        incident.wipe_requested_at = now
    incident.wipe_approved_by = actor.name
    incident.wipe_approved_by_user_id = person
    incident.wipe_approved_at = now
    incident.break_glass = True
    incident.break_glass_reason = text
    command = _send_erase(session, incident, actor, context)
    settle_approver_alerts(session, incident, actor, f"緊急単独実行 / break glass: {text}")
    record_step(
        session,
        incident,
        actor,
        "wipe_break_glass",
        {"reason": text, "command_uuid": command.uuid, "user_id": person},
        flagged=True,
    )
    return command


def policy_wipe(
    session: Session, incident: Incident, *, actor: Actor, reason: str, context: CommandContext = NO_CONTEXT
) -> Command:
    """The scheduler's door: a unit's auto-wipe policy (set by an administrator, audited) wipes an
    unrecovered incident. No person acts, so it is recorded like break glass: flagged, with the
    policy as the reason, never as a second person's approval."""
    _require_status(incident, (*_WIPE_REQUESTABLE, IncidentStatus.WIPE_REQUESTED), "auto-wipe")
    if actor.user_id is not None or actor.role != "system":
        raise PersonRequired("auto-wipe by policy (only the scheduler's policy actor may)")
    now = clock.now()
    incident.wipe_requested_by = incident.wipe_requested_by or actor.name
    incident.wipe_requested_at = incident.wipe_requested_at or now
    incident.wipe_approved_by = actor.name
    incident.wipe_approved_by_user_id = None
    incident.wipe_approved_at = now
    incident.break_glass = True
    incident.break_glass_reason = reason
    command = _send_erase(session, incident, actor, context)
    record_step(
        session,
        incident,
        actor,
        "wipe_auto",
        {"reason": reason, "command_uuid": command.uuid},
        flagged=True,
    )
    return command


# -- location, sound, passcode ---------------------------------------------------------------------


def locate_device(
    session: Session, incident: Incident, *, actor: Actor, context: CommandContext = NO_CONTEXT
) -> Command:
    """Ask a device in lost mode where it is; the answer lands on the incident (see results)."""
    _require_status(incident, IncidentStatus.ACTIVE, "locate the device")
    command = send_incident_command(
        session, incident, "DeviceLocation", {}, actor=actor, purpose="location", context=context
    )
    record_step(session, incident, actor, "location_requested", {"command_uuid": command.uuid})
    return command


def play_lost_mode_sound(
    session: Session, incident: Incident, *, actor: Actor, context: CommandContext = NO_CONTEXT
) -> Command:
    _require_status(incident, IncidentStatus.ACTIVE, "play the lost-mode sound")
    command = send_incident_command(
        session, incident, "PlayLostModeSound", {}, actor=actor, purpose="sound", context=context
    )
    record_step(session, incident, actor, "sound_requested", {"command_uuid": command.uuid})
    return command


def clear_passcode(
    session: Session, incident: Incident, *, actor: Actor, context: CommandContext = NO_CONTEXT
) -> Command:
    """Clear the passcode with the device's stored UnlockToken (added only at delivery). A device
    that never sent one is refused by the queue (CommandRefused, code device_cannot_run)."""
    command = send_incident_command(
        session, incident, "ClearPasscode", {}, actor=actor, purpose="passcode", context=context
    )
    record_step(session, incident, actor, "passcode_clear_requested", {"command_uuid": command.uuid})
    return command


# -- recovery --------------------------------------------------------------------------------------


def recover(
    session: Session,
    incident: Incident,
    *,
    actor: Actor,
    note: str | None = None,
    context: CommandContext = NO_CONTEXT,
) -> Incident:
    """The tablet is back: leave lost mode, refresh inventory, close the incident.

    A wipe that is approved but not yet fetched by the device is cancelled; one already handed to
    the device cannot be called back.
    """
    _require_status(incident, IncidentStatus.ACTIVE, "mark as recovered")
    erase = incident.erase_command
    if erase is not None and erase.status in (CommandStatus.QUEUED, CommandStatus.NOT_NOW):
        cancel_command(session, erase, actor=actor)
    elif erase is not None and erase.status in (CommandStatus.SENT, CommandStatus.ACKNOWLEDGED):
        raise IncidentStateError(f"the wipe was already delivered to the device ({erase.status})")
    for link in incident.commands:
        pending = link.command.status in (CommandStatus.QUEUED, CommandStatus.NOT_NOW)
        if pending and link.purpose == LOCK_PURPOSE:
            cancel_command(session, link.command, actor=actor)
    sent = []
    if incident.lost_mode and incident.device.is_supervised:
        sent.append(
            send_incident_command(
                session, incident, "DisableLostMode", {}, actor=actor, purpose="recovery", context=context
            )
        )
    for request_type in ("DeviceInformation", "SecurityInfo"):
        sent.append(
            send_incident_command(
                session, incident, request_type, None, actor=actor, purpose="recovery", context=context
            )
        )
    settle_approver_alerts(session, incident, actor, "端末回収 / tablet recovered")
    now = clock.now()
    incident.status = IncidentStatus.RECOVERED
    incident.recovered_by = actor.name
    incident.recovered_at = now
    record_step(
        session,
        incident,
        actor,
        "recovered",
        {"note": (note or "").strip() or None, "commands": [c.request_type for c in sent]},
    )
    incident.status = IncidentStatus.CLOSED
    incident.closed_at = now
    record_step(session, incident, actor, "closed")
    return incident
