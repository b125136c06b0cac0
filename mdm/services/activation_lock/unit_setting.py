"""Allowing or disallowing Activation Lock per org unit, inherited down the tree.

A unit's own value (org_units.activation_lock_allowed) wins; None takes the parent's, up to the
HQ; a tree with no value anywhere does not allow it (Apple's default for
ActivationLockAllowedWhileSupervised is false)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor
from mdm.ground.models import OrgUnit
from mdm.services.unit_inheritance import set_unit_flag

APPLE_DEFAULT = False


@dataclass(frozen=True)
class UnitActivationLock:
    own: bool | None  # the unit's own value; None inherits
    allowed: bool  # what applies to its tablets
    source_unit_id: int | None  # the unit whose value applies; None: Apple's default


def _values(session: Session) -> dict[int, tuple[int | None, bool | None]]:
    rows = session.execute(select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.activation_lock_allowed)).all()
    return {unit_id: (parent_id, value) for unit_id, parent_id, value in rows}


class ActivationLockBook:
    """Every unit's value, loaded once, for deciding many devices."""

    def __init__(self, session: Session) -> None:
        self._values = _values(session)

    def for_unit(self, org_unit_id: int | None) -> UnitActivationLock:
        own = self._values.get(org_unit_id, (None, None))[1] if org_unit_id is not None else None
        seen: set[int] = set()
        current = org_unit_id
        while current is not None and current not in seen:
            seen.add(current)
            parent, value = self._values.get(current, (None, None))
            if value is not None:
                return UnitActivationLock(own, value, current)
            current = parent
        return UnitActivationLock(own, APPLE_DEFAULT, None)


def unit_activation_lock(session: Session, org_unit_id: int | None) -> UnitActivationLock:
    return ActivationLockBook(session).for_unit(org_unit_id)


def set_unit_activation_lock(session: Session, unit: OrgUnit, allowed: bool | None, *, actor: Actor) -> bool:
    """Set (True/False) or clear (None: inherit) the unit's value; audited. Returns whether it
    changed. Sending the setting to the tablets is the caller's next step
    (commands.activation_lock.apply_unit_setting)."""
    return set_unit_flag(
        session,
        unit,
        "activation_lock_allowed",
        allowed,
        actor=actor,
        event="activation_lock.unit_setting_changed",
        effective=lambda session, unit_id: unit_activation_lock(session, unit_id).allowed,
        argument="allowed",
    )
