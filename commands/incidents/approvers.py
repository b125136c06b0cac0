"""Approvers are told when a wipe waits for them, and their queue is one query.

A wipe request raises a critical alert (kind `wipe_requested`): the alert channels that already
exist carry it (a delivery to every enabled webhook in the same transaction, and the alert e-mail
to the administrators' address when SMTP is configured). Each person who may approve it and has
an e-mail address is also mailed, one mail each (mdm.services.mail.outbox, sent after commit).
When someone decides (approve, reject, break glass) or the tablet is recovered, the alert is
acknowledged with what happened, so the open alerts never show a request that no longer waits.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor
from mdm.ground.models import Alert, Severity, User
from mdm.ground.models.incident import Incident, IncidentStatus
from mdm.services.alerts.service import acknowledge_alert, raise_alert
from mdm.services.mail.outbox import queue_mail
from mdm.services.orgunits import subtree_ids

WIPE_REQUESTED_ALERT = "wipe_requested"
WIPE_REQUEST_MAIL = "wipe_request"
# The people's roles that hold wipe.approve in web.rbac (services cannot import web; a test keeps
# the two the same).
APPROVING_ROLES = ("admin", "approver")


def person_label(name: str | None) -> str:
    """ "user:tanaka" → "tanaka": the person, not the kind of principal."""
    return (name or "").split(":", 1)[-1]


def approvers_to_mail(session: Session, incident: Incident) -> list[User]:
    """Enabled people who may approve this wipe (role, and a scope that holds the incident's unit),
    have an e-mail address, and did not request it themselves."""
    candidates = session.scalars(
        select(User)
        .where(User.role.in_(APPROVING_ROLES), User.disabled_at.is_(None), User.email.is_not(None))
        .order_by(User.id)
    )
    out = []
    for user in candidates:
        if user.id == incident.wipe_requested_by_user_id:
            continue
        if user.org_unit_id is not None:
            units = {incident.org_unit_id, incident.device.org_unit_id} - {None}
            if not units & subtree_ids(session, user.org_unit_id):
                continue
        out.append(user)
    return out


def _mail_approvers(session: Session, incident: Incident, name: str, who: str) -> int:
    device = incident.device
    reason = incident.wipe_request_reason or "(理由なし / no reason given)"
    subject = f"[Hikeshi MDM] 消去の承認待ち / Wipe awaiting approval: {name} (事案 {incident.id})"
    body = "\n".join(
        [
            "タブレットの消去(ワイプ)があなたの承認を待っています。",
            "A tablet wipe is waiting for your approval.",
            "",
            f"端末 / Tablet: {name}",
            f"シリアル番号 / Serial: {device.serial_number or '-'}",
            f"事案 / Incident: {incident.id}",
            f"申請者 / Requested by: {who}",
            f"理由 / Reason: {reason}",
            "",
            "承認または却下はコンソールの事案ページで行ってください(申請者本人は承認できません)。",
            "Approve or reject it on the incident page of the console (the requester cannot approve).",
        ]
    )
    approvers = approvers_to_mail(session, incident)
    for user in approvers:
        assert user.email is not None
        queue_mail(
            session,
            kind=WIPE_REQUEST_MAIL,
            to=user.email,
            subject=subject,
            body=body,
            user_id=user.id,
            incident_id=incident.id,
            link_path=f"/console/hotline/incidents/{incident.id}",
        )
    return len(approvers)


def tell_approvers(session: Session, incident: Incident, actor: Actor) -> Alert:
    device = incident.device
    name = device.device_name or device.serial_number or f"#{device.id}"
    tag = f" [{device.asset_tag}]" if getattr(device, "asset_tag", None) else ""
    who = person_label(actor.name)
    _mail_approvers(session, incident, f"{name}{tag}", who)
    return raise_alert(
        session,
        WIPE_REQUESTED_ALERT,
        Severity.CRITICAL,
        f"消去の承認待ち: {name}{tag} (事案 {incident.id}、申請者 {who}) / "
        f"Wipe awaiting approval: {name}{tag} (incident {incident.id}, requested by {who})",
        device=device,
        org_unit_id=incident.org_unit_id,
        details={
            "incident_id": incident.id,
            "requested_by": actor.name,
            "reason": incident.wipe_request_reason,
        },
    )


def settle_approver_alerts(session: Session, incident: Incident, actor: Actor, outcome: str) -> int:
    """Acknowledge the incident's open wipe-request alerts with `outcome`; how many there were."""
    rows = session.scalars(
        select(Alert).where(
            Alert.kind == WIPE_REQUESTED_ALERT,
            Alert.acknowledged_at.is_(None),
            Alert.device_id == incident.device_id,
        )
    ).all()
    settled = 0
    for alert in rows:
        if (alert.details or {}).get("incident_id") == incident.id:
            acknowledge_alert(session, alert, actor, outcome)
            settled += 1
    return settled


def pending_wipe_requests(session: Session, scope: frozenset[int] | None) -> list[Incident]:
    """Wipe requests waiting for a second person, oldest first, inside `scope` (None: all)."""
    stmt = (
        select(Incident)
        .where(Incident.status == IncidentStatus.WIPE_REQUESTED)
        .order_by(Incident.wipe_requested_at, Incident.id)
    )
    if scope is not None:
        stmt = stmt.where(Incident.org_unit_id.in_(sorted(scope)))
    return list(session.scalars(stmt))
