"""Read-only service functions for the console and REST API (web/ owns the pages)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from mdm.ground.models import ComplianceFinding, Device, DeviceCompliance, Severity


def with_compliance_filter(stmt: Select[Any], states: Iterable[str]) -> Select[Any]:
    """Restrict a `select(Device)` to devices in these compliance states ("ok" includes devices
    never evaluated), so the devices list can add its own filters, order and paging."""
    wanted = list(states)
    stmt = stmt.outerjoin(DeviceCompliance, DeviceCompliance.device_id == Device.id)
    condition: ColumnElement[bool] = DeviceCompliance.state.in_(wanted)
    if Severity.OK in wanted:
        condition = or_(condition, DeviceCompliance.device_id.is_(None))
    return stmt.where(condition)


def compliance_summary(session: Session) -> dict[str, int]:
    """Device count per state, every state present (dashboard)."""
    counts = dict.fromkeys(Severity.ORDER, 0)
    evaluated = 0
    for state, count in session.execute(
        select(DeviceCompliance.state, func.count()).group_by(DeviceCompliance.state)
    ).all():
        counts[state] = count
        evaluated += count
    total = session.scalar(select(func.count()).select_from(Device)) or 0
    counts[Severity.OK] += total - evaluated
    return counts


def device_findings(
    session: Session, device_id: int, *, include_closed: bool = False
) -> list[ComplianceFinding]:
    """Newest first; open ones only unless asked."""
    stmt = select(ComplianceFinding).where(ComplianceFinding.device_id == device_id)
    if not include_closed:
        stmt = stmt.where(ComplianceFinding.closed_at.is_(None))
    return list(session.scalars(stmt.order_by(ComplianceFinding.id.desc())))


def unauthorized_app_identifiers(session: Session, device_id: int) -> set[str]:
    """The device's apps with an open unauthorized-app finding (marked in its apps list)."""
    return set(
        session.scalars(
            select(ComplianceFinding.subject).where(
                ComplianceFinding.device_id == device_id,
                ComplianceFinding.rule == "unauthorized_app",
                ComplianceFinding.closed_at.is_(None),
            )
        )
    )
