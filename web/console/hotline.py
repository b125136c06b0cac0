"""The hotline page: built for a stressed person at 3 a.m. One search box, a big "lock now" button
per tablet, and an incident page that shows queued → pushed → acknowledged live (hotline.js polls
its JSON), the location as plain coordinates and a link, the two-person wipe, recovery and the
wipe certificate."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import format_datetime, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

import commands.incidents as hotline
from commands.incidents.approvers import person_label
from commands.incidents.finder_screen import FinderState
from commands.incidents.lock_text import lock_text_for
from commands.incidents.service import same_person
from commands.incidents.views import (
    find_devices,
    incident_detail,
    search_incidents,
    visible_to,
)
from commands.queue import CommandRefused
from commands.wipe_certificate import (
    certificate_for_incident,
    issue_wipe_certificate,
    render_certificate_html,
)
from mdm.doors.appctx import command_context, db_session, hikeshi, settings
from mdm.ground.db import read_mostly
from mdm.ground.models.incident import Incident, IncidentStatus, LossKind, WipeCertificate
from mdm.services.orgunits import unit_chains
from web.console.blueprint import bp
from web.console.guard import ask_confirmation, confirmed, current_principal, needs
from web.console.labels import command_label
from web.headers import OTHER_PAGES_POLICY
from web.queries import visible_device
from web.rbac import Permission

SPARE_SWAP_PATH = "/console/continuity/swap"
POLL_SECONDS = 1.5
MAX_QUERY = 100

DELIVERY = {
    "queued": _l("queued (waiting for push)"),
    "pushed": _l("pushed (waiting for the device)"),
    "delivered": _l("delivered to the device"),
    "acknowledged": _l("acknowledged by the device"),
    "error": _l("error on the device"),
    "not_now": _l("device busy, will retry"),
    "cancelled": _l("cancelled"),
    "expired": _l("expired"),
}
WIPE_PROGRESS = {
    "not_requested": _l("No wipe requested"),
    "requested": _l("Wipe requested: waiting for a second person"),
    "approved_not_delivered": _l("Wipe requested, not delivered: the device has not fetched it"),
    "delivered_not_confirmed": _l("Wipe delivered, not confirmed by the device"),
    "confirmed": _l("Wiped: confirmed by the device"),
    "failed": _l("Wipe failed"),
}
PURPOSES = {
    "lock": _l("lock"),
    "erase": _l("wipe"),
    "location": _l("location"),
    "recovery": _l("recovery"),
    "sound": _l("sound"),
    "passcode": _l("passcode"),
    "supervision": _l("supervision check"),
}
STEPS = {
    "opened": _l("Call taken, incident opened"),
    "lock_sent": _l("Lock sent"),
    "lock_repushed": _l("Lock pushed again"),
    "lock_confirmed": _l("Lock confirmed by the device"),
    "lock_failed": _l("Lock failed on the device"),
    "lock_not_displayed": _l("Lock acknowledged but its message was NOT displayed"),
    "wipe_requested": _l("Wipe requested"),
    "wipe_approved": _l("Wipe approved"),
    "wipe_rejected": _l("Wipe rejected"),
    "wipe_break_glass": _l("BREAK GLASS: wipe without a second person"),
    "wipe_auto": _l("Automatic wipe by the unit's policy"),
    "auto_wipe_reminder": _l("Reminder: automatic wipe is near"),
    "location_requested": _l("Location requested"),
    "location_received": _l("Location received"),
    "location_unusable": _l("Location answer unusable"),
    "sound_requested": _l("Lost-mode sound requested"),
    "passcode_clear_requested": _l("Passcode clear requested"),
    "wiped": _l("Wiped: certificate issued"),
    "wipe_failed": _l("Wipe failed on the device"),
    "wipe_identity_mismatch": _l("Wipe acknowledged by an unapproved identity: no certificate"),
    "spare_swapped": _l("Spare tablet handed to the unit"),
    "recovered": _l("Recovered"),
    "closed": _l("Incident closed"),
    "push_accepted": _l("Push accepted by APNs"),
    "push_failed": _l("Push failed"),
}


FINDER = {
    FinderState.NOTHING_SENT: _l("No lock has been sent: the tablet shows nothing of ours."),
    FinderState.NOT_ACKNOWLEDGED: _l(
        "Not yet acknowledged by the tablet: what its screen shows is unknown until it answers."
    ),
    FinderState.SHOWN: _l("The tablet acknowledged; the finder sees:"),
    FinderState.NOT_SHOWN: _l(
        "The tablet acknowledged but did NOT display the message (no passcode). The finder sees no message."
    ),
    FinderState.UNKNOWN: _l("The tablet acknowledged without saying whether the message is displayed. Sent:"),
    FinderState.FAILED: _l("The tablet answered with an error: it shows nothing of ours. Sent:"),
    FinderState.ENDED: _l("Lost mode has ended: the tablet no longer shows the lock screen."),
}
# The lock form's fields (console) and why one was refused, in the console's language.
LOCK_FIELDS = {
    "message": (_l("Lock-screen message"), _l("1 to 500 characters")),
    "phone_number": (
        _l("Callback number on the lock screen"),
        _l("digits, + - ( ) and spaces only, up to 32 characters"),
    ),
}


def _ja() -> bool:
    return str(get_locale() or "ja") == "ja"


def _pair(labels: tuple[str, str]) -> str:
    return labels[0] if _ja() else labels[1]


def lock_texts(lock: dict[str, Any]) -> dict[str, Any]:
    """The lock state and the operator's next step in the page's language (Japanese first)."""
    return {
        "state": lock["state"],
        "label": lock["label_ja"] if _ja() else lock["label_en"],
        "next_step": lock["next_step_ja"] if _ja() else lock["next_step_en"],
        "message_result": lock["message_result"],
    }


def status_text(status: str) -> str:
    return _pair(IncidentStatus.LABELS.get(status, (status, status)))


def kind_text(kind: str) -> str:
    return _pair(LossKind.LABELS.get(kind, (kind, kind)))


def _time(value: Any) -> str:
    return format_datetime(value, "yyyy-MM-dd HH:mm:ss") if value is not None else "—"


def _entry_text(entry: dict[str, Any]) -> str:
    details = entry["details"]
    if entry["kind"] == "command":
        return f"{command_label(details['request_type'])}: {DELIVERY.get(entry['action'], entry['action'])}"
    text = str(STEPS.get(entry["action"], entry["action"]))
    if entry["kind"] == "push":
        code = details.get("status_code")
        text += " " + _("(HTTP %(code)s, %(n)d tries)", code=code or "—", n=details.get("attempts") or 1)
        if details.get("reason"):
            text += f" {details['reason']}"
    elif details.get("reason"):
        text += f" — {details['reason']}"
    elif details.get("request_type"):
        text += f" ({command_label(details['request_type'])})"
        if details.get("message_result"):
            text += f" MessageResult: {details['message_result']}"
    elif details.get("latitude") is not None:
        text += f" ({details['latitude']:.6f}, {details['longitude']:.6f})"
    return text


def live_view(detail: dict[str, Any]) -> dict[str, Any]:
    """What the page shows, formatted once here for both the first render and every poll."""
    location = detail["location"]
    return {
        "id": detail["id"],
        "status": detail["status"],
        "status_label": status_text(detail["status"]),
        "wipe_progress": detail["wipe_progress"],
        "wipe_progress_label": str(WIPE_PROGRESS.get(detail["wipe_progress"], detail["wipe_progress"])),
        "locked_at": _time(detail["locked_at"]),
        "lock": lock_texts(detail["lock"]),
        "lost_mode": detail["lost_mode"],
        "commands": [
            {
                "uuid": c["uuid"],
                "label": command_label(c["request_type"]),
                "purpose": str(PURPOSES.get(c["purpose"], c["purpose"])),
                "state": c["state"],
                "state_label": str(DELIVERY.get(c["state"], c["state"])),
                "queued": _time(c["queued_at"]),
                "pushed": _time(c["pushed_at"]),
                "delivered": _time(c["delivered_at"]),
                "acknowledged": _time(c["acknowledged_at"] or c["error_at"]),
                "deliveries": c["delivery_count"],
            }
            for c in detail["commands"]
        ],
        "pushes": [
            {
                "at": _time(p["attempted_at"]),
                "attempt": p["attempt"],
                "status_code": p["status_code"] if p["status_code"] is not None else "—",
                "reason": p["reason"] or "",
                "accepted": p["accepted"],
            }
            for p in detail["push_attempts"]
        ],
        "timeline": [
            {
                "at": _time(e["at"]),
                "kind": e["kind"],
                "text": _entry_text(e),
                "actor": e["actor"] or "",
                "flagged": e["flagged"],
            }
            for e in detail["timeline"]
        ],
        "location": None
        if location is None
        else {
            "latitude": f"{location['latitude']:.6f}",
            "longitude": f"{location['longitude']:.6f}",
            "accuracy": f"{location['accuracy']:.0f}" if location["accuracy"] is not None else "—",
            "at": _time(location["located_at"]),
            "map_url": location["map_url"],
        },
        "certificate": detail["certificate"] is not None,
        "finder": finder_view(detail["finder"]),
    }


def finder_view(finder: dict[str, Any]) -> dict[str, Any]:
    def text(value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        return {**value, "label": command_label(value["request_type"]), "at": _time(value["at"])}

    return {
        "state": finder["state"],
        "label": str(FINDER[finder["state"]]),
        "text": text(finder["text"]),
        "waiting": text(finder["waiting"]),
        "key": finder["key"],
    }


# -- search -----------------------------------------------------------------------------------------


MAX_HITS = 20


@bp.route("/hotline")
@needs(Permission.INCIDENT_READ)
def hotline_search() -> str:
    session = db_session()
    principal = current_principal()
    query = (request.args.get("q") or "").strip()[:MAX_QUERY].replace("\x00", "")
    hits = find_devices(session, query, unit_ids=principal.scope_unit_ids, limit=MAX_HITS) if query else []
    active = search_incidents(session, unit_ids=principal.scope_unit_ids, active=True, per_page=50)
    # The units of every hit and those above them in one query, not a tree walk per hit.
    chains = unit_chains(session, {h.device.org_unit_id for h in hits if h.device.org_unit_id is not None})
    return render_template(
        "console/hotline.html",
        query=query,
        hits=hits,
        lock_texts={
            hit.device.id: lock_text_for(session, None, chain=chains.get(hit.device.org_unit_id or 0, []))
            for hit in hits
        },
        active=active.items,
        status_text=status_text,
        kind_text=kind_text,
        kinds=[(k, kind_text(k)) for k in LossKind.ALL],
    )


def _report(form: Any) -> dict[str, Any]:
    fields = ("caller_name", "caller_unit", "callback_number", "lost_place", "kind", "notes")
    report = {name: form.get(name, "").replace("\x00", "") for name in fields if form.get(name) is not None}
    if form.get("lost_at"):
        report["lost_at"] = form["lost_at"]
    return report


def _lock_text(form: Any) -> dict[str, str] | None:
    """The lock form's message and number as typed (an emptied field sends none); None when the
    form has no such fields, so the station's text applies."""
    if "lock_message" not in form and "lock_phone" not in form:
        return None
    return {
        "message": (form.get("lock_message") or "").replace("\x00", "").strip(),
        "phone_number": (form.get("lock_phone") or "").replace("\x00", "").strip(),
    }


