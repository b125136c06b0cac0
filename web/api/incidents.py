"""The loss and theft hotline: incidents, lock now, two-person wipe, recovery, wipe certificates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Response
from sqlalchemy.orm import Session

import commands.incidents as hotline
from commands.incidents.views import incident_detail, incident_summary, search_incidents, visible_to
from commands.incidents.wipe_identity import MISMATCH_STEP
from commands.queue import CommandRefused
from commands.wipe_certificate import (
    certificate_for_incident,
    issue_wipe_certificate,
    render_certificate_html,
)
from mdm.doors.appctx import command_context, db_session, hikeshi, settings
from mdm.ground.db import read_mostly
from mdm.ground.models import Command
from mdm.ground.models.incident import Incident, WipeCertificate
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.api.incidents_schemas import (
    IncidentActionSchema,
    IncidentCreateSchema,
    IncidentDetailSchema,
    IncidentPageSchema,
    IncidentQuerySchema,
    LockSchema,
    ReasonSchema,
    RecoverSchema,
    RequiredReasonSchema,
)
from web.errors import ApiError
from web.headers import OTHER_PAGES_POLICY
from web.queries import visible_device
from web.rbac import Permission

blp = ApiBlueprint(
    "incidents",
    __name__,
    url_prefix="/api/v1",
    description="Loss and theft hotline: incidents, lock now, two-person wipe, wipe certificates",
)


def _incident_or_404(incident_id: int) -> Incident:
    incident = db_session().get(Incident, incident_id)
    if incident is None or not visible_to(incident, current_principal().scope_unit_ids):
        raise ApiError(404, f"no incident with id {incident_id}")
    return incident


@contextmanager
def _domain_errors() -> Iterator[None]:
    """The hotline's domain refusals as clear 4xx answers naming the field."""
    try:
        yield
    except (hotline.SamePersonError, hotline.PersonRequired) as exc:
        raise ApiError(403, str(exc), code="two_person_rule", fields=exc.fields) from exc
    except hotline.RequesterUnknown as exc:
        raise ApiError(409, str(exc), code="two_person_rule", fields=exc.fields) from exc
    except hotline.BreakGlassNotAllowed as exc:
        raise ApiError(403, str(exc), code="break_glass_admin_only", fields=exc.fields) from exc
    except hotline.IncidentStateError as exc:
        raise ApiError(409, str(exc), code="incident_state", fields=exc.fields) from exc
    except hotline.IncidentError as exc:
        raise ApiError(400, str(exc), fields=exc.fields) from exc
    except CommandRefused as exc:
        status = 409 if exc.field == "device" else 400
        raise ApiError(status, exc.bilingual, code=exc.code, fields={exc.field: [exc.bilingual]}) from exc


def _detail(incident: Incident) -> dict[str, Any]:
    """The incident after the action, read in a deferred transaction: on SQLite the answer must not
    hold the write lock that the push dispatcher needs to send the lock and record it."""
    with Session(read_mostly(hikeshi().engine)) as reader:
        return incident_detail(reader, reader.get(Incident, incident.id) or incident)


