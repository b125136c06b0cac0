"""Which org unit a device in Apple Business Manager is for.

A new ABM device is placed by the first rule that names it: its serial number, then the order
it was bought in (order serials are imported: the device assignment service does not say the
order), then the default unit. A device with no rule stays unplaced (shown, never guessed) until
someone places it by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import AdeAssignmentRule, AdeDevice, AdeOrderSerial, AdeRuleKind, OrgUnit

# Apple serial numbers: 10 to 12 letters and digits (older ones 11 or 12, randomized ones 10).
_SERIAL = re.compile(r"[A-Z0-9]{8,14}")


class AdeRuleError(ValueError):
    """A rule or an order list that cannot be saved; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def normalize_serial(value: str) -> str:
    serial = value.strip().upper()
    if not _SERIAL.fullmatch(serial):
        raise AdeRuleError("serial_number", f"{value.strip()[:40]!r} is not an Apple serial number")
    return serial


def add_rule(session: Session, kind: str, value: str, unit: OrgUnit, *, actor: Actor) -> AdeAssignmentRule:
    """Add (or point elsewhere) the rule for a serial, an order or the default."""
    if kind not in AdeRuleKind.ALL:
        raise AdeRuleError("kind", f"must be one of {', '.join(AdeRuleKind.ALL)}")
    if kind == AdeRuleKind.SERIAL:
        value = normalize_serial(value)
    elif kind == AdeRuleKind.ORDER:
        value = value.strip()
        if not value or len(value) > 128:
            raise AdeRuleError("order_number", "required, at most 128 characters")
    else:
        value = ""
    rule = session.scalars(
        select(AdeAssignmentRule).where(AdeAssignmentRule.kind == kind, AdeAssignmentRule.value == value)
    ).first()
    if rule is None:
        rule = AdeAssignmentRule(kind=kind, value=value, org_unit_id=unit.id, created_by=actor.name)
        session.add(rule)
    else:
        rule.org_unit_id = unit.id
    session.flush()
    record_event(
        session,
        actor,
        "ade.rule_saved",
        "ade_assignment_rule",
        rule.id,
        {"kind": kind, "value": value, "org_unit_id": unit.id},
    )
    return rule


def remove_rule(session: Session, rule: AdeAssignmentRule, *, actor: Actor) -> None:
    record_event(
        session,
        actor,
        "ade.rule_removed",
        "ade_assignment_rule",
        rule.id,
        {"kind": rule.kind, "value": rule.value, "org_unit_id": rule.org_unit_id},
    )
    session.delete(rule)
    session.flush()


def list_rules(session: Session) -> list[AdeAssignmentRule]:
    return list(
        session.scalars(select(AdeAssignmentRule).order_by(AdeAssignmentRule.kind, AdeAssignmentRule.value))
    )


def import_order(session: Session, order_number: str, serials: Iterable[str], *, actor: Actor) -> int:
    """Record which serials an order delivered; all or nothing (a bad serial names itself)."""
    order_number = order_number.strip()
    if not order_number or len(order_number) > 128:
        raise AdeRuleError("order_number", "required, at most 128 characters")
    clean = sorted({normalize_serial(s) for s in serials if s.strip()})
    if not clean:
        raise AdeRuleError("serial_numbers", "no serial number given")
    existing = {
        row.serial_number: row
        for row in session.scalars(select(AdeOrderSerial).where(AdeOrderSerial.serial_number.in_(clean)))
    }
    for serial in clean:
        row = existing.get(serial)
        if row is None:
            session.add(
                AdeOrderSerial(order_number=order_number, serial_number=serial, imported_by=actor.name)
            )
        else:
            row.order_number = order_number
    session.flush()
    record_event(session, actor, "ade.order_imported", "ade_order", order_number, {"serial_numbers": clean})
    return len(clean)


def unit_for_serial(session: Session, serial: str) -> tuple[int | None, str | None]:
    """(unit id, the rule that chose it) for a serial, or (None, None) when no rule names it."""
    by_serial = session.scalars(
        select(AdeAssignmentRule).where(
            AdeAssignmentRule.kind == AdeRuleKind.SERIAL, AdeAssignmentRule.value == serial
        )
    ).first()
    if by_serial is not None:
        return by_serial.org_unit_id, "serial"
    order = session.scalars(
        select(AdeOrderSerial.order_number).where(AdeOrderSerial.serial_number == serial)
    ).first()
    if order is not None:
        by_order = session.scalars(
            select(AdeAssignmentRule).where(
                AdeAssignmentRule.kind == AdeRuleKind.ORDER, AdeAssignmentRule.value == order
            )
        ).first()
        if by_order is not None:
            return by_order.org_unit_id, f"order {order}"
    default = session.scalars(
        select(AdeAssignmentRule).where(AdeAssignmentRule.kind == AdeRuleKind.DEFAULT)
    ).first()
    if default is not None:
        return default.org_unit_id, "default"
    return None, None


def place_new_device(session: Session, device: AdeDevice, *, actor: Actor) -> None:
    """Give a device its unit by the rules, when it has none yet."""
    if device.org_unit_id is not None:
        return
    unit_id, rule = unit_for_serial(session, device.serial_number)
    if unit_id is None:
        return
    device.org_unit_id = unit_id
    device.updated_at = clock.now()
    record_event(
        session,
        actor,
        "ade.device_placed",
        "ade_device",
        device.serial_number,
        {"org_unit_id": unit_id, "rule": rule},
    )


def place_by_hand(session: Session, device: AdeDevice, unit: OrgUnit | None, *, actor: Actor) -> None:
    device.org_unit_id = unit.id if unit is not None else None
    device.updated_at = clock.now()
    # A new unit means a new ADE profile: assigned at the next sync.
    device.profile_assign_result = None
    record_event(
        session,
        actor,
        "ade.device_placed",
        "ade_device",
        device.serial_number,
        {"org_unit_id": device.org_unit_id, "rule": "by hand"},
    )