def _flash_error(exc: Exception) -> None:
    if isinstance(exc, hotline.SamePersonError):
        flash(_("The person who requested the wipe cannot approve it. A second person must decide."), "error")
    elif isinstance(exc, hotline.RequesterUnknown):
        flash(_("The person who requested this wipe is not known. Reject it and request it again."), "error")
    elif isinstance(exc, hotline.BreakGlassNotAllowed):
        flash(_("Only an administrator may break glass."), "error")
    elif isinstance(exc, hotline.ReasonRequired):
        flash(_("A reason is required."), "error")
    elif isinstance(exc, hotline.IncidentInputError):
        named = [
            f"{LOCK_FIELDS[name][0]} ({LOCK_FIELDS[name][1]})" if name in LOCK_FIELDS else name
            for name in sorted(exc.fields)
        ]
        flash(_("Please check: %(fields)s", fields=", ".join(named)), "error")
    elif isinstance(exc, hotline.IncidentStateError):
        flash(_("Not possible in the incident's current state: %(message)s", message=str(exc)), "error")
    elif isinstance(exc, CommandRefused):
        flash(exc.bilingual, "error")
    else:
        flash(str(exc), "error")


@bp.route("/hotline/devices/<int:device_id>/incident", methods=["POST"])
@needs(Permission.INCIDENT_WRITE)
def hotline_open(device_id: int) -> Response:
    """Open an incident for the tablet and, with the big button, lock it in the same step."""
    session = db_session()
    principal = current_principal()
    device = visible_device(session, principal, device_id)
    if device is None:
        abort(404)
    lock = request.form.get("action") == "lock"
    if lock and not principal.can(Permission.COMMAND_QUEUE_HOTLINE):
        abort(403)
    existing = hotline.active_incident_for_device(session, device)
    try:
        incident = existing or hotline.open_incident(
            session, device, _report(request.form), actor=principal.actor
        )
        text = _lock_text(request.form)
        context = command_context()
        outcome = (
            hotline.lock_now(session, incident, actor=principal.actor, message=text, context=context)
            if lock
            else None
        )
    except (hotline.IncidentError, CommandRefused) as exc:
        session.rollback()
        _flash_error(exc)
        return redirect(url_for("console.hotline_search", q=request.form.get("q") or device.serial_number))  # type: ignore[return-value]
    session.commit()
    if existing is not None:
        flash(_("This tablet already has an open incident; it was used."), "info")
    if outcome is not None:
        flash(_pair((outcome.notice_ja, outcome.notice_en)), "ok")
    return redirect(url_for("console.hotline_incident", incident_id=incident.id))  # type: ignore[return-value]


