"""Auto-wipe policy per org unit: "wipe N hours after the call if not recovered" (off by default).

`run_auto_wipe` is the scheduler's entry point: it reminds approvers before the deadline and
wipes when it passes, both recorded on the incident (the wipe flagged, as a policy decision
taken by nobody in particular).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.context import NO_CONTEXT, CommandContext
from commands.incidents.errors import IncidentInputError
from commands.incidents.service import policy_wipe, record_step
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import OrgUnit
from mdm.ground.models.incident import Incident, IncidentPolicy, IncidentStatus
from mdm.services import orgunits

POLICY_ACTOR = Actor("policy:auto-wipe", "system")
MAX_HOURS = 24 * 90


@dataclass
class AutoWipeReport:
    reminded: list[int] = field(default_factory=list)  # incident ids whose approvers must be told
    wiped: list[int] = field(default_factory=list)


def set_incident_policy(
    session: Session,
    unit: OrgUnit,
    *,
    auto_wipe_after_hours: int | None,
    remind_before_hours: int = 2,
    actor: Actor,
) -> IncidentPolicy:
    """Set (or with None, turn off) the unit's auto-wipe delay; applies to units below it too."""
    if auto_wipe_after_hours is not None and not 1 <= auto_wipe_after_hours <= MAX_HOURS:
        raise IncidentInputError({"auto_wipe_after_hours": [f"must be between 1 and {MAX_HOURS} hours"]})
    if remind_before_hours < 0 or (
        auto_wipe_after_hours is not None and remind_before_hours >= auto_wipe_after_hours
    ):
        raise IncidentInputError(
            {"remind_before_hours": ["must be 0 or more and less than the auto-wipe delay"]}
        )
    policy = session.scalars(select(IncidentPolicy).where(IncidentPolicy.org_unit_id == unit.id)).first()
    if policy is None:
        policy = IncidentPolicy(org_unit_id=unit.id)
        session.add(policy)
    policy.auto_wipe_after_hours = auto_wipe_after_hours
    policy.remind_before_hours = remind_before_hours
    policy.updated_by = actor.name
    policy.updated_at = clock.now()
    session.flush()
    record_event(
        session,
        actor,
        "incident_policy.updated",
        "org_unit",
        unit.id,
        {"auto_wipe_after_hours": auto_wipe_after_hours, "remind_before_hours": remind_before_hours},
    )
    return policy


def policy_for_unit(session: Session, unit_id: int | None) -> IncidentPolicy | None:
    """The nearest policy at or above the unit (a station's policy covers its companies)."""
    if unit_id is None:
        return None
    unit = session.get(OrgUnit, unit_id)
    if unit is None:
        return None
    chain = [unit, *reversed(orgunits.ancestors(session, unit))]
    policies = {
        p.org_unit_id: p
        for p in session.scalars(
            select(IncidentPolicy).where(IncidentPolicy.org_unit_id.in_([u.id for u in chain]))
        )
    }
    for node in chain:
        if node.id in policies:
            return policies[node.id]
    return None


def run_auto_wipe(session: Session, *, context: CommandContext = NO_CONTEXT) -> AutoWipeReport:
    """Remind, then wipe, every unrecovered incident whose unit's policy says so."""
    report = AutoWipeReport()
    now = clock.now()
    waiting = (IncidentStatus.OPEN, IncidentStatus.LOCKED, IncidentStatus.WIPE_REQUESTED)
    for incident in session.scalars(
        select(Incident).where(Incident.status.in_(waiting)).order_by(Incident.id)
    ):
        policy = policy_for_unit(session, incident.org_unit_id)
        if policy is None or policy.auto_wipe_after_hours is None:
            continue
        due = incident.opened_at + timedelta(hours=policy.auto_wipe_after_hours)
        if now >= due:
            reason = f"自動消去ポリシー: 受付から{policy.auto_wipe_after_hours}時間経過 / auto-wipe policy"
            policy_wipe(session, incident, actor=POLICY_ACTOR, reason=reason, context=context)
            report.wiped.append(incident.id)
        elif incident.auto_wipe_reminded_at is None and now >= due - timedelta(
            hours=policy.remind_before_hours
        ):
            incident.auto_wipe_reminded_at = now
            record_step(session, incident, POLICY_ACTOR, "auto_wipe_reminder", {"wipe_at": due.isoformat()})
            report.reminded.append(incident.id)
    return report