def _act(
    incident_id: int, action: Callable[[Incident], Any], *, notice: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Run one hotline action in the request's transaction, commit, answer with the new state."""
    incident = _incident_or_404(incident_id)
    session = db_session()
    with _domain_errors():
        result = action(incident)
    session.commit()
    command = result if isinstance(result, Command) else getattr(result, "command", None)
    if isinstance(result, hotline.LockOutcome):
        notice = (result.notice_ja, result.notice_en)
    return {
        "incident": _detail(incident),
        "command": command,
        "notice_ja": notice[0] if notice else None,
        "notice_en": notice[1] if notice else None,
    }


@blp.route("/incidents", methods=["GET"])
@blp.arguments(IncidentQuerySchema, location="query", as_kwargs=True)
@blp.response(200, IncidentPageSchema)
@permission(Permission.INCIDENT_READ)
def list_incidents(**filters: Any) -> Any:
    """Incidents, newest first (filters: status, active, device, text)."""
    found = search_incidents(
        db_session(),
        unit_ids=current_principal().scope_unit_ids,
        status=filters.get("status"),
        active=filters.get("active"),
        device_id=filters.get("device_id"),
        text=filters.get("q"),
        page=filters.get("page", 1),
        per_page=filters.get("per_page", 50),
    )
    return {
        "items": [incident_summary(i) for i in found.items],
        "page": found.page,
        "per_page": found.per_page,
        "total": found.total,
    }


@blp.route("/incidents", methods=["POST"])
@blp.arguments(IncidentCreateSchema)
@blp.response(201, IncidentDetailSchema)
@permission(Permission.INCIDENT_WRITE)
def open_incident(body: dict[str, Any]) -> Any:
    """Record a hotline call: which device, who called (name, unit, call-back number), when and where
    it was lost, lost or stolen. The operator is the caller of this API."""
    principal = current_principal()
    session = db_session()
    device_id = body.pop("device_id")
    device = visible_device(session, principal, device_id)
    if device is None:
        raise ApiError(404, f"no device with id {device_id}", fields={"device_id": ["no such device"]})
    with _domain_errors():
        incident = hotline.open_incident(session, device, body, actor=principal.actor)
    session.commit()
    return _detail(incident)


@blp.route(f"/incidents/<{ID}:incident_id>", methods=["GET"])
@blp.response(200, IncidentDetailSchema)
@permission(Permission.INCIDENT_READ)
def get_incident(incident_id: int) -> Any:
    """One incident with its timeline: every step, every command with its delivery state (queued,
    pushed, delivered, acknowledged, error) and times, every push attempt, the locations."""
    return incident_detail(db_session(), _incident_or_404(incident_id))


@blp.route(f"/incidents/<{ID}:incident_id>/lock", methods=["POST"])
@blp.arguments(LockSchema, required=False)
@blp.response(200, IncidentActionSchema)
@permission(Permission.COMMAND_QUEUE_HOTLINE)
def lock_now(body: dict[str, Any], incident_id: int) -> Any:
    """Lock now: lost mode (supervised) or DeviceLock, at top priority, pushed at once."""
    actor = current_principal().actor
    return _act(
        incident_id,
        lambda i: hotline.lock_now(db_session(), i, actor=actor, message=body, context=command_context()),
    )


@blp.route(f"/incidents/<{ID}:incident_id>/location-request", methods=["POST"])
@blp.response(200, IncidentActionSchema)
@permission(Permission.COMMAND_QUEUE_HOTLINE)
def request_location(incident_id: int) -> Any:
    """Ask the device (in lost mode) where it is; the answer appears on the incident."""
    actor = current_principal().actor
    return _act(
        incident_id, lambda i: hotline.locate_device(db_session(), i, actor=actor, context=command_context())
    )


@blp.route(f"/incidents/<{ID}:incident_id>/wipe-request", methods=["POST"])
@blp.arguments(ReasonSchema, required=False)
@blp.response(200, IncidentActionSchema)
@permission(Permission.WIPE_REQUEST)
def request_wipe(body: dict[str, Any], incident_id: int) -> Any:
    """Ask for a wipe. Nothing is sent until a different person approves."""
    actor = current_principal().actor
    return _act(
        incident_id, lambda i: hotline.request_wipe(db_session(), i, actor=actor, reason=body.get("reason"))
    )


@blp.route(f"/incidents/<{ID}:incident_id>/wipe-approval", methods=["POST"])
@blp.response(200, IncidentActionSchema)
@permission(Permission.WIPE_APPROVE)
def approve_wipe(incident_id: int) -> Any:
    """Approve a wipe requested by someone else: EraseDevice is queued and pushed. The person who
    requested it gets 403 with code `two_person_rule`."""
    actor = current_principal().actor
    return _act(
        incident_id, lambda i: hotline.approve_wipe(db_session(), i, actor=actor, context=command_context())
    )


@blp.route(f"/incidents/<{ID}:incident_id>/wipe-rejection", methods=["POST"])
@blp.arguments(RequiredReasonSchema)
@blp.response(200, IncidentActionSchema)
@permission(Permission.WIPE_APPROVE)
def reject_wipe(body: dict[str, Any], incident_id: int) -> Any:
    """Reject a wipe requested by someone else, with a reason."""
    actor = current_principal().actor
    return _act(
        incident_id, lambda i: hotline.reject_wipe(db_session(), i, actor=actor, reason=body["reason"])
    )


@blp.route(f"/incidents/<{ID}:incident_id>/break-glass", methods=["POST"])
@blp.arguments(RequiredReasonSchema)
@blp.response(200, IncidentActionSchema)
@permission(Permission.WIPE_BREAK_GLASS)
def break_glass(body: dict[str, Any], incident_id: int) -> Any:
    """An administrator wipes alone, with a mandatory reason (flagged red on the timeline and audit)."""
    actor = current_principal().actor
    return _act(
        incident_id,
        lambda i: hotline.break_glass_wipe(
            db_session(), i, actor=actor, reason=body["reason"], context=command_context()
        ),
    )


@blp.route(f"/incidents/<{ID}:incident_id>/recover", methods=["POST"])
@blp.arguments(RecoverSchema, required=False)
@blp.response(200, IncidentActionSchema)
@permission(Permission.INCIDENT_WRITE)
def recover(body: dict[str, Any], incident_id: int) -> Any:
    """The tablet is back: leave lost mode, refresh its inventory, close the incident."""
    actor = current_principal().actor
    return _act(
        incident_id,
        lambda i: hotline.recover(
            db_session(), i, actor=actor, note=body.get("note"), context=command_context()
        ),
    )


# -- the wipe certificate ----------------------------------------------------------------------------


def signed_certificate(incident: Incident) -> WipeCertificate:
    """The incident's certificate, signed (now, if the acknowledgement could not sign it)."""
    session = db_session()
    certificate = certificate_for_incident(session, incident)
    if certificate is None:
        why = "the device has not confirmed"
        if any(step.action == MISMATCH_STEP for step in incident.steps):
            why = "the erase was acknowledged by an identity other than the one bound at approval"
        raise ApiError(404, f"incident {incident.id} has no wipe certificate ({why})")
    if certificate.signature is None:
        issue_wipe_certificate(session, settings(), certificate, actor=current_principal().actor)
        session.commit()
    return certificate


def _download(body: bytes | str, content_type: str, filename: str) -> Response:
    return Response(
        body, content_type=content_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


def _binary_doc(content_type: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "responses": {
            "200": {
                "description": description,
                "content": {content_type: {"schema": schema or {"type": "string", "format": "binary"}}},
            }
        }
    }


@blp.route(f"/incidents/<{ID}:incident_id>/certificate", methods=["GET"])
@blp.doc(
    **_binary_doc("application/json", "消去完了証明書: the signed JSON, byte for byte", {"type": "object"})
)
@permission(Permission.INCIDENT_READ)
def certificate_json(incident_id: int) -> Response:
    """The wipe certificate JSON exactly as signed (verify with `hikeshi certificate verify`)."""
    certificate = signed_certificate(_incident_or_404(incident_id))
    return _download(certificate.content, "application/json", f"wipe-certificate-{incident_id}.json")


@blp.route(f"/incidents/<{ID}:incident_id>/certificate/signature", methods=["GET"])
@blp.doc(**_binary_doc("application/pkcs7-signature", "detached CMS signature (DER) of the JSON"))
@permission(Permission.INCIDENT_READ)
def certificate_signature(incident_id: int) -> Response:
    """The detached CMS signature (DER): `openssl cms -verify -binary -inform DER -content …`."""
    certificate = signed_certificate(_incident_or_404(incident_id))
    assert certificate.signature is not None
    return _download(
        certificate.signature, "application/pkcs7-signature", f"wipe-certificate-{incident_id}.json.p7s"
    )


@blp.route(f"/incidents/<{ID}:incident_id>/certificate/html", methods=["GET"])
@blp.doc(**_binary_doc("text/html", "the printable page, Japanese first"))
@permission(Permission.INCIDENT_READ)
def certificate_html(incident_id: int) -> Response:
    """The certificate as a printable page."""
    certificate = signed_certificate(_incident_or_404(incident_id))
    page = render_certificate_html(certificate.content, signer_fingerprint=certificate.signer_fingerprint)
    # The printable page keeps its print styles in a <style> element; still no script at all.
    return Response(
        page, content_type="text/html; charset=utf-8", headers={"Content-Security-Policy": OTHER_PAGES_POLICY}
    )