# -- one incident -----------------------------------------------------------------------------------


def _incident_or_404(incident_id: int) -> Incident:
    incident = db_session().get(Incident, incident_id)
    if incident is None or not visible_to(incident, current_principal().scope_unit_ids):
        abort(404)
    return incident


@bp.route("/hotline/incidents/<int:incident_id>")
@needs(Permission.INCIDENT_READ)
def hotline_incident(incident_id: int) -> str:
    session = db_session()
    incident = _incident_or_404(incident_id)
    detail = incident_detail(session, incident)
    swap = None
    if incident.org_unit_id is not None:
        swap = f"{SPARE_SWAP_PATH}?unit_id={incident.org_unit_id}&incident_id={incident.id}"
    return render_template(
        "console/incident.html",
        incident=incident,
        detail=detail,
        live=live_view(detail),
        lock_text=lock_text_for(session, incident.device.org_unit),
        swap_url=swap,
        active=incident.status in IncidentStatus.ACTIVE,
        kind_text=kind_text,
        poll_ms=int(POLL_SECONDS * 1000),
    )


@bp.route("/hotline/incidents/<int:incident_id>/live.json")
@needs(Permission.INCIDENT_READ)
def hotline_incident_json(incident_id: int) -> Response:
    """Polled by hotline.js every 1.5 s while the incident page is open; read in a deferred
    transaction so that polling pages never hold SQLite's write lock."""
    _incident_or_404(incident_id)
    db_session().rollback()  # end the request's (write-locking on SQLite) transaction before reading
    with Session(read_mostly(hikeshi().engine)) as reader:
        incident = reader.get(Incident, incident_id)
        assert incident is not None
        return jsonify(live_view(incident_detail(reader, incident)))


def _act(incident_id: int, action: Any, done: str) -> Response:
    session = db_session()
    incident = _incident_or_404(incident_id)
    try:
        result = action(session, incident, current_principal())
    except (hotline.IncidentError, CommandRefused) as exc:
        session.rollback()
        _flash_error(exc)
    else:
        session.commit()
        if isinstance(result, hotline.LockOutcome):
            flash(_pair((result.notice_ja, result.notice_en)), "ok")
        else:
            flash(done, "ok")
    return redirect(url_for("console.hotline_incident", incident_id=incident_id))  # type: ignore[return-value]


def _reason() -> str:
    return (request.form.get("reason") or "").replace("\x00", "")[:2000]


@bp.route("/hotline/incidents/<int:incident_id>/lock", methods=["POST"])
@needs(Permission.COMMAND_QUEUE_HOTLINE)
def hotline_lock(incident_id: int) -> Response:
    text = _lock_text(request.form)
    return _act(
        incident_id,
        lambda s, i, p: hotline.lock_now(s, i, actor=p.actor, message=text, context=command_context()),
        "",
    )


@bp.route("/hotline/incidents/<int:incident_id>/location", methods=["POST"])
@needs(Permission.COMMAND_QUEUE_HOTLINE)
def hotline_locate(incident_id: int) -> Response:
    return _act(
        incident_id,
        lambda s, i, p: hotline.locate_device(s, i, actor=p.actor, context=command_context()),
        _("Location requested."),
    )


@bp.route("/hotline/incidents/<int:incident_id>/wipe-request", methods=["POST"])
@needs(Permission.WIPE_REQUEST)
def hotline_wipe_request(incident_id: int) -> Response:
    reason = _reason()
    return _act(
        incident_id,
        lambda s, i, p: hotline.request_wipe(s, i, actor=p.actor, reason=reason),
        _("Wipe requested. A second person (approver) must approve it."),
    )


@bp.route("/hotline/incidents/<int:incident_id>/wipe-approve", methods=["POST"])
@needs(Permission.WIPE_APPROVE)
def hotline_wipe_approve(incident_id: int) -> Response | str:
    """Approval is a second step: the page names the tablet and the requester before anything is
    sent. A request the approver could not decide anyway (not waiting, or their own) is refused
    at once by the service, with its reason."""
    incident = _incident_or_404(incident_id)
    principal = current_principal()
    decidable = incident.status == IncidentStatus.WIPE_REQUESTED and not (
        principal.person_id == incident.wipe_requested_by_user_id
        or same_person(principal.actor.name, incident.wipe_requested_by)
    )
    if decidable and not confirmed():
        device = incident.device
        name = device.device_name or device.serial_number or f"#{device.id}"
        if device.asset_tag:
            name = f"{name} [{device.asset_tag}]"
        reason = incident.wipe_request_reason or _("no reason given")
        return ask_confirmation(
            _("Approve the wipe of %(device)s?", device=name),
            _(
                "This erases the tablet %(device)s (serial %(serial)s) of incident %(id)d at its next "
                "connection; it cannot be undone. Requested by %(requester)s at %(when)s: %(reason)s.",
                device=name,
                serial=device.serial_number or "—",
                id=incident.id,
                requester=person_label(incident.wipe_requested_by),
                when=_time(incident.wipe_requested_at),
                reason=reason,
            ),
            action_label=_("Approve and erase %(device)s", device=name),
        )
    return _act(
        incident_id,
        lambda s, i, p: hotline.approve_wipe(s, i, actor=p.actor, context=command_context()),
        _("Wipe approved: the erase command was sent."),
    )


@bp.route("/hotline/incidents/<int:incident_id>/wipe-reject", methods=["POST"])
@needs(Permission.WIPE_APPROVE)
def hotline_wipe_reject(incident_id: int) -> Response:
    reason = _reason()
    return _act(
        incident_id,
        lambda s, i, p: hotline.reject_wipe(s, i, actor=p.actor, reason=reason),
        _("Wipe rejected."),
    )


@bp.route("/hotline/incidents/<int:incident_id>/break-glass", methods=["POST"])
@needs(Permission.WIPE_BREAK_GLASS)
def hotline_break_glass(incident_id: int) -> Response:
    reason = _reason()
    return _act(
        incident_id,
        lambda s, i, p: hotline.break_glass_wipe(
            s, i, actor=p.actor, reason=reason, context=command_context()
        ),
        _("Break glass: the erase command was sent without a second person."),
    )


@bp.route("/hotline/incidents/<int:incident_id>/recover", methods=["POST"])
@needs(Permission.INCIDENT_WRITE)
def hotline_recover(incident_id: int) -> Response:
    note = _reason()
    return _act(
        incident_id,
        lambda s, i, p: hotline.recover(s, i, actor=p.actor, note=note, context=command_context()),
        _("Recovered: lost mode ends and the incident is closed."),
    )


# -- the wipe certificate ---------------------------------------------------------------------------


def _certificate(incident_id: int) -> WipeCertificate:
    session = db_session()
    certificate = certificate_for_incident(session, _incident_or_404(incident_id))
    if certificate is None:
        abort(404)
    if certificate.signature is None:
        issue_wipe_certificate(session, settings(), certificate, actor=current_principal().actor)
        session.commit()
    return certificate


def _attachment(body: bytes, content_type: str, filename: str) -> Response:
    return Response(
        body, content_type=content_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@bp.route("/hotline/incidents/<int:incident_id>/certificate.json")
@needs(Permission.INCIDENT_READ)
def hotline_certificate_json(incident_id: int) -> Response:
    cert = _certificate(incident_id)
    return _attachment(cert.content, "application/json", f"wipe-certificate-{incident_id}.json")


@bp.route("/hotline/incidents/<int:incident_id>/certificate.json.p7s")
@needs(Permission.INCIDENT_READ)
def hotline_certificate_signature(incident_id: int) -> Response:
    cert = _certificate(incident_id)
    assert cert.signature is not None
    return _attachment(
        cert.signature, "application/pkcs7-signature", f"wipe-certificate-{incident_id}.json.p7s"
    )


@bp.route("/hotline/incidents/<int:incident_id>/certificate.html")
@needs(Permission.INCIDENT_READ)
def hotline_certificate_html(incident_id: int) -> Response:
    cert = _certificate(incident_id)
    page = render_certificate_html(cert.content, signer_fingerprint=cert.signer_fingerprint)
    # The printable page keeps its print styles in a <style> element; still no script at all.
    return Response(
        page, content_type="text/html; charset=utf-8", headers={"Content-Security-Policy": OTHER_PAGES_POLICY}
    )
